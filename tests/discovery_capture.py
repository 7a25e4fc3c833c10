"""Capture the retained Home Assistant discovery a bridge leaves on a broker.

The migration test (``tests/test_discovery_migration.py``) compares what
today's bridge announces with what an earlier release left retained. The
earlier release's messages are a vector under ``tests/vectors/discovery/``,
made by this module at that release::

    python -m tests.discovery_capture           # writes discovery-<version>.json

Each capture runs the real bridge against the simulator's bundled fleets (the
HMS-800W-2T on its built-in DTU, and the DTU-Pro with five inverters), both on
one bridge, and keeps every retained message under the discovery prefix.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from hoymiles_bridge import __version__
from hoymiles_bridge.simulator import DtuSimulator, SimClock
from hoymiles_bridge.simulator.fleet import load_fleet, resolve_fleet

from .bridge_env import running_bridge
from .interop_helpers import noon_today
from .mosquitto import Mosquitto, Subscriber

VECTORS = Path(__file__).resolve().parent / "vectors" / "discovery"
PREFIX = "homeassistant"
FLEETS = ("hms-800w-2t", "dtu-pro")
#: Every inverter of the fleets above: the capture waits until each is announced.
SETTLE_SECONDS = 3.0


def simulators(clock: SimClock) -> list[DtuSimulator]:
    sims = []
    for name in FLEETS:
        for spec in load_fleet(resolve_fleet(name)).dtus:
            sims.append(DtuSimulator(spec, port=0, clock=clock))
    return sims


def expected_inverters() -> list[str]:
    return [
        inv.serial
        for name in FLEETS
        for d in load_fleet(resolve_fleet(name)).dtus
        for inv in d.inverters
    ]


async def retained_discovery(port: int, timeout: float = 10.0) -> dict[str, str]:
    """Every retained, non-empty message under the prefix, as a fresh subscriber sees it."""
    async with Subscriber(port, f"{PREFIX}/#") as sub:
        await asyncio.sleep(0.5)  # retained messages arrive at once after subscribing
        return {
            m.topic: m.payload.decode()
            for m in sub.messages
            if m.retain and m.payload and m.topic.endswith("/config")
        }


async def announce_fleet(broker: Mosquitto, **options: Any) -> dict[str, str]:
    """Run the bridge until every inverter is announced; return the retained discovery."""
    clock = SimClock(start=noon_today())
    sims = simulators(clock)
    for sim in sims:
        await sim.__aenter__()
    try:
        async with running_bridge(broker, sims, clock=clock, **options):
            wanted = expected_inverters()
            async with asyncio.timeout(30):
                while True:
                    found = await retained_discovery(broker.port)
                    if all(any(f"hoymiles_inv_{s}/" in t for t in found) for s in wanted):
                        break
                    await asyncio.sleep(0.5)
            await asyncio.sleep(SETTLE_SECONDS)
            return await retained_discovery(broker.port)
    finally:
        for sim in sims:
            await sim.__aexit__(None, None, None)


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="capture-") as workdir:
        broker = Mosquitto(Path(workdir))
        await broker.start()
        try:
            found = await announce_fleet(broker)
        finally:
            await broker.stop()
    VECTORS.mkdir(parents=True, exist_ok=True)
    path = VECTORS / f"discovery-{__version__}.json"
    document = {
        "version": __version__,
        "fleets": list(FLEETS),
        "messages": dict(sorted(found.items())),
    }
    path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(found)} messages to {path}")


if __name__ == "__main__":
    asyncio.run(main())
