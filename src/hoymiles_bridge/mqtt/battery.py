"""The batteries' MQTT adapter: their firmware topics in, complete discovery and commands out.

:class:`BatteryAdapter` rides on the bridge's own broker link (it is a
companion of :class:`~hoymiles_bridge.mqtt.bridge.MqttBridge`: its
subscriptions join the link's, and it sees every message first). It

* hands each firmware message (msa2.md 1.2) to the core's
  :class:`~hoymiles_bridge.core.battery.BatteryHub`, after
  :func:`~hoymiles_bridge.protocol.battery.parse_topic` checked the ``dev_id``
  against the strict pattern; nothing else from a topic reaches a topic we
  publish;
* repairs the firmware's discovery: every config the firmware publishes
  (the command-less switch, the state-less select, ``soc``/``bat_p``
  without unique ids, the legacy ``text`` configs...) is removed with an empty
  retained message, each time the firmware publishes it again, and replaced
  by the bridge's own complete entities (DOCS.md, "Batteries");
* publishes the trusted values under ``<base>/battery/<dev_id>/<key>``
  (retained, only when they change), the availability that the hub derives
  from silence, and discovery under the bridge's unique ids
  (``hoymiles_<dev_id>_<key>``);
* sends what the hub asks to the firmware's command topics. The batteries'
  own command topics, ``<base>/battery/<dev_id>/cmd/<name>``, are taken by the
  bridge like every command topic (:mod:`hoymiles_bridge.mqtt.commands`), and
  their status goes to ``<topic>/status``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from hoymiles_bridge.core.battery import BatteryHub, offered_commands
from hoymiles_bridge.core.commands import BY_NAME
from hoymiles_bridge.core.events import BatteryChanged, Event
from hoymiles_bridge.core.fleet import Fleet
from hoymiles_bridge.core.state import BatteryState
from hoymiles_bridge.mqtt.discovery import (
    MANUFACTURER,
    availability_block,
    config_message,
    origin_block,
)
from hoymiles_bridge.mqtt.link import MqttLink, MqttMessage
from hoymiles_bridge.mqtt.topics import TopicLayout
from hoymiles_bridge.protocol import battery as fw
from hoymiles_bridge.protocol.battery import FIELDS, BatteryField, Inbound, Outbound, Source

_LOGGER = logging.getLogger(__name__)

ONLINE: Final = "online"
OFFLINE: Final = "offline"


def battery_device_id(dev_id: str) -> str:
    return f"hoymiles_bat_{dev_id}"


def _fmt(value: fw.Value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{round(value, 3):g}"
    return value


class BatteryAdapter:
    """Batteries on the bridge's broker link (see the module docs)."""

    def __init__(self, fleet: Fleet, *, configuration_url: str | None = None) -> None:
        options = fleet.options
        self.fleet = fleet
        self.hub: BatteryHub = fleet.batteries
        self.prefix = options.discovery_prefix
        self.base = options.base_topic
        self.layout = TopicLayout(options.base_topic, several_dtus=len(options.dtus) > 1)
        self.discovery = options.discovery
        self.configuration_url = configuration_url
        self._link: MqttLink | None = None
        self._published: dict[str, str] = {}
        self._announced: dict[str, str] = {}
        #: Batteries announced since the last (re)connect.
        self._announced_ids: set[str] = set()
        self._connects_seen = 0
        #: Retained messages waiting for the publisher task (the newest per topic).
        self._outbox: dict[str, str] = {}
        self._outbox_ready = asyncio.Event()
        self._publisher: asyncio.Task[None] | None = None
        self.repairs = 0
        self.hub.attach(self)
        fleet.subscribe(self.on_event)
        fleet.add_stats("batteries", self.stats)

    def __repr__(self) -> str:
        return f"BatteryAdapter(batteries={sorted(self.hub.batteries)})"

    # --- companion of the bridge's link ---------------------------------------------

    @property
    def subscriptions(self) -> tuple[str, ...]:
        # (its command topics, <base>/battery/<dev_id>/cmd/<name>, are the bridge's:
        # mqtt/commands.py)
        return fw.subscriptions(self.prefix)

    def bind(self, link: MqttLink) -> None:
        """The bridge's link, which this adapter publishes on."""
        self._link = link

    @property
    def connected(self) -> bool:
        return self._link is not None and self._link.connected

    def stats(self) -> dict[str, Any]:
        return {
            "batteries": len(self.hub.batteries),
            "available": sum(b.available for b in self.hub.batteries.values()),
            "repairs": self.repairs,
            "keepalives": self.hub.keepalives_sent,
        }

    async def on_connect(self) -> None:
        """After every (re)connect, and Home Assistant's "online": discovery and states again."""
        link = self._link
        if link is None:
            return
        self._announced.clear()
        self._announced_ids.clear()
        for battery in list(self.hub.batteries.values()):
            await self._announce(battery)
        self._post(list(self._published.items()))
        if link.connects != self._connects_seen:
            self._connects_seen = link.connects
            await self.hub.link_up()

    def on_disconnect(self) -> None:
        """The broker went away: the hub sees it through :attr:`connected` and stops sending."""

    async def handle(self, message: MqttMessage) -> bool:
        """Take a message that is ours (True), or leave it to the bridge (False)."""
        found = fw.parse_topic(self.prefix, message.topic)
        if found is None:
            return False
        dev_id, kind = found.dev_id, found.kind
        if kind is Inbound.CONFIG:
            await self._firmware_config(dev_id, found.key, message)
        elif kind in (Inbound.QUICK, Inbound.DEVICE, Inbound.SYSTEM):
            await self.hub.on_state(dev_id, Source(kind.value), message.payload)
        elif kind is Inbound.ATTRIBUTES:
            await self.hub.on_attributes(dev_id, message.payload)
        else:
            await self.hub.on_ack(dev_id, kind, message.payload)
        return True

    async def _firmware_config(self, dev_id: str, key: str, message: MqttMessage) -> None:
        """Learn from the firmware's config, then remove it (our entities replace it)."""
        if not message.payload:
            return  # a removal, perhaps our own
        if self.hub.adopt(dev_id) is None:
            return
        await self.hub.on_config(dev_id, key, message.payload)
        if self._link is not None and self.discovery:
            self.repairs += 1
            _LOGGER.debug("Battery %s: removing the firmware's %s config", dev_id, key)
            self._post([(message.topic, "")])

    async def send(self, dev_id: str, what: Outbound, payload: str) -> None:
        """The hub's port: a command to the firmware's topic (QoS 1, never retained)."""
        link = self._link
        if link is None:
            return
        topic = fw.FirmwareTopics(self.prefix, dev_id).command(what)
        await link.publish(topic, payload, retain=False, qos=1)

    async def stop(self) -> None:
        """Release held setpoints (option ``battery_release_mode``) while the link is still up."""
        if self._publisher is not None:
            self._publisher.cancel()
            await asyncio.wait({self._publisher})
            self._publisher = None
        await self.hub.release()

    # --- state out ---------------------------------------------------------------------

    def topic(self, dev_id: str, key: str) -> str:
        return f"{self.base}/battery/{dev_id}/{key}"

    async def on_event(self, event: Event) -> None:
        if not isinstance(event, BatteryChanged) or self._link is None:
            return
        battery = event.battery
        if battery.updated_at is None:
            return  # no state message yet: nothing to announce or show
        items: list[tuple[str, str]] = []
        dev_id = battery.dev_id
        if "values" in event.what or "availability" in event.what:
            items += [(self.topic(dev_id, k), _fmt(v)) for k, v in battery.values.items()]
            state = ONLINE if battery.available else OFFLINE
            items.append((self.topic(dev_id, "available"), state))
        held = battery.holding.watts if battery.holding is not None else 0.0
        items.append((self.topic(dev_id, "setpoint"), _fmt(held)))
        if "identity" in event.what or dev_id not in self._announced_ids:
            # Not at every value: discovery is rebuilt only when it may change.
            await self._announce(battery)
        fresh = [(t, p) for t, p in items if self._published.get(t) != p]
        if fresh:
            self._published.update(fresh)
            self._post(fresh)

    async def _announce(self, battery: BatteryState) -> None:
        if not self.discovery or self._link is None or battery.updated_at is None:
            return
        messages = battery_discovery(self, battery)
        self._announced_ids.add(battery.dev_id)
        fresh = [(t, p) for t, p in messages if self._announced.get(t) != p]
        if fresh:
            self._announced.update(fresh)
            self._post(fresh)

    def _post(self, items: list[tuple[str, str]]) -> None:
        """Hand retained messages to the publisher task.

        Publishing inline would wait for PUBACKs inside the link's message
        handler: a battery's message every second would then hold up the
        link, and after a broker loss it would not see the loss until every
        PUBACK wait ran out. The outbox keeps the newest payload per topic.
        """
        if not items:
            return
        self._outbox.update(items)
        self._outbox_ready.set()
        if self._publisher is None or self._publisher.done():
            self._publisher = asyncio.create_task(self._publish_outbox(), name="battery-publisher")

    async def _publish_outbox(self) -> None:
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            items, self._outbox = list(self._outbox.items()), {}
            if self._link is None or not items:
                continue
            # At the values' QoS (mqtt.qos): the link sends discovery and availability at 1.
            await self._link.publish_many(items, retain=True, qos=self.fleet.options.mqtt.qos)


# --- discovery (pure) ------------------------------------------------------------------------


def announced_fields(battery: BatteryState) -> tuple[BatteryField, ...]:
    """The fields a battery gets entities for: the ones it sent, and the usual ones.

    Optional fields (other models, newer firmware) wait until they arrive;
    system fields go to the master or standalone unit only.
    """
    return tuple(
        f
        for f in FIELDS
        if (f.key in battery.seen or not f.optional) and (not f.system or battery.master is True)
    )


def battery_discovery(adapter: BatteryAdapter, battery: BatteryState) -> list[tuple[str, str]]:
    """Every discovery message of one battery (retained, on ``<prefix>/<component>/...``)."""
    dev_id = battery.dev_id
    node = battery_device_id(dev_id)
    device: dict[str, Any] = {
        "ids": [node],
        "name": battery.title,
        "mf": MANUFACTURER,
        "mdl": battery.model or battery.profile.model,
    }
    if battery.firmware:
        device["sw"] = battery.firmware
    if battery.serial:
        device["sn"] = battery.serial
    if adapter.configuration_url:
        device["cu"] = adapter.configuration_url
    origin = origin_block(None)
    availability = availability_block((adapter.layout.will, adapter.topic(dev_id, "available")))
    messages: list[tuple[str, str]] = []

    def add(component: str, object_id: str, payload: dict[str, Any]) -> None:
        body = {**payload, "uniq_id": f"hoymiles_{dev_id}_{object_id}"}
        body.update(availability)
        body["dev"] = device
        body["o"] = origin
        messages.append(config_message(adapter.prefix, component, node, object_id, body))

    for f in announced_fields(battery):
        payload: dict[str, Any] = {"name": f.name, "stat_t": adapter.topic(dev_id, f.key)}
        if f.device_class is not None:
            payload["dev_cla"] = f.device_class
        if f.component == "binary_sensor":
            payload["pl_on"], payload["pl_off"] = "1", "0"
        else:
            if f.state_class is not None:
                payload["stat_cla"] = f.state_class
            if f.unit is not None:
                payload["unit_of_meas"] = f.unit
            if f.options:
                payload["ops"] = list(f.options)
            if f.precision is not None:
                payload["sug_dsp_prc"] = f.precision
        if f.category is not None:
            payload["ent_cat"] = f.category
        if f.icon is not None:
            payload["ic"] = f.icon
        add(f.component, f.key, payload)

    low, high = battery.setpoint_range
    for name in offered_commands(battery):
        spec = BY_NAME[name]
        entity = spec.entities[0]
        payload = {"name": entity.name, "cmd_t": f"{adapter.topic(dev_id, 'cmd')}/{name}"}
        if entity.icon is not None:
            payload["ic"] = entity.icon
        if entity.device_class is not None:
            payload["dev_cla"] = entity.device_class
        if entity.component == "select":
            payload["stat_t"] = adapter.topic(dev_id, name)
            payload["ops"] = list(spec.choices)
        elif entity.component == "number":
            if name == "setpoint":
                payload.update(stat_t=adapter.topic(dev_id, "setpoint"), min=low, max=high)
            else:
                payload.update(min=spec.minimum, max=spec.maximum, opt=True)
            payload.update(step=1, mode="box", unit_of_meas="W")
        elif entity.component == "switch":
            payload.update(pl_on="1", pl_off="0", opt=True)
        elif entity.component == "button":
            payload["pl_prs"] = entity.payload
        object_id = f"{entity.key}_{entity.component}" if entity.key == "ems_mode" else entity.key
        add(entity.component, object_id, payload)
    return messages


__all__ = [
    "BatteryAdapter",
    "announced_fields",
    "battery_device_id",
    "battery_discovery",
]
