"""The bridge process's two halves wired together: the fleet and its MQTT adapter.

:class:`Bridge` is what the service, ``hoymiles-bridge demo``, the tests and
the benchmarks start: a :class:`~hoymiles_bridge.core.fleet.Fleet` (every DTU
session and their state) and a :class:`~hoymiles_bridge.mqtt.bridge.MqttBridge`
(topics, discovery, commands) run in one task group; the batteries' adapter
(:class:`~hoymiles_bridge.mqtt.battery.BatteryAdapter`) shares its broker
link. The web UI attaches to ``bridge.fleet`` on its own. With ``cloud``
options, the cloud's stations (:class:`~hoymiles_bridge.core.cloud.CloudSource`)
run beside them and are published over the same link
(:class:`~hoymiles_bridge.mqtt.cloud.CloudPublisher`).
The power controller (:class:`~hoymiles_bridge.core.controller_service.ControllerService`)
always runs, in the mode of its options (``monitor`` sends nothing), on the
fleet's inverters and batteries; its meter and mode topics ride on the same
link (:class:`~hoymiles_bridge.mqtt.controller.ControllerLink`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from typing import Final

from hoymiles_bridge import __version__
from hoymiles_bridge.config.options import Options
from hoymiles_bridge.core.battery import TICK as BATTERY_TICK
from hoymiles_bridge.core.cloud import CloudSource
from hoymiles_bridge.core.controller_service import (
    ControllerService,
    FleetActuators,
    battery_grid,
    battery_units,
    inverter_units,
)
from hoymiles_bridge.core.events import BatteryChanged, Event
from hoymiles_bridge.core.fleet import Fleet
from hoymiles_bridge.dtu.policy import PollPolicy
from hoymiles_bridge.dtu.session import ClientFactory, default_client
from hoymiles_bridge.errors import InvalidArgumentError
from hoymiles_bridge.mqtt.battery import BatteryAdapter
from hoymiles_bridge.mqtt.bridge import MqttBridge
from hoymiles_bridge.mqtt.cloud import CloudPublisher
from hoymiles_bridge.mqtt.controller import ControllerLink
from hoymiles_bridge.mqtt.link import MqttLink, MqttSettings
from hoymiles_bridge.mqtt.topics import TopicLayout

_LOGGER = logging.getLogger(__name__)


#: Container allocations (net of those freed) between two young-generation
#: collections; Python's default is 700. Every poll allocates thousands of
#: short-lived objects, and with the default many of them outlive a few
#: collections, reach the oldest generation and make its full collections
#: frequent and long (40-60 ms at 200 DTUs, the event loop's worst lag;
#: benchmarks/bench_bridge.py reports the collector's runs).
GC_YOUNG_THRESHOLD: Final = 50_000


def tune_garbage_collector() -> None:
    """For a long-running bridge process: call once it has started, before polling.

    Moves what start-up allocated (modules, options, tables) out of the
    collector's sight (``gc.freeze``), and lets the young generation grow to
    :data:`GC_YOUNG_THRESHOLD` so a poll's objects die young. Cycles are
    still collected, only less often.
    """
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


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
        fleet = self.fleet
        hub = fleet.batteries
        self.batteries = BatteryAdapter(fleet)
        self.controller = ControllerService(
            options.controller,
            FleetActuators(
                fleet,
                lambda: inverter_units(fleet.dtus),
                lambda now: battery_units(hub.batteries.values()),
                lambda: battery_grid(hub.batteries.values()),
            ),
            fleet.emit,
            clock=battery_clock,  # the batteries' telemetry times are on this clock
        )
        layout = TopicLayout(options.base_topic, several_dtus=len(options.dtus) > 1)
        self.controller_link = ControllerLink(
            self.controller,
            base=options.base_topic,
            bridge_status=layout.will,
            prefix=options.discovery_prefix,
            discovery=options.discovery,
            version=__version__,
            configuration_url=lambda: self.mqtt.configuration_url,
            submit=fleet.submit,
        )
        fleet.controller_handler = self.controller.execute
        self.cloud: CloudSource | None = None
        self.cloud_mqtt: CloudPublisher | None = None
        if options.cloud.enabled:
            try:
                self.cloud = CloudSource(options.cloud)
            except InvalidArgumentError as err:
                _LOGGER.error("cloud: %s; the cloud is not used", err)  # noqa: TRY400 - a sentence
            else:
                fleet.cloud_handler = self.cloud.execute
        self.mqtt = MqttBridge(
            fleet,
            mqtt,
            announce_delay=announce_delay,
            backoff=mqtt_backoff,
            companions=(self.batteries, self.controller_link),
        )
        fleet.subscribe(self.controller_link.on_event)
        if self.cloud is not None:
            self._add_cloud(options, self.cloud)

    def _add_cloud(self, options: Options, cloud: CloudSource) -> None:
        self.cloud_mqtt = CloudPublisher(
            cloud,
            self.mqtt.link,
            base=options.base_topic,
            bridge_status=self.mqtt.layout.will,
            prefix=options.discovery_prefix,
            discovery=options.discovery,
            version=__version__,
            qos=options.mqtt.qos,
            writes=options.cloud.allow_writes,
        )
        self.fleet.subscribe(self._local_batteries)

    async def _local_batteries(self, event: Event) -> None:
        """A battery reached over its own MQTT wins over the cloud's copy of its station."""
        if self.cloud is None or not isinstance(event, BatteryChanged):
            return
        if "identity" in event.what:
            batteries = self.fleet.batteries.batteries.values()
            self.cloud.set_local_serials(b.serial for b in batteries if b.serial)

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
            group.create_task(self.controller.run(), name="controller")
            group.create_task(self.controller_link.run(), name="controller-mqtt")
            if self.cloud is not None and self.cloud_mqtt is not None:
                group.create_task(self.cloud.run(), name="cloud-poller")
                group.create_task(self.cloud_mqtt.run(), name="cloud-mqtt")

    async def stop(self) -> None:
        """Release what the controller changed and the held battery setpoints, say goodbye
        on MQTT (the caller then cancels :meth:`run`)."""
        await self.mqtt.stop_commands()  # first: none may change a battery after its release
        await self.controller.stop()
        await self.batteries.stop()
        await self.mqtt.stop()


__all__ = ["GC_YOUNG_THRESHOLD", "Bridge", "tune_garbage_collector"]
