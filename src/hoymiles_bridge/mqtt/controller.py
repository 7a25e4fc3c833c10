"""The power controller on MQTT: the meter in, the mode select, the controller's state out.

:class:`ControllerLink` is a :class:`~hoymiles_bridge.mqtt.companion.LinkCompanion`
of the bridge's one broker connection. It

* subscribes to the meter topic (``controller.meter_topic``) and hands each
  payload to :meth:`~hoymiles_bridge.core.controller_service.ControllerService.on_meter`
  (parsing, plausibility and the hold on bad input are the core's);
* takes ``<base>/controller/cmd/mode`` (``off``, ``monitor``, ``zero_export``,
  ``feed_in_cap``) as the registry's ``controller_mode`` command
  (``Fleet.submit``); the bridge answers on ``.../cmd/mode/status``, and a
  retained message never switches the mode;
* publishes ``<base>/controller/{mode,state,grid,battery,target}`` (retained)
  after each event of the controller and every few seconds when they
  changed, and Home Assistant discovery: a ``select`` for the mode and
  sensors for the rest, on a device "Power controller" available while the
  bridge is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

from hoymiles_bridge.core.commands import CommandOutcome, CommandRequest, Target
from hoymiles_bridge.core.controller import MODES
from hoymiles_bridge.core.controller_service import ControllerService
from hoymiles_bridge.core.events import ControllerActed, ControllerChanged, Event
from hoymiles_bridge.mqtt.discovery import (
    MANUFACTURER,
    PAYLOAD_OFFLINE,
    PAYLOAD_ONLINE,
    config_message,
    origin_block,
)
from hoymiles_bridge.mqtt.link import MqttLink, MqttMessage

_LOGGER = logging.getLogger(__name__)

NODE: Final = "hoymiles_bridge_controller"
#: Seconds between two looks at the state topics between the controller's events.
REFRESH_S: Final = 5.0
#: The controller's sensors: topic leaf, name, unit, device class.
SENSORS: Final = (
    ("state", "Controller state", None, None),
    ("grid", "Grid power (meter)", "W", "power"),
    ("battery", "Battery setpoint total", "W", "power"),
    ("target", "Grid target", "W", "power"),
)


def controller_topic(base: str, leaf: str) -> str:
    return f"{base.strip('/')}/controller/{leaf}"


def mode_command_topic(base: str) -> str:
    return controller_topic(base, "cmd/mode")


def state_items(base: str, status: dict[str, Any]) -> list[tuple[str, str]]:
    """The retained state topics of a controller status."""

    def number(value: object) -> str:
        return "" if not isinstance(value, int | float) else f"{value:.0f}"

    return [
        (controller_topic(base, "mode"), str(status["mode"])),
        (controller_topic(base, "state"), str(status["state"])),
        (controller_topic(base, "grid"), number(status["grid"])),
        (controller_topic(base, "battery"), number(status["battery"])),
        (controller_topic(base, "target"), number(status["target"])),
    ]


def discovery_items(
    prefix: str, base: str, bridge_status: str, version: str, configuration_url: str | None = None
) -> list[tuple[str, str]]:
    """The select and sensors of the controller's Home Assistant device."""
    device = {
        "ids": [NODE],
        "name": "Power controller",
        "mf": MANUFACTURER,
        "mdl": "Hoymiles DTU Bridge",
    }
    if configuration_url is not None:
        device["cu"] = configuration_url
    common = {
        "avty": [{"t": bridge_status, "pl_avail": PAYLOAD_ONLINE, "pl_not_avail": PAYLOAD_OFFLINE}],
        "dev": device,
        "o": origin_block(version),
    }
    select = {
        "name": "Controller mode",
        "uniq_id": f"{NODE}_mode",
        "stat_t": controller_topic(base, "mode"),
        "cmd_t": mode_command_topic(base),
        "ops": list(MODES),
        "ic": "mdi:transmission-tower-export",
        **common,
    }
    items = [config_message(prefix, "select", NODE, "mode", select)]
    for key, name, unit, device_class in SENSORS:
        sensor: dict[str, Any] = {
            "name": name,
            "uniq_id": f"{NODE}_{key}",
            "stat_t": controller_topic(base, key),
        }
        if unit is not None:
            sensor |= {"unit_of_meas": unit, "dev_cla": device_class, "stat_cla": "measurement"}
        items.append(config_message(prefix, "sensor", NODE, key, sensor | common))
    return items


async def _no_registry(request: CommandRequest) -> CommandOutcome:
    return CommandOutcome("refused", "no command registry")


class ControllerLink:
    """The controller's companion on the bridge's broker link (see the module docs)."""

    def __init__(
        self,
        service: ControllerService,
        *,
        base: str,
        bridge_status: str,
        prefix: str = "homeassistant",
        discovery: bool = True,
        version: str = "",
        configuration_url: Callable[[], str | None] = lambda: None,
        submit: Callable[[CommandRequest], Awaitable[CommandOutcome | None]] | None = None,
    ) -> None:
        self._service = service
        self._base = base
        self._bridge_status = bridge_status
        self._prefix = prefix
        self._discovery = discovery
        self._version = version
        self._configuration_url = configuration_url
        #: The command registry's door (Fleet.submit).
        self._submit = submit if submit is not None else _no_registry
        self._link: MqttLink | None = None
        self._published: dict[str, str] = {}
        self._meter = service.meter_topic
        self._mode_topic = mode_command_topic(base)

    def __repr__(self) -> str:
        return f"ControllerLink(meter={self._meter!r})"

    @property
    def subscriptions(self) -> tuple[str, ...]:
        topics = [self._mode_topic]
        if self._meter is not None:
            topics.append(self._meter)
        return tuple(topics)

    def bind(self, link: MqttLink) -> None:
        self._link = link

    async def handle(self, message: MqttMessage) -> bool:
        if self._meter is not None and message.topic == self._meter:
            await self._service.on_meter(message.payload, retained=message.retain)
            return True
        if message.topic == self._mode_topic:
            await self._on_mode(message)
            return True
        return False

    async def _on_mode(self, message: MqttMessage) -> None:
        """Through the registry (``controller_mode``): its outcome goes to ``.../status``
        (the bridge publishes it), a retained message is ignored."""
        request = CommandRequest(
            Target.CONTROLLER,
            "",
            "controller_mode",
            message.payload,
            retained=message.retain,
            origin=self._mode_topic,
        )
        await self._submit(request)
        await self.publish_state()

    async def on_connect(self) -> None:
        if self._link is None:
            return
        if self._discovery:
            items = discovery_items(
                self._prefix,
                self._base,
                self._bridge_status,
                self._version,
                self._configuration_url(),
            )
            await self._link.publish_many(items, retain=True, qos=1)
        self._published.clear()
        await self.publish_state()

    def on_disconnect(self) -> None:
        """Nothing to do: the states go again after the next connect."""

    async def on_event(self, event: Event) -> None:
        """The fleet's events: the controller's own ones change its topics."""
        if isinstance(event, ControllerActed | ControllerChanged):
            await self.publish_state()

    async def run(self) -> None:
        """Publish what changed every :data:`REFRESH_S` seconds (the grid moves between
        actuations, and ``monitor`` has none), until cancelled."""
        while True:
            await asyncio.sleep(REFRESH_S)
            await self.publish_state()

    async def publish_state(self) -> None:
        link = self._link
        if link is None or not link.connected:
            return
        items = state_items(self._base, self._service.status())
        fresh = [(t, p) for t, p in items if self._published.get(t) != p]
        if fresh:
            self._published.update(fresh)
            await link.publish_many(fresh, retain=True, qos=1)


__all__ = [
    "NODE",
    "SENSORS",
    "ControllerLink",
    "controller_topic",
    "discovery_items",
    "mode_command_topic",
    "state_items",
]
