"""The bridge with its batteries' adapter against the battery simulator and a real Mosquitto.

Time: the bridge's battery hub and the simulator share a :class:`ManualClock`
that only moves when a test says so; the hub looks at it every few
milliseconds. So a test holds a setpoint for three simulated minutes in well
under a second of real time, and nothing depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from hoymiles_bridge.addon.bridge import Bridge
from hoymiles_bridge.cli.run import mqtt_settings
from hoymiles_bridge.config.options import validate
from hoymiles_bridge.core.state import BatteryState
from hoymiles_bridge.simulator.battery import BatterySimulator

from .manual_clock import ManualClock
from .mosquitto import Mosquitto, Subscriber
from .waiting import until

PREFIX = "homeassistant"
BASE = "solar"


@dataclass
class BatteryEnv:
    bridge: Bridge
    sim: BatterySimulator
    clock: ManualClock
    seen: Subscriber
    broker: Mosquitto
    #: The bridge's run() task.
    task: asyncio.Task[None]

    @property
    def hub(self) -> Any:
        return self.bridge.fleet.batteries

    def battery(self, unit: int = 0) -> BatteryState:
        state: BatteryState = self.hub.batteries[self.sim.units[unit].dev_id]
        return state

    def topic(self, unit: int, key: str) -> str:
        return f"{BASE}/battery/{self.sim.units[unit].dev_id}/{key}"

    def cmd(self, unit: int, name: str) -> str:
        return self.topic(unit, f"cmd/{name}")

    async def command(self, unit: int, name: str, payload: str | bytes) -> str:
        """Send a bridge command and return its status text."""
        topic = self.cmd(unit, name)
        before = len(self.seen.payloads(f"{topic}/status"))
        await self.publish(topic, payload)

        async def answered() -> bool:
            done = [p for p in self.seen.payloads(f"{topic}/status")[before:] if p != b"pending"]
            return bool(done)

        await until(answered, f"the status of {name}")
        done = [p for p in self.seen.payloads(f"{topic}/status")[before:] if p != b"pending"]
        return done[0].decode()

    async def publish(self, topic: str, payload: str | bytes, retain: bool = False) -> None:
        await self.bridge.link.publish(topic, payload, qos=1, retain=retain)

    def sent(self, suffix: str, unit: int = 0) -> list[str]:
        """What the simulator received on one of its command topics."""
        dev_id = self.sim.units[unit].dev_id
        return [r.payload for r in self.sim.received if r.topic.endswith(f"{dev_id}/{suffix}")]

    def state(self, unit: int, key: str) -> str | None:
        raw = self.seen.last.get(self.topic(unit, key))
        return None if raw is None else raw.decode()

    def discovery(self) -> dict[str, dict[str, Any]]:
        """Our battery discovery messages by topic (the retained, non-empty ones)."""
        found: dict[str, dict[str, Any]] = {}
        for topic, payload in self.seen.last.items():
            if "/hoymiles_bat_" in topic and topic.endswith("/config") and payload:
                found[topic] = json.loads(payload)
        return found


@contextlib.asynccontextmanager
async def battery_env(
    broker: Mosquitto,
    *,
    model: str = "ms-a2",
    firmware: str = "v0.5",
    strings: bool = False,
    units: int = 1,
    start_sim: bool = True,
    **options: Any,
) -> AsyncIterator[BatteryEnv]:
    clock = ManualClock()
    sim = BatterySimulator(
        "127.0.0.1",
        broker.port,
        model=model,
        firmware=firmware,
        strings=strings,
        units=units,
        quick_interval=0.1,
        slow_interval=0.5,
        clock=clock.now,
    )
    doc: dict[str, Any] = {
        "dtus": [],
        "mqtt": {"host": "127.0.0.1", "port": broker.port},
        "base_topic": BASE,
        "discovery_prefix": PREFIX,
    }
    doc.update(options)
    bridge = Bridge(
        validate(doc),
        mqtt_settings(validate(doc)),
        announce_delay=0.0,
        mqtt_backoff=0.1,
        battery_clock=clock.now,
        battery_tick=0.01,
    )
    async with Subscriber(broker.port, "#") as seen:
        task = asyncio.create_task(bridge.run(), name="bridge-under-test")
        await bridge.link.wait_connected(10)
        sim_task = asyncio.create_task(sim.run(), name="battery-sim-under-test")
        env = BatteryEnv(bridge, sim, clock, seen, broker, task)
        try:
            if start_sim:
                await until(
                    lambda: _found(env, units), "every simulated unit to be seen", timeout=15
                )
            yield env
        finally:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(bridge.stop(), 15)
            for running in (task, sim_task):
                await _end(running)


async def _end(task: asyncio.Task[None]) -> None:
    """Cancel until it is over (bounded): a client library may swallow one cancellation."""
    for _ in range(3):
        if task.done():
            break
        task.cancel()
        await asyncio.wait({task}, timeout=5)
    assert task.done(), f"{task.get_name()} does not stop"


async def _found(env: BatteryEnv, units: int) -> bool:
    batteries = env.hub.batteries
    return all(
        u.dev_id in batteries and batteries[u.dev_id].updated_at is not None
        for u in env.sim.units[:units]
    )


__all__ = ["BASE", "PREFIX", "BatteryEnv", "ManualClock", "battery_env"]
