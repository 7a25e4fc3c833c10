"""The bridge: DTU sessions in, MQTT topics and Home Assistant discovery out, commands back.

:class:`Bridge` owns one :class:`~hoymiles_bridge.dtu.session.DtuSession` per
configured DTU and one :class:`~hoymiles_bridge.mqtt.link.MqttLink`. It is the
sessions' listener: each report turns into topics (published only when their
payload changed, retained), discovery for devices it has not announced yet,
and availability. Commands arrive on ``<serial>/cmd/...`` and are validated,
paced, run through the owning session, and answered on ``.../status``.
The web API sends its commands through the same entry point,
:meth:`Bridge.submit_command`.

Two optional hooks feed observers such as the web UI's hub: ``on_frame``
(every frame of every DTU session, with the DTU's label) and ``on_event``
(:class:`BridgeEvent`: state changes, polls, alarms, commands, MQTT). Both
are called synchronously and must not block; an observer's failure is logged
and never reaches the bridge.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from hoymiles_bridge import __version__
from hoymiles_bridge.config.options import Options
from hoymiles_bridge.core.values import InverterGuard, InverterValues
from hoymiles_bridge.dtu.client import DtuClient
from hoymiles_bridge.dtu.connection import FrameEvent
from hoymiles_bridge.dtu.policy import PollPolicy
from hoymiles_bridge.dtu.session import (
    ClientFactory,
    DtuSession,
    DtuTarget,
    SessionState,
    default_client,
)
from hoymiles_bridge.errors import (
    DtuConnectionError,
    DtuRejectedError,
    DtuTimeoutError,
    HoymilesError,
    InvalidArgumentError,
    ProtocolError,
)
from hoymiles_bridge.mqtt.commands import (
    Command,
    CommandError,
    Decision,
    LimitPacer,
    Target,
    parse_command,
    split_topic,
)
from hoymiles_bridge.mqtt.discovery import (
    DiscoveryContext,
    DtuDevice,
    InverterDevice,
    dtu_discovery,
    inverter_discovery,
    removal_messages,
)
from hoymiles_bridge.mqtt.link import MqttLink, MqttMessage, MqttSettings
from hoymiles_bridge.mqtt.topics import TopicLayout
from hoymiles_bridge.protocol.actions import TEMPORARY_LIMIT_FIRMWARE
from hoymiles_bridge.protocol.alarms import alarm_text
from hoymiles_bridge.protocol.devices import inverter_type, parse_serial
from hoymiles_bridge.protocol.models import AppInfo, DtuConfig, NetworkInfo, RealData, Warnings

_LOGGER = logging.getLogger(__name__)

ONLINE: Final = "online"
OFFLINE: Final = "offline"
#: States in which the bridge's view of a DTU counts as available.
_AVAILABLE_STATES: Final = frozenset(
    {SessionState.CONNECTED, SessionState.FROZEN, SessionState.DISPLACED}
)
#: Totals (ac/..., dc/...) are republished at most this often (seconds).
TOTALS_INTERVAL: Final = 1.0
#: Latencies kept for the diagnostics and the benchmark.
_LATENCY_SAMPLES: Final = 4096
#: What an observer's failure may raise without stopping the bridge.
_OBSERVER_ERRORS: Final = (
    HoymilesError,
    ArithmeticError,
    AttributeError,
    LookupError,
    RuntimeError,
    TypeError,
    ValueError,
)


@dataclass(frozen=True, slots=True)
class BridgeEvent:
    """Something that happened, for observers (the web UI's event log and live view).

    ``kind`` is one of ``start``, ``mqtt``, ``state``, ``dtu_info``, ``poll``,
    ``alarm`` and ``command``; ``dtu`` is the DTU's label ("" for the bridge
    itself). ``data`` holds JSON-able details and never a secret.
    """

    kind: str
    dtu: str
    serial: str | None
    text: str
    level: str = "info"  # info | warning | error
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """How a command ended: ``ok``, ``pending`` (paced, sent later), ``refused``
    (invalid, never sent) or ``failed`` (the DTU did not take it)."""

    status: str
    message: str = ""

    @property
    def text(self) -> str:
        """The ``.../status`` payload: ``ok``, ``pending`` or ``failed: <reason>``."""
        if self.status in {"ok", "pending"}:
            return self.status
        return f"failed: {self.message}"


FrameHook = Callable[[str, FrameEvent], None]
EventHook = Callable[[BridgeEvent], None]


def _fmt(value: float | int | str | bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{round(value, 3):g}" if abs(value) < 1e15 else str(value)
    return str(value)


@dataclass
class DtuView:
    """What the bridge knows about one DTU."""

    session: DtuSession
    device: DtuDevice | None = None
    inverters: dict[str, InverterDevice] = field(default_factory=dict)
    guards: dict[str, InverterGuard] = field(default_factory=dict)
    values: dict[str, InverterValues] = field(default_factory=dict)
    limits: dict[str, float] = field(default_factory=dict)  # serial -> applied limit %
    announced: set[str] = field(default_factory=set)
    dtu_announced: bool = False

    @property
    def serial(self) -> str | None:
        return self.session.dtu_serial

    @property
    def available(self) -> bool:
        return self.session.state in _AVAILABLE_STATES


class Bridge:
    """Runs every DTU session and the MQTT link until cancelled."""

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
        on_frame: FrameHook | None = None,
        on_event: EventHook | None = None,
    ) -> None:
        self.options = options
        self.started_at = time.time()
        self.layout = TopicLayout(options.base_topic, several_dtus=len(options.dtus) > 1)
        self.discovery = DiscoveryContext(
            prefix=options.discovery_prefix, layout=self.layout, bridge_version=__version__
        )
        self.policy = policy or PollPolicy(
            interval=options.poll_interval,
            min_interval=options.min_poll_interval,
            cloud_pause=options.cloud_pause,
            release_socket_after=options.release_socket_after,
            performance_mode=options.performance_mode,
            frozen_after=options.frozen_after,
        )
        self._clock = clock
        self._announce_delay = announce_delay
        self.views: list[DtuView] = []
        count = len(options.dtus)
        for index, dtu in enumerate(options.dtus):
            target = DtuTarget(dtu.host, dtu.port, dtu.name)
            session = DtuSession(
                target,
                self.policy,
                self,
                client_factory=client_factory,
                clock=clock,
                # Spread the DTUs over one interval instead of polling all at once.
                start_delay=self.policy.interval * index / count if count > 1 else 0.0,
            )
            self.views.append(DtuView(session))
        self._by_session = {id(v.session): v for v in self.views}
        subscriptions = list(self.layout.command_subscriptions)
        if options.discovery:
            subscriptions.append(self.ha_status_topic)
        self.link = MqttLink(
            mqtt,
            will_topic=self.layout.bridge_status,
            subscriptions=subscriptions,
            on_connect=self._on_connect,
            on_message=self._on_message,
            backoff_initial=mqtt_backoff,
        )
        self._published: dict[str, str] = {}
        self._pacers: dict[tuple[str, bool], LimitPacer] = {}
        self._deferred: dict[tuple[str, bool], asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.latencies: deque[float] = deque(maxlen=_LATENCY_SAMPLES)
        self._totals_at = -float("inf")
        self._totals_task: asyncio.Task[None] | None = None
        self.commands_done = 0
        self.commands_failed = 0
        self._on_frame: FrameHook | None = None
        self.on_event: EventHook | None = on_event
        self._seen_disconnects = 0
        self._alarms_seen: dict[str, set[tuple[str, int, int]]] = {}
        self.on_frame = on_frame

    # --- observers ----------------------------------------------------------

    @property
    def on_frame(self) -> FrameHook | None:
        return self._on_frame

    @on_frame.setter
    def on_frame(self, hook: FrameHook | None) -> None:
        """Observe every frame of every session's client (set before :meth:`run`)."""
        self._on_frame = hook
        for view in self.views:
            client = view.session.client
            observer = None if hook is None else self._frame_observer(view.session.target.label)
            client.on_frame = observer
            if client.connection is not None:
                client.connection.on_frame = observer

    def _frame_observer(self, label: str) -> Callable[[FrameEvent], None]:
        def observe(event: FrameEvent) -> None:
            hook = self._on_frame
            if hook is not None:
                hook(label, event)

        return observe

    def _emit(
        self,
        kind: str,
        dtu: str,
        serial: str | None,
        text: str,
        *,
        level: str = "info",
        **data: Any,
    ) -> None:
        hook = self.on_event
        if hook is None:
            return
        if self.link.disconnects != self._seen_disconnects:
            self._seen_disconnects = self.link.disconnects
            self._call(hook, BridgeEvent("mqtt", "", None, "MQTT connection lost", "warning"))
        self._call(hook, BridgeEvent(kind, dtu, serial, text, level, data))

    @staticmethod
    def _call(hook: EventHook, event: BridgeEvent) -> None:
        try:
            hook(event)
        except _OBSERVER_ERRORS:
            _LOGGER.exception("A bridge observer failed on %s", event.kind)

    @property
    def ha_status_topic(self) -> str:
        return f"{self.options.discovery_prefix}/status"

    # --- running ----------------------------------------------------------

    async def run(self) -> None:
        """Run until cancelled; a DTU problem never ends it."""
        self.started_at = time.time()
        self._emit("start", "", None, f"bridge {__version__} started with {len(self.views)} DTU(s)")
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.link.run(), name="mqtt-link")
                for view in self.views:
                    group.create_task(
                        view.session.run(), name=f"dtu-session-{view.session.target.label}"
                    )
        finally:
            for task in list(self._tasks):
                task.cancel()
            if self._totals_task is not None:
                self._totals_task.cancel()

    async def stop(self) -> None:
        await self.link.stop()

    def _spawn(self, coro: Awaitable[Any], name: str) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def view_for(self, session: DtuSession) -> DtuView:
        return self._by_session[id(session)]

    # --- read-only views for the web API ----------------------------------

    def published(self, topic: str) -> str | None:
        """The last payload published (retained) on ``topic``, if any."""
        return self._published.get(topic)

    def totals(self) -> dict[str, str]:
        """The totals as published: ``{"ac/power": "123.4", ...}``."""
        prefix = self.layout.total("")
        return {topic.removeprefix(prefix): payload for topic, payload in self._totals()}

    def requested_limit(self, serial: str) -> float | None:
        """The last persistent limit (%) asked for ``serial``: pending, else last sent."""
        pacer = self._pacers.get((serial, True))
        if pacer is None:
            return None
        return pacer.pending if pacer.pending is not None else pacer.last_value

    # --- publishing -------------------------------------------------------

    async def _publish(self, items: list[tuple[str, str]], *, force: bool = False) -> None:
        """Publish retained states whose payload changed (all of them with ``force``)."""
        fresh = [(t, p) for t, p in items if force or self._published.get(t) != p]
        if not fresh:
            return
        for topic, payload in fresh:
            self._published[topic] = payload
        await self.link.publish_many(fresh, retain=True, qos=1)

    async def _publish_discovery(self, items: list[tuple[str, str]]) -> None:
        await self.link.publish_many(items, retain=True, qos=1)

    async def _on_connect(self) -> None:
        """(Re)announce after every broker (re)connect: discovery, then every state."""
        self._emit("mqtt", "", None, "MQTT connected")
        await self._announce_all()
        await self._publish(list(self._published.items()), force=True)

    async def _announce_all(self) -> None:
        if not self.options.discovery:
            return
        for view in self.views:
            view.dtu_announced = False
            view.announced.clear()
            await self._announce(view)

    async def _announce(self, view: DtuView) -> None:
        if not self.options.discovery or view.device is None:
            return
        if not view.dtu_announced:
            first = view is next((v for v in self.views if v.device is not None), None)
            await self._publish_discovery(dtu_discovery(self.discovery, view.device, totals=first))
            view.dtu_announced = True
        for serial, inverter in view.inverters.items():
            if serial not in view.announced:
                await self._publish_discovery(inverter_discovery(self.discovery, inverter))
                view.announced.add(serial)

    # --- session listener -------------------------------------------------

    async def on_state(self, session: DtuSession) -> None:
        view = self.view_for(session)
        serial = view.serial
        now = session.state
        reason = f" ({session.state_reason})" if session.state_reason else ""
        self._emit(
            "state",
            session.target.label,
            serial,
            f"{now.value}{reason}",
            level="info"
            if now
            in {
                SessionState.STARTING,
                SessionState.CONNECTED,
                SessionState.NIGHT,
                SessionState.STOPPED,
            }
            else "warning",
            state=now.value,
            displaced=now is SessionState.DISPLACED,
        )
        if serial is None:
            return
        night_zero = session.state is SessionState.NIGHT and self.options.night_policy == "zero"
        available = view.available or night_zero
        items = [
            (self.layout.dtu(serial, "connection"), session.state.value),
            (self.layout.dtu_available(serial), ONLINE if available else OFFLINE),
        ]
        state = ONLINE if available else OFFLINE
        items.extend((self.layout.inverter_available(i), state) for i in view.inverters)
        if night_zero:
            for inverter, guard in view.guards.items():
                values = guard.night()
                view.values[inverter] = values
                items += self._inverter_items(view, values, last_update=None)
            items += self._totals()
        await self._publish(items)

    async def on_dtu_info(
        self,
        session: DtuSession,
        info: AppInfo,
        config: DtuConfig | None,
        network: NetworkInfo | None,
    ) -> None:
        view = self.view_for(session)
        target = session.target
        view.device = DtuDevice(
            serial=info.dtu_serial,
            model=info.dtu_model,
            firmware=info.dtu_firmware,
            hardware=info.dtu_hardware,
            name=target.name,
            host=target.host,
        )
        current: dict[str, InverterDevice] = {}
        for inv in info.inverters:
            kind = inverter_type(parse_serial(inv.serial))
            current[inv.serial] = InverterDevice(
                serial=inv.serial,
                model=inv.model,
                firmware=inv.firmware,
                hardware=inv.hardware,
                name=None,
                ports=kind.ports or 1,
                rated_power=kind.rated_power,
                dtu_serial=info.dtu_serial,
                supports_nonpersistent=(
                    info.dtu_model == "DTUBI" and info.dtu_firmware_raw >= TEMPORARY_LIMIT_FIRMWARE
                ),
            )
        for gone in set(view.inverters) - set(current):
            _LOGGER.info("inverter %s is no longer listed by DTU %s", gone, info.dtu_serial)
            if self.options.discovery:
                await self._publish_discovery(
                    removal_messages(self.discovery, view.inverters[gone])
                )
            view.announced.discard(gone)
            view.guards.pop(gone, None)
            view.values.pop(gone, None)
        view.inverters = current
        serial = info.dtu_serial
        items = [
            (self.layout.dtu(serial, "serial"), serial),
            (self.layout.dtu(serial, "model"), info.dtu_model),
            (self.layout.dtu(serial, "firmware"), info.dtu_firmware),
            (self.layout.dtu(serial, "hardware"), info.dtu_hardware),
            (self.layout.dtu(serial, "ip"), target.host),
            (self.layout.dtu(serial, "rssi"), str(info.signal_strength)),
            (self.layout.dtu(serial, "encrypted"), _fmt(info.encrypted)),
            (self.layout.dtu(serial, "policy"), self.policy.describe(info.dtu_firmware_raw)),
        ]
        for inv in info.inverters:
            items += [
                (self.layout.inverter(inv.serial, "name"), inv.model),
                (self.layout.inverter(inv.serial, "device/fwbuildversion"), inv.firmware),
                (self.layout.inverter(inv.serial, "device/hwversion"), inv.hardware),
                (
                    self.layout.inverter(inv.serial, "device/hwpartnumber"),
                    str(inv.hardware_part_number),
                ),
            ]
        if config is not None and config.power_limit > 0:
            for inverter in current:
                view.limits[inverter] = config.power_limit
                items += self._limit_items(view, inverter)
        await self._announce(view)
        await self._publish(items)
        self._emit(
            "dtu_info",
            target.label,
            serial,
            f"DTU {serial} ({info.dtu_model}, firmware {info.dtu_firmware}, "
            f"{'encrypted' if info.encrypted else 'not encrypted'})",
        )
        await self.on_state(session)

    def _limit_items(self, view: DtuView, serial: str) -> list[tuple[str, str]]:
        limit = view.limits.get(serial)
        if limit is None:
            return []
        rated = view.inverters[serial].rated_power if serial in view.inverters else 0
        items = [(self.layout.inverter(serial, "status/limit_relative"), _fmt(limit))]
        if rated:
            items.append(
                (
                    self.layout.inverter(serial, "status/limit_absolute"),
                    _fmt(round(limit * rated / 100, 1)),
                )
            )
        return items

    def _inverter_items(
        self, view: DtuView, values: InverterValues, *, last_update: float | None
    ) -> list[tuple[str, str]]:
        serial = values.serial
        layout = self.layout
        items = [(layout.inverter(serial, f"0/{k}"), _fmt(v)) for k, v in values.values.items()]
        for port, fields in values.ports.items():
            items += [(layout.port(serial, port, k), _fmt(v)) for k, v in fields.items()]
        items += [
            (layout.inverter(serial, "status/reachable"), _fmt(values.reachable)),
            (layout.inverter(serial, "status/producing"), _fmt(values.producing)),
        ]
        if last_update is not None:
            items.append((layout.inverter(serial, "status/last_update"), str(int(last_update))))
        return items

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
        ac = dc = day = total = 0.0
        rated = 0.0
        valid = True
        for view in self.views:
            valid = valid and view.available
            for values in view.values.values():
                ac += values.values.get("power", 0.0)
                dc += values.values.get("powerdc", 0.0)
                day += values.values.get("yieldday", 0.0)
                total += values.values.get("yieldtotal", 0.0)
            rated += sum(i.rated_power for i in view.inverters.values())
        layout = self.layout
        return [
            (layout.total("ac/power"), _fmt(round(ac, 1))),
            (layout.total("ac/yieldday"), _fmt(day)),
            (layout.total("ac/yieldtotal"), _fmt(round(total, 3))),
            (layout.total("ac/is_valid"), _fmt(valid)),
            (layout.total("dc/power"), _fmt(round(dc, 1))),
            (layout.total("dc/irradiation"), _fmt(round(dc * 100 / rated, 1) if rated else 0.0)),
            (layout.total("dc/is_valid"), _fmt(valid)),
        ]

    async def on_real_data(self, session: DtuSession, data: RealData, fresh: bool) -> None:
        started = time.monotonic()
        view = self.view_for(session)
        serial = data.dtu_serial or view.serial
        if serial is None:
            return
        items = [
            (self.layout.dtu(serial, "rtt"), str(round((session.rtt or 0) * 1000))),
            (self.layout.dtu(serial, "performance_mode"), _fmt(session.performance_mode)),
        ]
        if fresh:
            now = session.last_poll or self._clock()
            items.append((self.layout.dtu(serial, "last_update"), str(int(now))))
            for inverter in data.inverters:
                if inverter.serial not in view.inverters:
                    kind = inverter_type(parse_serial(inverter.serial))
                    view.inverters[inverter.serial] = InverterDevice(
                        serial=inverter.serial,
                        model=inverter.model,
                        firmware="",
                        hardware="",
                        name=None,
                        ports=max(len(inverter.ports), kind.ports, 1),
                        rated_power=kind.rated_power,
                        dtu_serial=serial,
                        supports_nonpersistent=False,
                    )
                guard = view.guards.get(inverter.serial)
                if guard is None:
                    guard = InverterGuard(inverter.serial, clock=self._clock)
                    view.guards[inverter.serial] = guard
                values = guard.update(inverter, now=now)
                view.values[inverter.serial] = values
                items += self._inverter_items(view, values, last_update=now)
                if inverter.power_limit is not None:
                    view.limits[inverter.serial] = inverter.power_limit
                items += self._limit_items(view, inverter.serial)
                items.append(
                    (
                        self.layout.inverter_json(inverter.serial),
                        json.dumps(
                            {
                                "dtu_serial": serial,
                                "timestamp": data.timestamp,
                                **inverter.to_dict(),
                            },
                            separators=(",", ":"),
                        ),
                    )
                )
                items.append((self.layout.inverter_available(inverter.serial), ONLINE))
            items += self._totals_now_or_soon()
            await self._announce(view)
        await self._publish(items)
        self.latencies.append(time.monotonic() - started)
        if fresh:
            self._emit(
                "poll",
                session.target.label,
                serial,
                "poll",
                time=session.last_poll or self._clock(),
                power={s: v.values.get("power", 0.0) for s, v in view.values.items()},
                yieldday={s: v.values.get("yieldday", 0.0) for s, v in view.values.items()},
            )

    async def on_alarms(self, session: DtuSession, warnings: Warnings) -> None:
        view = self.view_for(session)
        by_inverter: dict[str, list[dict[str, Any]]] = {s: [] for s in view.inverters}
        for entry in warnings.warnings:
            by_inverter.setdefault(entry.inverter_serial, []).append(
                {
                    "code": entry.code,
                    "text": alarm_text(entry.code),
                    "start": entry.start,
                    "end": entry.end,
                    "active": entry.active,
                }
            )
        self._note_new_alarms(session, warnings)
        items: list[tuple[str, str]] = []
        for serial, alarms in by_inverter.items():
            active = [a for a in alarms if a["active"]]
            latest = max(alarms, key=lambda a: a["start"], default=None)
            items += [
                (self.layout.inverter_alarms(serial), json.dumps(active, separators=(",", ":"))),
                (self.layout.inverter(serial, "alarms/count"), str(len(active))),
                (self.layout.inverter(serial, "alarms/last"), latest["text"] if latest else ""),
            ]
        await self._publish(items)

    def _note_new_alarms(self, session: DtuSession, warnings: Warnings) -> None:
        """Tell observers about alarms not seen before (by inverter, code and start)."""
        label = session.target.label
        first = label not in self._alarms_seen
        seen = self._alarms_seen.setdefault(label, set())
        for entry in warnings.warnings:
            marker = (entry.inverter_serial, entry.code, entry.start)
            if marker in seen:
                continue
            seen.add(marker)
            if first and not entry.active:
                continue  # old history at startup is not news
            self._emit(
                "alarm",
                label,
                entry.inverter_serial,
                f"{entry.inverter_serial}: {alarm_text(entry.code)} (code {entry.code})"
                + ("" if entry.active else ", ended"),
                level="warning" if entry.active else "info",
                code=entry.code,
                start=entry.start,
                end=entry.end,
                active=entry.active,
            )

    # --- commands ---------------------------------------------------------

    async def _on_message(self, message: MqttMessage) -> None:
        if message.topic == self.ha_status_topic:
            if message.payload.strip().lower() == ONLINE.encode():
                delay = random.uniform(0, self._announce_delay)
                self._spawn(self._reannounce(delay), "ha-reannounce")
            return
        where = split_topic(self.layout.base, message.topic)
        if where is None or message.topic.endswith("/status"):
            return
        try:
            command = parse_command(
                self.layout.base, message.topic, message.payload, retained=message.retain
            )
        except CommandError as err:
            _LOGGER.warning("command on %s refused: %s", message.topic, err)
            await self._refused(message.topic, where[2], where[1], str(err))
            return
        if command is None:
            _LOGGER.info("ignoring retained one-shot command on %s", message.topic)
            return
        self._spawn(self._execute(message.topic, command), f"command-{command.name}")

    def command_topic(self, target: Target, serial: str, name: str) -> str:
        """The MQTT topic a command would arrive on (its status goes to ``<topic>/status``)."""
        base = self.layout.base
        if target is Target.DTU:
            return f"{base}/dtu/{serial}/cmd/{name}" if serial else f"{base}/dtu/cmd/{name}"
        return f"{base}/{serial}/cmd/{name}"

    async def submit_command(
        self, target: Target, serial: str, name: str, payload: str
    ) -> CommandOutcome:
        """Validate, pace and run a command as if it had arrived on MQTT; wait for the outcome.

        The web API's entry point. The status is published on the command's
        ``.../status`` topic too, exactly as for an MQTT command. A paced limit
        answers ``pending`` and is written later.
        """
        if (serial or target is Target.INVERTER) and not serial.isalnum():
            return CommandOutcome("refused", f"{serial!r} is not a serial number")
        topic = self.command_topic(target, serial.upper(), name)
        try:
            command = parse_command(
                self.layout.base, topic, payload.encode("utf-8"), retained=False
            )
        except CommandError as err:
            return await self._refused(topic, name, serial, str(err))
        if command is None:  # parse_command only ignores retained messages
            return CommandOutcome("refused", f"command {name!r} was ignored")
        return await self._execute(topic, command)

    async def _refused(self, topic: str, name: str, serial: str, reason: str) -> CommandOutcome:
        outcome = CommandOutcome("refused", reason)
        self._command_event(name, serial, outcome)
        await self._status(topic, outcome.text)
        return outcome

    def _command_event(self, name: str, serial: str, outcome: CommandOutcome) -> None:
        view = next((v for v in self.views if serial and serial in v.inverters), None)
        if view is None:
            view = next((v for v in self.views if v.serial == serial), None)
        label = view.session.target.label if view is not None else ""
        self._emit(
            "command",
            label,
            serial or None,
            f"{name} for {serial or 'the DTU'}: {outcome.text}",
            level="info" if outcome.status in {"ok", "pending"} else "warning",
            command=name,
            status=outcome.status,
            message=outcome.message,
        )

    async def _reannounce(self, delay: float) -> None:
        await asyncio.sleep(delay)
        await self._on_connect()

    async def _status(self, command_topic: str, text: str) -> None:
        await self.link.publish(f"{command_topic}/status", text, retain=False, qos=1)

    async def _finish(
        self, topic: str, command: Command, outcome: CommandOutcome
    ) -> CommandOutcome:
        if outcome.status == "ok":
            self.commands_done += 1
        elif outcome.status != "pending":
            self.commands_failed += 1
        self._command_event(command.name, command.serial, outcome)
        await self._status(topic, outcome.text)
        return outcome

    def _find_inverter(self, serial: str) -> DtuView:
        view = next((v for v in self.views if serial in v.inverters), None)
        if view is None:
            raise CommandError(f"no inverter {serial} is known")
        return view

    def _find_dtu(self, serial: str) -> DtuView:
        if not serial:
            if len(self.views) == 1:
                return self.views[0]
            raise CommandError("several DTUs: name the DTU serial in the topic")
        view = next((v for v in self.views if v.serial == serial), None)
        if view is None:
            raise CommandError(f"no DTU {serial} is known")
        return view

    async def _execute(self, topic: str, command: Command) -> CommandOutcome:
        try:
            if command.target is Target.DTU:
                view = self._find_dtu(command.serial)
                await self._status(topic, "pending")
                await self._run_dtu_command(view, command)
            else:
                view = self._find_inverter(command.serial)
                if command.is_limit:
                    return await self._limit(topic, view, command)
                await self._status(topic, "pending")
                await self._run_inverter_command(view, command)
        except (CommandError, InvalidArgumentError) as err:
            return await self._finish(topic, command, CommandOutcome("refused", str(err)))
        except DtuRejectedError as err:
            return await self._finish(topic, command, CommandOutcome("failed", str(err)))
        except (DtuConnectionError, DtuTimeoutError, ProtocolError) as err:
            return await self._finish(
                topic, command, CommandOutcome("failed", f"the DTU did not take it ({err})")
            )
        return await self._finish(topic, command, CommandOutcome("ok"))

    async def _run_dtu_command(self, view: DtuView, command: Command) -> None:
        if command.name == "reboot":
            await view.session.run_command(lambda c: c.reboot_dtu())
            view.session.performance_mode = False
        else:
            await view.session.run_command(lambda c: c.performance_mode())
            view.session.performance_mode = True

    async def _run_inverter_command(self, view: DtuView, command: Command) -> None:
        serial = command.serial
        if command.name == "power":
            if command.value:
                await view.session.run_command(lambda c: c.inverter_on(serial))
            else:
                await view.session.run_command(lambda c: c.inverter_off(serial))
        elif command.name == "restart":
            await view.session.run_command(lambda c: c.inverter_restart(serial))

    def _limit_request(self, view: DtuView, command: Command) -> float:
        """The value the DTU gets: percent for persistent limits, watts for the others."""
        rated = view.inverters[command.serial].rated_power
        if command.persistent:
            if command.relative:
                return command.value
            if not rated:
                raise CommandError("the inverter's rated power is unknown; use the % limit")
            if command.value > rated:
                raise CommandError(f"limit {command.value:g} W is above the rated {rated} W")
            return max(2.0, round(command.value * 100 / rated, 1))
        if command.relative:
            if not rated:
                raise CommandError("the inverter's rated power is unknown; use the W limit")
            return round(command.value * rated / 100, 1)
        if rated and command.value > rated:
            raise CommandError(f"limit {command.value:g} W is above the rated {rated} W")
        return command.value

    async def _limit(self, topic: str, view: DtuView, command: Command) -> CommandOutcome:
        """Raises like :meth:`_execute`'s commands; answers ``ok`` or ``pending``."""
        value = self._limit_request(view, command)
        key = (command.serial, command.persistent)
        pacer = self._pacers.setdefault(key, LimitPacer(self.options.limit_interval))
        now = time.monotonic()
        decision = pacer.offer(value, now)
        if decision is Decision.UNCHANGED:
            outcome = CommandOutcome("ok", "unchanged")
            self._command_event(command.name, command.serial, outcome)
            await self._status(topic, outcome.text)
            return outcome
        if decision is Decision.PENDING:
            if key not in self._deferred:
                task = asyncio.ensure_future(self._deferred_limit(topic, view, command, pacer))
                task.set_name(f"deferred-limit-{command.serial}")
                self._deferred[key] = task
                task.add_done_callback(self._forget_deferred)
            return await self._finish(
                topic,
                command,
                CommandOutcome(
                    "pending", f"paced: sent in {max(0.0, pacer.due - now):.0f} s at the latest"
                ),
            )
        await self._status(topic, "pending")
        await self._write_limit(view, command, value, pacer)
        return await self._finish(topic, command, CommandOutcome("ok"))

    def _forget_deferred(self, task: asyncio.Task[None]) -> None:
        for key, known in list(self._deferred.items()):
            if known is task:
                del self._deferred[key]

    async def _deferred_limit(
        self, topic: str, view: DtuView, command: Command, pacer: LimitPacer
    ) -> None:
        await asyncio.sleep(max(0.0, pacer.due - time.monotonic()))
        value = pacer.pending
        if value is None:
            return
        pacer.pending = None
        try:
            await self._write_limit(view, command, value, pacer)
        except (CommandError, InvalidArgumentError) as err:
            await self._finish(topic, command, CommandOutcome("refused", str(err)))
        except DtuRejectedError as err:
            await self._finish(topic, command, CommandOutcome("failed", str(err)))
        except (DtuConnectionError, DtuTimeoutError, ProtocolError) as err:
            await self._finish(
                topic, command, CommandOutcome("failed", f"the DTU did not take it ({err})")
            )
        else:
            await self._finish(topic, command, CommandOutcome("ok"))

    async def _write_limit(
        self, view: DtuView, command: Command, value: float, pacer: LimitPacer
    ) -> None:
        serial = command.serial
        pacer.sent(value, time.monotonic())
        try:
            if command.persistent:
                await view.session.run_command(lambda c: c.set_power_limit(value, serial))
                view.limits[serial] = value
            else:
                await view.session.run_command(lambda c: c.set_power_limit_temporary(value))
                rated = view.inverters[serial].rated_power
                if rated:
                    view.limits[serial] = round(value * 100 / rated, 1)
        except HoymilesError:
            pacer.failed()
            raise
        await self._publish(self._limit_items(view, serial))


def build_client_factory(
    min_spacing: float | None = None, request_timeout: float | None = None
) -> ClientFactory:
    """A factory for the sessions' clients (tests use shorter spacing and timeouts)."""

    def factory(target: DtuTarget) -> DtuClient:
        client = DtuClient(target.host, target.port)
        if min_spacing is not None:
            client.min_spacing = min_spacing
        if request_timeout is not None:
            client.request_timeout = request_timeout
        return client

    return factory


__all__ = [
    "Bridge",
    "BridgeEvent",
    "CommandOutcome",
    "DtuView",
    "EventHook",
    "FrameHook",
    "build_client_factory",
]
