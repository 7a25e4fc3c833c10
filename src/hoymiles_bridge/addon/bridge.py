"""The bridge process's two halves wired together: the fleet and its MQTT adapter.

:class:`Bridge` is what the service, ``hoymiles-bridge demo``, the tests and
the benchmarks start: a :class:`~hoymiles_bridge.core.fleet.Fleet` (every DTU
session and their state) and a :class:`~hoymiles_bridge.mqtt.bridge.MqttBridge`
(topics, discovery, commands) run in one task group; the batteries' adapter
(:class:`~hoymiles_bridge.mqtt.battery.BatteryAdapter`) shares its broker
link. The web UI attaches to ``bridge.fleet`` on its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from hoymiles_bridge.config.options import Options
from hoymiles_bridge.core.battery import TICK as BATTERY_TICK
from hoymiles_bridge.core.fleet import Fleet
from hoymiles_bridge.dtu.policy import PollPolicy
from hoymiles_bridge.dtu.session import ClientFactory, default_client
from hoymiles_bridge.mqtt.battery import BatteryAdapter
from hoymiles_bridge.mqtt.bridge import MqttBridge
from hoymiles_bridge.mqtt.link import MqttLink, MqttSettings
from hoymiles_bridge.mqtt.topics import TopicLayout


class Bridge:
    """A fleet and its MQTT adapter, run until cancelled."""

    def __init__(
        self,
        options: Options,
        mqtt: MqttSettings,
        *,
        client_factory: ClientFactory = default_client,
        clock: Callable[[], float] = time.time,
        announce_delay: float = 2.0,
        policy: PollPolicy | None = None,
        mqtt_backoff: float = 1.0,
        battery_clock: Callable[[], float] = time.monotonic,
        battery_tick: float = BATTERY_TICK,
    ) -> None:
        self.fleet = Fleet(
            options,
            client_factory=client_factory,
            clock=clock,
            policy=policy,
            battery_clock=battery_clock,
            battery_tick=battery_tick,
        )
        self.batteries = BatteryAdapter(self.fleet)
        self.mqtt = MqttBridge(
            self.fleet,
            mqtt,
            announce_delay=announce_delay,
            backoff=mqtt_backoff,
            companions=(self.batteries,),
        )

    def __repr__(self) -> str:
        return f"Bridge({self.fleet!r}, {self.mqtt!r})"

    @property
    def options(self) -> Options:
        return self.fleet.options

    @property
    def link(self) -> MqttLink:
        return self.mqtt.link

    @property
    def layout(self) -> TopicLayout:
        return self.mqtt.layout

    async def run(self) -> None:
        """Run the MQTT link and every DTU session until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self.mqtt.run(), name="mqtt-link")
            group.create_task(self.fleet.run(), name="fleet")

    async def stop(self) -> None:
        """Release held battery setpoints and say goodbye on MQTT (then cancel :meth:`run`)."""
        await self.batteries.stop()
        await self.mqtt.stop()


__all__ = ["Bridge"]
