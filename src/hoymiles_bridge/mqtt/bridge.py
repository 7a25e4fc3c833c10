"""The MQTT adapter: fleet events out as topics and discovery, MQTT commands in.

:class:`MqttBridge` subscribes to a :class:`~hoymiles_bridge.core.fleet.Fleet`
and owns one :class:`~hoymiles_bridge.mqtt.link.MqttLink`. Each event becomes
topics (published retained, only when their payload changed), discovery for
devices not announced yet, and availability; the payloads are formatted from
the fleet's typed state; with ``publish_interval`` every state is
republished on that timetable too, as OpenDTU does.

What a poll costs is mostly what its messages cost (benchmarks/
bench_publishing.py), so a poll publishes few and cheap ones: each
inverter's values go out as one JSON object on ``<serial>/state`` (what Home
Assistant reads), and OpenDTU's one-topic-per-value layout only with
``opendtu_topics``; values at QoS 0 unless ``mqtt.qos`` asks for 1, and
only when changed. Availability, discovery and command outcomes always go at
QoS 1. Messages on
``<serial>/cmd/...`` become requests to the fleet's command registry; their
progress and outcome are published on ``<command topic>/status``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import time
from collections.abc import Awaitable, Sequence
from typing import Any, Final

from hoymiles_bridge import __version__
from hoymiles_bridge.core.commands import (
    BY_NAME,
    CommandError,
    CommandOutcome,
    CommandRequest,
    Target,
    check,
)
from hoymiles_bridge.core.controller import CONTROLLER_ORIGIN
from hoymiles_bridge.core.events import (
    AlarmsChanged,
    CommandStatus,
    DtuInfoChanged,
    Event,
    LimitChanged,
    RealDataReceived,
    StateChanged,
)
from hoymiles_bridge.core.fleet import Fleet
from hoymiles_bridge.core.limits import shown_limit
from hoymiles_bridge.core.state import DtuState, InverterState
from hoymiles_bridge.core.values import InverterValues
from hoymiles_bridge.mqtt.commands import MAX_COMMANDS_IN_FLIGHT, CommandRunner, request_for
from hoymiles_bridge.mqtt.companion import LinkCompanion
from hoymiles_bridge.mqtt.discovery import (
    DiscoveryContext,
    dtu_discovery,
    inverter_discovery,
    removal_messages,
)
from hoymiles_bridge.mqtt.link import MqttLink, MqttMessage, MqttSettings
from hoymiles_bridge.mqtt.topics import TopicLayout, port_key, reliable_topics

ONLINE: Final = "online"
OFFLINE: Final = "offline"
#: Totals (ac/..., dc/...) are republished at most this often (seconds).
TOTALS_INTERVAL: Final = 1.0
#: Home Assistant's "online" re-announces everything at most this often (seconds);
#: a flood of them while one is pending is absorbed.
REANNOUNCE_MIN_INTERVAL: Final = 10.0


def _number(value: float) -> float | int:
    """A value as the JSON state carries it: rounded to 3 decimals, finite."""
    if isinstance(value, int):
        return value
    if value != value or value in (float("inf"), float("-inf")):
        return 0
    rounded = round(value, 3)
    return int(rounded) if rounded.is_integer() and abs(rounded) < 1e15 else rounded


def _fmt(value: float | int | str | bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{round(value, 3):g}" if abs(value) < 1e15 else str(value)
    return str(value)


class MqttBridge:
    """Publishes a fleet over MQTT and feeds MQTT commands back to it."""

    def __init__(
        self,
        fleet: Fleet,
        settings: MqttSettings,
        *,
        announce_delay: float = 2.0,
        backoff: float = 1.0,
        configuration_url: str | None = None,
        companions: Sequence[LinkCompanion] = (),
    ) -> None:
        options = fleet.options
        self.fleet = fleet
        self.options = options
        self.layout = TopicLayout(options.base_topic, several_dtus=len(options.dtus) > 1)
        self.discovery = DiscoveryContext(
            prefix=options.discovery_prefix,
            layout=self.layout,
            bridge_version=__version__,
            configuration_url=configuration_url,
        )
        self._announce_delay = announce_delay
        subscriptions = list(self.layout.command_subscriptions)
        if options.discovery:
            subscriptions.append(self.ha_status_topic)
        #: Adapters sharing the link (the batteries', the controller's): they see each
        #: message first.
        self._companions = tuple(companions)
        for companion in self._companions:
            subscriptions.extend(companion.subscriptions)
        self.link = MqttLink(
            settings,
            will_topic=self.layout.will,
            alias_topics=(self.layout.bridge_status,),
            subscriptions=subscriptions,
            on_connect=self._on_connect,
            on_message=self._on_message,
            on_disconnect=self._on_disconnect,
            backoff_initial=backoff,
            reliable=reliable_topics(options.discovery_prefix),
        )
        for companion in self._companions:
            companion.bind(self.link)
        self._published: dict[str, str] = {}
        #: QoS of the value topics (the link sends availability and discovery at 1).
        self._qos = options.mqtt.qos
        #: Per inverter: the last state object, so a value dropped as implausible
        #: keeps its last good reading in ``<serial>/state`` (as its own topic keeps it).
        self._states: dict[str, dict[str, float | int]] = {}
        self._started = time.monotonic()
        self._legacy_cleared: set[str] = set()
        #: The ``publish_interval`` timetable (None when it is 0: changes only).
        self._republish_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._totals_at = -float("inf")
        self._totals_task: asyncio.Task[None] | None = None
        self._stopped = False
        #: Runs the commands that arrive on the command topics.
        self._commands = CommandRunner(fleet.submit)
        self._reannounce_task: asyncio.Task[None] | None = None
        self._reannounced_at = -float("inf")
        #: Command topics whose retained message we cleared (their empty echo is ours).
        self._cleared: set[str] = set()
        #: Per DTU (by identity: labels may repeat): announced, and its announced inverters.
        self._dtu_announced: set[int] = set()
        self._announced: dict[int, set[str]] = {}
        fleet.subscribe(self.on_event)
        fleet.add_stats("mqtt", self.stats)

    def __repr__(self) -> str:
        return f"MqttBridge(base={self.layout.base!r}, connected={self.link.connected})"

    @property
    def configuration_url(self) -> str | None:
        """The devices' "Visit" link in Home Assistant (set it before :meth:`run`)."""
        return self.discovery.configuration_url

    @configuration_url.setter
    def configuration_url(self, url: str | None) -> None:
        self.discovery = dataclasses.replace(self.discovery, configuration_url=url)

    @property
    def ha_status_topic(self) -> str:
        return f"{self.options.discovery_prefix}/status"

    def stats(self) -> dict[str, Any]:
        """The link's counters, for the diagnostics."""
        link = self.link
        return {
            "connected": link.connected,
            "connects": link.connects,
            "disconnects": link.disconnects,
            "published": link.published,
            "dropped": link.dropped,
            "queued": link.queued,
            "last_error": link.last_error,
        }

    # --- running ------------------------------------------------------------------

    async def run(self) -> None:
        """Run the link (and the ``publish_interval`` timetable) until cancelled."""
        interval = self.options.publish_interval
        if interval > 0:
            self._republish_task = asyncio.create_task(
                self._republish_every(interval), name="mqtt-publish-interval"
            )
        try:
            await self.link.run()
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self._totals_task is not None:
                self._totals_task.cancel()
            if self._republish_task is not None:
                self._republish_task.cancel()
                await asyncio.wait({self._republish_task})
                self._republish_task = None

    async def _republish_every(self, interval: float) -> None:
        """``publish_interval``: every retained state again, changed or not (OpenDTU's timetable).

        Skipped while the broker is away: the reconnect republishes everything anyway,
        and queueing copies of unchanged values would only crowd out real news.
        """
        while not self._stopped:
            await asyncio.sleep(interval)
            if self._stopped or not self.link.connected:
                continue
            items = dict(self._published)
            topic, uptime = self._uptime_item()
            items[topic] = uptime
            await self._republish(items)

    async def stop_commands(self) -> None:
        """End the commands from the command topics that still run, and take no more."""
        await self._commands.stop()

    async def stop(self) -> None:
        """Say goodbye on the broker; fleet events after this are ignored."""
        self._stopped = True
        await self._commands.stop()
        await self.link.stop()

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- publishing -----------------------------------------------------------------

    async def _publish(self, items: list[tuple[str, str]], *, force: bool = False) -> None:
        """Publish retained states whose payload changed (all of them with ``force``).

        At the value topics' QoS (``mqtt.qos``); the link sends availability at 1.
        """
        published = self._published
        fresh = [(t, p) for t, p in items if force or published.get(t) != p]
        if not fresh:
            return
        published.update(fresh)
        await self.link.publish_many(fresh, retain=True, qos=self._qos)

    async def _republish(self, items: dict[str, str]) -> None:
        """Every retained state again (the link keeps availability at QoS 1)."""
        await self._publish(list(items.items()), force=True)

    async def _publish_discovery(self, items: list[tuple[str, str]]) -> None:
        await self.link.publish_many(items, retain=True, qos=1)

    def _on_disconnect(self) -> None:
        for companion in self._companions:
            companion.on_disconnect()
        if not self._stopped:
            notice = self.fleet.notify("mqtt", "MQTT connection lost", level="warning")
            self._spawn(notice, "mqtt-lost-notice")

    async def _on_connect(self) -> None:
        """(Re)announce after every broker (re)connect: discovery, then every state."""
        await self.fleet.notify("mqtt", "MQTT connected")
        await self._announce_all()
        await self._republish(dict(self._published))
        await self._publish([self._uptime_item()])
        for companion in self._companions:
            await companion.on_connect()

    def _uptime_item(self) -> tuple[str, str]:
        """``dtu/uptime``: whole seconds since this bridge started (OpenDTU: its own uptime)."""
        return self.layout.uptime, str(int(time.monotonic() - self._started))

    async def _announce_all(self) -> None:
        if not self.options.discovery:
            return
        self._dtu_announced.clear()
        self._announced.clear()
        for dtu in self.fleet.dtus:
            await self._announce(dtu)

    async def _announce(self, dtu: DtuState) -> None:
        if not self.options.discovery or dtu.device is None:
            return
        if id(dtu) not in self._dtu_announced:
            first = dtu is next((d for d in self.fleet.dtus if d.device is not None), None)
            await self._publish_discovery(dtu_discovery(self.discovery, dtu.device, totals=first))
            self._dtu_announced.add(id(dtu))
        announced = self._announced.setdefault(id(dtu), set())
        for serial, inverter in dtu.inverters.items():
            if serial not in announced:
                await self._publish_discovery(inverter_discovery(self.discovery, inverter.device))
                announced.add(serial)

    def _schedule_reannounce(self) -> None:
        """Re-announce after Home Assistant's "online", debounced (see REANNOUNCE_MIN_INTERVAL)."""
        if self._reannounce_task is not None:
            return  # one is pending: this "online" is absorbed by it
        wait = self._reannounced_at + REANNOUNCE_MIN_INTERVAL - time.monotonic()
        delay = max(random.uniform(0, self._announce_delay), wait)
        task = asyncio.ensure_future(self._reannounce(delay))
        task.set_name("ha-reannounce")
        self._reannounce_task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reannounce(self, delay: float) -> None:
        try:
            await asyncio.sleep(delay)
            self._reannounced_at = time.monotonic()
        finally:
            self._reannounce_task = None
        await self._on_connect()

    # --- fleet events -----------------------------------------------------------------

    async def on_event(self, event: Event) -> None:
        if self._stopped:
            return
        if isinstance(event, RealDataReceived):
            await self._on_real_data(event)
        elif isinstance(event, StateChanged):
            await self._on_state(event.dtu)
        elif isinstance(event, DtuInfoChanged):
            await self._on_dtu_info(event)
        elif isinstance(event, AlarmsChanged):
            await self._on_alarms(event.dtu)
        elif isinstance(event, LimitChanged):
            inverter = event.dtu.inverters.get(event.serial)
            if inverter is not None:
                await self._publish(self._limit_items(inverter))
        elif isinstance(event, CommandStatus):
            await self._command_status(event)

    async def _on_state(self, dtu: DtuState) -> None:
        serial = dtu.serial
        if serial is None:
            return
        night_zero = self.fleet.night_zero(dtu)
        state = ONLINE if dtu.available or night_zero else OFFLINE
        items = [
            (self.layout.dtu(serial, "connection"), dtu.session.state.value),
            (self.layout.dtu_available(serial), state),
        ]
        if self.layout.several_dtus and serial not in self._legacy_cleared:
            # Earlier versions kept the reachability in dtu/<serial>/status (retained):
            # clear it once, so it does not pass for a last will.
            self._legacy_cleared.add(serial)
            await self.link.publish(self.layout.dtu(serial, "status"), b"", retain=True, qos=1)
        items.extend((self.layout.inverter_available(i), state) for i in dtu.inverters)
        await self._publish(items)
        if night_zero:
            values: list[tuple[str, str]] = []
            for inverter in dtu.inverters.values():
                values += self._inverter_items(inverter, last_update=None)
            await self._publish(values + self._totals())

    async def _on_dtu_info(self, event: DtuInfoChanged) -> None:
        dtu, info = event.dtu, event.info
        for gone in event.removed:
            if self.options.discovery:
                await self._publish_discovery(removal_messages(self.discovery, gone))
            self._announced.get(id(dtu), set()).discard(gone.serial)
            await self._forget_inverter(gone.serial)
        serial = info.dtu_serial
        layout = self.layout
        items = [
            (layout.dtu(serial, "serial"), serial),
            (layout.dtu(serial, "model"), info.dtu_model),
            (layout.dtu(serial, "firmware"), info.dtu_firmware),
            (layout.dtu(serial, "hardware"), info.dtu_hardware),
            (layout.dtu(serial, "ip"), dtu.session.target.host),
            (layout.dtu(serial, "rssi"), str(info.signal_strength)),
            (layout.dtu(serial, "encrypted"), _fmt(info.encrypted)),
            (layout.dtu(serial, "policy"), self.fleet.policy.describe(info.dtu_firmware_raw)),
        ]
        for inv in info.inverters:
            known = dtu.inverters.get(inv.serial)
            if known is None:
                continue  # past the fleet's cap: no state, so no topic
            # Like OpenDTU: the inverter's name (the user's, else the model) and
            # each PV port's; names are payloads, topics hold serials only.
            device = known.device
            items.append((layout.inverter(inv.serial, "name"), device.name or inv.model))
            items += [
                (layout.port(inv.serial, port, "name"), device.port_name(port))
                for port in range(1, device.ports + 1)
            ]
            items += [
                (layout.inverter(inv.serial, "device/fwbuildversion"), inv.firmware),
                (layout.inverter(inv.serial, "device/hwversion"), inv.hardware),
                (
                    layout.inverter(inv.serial, "device/hwpartnumber"),
                    str(inv.hardware_part_number),
                ),
            ]
        for inverter in event.limits:
            items += self._limit_items(dtu.inverters[inverter])
        await self._announce(dtu)
        await self._publish(items)
        await self._on_state(dtu)  # unchanged availability is not sent again

    async def _forget_inverter(self, serial: str) -> None:
        """Clear a removed inverter's retained state topics and forget them."""
        self._states.pop(serial, None)
        prefix = self.layout.inverter(serial, "")
        gone = [topic for topic in self._published if topic.startswith(prefix)]
        for topic in gone:
            del self._published[topic]
        if gone:
            await self.link.publish_many([(t, "") for t in gone], retain=True, qos=1)

    async def _on_real_data(self, event: RealDataReceived) -> None:
        dtu, data = event.dtu, event.data
        serial = data.dtu_serial or dtu.serial
        if serial is None:
            return
        session = dtu.session
        items = [
            (self.layout.dtu(serial, "rtt"), str(round((session.rtt or 0) * 1000))),
            (self.layout.dtu(serial, "performance_mode"), _fmt(session.performance_mode)),
        ]
        if event.fresh:
            items.append((self.layout.dtu(serial, "last_update"), str(int(event.time))))
            for reading in data.inverters:
                inverter = dtu.inverters.get(reading.serial)
                if inverter is None:
                    continue  # past the fleet's cap: no state, so no topic
                items += self._inverter_items(inverter, last_update=event.time)
                items += self._limit_items(inverter)
                items.append(
                    (
                        self.layout.inverter_json(reading.serial),
                        json.dumps(
                            {
                                "dtu_serial": serial,
                                "timestamp": data.timestamp,
                                **reading.to_dict(),
                            },
                            separators=(",", ":"),
                        ),
                    )
                )
                items.append((self.layout.inverter_available(reading.serial), ONLINE))
            items += self._totals_now_or_soon()
            await self._announce(dtu)
        await self._publish(items)

    async def _on_alarms(self, dtu: DtuState) -> None:
        items: list[tuple[str, str]] = []
        for serial, inverter in dtu.inverters.items():
            active = [a.to_dict() for a in inverter.active_alarms]
            latest = inverter.latest_alarm
            items += [
                (self.layout.inverter_alarms(serial), json.dumps(active, separators=(",", ":"))),
                (self.layout.inverter(serial, "alarms/count"), str(len(active))),
                (self.layout.inverter(serial, "alarms/last"), latest.text if latest else ""),
            ]
        await self._publish(items)

    def _limit_items(self, inverter: InverterState) -> list[tuple[str, str]]:
        if inverter.limit is None:
            return []
        serial = inverter.serial
        # Inside the limit entities' ranges, so Home Assistant takes every state.
        percent, watts = shown_limit(inverter.limit, inverter.device.rated_power)
        items = [(self.layout.inverter(serial, "status/limit_relative"), _fmt(percent))]
        if watts is not None:
            items.append((self.layout.inverter(serial, "status/limit_absolute"), _fmt(watts)))
        return items

    def _inverter_items(
        self, inverter: InverterState, *, last_update: float | None
    ) -> list[tuple[str, str]]:
        """The inverter's JSON state and, with ``opendtu_topics``, one topic per value.

        ``last_update`` None (the night's zeros) keeps the last one.
        """
        values = inverter.values
        if values is None:
            return []
        state = self._state_item(values, last_update or inverter.last_update)
        items = [] if state is None else [state]
        if not self.options.opendtu_topics:
            return items
        serial = values.serial
        layout = self.layout
        items += [(layout.inverter(serial, f"0/{k}"), _fmt(v)) for k, v in values.values.items()]
        for port, fields in values.ports.items():
            items += [(layout.port(serial, port, k), _fmt(v)) for k, v in fields.items()]
        items += [
            (layout.inverter(serial, "status/reachable"), _fmt(values.reachable)),
            (layout.inverter(serial, "status/producing"), _fmt(values.producing)),
        ]
        if last_update is not None:
            items.append((layout.inverter(serial, "status/last_update"), str(int(last_update))))
        return items

    def _state_item(
        self, values: InverterValues, last_update: float | None
    ) -> tuple[str, str] | None:
        """``<serial>/state``: every value under its entity's key (see discovery).

        None until the inverter has a last update: its timestamp entity needs one.
        """
        if last_update is None:
            return None
        state = self._states.setdefault(values.serial, {})
        for key, value in values.values.items():
            state[key] = _number(value)
        for port, fields in values.ports.items():
            for key, value in fields.items():
                state[port_key(port, key)] = _number(value)
        state["reachable"] = int(values.reachable)
        state["producing"] = int(values.producing)
        state["last_update"] = int(last_update)
        return (
            self.layout.inverter_state(values.serial),
            json.dumps(state, separators=(",", ":"), allow_nan=False),
        )

    def _totals_now_or_soon(self) -> list[tuple[str, str]]:
        """The totals, at most once per TOTALS_INTERVAL; a later update is scheduled.

        With many DTUs every poll would otherwise recompute and republish them.
        """
        now = time.monotonic()
        if now - self._totals_at >= TOTALS_INTERVAL:
            self._totals_at = now
            return self._totals()
        if self._totals_task is None:
            task = asyncio.ensure_future(self._totals_later(self._totals_at + TOTALS_INTERVAL))
            task.set_name("publish-totals")
            self._totals_task = task
        return []

    async def _totals_later(self, due: float) -> None:
        try:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            self._totals_at = time.monotonic()
            await self._publish(self._totals())
        finally:
            self._totals_task = None

    def _totals(self) -> list[tuple[str, str]]:
        """The fleet totals, and the bridge's uptime (at most once a second, like them)."""
        totals = self.fleet.totals()
        total = self.layout.total
        return [
            self._uptime_item(),
            (total("ac/power"), _fmt(totals.ac_power)),
            (total("ac/yieldday"), _fmt(totals.yield_day)),
            (total("ac/yieldtotal"), _fmt(totals.yield_total)),
            (total("ac/is_valid"), _fmt(totals.valid)),
            (total("dc/power"), _fmt(totals.dc_power)),
            (total("dc/irradiation"), _fmt(totals.irradiation)),
            (total("dc/is_valid"), _fmt(totals.valid)),
        ]

    # --- commands -------------------------------------------------------------------

    async def _on_message(self, message: MqttMessage) -> None:
        for companion in self._companions:
            if await companion.handle(message):
                return
        if message.topic == self.ha_status_topic:
            if message.payload.strip().lower() == ONLINE.encode():
                self._schedule_reannounce()
            return
        if message.topic.endswith("/status"):
            return
        if not message.payload and message.topic in self._cleared:
            self._cleared.discard(message.topic)  # the echo of our own clearing
            return
        request = request_for(
            self.layout.base, message.topic, message.payload, retained=message.retain
        )
        if request is None:
            return
        try:
            runs = check(request) is not None
        except CommandError:
            runs = False
        if not runs:
            # Refused or ignored: answered at once, before the next message is read.
            await self.fleet.submit(request)
            if request.retained:
                await self._clear_retained(request)
            return
        refused = self._commands.queue(request)
        if refused is not None:
            self._spawn(self._too_busy(request, refused), f"command-busy-{request.name[:32]}")

    async def _clear_retained(self, request: CommandRequest) -> None:
        """Remove an ignored retained one-shot from the broker, so it stops coming back.

        Only one-shots (restarts, power, non-persistent limits, DTU buttons) are
        ignored when retained; they would never run, so clearing them loses nothing.
        """
        if request.origin is not None and len(self._cleared) < MAX_COMMANDS_IN_FLIGHT * 4:
            self._cleared.add(request.origin)
            await self.link.publish(request.origin, b"", retain=True, qos=1)

    async def _too_busy(self, request: CommandRequest, reason: str) -> None:
        topic = self._status_topic(request)
        if topic is not None:
            text = CommandOutcome("refused", reason).text
            await self.link.publish(f"{topic}/status", text, retain=False, qos=1)

    def command_topic(self, target: Target, serial: str, name: str) -> str:
        """The MQTT topic a command would arrive on (its status goes to ``<topic>/status``)."""
        base = self.layout.base
        if target is Target.CONTROLLER:
            return f"{base}/controller/cmd/mode"
        if target is Target.BATTERY:
            return f"{base}/battery/{serial}/cmd/{name}"
        if target is Target.CLOUD:
            return f"{base}/cloud/{serial}/cmd/{name}"
        if target is Target.DTU:
            return f"{base}/dtu/{serial}/cmd/{name}" if serial else f"{base}/dtu/cmd/{name}"
        return f"{base}/{serial}/cmd/{name}"

    def _status_topic(self, request: CommandRequest) -> str | None:
        if request.origin == CONTROLLER_ORIGIN:
            return None  # the controller's commands: its own topics tell them
        if request.origin is not None:
            return request.origin
        target = request.target
        if target is None:
            spec = BY_NAME.get(request.name)
            if spec is None:
                return None
            target = spec.target
        return self.command_topic(target, request.serial, request.name)

    async def _command_status(self, event: CommandStatus) -> None:
        topic = self._status_topic(event.request)
        if topic is not None:
            await self.link.publish(f"{topic}/status", event.outcome.text, retain=False, qos=1)


__all__ = ["MqttBridge"]
