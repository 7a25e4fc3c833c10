"""Web UI benchmark: live fan-out cost in the bridge, and time to the first live values.

Run from the repository root, inside the venv::

    python benchmarks/bench_web.py                 # both parts
    python benchmarks/bench_web.py --no-browser    # only the fan-out part
    python benchmarks/bench_web.py --json          # also writes results/web-latest.json

1. **Fan-out** (in process, no I/O): the bridge hands every frame to
   ``WebHub.on_frame``, which builds the inspector's record (decoded payload
   as a dict, hex), encodes it to JSON once and offers the same string to
   every websocket client's bounded queue. Measured per frame for 0, 1, 10
   and 100 connected clients, with a 554-byte real-data reply (three
   inverters, twelve ports). No client reads, so with more frames than a
   queue holds every further frame also drops one old message per client:
   the cost of a browser that lags, which must stay small and flat.
2. **Time to live values** (``--browser``, the default when Debian's
   Chromium is there): a simulated DTU-Pro, a private Mosquitto, the real
   bridge and the web server run in this process; Playwright drives headless
   ``/usr/bin/chromium``. Each round opens the UI in a new page and waits
   until the first inverter's AC power is on screen. The first round starts
   with an empty cache, the others reuse the cached (immutable) assets, as a
   user reopening the panel does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench_decode import build_frame
from hoymiles_bridge.addon.bridge import Bridge
from hoymiles_bridge.cli.run import mqtt_settings
from hoymiles_bridge.config.options import validate
from hoymiles_bridge.dtu.connection import Direction, FrameEvent
from hoymiles_bridge.mqtt.local_broker import LocalBroker
from hoymiles_bridge.protocol.codec import decode_frame
from hoymiles_bridge.protocol.frame import Frame, FrameSplitter
from hoymiles_bridge.simulator import SimulatorGroup, load_fleet, resolve_fleet
from hoymiles_bridge.web.hub import WebHub
from hoymiles_bridge.web.server import WebServer

CHROMIUM = os.environ.get("HOYMILES_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
RESULTS = Path(__file__).resolve().parent / "results"


# --- 1. fan-out -----------------------------------------------------------------------


def _event() -> FrameEvent:
    raw, _payload = build_frame()
    (frame,) = FrameSplitter().feed(raw)
    assert isinstance(frame, Frame)
    return FrameEvent(time.time(), Direction.FROM_DTU, raw, frame, decode_frame(frame, None))


def fan_out(frames: int, clients: tuple[int, ...]) -> list[dict[str, Any]]:
    event = _event()
    rows = []
    for count in clients:
        hub = WebHub()
        subscriptions = [hub.subscribe() for _ in range(count)]
        for _ in range(200):  # warm-up
            hub.on_frame("dtu", event)
        start = time.perf_counter()
        for _ in range(frames):
            hub.on_frame("dtu", event)
        elapsed = time.perf_counter() - start
        rows.append(
            {
                "clients": count,
                "us_per_frame": round(elapsed / frames * 1e6, 1),
                "frames_per_s": round(frames / elapsed),
                "dropped": sum(s.dropped for s in subscriptions),
                "record_bytes": len(hub.frames[-1].json),
            }
        )
    return rows


# --- 2. time to live values --------------------------------------------------------------


async def _first_poll(bridge: Bridge) -> None:
    for _ in range(300):
        if any(i.values for d in bridge.fleet.dtus for i in d.inverters.values()):
            return
        await asyncio.sleep(0.2)
    raise SystemExit("the bridge never got a reading from the simulator")


async def time_to_values(rounds: int) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    fleet = load_fleet(resolve_fleet("dtu-pro"))
    async with contextlib.AsyncExitStack() as stack:
        broker = await stack.enter_async_context(LocalBroker())
        group = await stack.enter_async_context(
            SimulatorGroup(fleet, host="127.0.0.1", port=0, speed=8.0)
        )
        options = validate(
            {
                "dtus": [{"host": s.host, "port": s.port} for s in group.simulators],
                "poll_interval": 5,
                "min_poll_interval": 5,
                "mqtt": {"host": broker.host, "port": broker.port},
                "log_level": "warning",
            }
        )
        bridge = Bridge(options, mqtt_settings(options))
        hub = WebHub()
        hub.attach(bridge.fleet)
        server = WebServer(
            "127.0.0.1", 0, status=dict, allowed_peers=None, hub=hub, fleet=bridge.fleet
        )
        await server.start()
        stack.push_async_callback(server.stop)
        bridge_task = asyncio.create_task(bridge.run(), name="bench-web-bridge")

        async def stop_bridge() -> None:
            await bridge.stop()
            bridge_task.cancel()
            await asyncio.wait({bridge_task})

        stack.push_async_callback(stop_bridge)
        await _first_poll(bridge)  # the panel opens on a running bridge
        url = f"http://127.0.0.1:{server.port}/"
        playwright = await stack.enter_async_context(async_playwright())
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_ARGS)
        )
        stack.push_async_callback(browser.close)
        context = await browser.new_context()
        samples = []
        for _ in range(rounds):
            page = await context.new_page()
            start = time.perf_counter()
            await page.goto(url, wait_until="commit")
            await (
                page.locator("[data-serial] .power .value")
                .first.filter(has_text=" W")
                .wait_for(timeout=10_000)
            )
            samples.append((time.perf_counter() - start) * 1000)
            await page.close()
        warm = sorted(samples[1:])
        return {
            "inverters": sum(len(d.inverters) for d in fleet.dtus),
            "cold_ms": round(samples[0], 1),
            "warm_median_ms": round(statistics.median(warm), 1),
            "warm_max_ms": round(warm[-1], 1),
            "rounds": rounds,
        }


# --- main ------------------------------------------------------------------------------


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="ascii") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result: dict[str, Any] = {"machine": machine()}
    print(result["machine"])
    print("\nFan-out of one 554-byte real-data reply (record + JSON once, queue per client):")
    result["fan_out"] = fan_out(args.frames, (0, 1, 10, 100))
    for row in result["fan_out"]:
        print(
            f"  {row['clients']:>3} clients: {row['us_per_frame']:7.1f} µs/frame "
            f"({row['frames_per_s']:,} frames/s), {row['dropped']:,} dropped, "
            f"record {row['record_bytes']:,} bytes"
        )
    if not args.no_browser:
        if not os.access(CHROMIUM, os.X_OK):
            print(f"\n{CHROMIUM} not found: skipping the browser part")
        else:
            browser = asyncio.run(time_to_values(args.rounds))
            result["time_to_values"] = browser
            print(
                f"\nOpening the UI until the first inverter's power shows "
                f"({browser['inverters']} inverters, {browser['rounds']} rounds):\n"
                f"  cold cache {browser['cold_ms']} ms; cached assets median "
                f"{browser['warm_median_ms']} ms, max {browser['warm_max_ms']} ms"
            )
    if args.json:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "web-latest.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
