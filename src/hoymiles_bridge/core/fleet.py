"""The fleet: every DTU session, their typed state, the event bus and command dispatch.

:class:`Fleet` owns one :class:`~hoymiles_bridge.dtu.session.DtuSession` per
configured DTU and is their only listener. Each report updates the typed state
(:mod:`hoymiles_bridge.core.state`) and is then announced as a typed event
(:mod:`hoymiles_bridge.core.events`) to every subscriber, in order; a
subscriber's failure is logged and never reaches a session. Frames are handed
to frame observers synchronously, as they cross the wire.

Commands from any adapter arrive at :meth:`Fleet.submit`: checked against the
registry (:mod:`hoymiles_bridge.core.commands`), paced when they are limits
(:mod:`hoymiles_bridge.core.limits`), run through the owning session, and
reported as :class:`~hoymiles_bridge.core.events.CommandStatus` events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final

from hoymiles_bridge import __version__
from hoymiles_bridge.config.options import Options
from hoymiles_bridge.core.battery import TICK as BATTERY_TICK
from hoymiles_bridge.core.battery import BatteryHub
from hoymiles_bridge.core.commands import (
    COMMAND_ERRORS,
    Command,
    CommandError,
    CommandOutcome,
    CommandRequest,
    Target,
    check,
    outcome_for,
)
from hoymiles_bridge.core.events import (
    AlarmsChanged,
    CommandStatus,
    DtuInfoChanged,
    Event,
    FrameSeen,
    LimitChanged,
    Notice,
    RealDataReceived,
    Started,
    StateChanged,
)
from hoymiles_bridge.core.limits import (
    Decision,
    LimitPacer,
    applied_percent,
    limit_request,
)
from hoymiles_bridge.core.state import (
    Alarm,
    DtuDevice,
    DtuState,
    InverterDevice,
    InverterState,
    Totals,
    totals,
)
from hoymiles_bridge.core.values import InverterGuard
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
from hoymiles_bridge.errors import HoymilesError
from hoymiles_bridge.protocol.actions import TEMPORARY_LIMIT_FIRMWARE
from hoymiles_bridge.protocol.alarms import alarm_text
from hoymiles_bridge.protocol.devices import inverter_type, parse_serial
from hoymiles_bridge.protocol.models import (
    AppInfo,
    DtuConfig,
    InverterData,
    NetworkInfo,
    RealData,
    Warnings,
)

_LOGGER = logging.getLogger(__name__)

#: A DTU-Pro serves at most 99 inverters; more from one DTU is a broken or hostile reply.
MAX_INVERTERS_PER_DTU: Final = 99
#: Alarms kept per inverter (the newest); a DTU keeps far fewer.
MAX_ALARMS_PER_INVERTER: Final = 50
#: Poll handling times kept for the diagnostics and the benchmark.
_LATENCY_SAMPLES: Final = 4096
#: What a subscriber's failure may raise without stopping the fleet.
_OBSERVER_ERRORS: Final = (
    HoymilesError,
    ArithmeticError,
    AttributeError,
    LookupError,
    RuntimeError,
    TypeError,
    ValueError,
)

Listener = Callable[[Event], Awaitable[None]]
FrameHook = Callable[[FrameSeen], None]
StatsSource = Callable[[], dict[str, Any]]


class Fleet:
    """Runs every DTU session until cancelled and keeps what they report."""

    def __init__(
        self,
        options: Options,
        *,
        client_factory: ClientFactory = default_client,
        clock: Callable[[], float] = time.time,
        policy: PollPolicy | None = None,
        battery_clock: Callable[[], float] = time.monotonic,
        battery_tick: float = BATTERY_TICK,
    ) -> None:
        self.options = options
        #: Wall-clock start (the fleet's clock may be a simulated one).
        self.started_at = time.time()
        self.policy = policy or PollPolicy(
            interval=options.poll_interval,
            min_interval=options.min_poll_interval,
            cloud_pause=options.cloud_pause,
            release_socket_after=options.release_socket_after,
            performance_mode=options.performance_mode,
            frozen_after=options.frozen_after,
        )
        self._clock = clock
        #: The user's names of inverters and their ports, by serial.
        self._names = {inverter.serial: inverter for inverter in options.inverters}
        self.dtus: list[DtuState] = []
        count = len(options.dtus)
        for index, dtu in enumerate(options.dtus):
            session = DtuSession(
                DtuTarget(dtu.host, dtu.port, dtu.name),
                self.policy,
                self,
                client_factory=client_factory,
                clock=clock,
                # Spread the DTUs over one interval instead of polling all at once.
                start_delay=self.policy.interval * index / count if count > 1 else 0.0,
            )
            self.dtus.append(DtuState(session))
        self._by_session = {id(d.session): d for d in self.dtus}
        self._listeners: list[Listener] = []
        self._frame_hook: FrameHook | None = None
        self._stats: dict[str, StatsSource] = {}
        self._pacers: dict[tuple[str, bool], LimitPacer] = {}
        self._deferred: dict[tuple[str, bool], asyncio.Task[None]] = {}
        #: Per DTU (by identity): the alarms already told about.
        self._alarms_seen: dict[int, set[tuple[str, int, int]]] = {}
        #: Seconds each poll's event took to reach every subscriber (MQTT's PUBACKs included).
        self.latencies: deque[float] = deque(maxlen=_LATENCY_SAMPLES)
        self.commands_done = 0
        self.commands_failed = 0
        #: Carries out the power controller's commands (set by the bridge that runs one).
        self.controller_handler: Callable[[Command], Awaitable[CommandOutcome]] | None = None
        #: Carries out the cloud stations' setting writes (set by a bridge that uses the cloud).
        self.cloud_handler: Callable[[Command], Awaitable[CommandOutcome]] | None = None
        #: The batteries on the broker (fed and served by the MQTT adapter).
        self.batteries = BatteryHub(options, self.emit, clock=battery_clock, tick=battery_tick)

    def __repr__(self) -> str:
        return f"Fleet(dtus={[d.label for d in self.dtus]})"

    # --- subscribers ------------------------------------------------------------

    def subscribe(self, listener: Listener) -> None:
        """Hear every event, in order, after the state was updated."""
        self._listeners.append(listener)

    def observe_frames(self, hook: FrameHook | None) -> None:
        """Hear every frame of every session, synchronously (set before :meth:`run`)."""
        self._frame_hook = hook
        for dtu in self.dtus:
            client = dtu.session.client
            observer = None if hook is None else self._frame_observer(dtu.label)
            client.on_frame = observer
            if client.connection is not None:
                client.connection.on_frame = observer

    def _frame_observer(self, label: str) -> Callable[[FrameEvent], None]:
        def observe(event: FrameEvent) -> None:
            hook = self._frame_hook
            if hook is not None:
                hook(FrameSeen(label, event))

        return observe

    def add_stats(self, name: str, source: StatsSource) -> None:
        """Let an adapter show its counters in the diagnostics (``stats()[name]``)."""
        self._stats[name] = source

    def stats(self) -> dict[str, dict[str, Any]]:
        return {name: source() for name, source in self._stats.items()}

    async def emit(self, event: Event) -> None:
        """Tell every subscriber, in order; a failing subscriber is logged and skipped."""
        for listener in list(self._listeners):
            try:
                await listener(event)
            except _OBSERVER_ERRORS:
                _LOGGER.exception("A fleet subscriber failed on %s", type(event).__name__)

    async def notify(self, kind: str, text: str, *, level: str = "info") -> None:
        """An adapter's own news (``kind`` names the adapter, e.g. ``mqtt``)."""
        await self.emit(Notice(kind, text, level))

    # --- running ----------------------------------------------------------------

    async def run(self) -> None:
        """Run every session until cancelled; a DTU problem never ends it."""
        self.started_at = time.time()
        await self.emit(Started(__version__, len(self.dtus)))
        try:
            async with asyncio.TaskGroup() as group:
                for dtu in self.dtus:
                    group.create_task(dtu.session.run(), name=f"dtu-session-{dtu.label}")
                group.create_task(self.batteries.run(), name="batteries")
        finally:
            for task in list(self._deferred.values()):
                task.cancel()

    # --- reading ----------------------------------------------------------------

    def dtu_for(self, session: DtuSession) -> DtuState:
        return self._by_session[id(session)]

    def find_dtu(self, serial: str) -> DtuState:
        """The DTU with ``serial`` ("" = the only one); raises :class:`CommandError`."""
        if not serial:
            if len(self.dtus) == 1:
                return self.dtus[0]
            raise CommandError("several DTUs: name the DTU serial in the topic")
        dtu = next((d for d in self.dtus if d.serial == serial), None)
        if dtu is None:
            raise CommandError(f"no DTU {serial} is known")
        return dtu

    def find_inverter(self, serial: str) -> DtuState:
        """The DTU of inverter ``serial``; raises :class:`CommandError`."""
        dtu = next((d for d in self.dtus if serial in d.inverters), None)
        if dtu is None:
            raise CommandError(f"no inverter {serial} is known")
        return dtu

    def inverters(self) -> list[InverterState]:
        return [i for d in self.dtus for i in d.inverters.values()]

    def totals(self) -> Totals:
        return totals(self.dtus)

    def requested_limit(self, serial: str) -> float | None:
        """The last persistent limit (%) asked for ``serial``: pending, else last sent."""
        pacer = self._pacers.get((serial, True))
        if pacer is None:
            return None
        return pacer.pending if pacer.pending is not None else pacer.last_value

    def night_zero(self, dtu: DtuState) -> bool:
        """Whether ``dtu`` is asleep and the options say to show zeros at night."""
        return dtu.session.state is SessionState.NIGHT and self.options.night_policy == "zero"

    # --- session listener ---------------------------------------------------------

    async def on_state(self, session: DtuSession) -> None:
        dtu = self.dtu_for(session)
        if dtu.serial is not None and self.night_zero(dtu):
            for inverter in dtu.inverters.values():
                if inverter.values is not None:  # never zero a total that was never read
                    inverter.values = inverter.guard.night()
        await self.emit(StateChanged(dtu))

    async def on_dtu_info(
        self,
        session: DtuSession,
        info: AppInfo,
        config: DtuConfig | None,
        network: NetworkInfo | None,
    ) -> None:
        dtu = self.dtu_for(session)
        target = session.target
        dtu.device = DtuDevice(
            serial=info.dtu_serial,
            model=info.dtu_model,
            firmware=info.dtu_firmware,
            hardware=info.dtu_hardware,
            name=target.name,
            host=target.host,
        )
        nonpersistent = (
            info.dtu_model == "DTUBI" and info.dtu_firmware_raw >= TEMPORARY_LIMIT_FIRMWARE
        )
        current: dict[str, InverterState] = {}
        listed = info.inverters
        if len(listed) > MAX_INVERTERS_PER_DTU:
            _LOGGER.warning(
                "DTU %s lists %d inverters; only the first %d are used",
                info.dtu_serial,
                len(listed),
                MAX_INVERTERS_PER_DTU,
            )
            listed = listed[:MAX_INVERTERS_PER_DTU]
        for inv in listed:
            kind = inverter_type(parse_serial(inv.serial))
            named = self._names.get(inv.serial)
            device = InverterDevice(
                serial=inv.serial,
                model=inv.model,
                firmware=inv.firmware,
                hardware=inv.hardware,
                name=named.name if named is not None else None,
                ports=kind.ports or 1,
                rated_power=kind.rated_power,
                dtu_serial=info.dtu_serial,
                supports_nonpersistent=nonpersistent,
                port_names=named.ports if named is not None else (),
            )
            known = dtu.inverters.get(inv.serial)
            if known is None:
                current[inv.serial] = InverterState(
                    device, InverterGuard(inv.serial, clock=self._clock)
                )
            else:
                known.device = device
                current[inv.serial] = known
        removed = tuple(
            state.device for serial, state in dtu.inverters.items() if serial not in current
        )
        for device in removed:
            _LOGGER.info(
                "inverter %s is no longer listed by DTU %s", device.serial, info.dtu_serial
            )
        dtu.inverters = current
        limits: tuple[str, ...] = ()
        if config is not None and config.power_limit > 0:
            for inverter in current.values():
                inverter.limit = config.power_limit
            limits = tuple(current)
        await self.emit(DtuInfoChanged(dtu, info, removed, limits))
        await self.on_state(session)

    def _adopt(self, dtu: DtuState, data: InverterData, dtu_serial: str) -> InverterState:
        """An inverter seen in real data before the DTU listed it."""
        kind = inverter_type(parse_serial(data.serial))
        named = self._names.get(data.serial)
        device = InverterDevice(
            serial=data.serial,
            model=data.model,
            firmware="",
            hardware="",
            name=named.name if named is not None else None,
            ports=max(len(data.ports), kind.ports, 1),
            rated_power=kind.rated_power,
            dtu_serial=dtu_serial,
            supports_nonpersistent=False,
            port_names=named.ports if named is not None else (),
        )
        state = InverterState(device, InverterGuard(data.serial, clock=self._clock))
        dtu.inverters[data.serial] = state
        return state

    async def on_real_data(self, session: DtuSession, data: RealData, fresh: bool) -> None:
        started = time.monotonic()
        dtu = self.dtu_for(session)
        serial = data.dtu_serial or dtu.serial
        if serial is None:
            return
        now = session.last_poll or self._clock()
        if fresh:
            for reading in data.inverters:
                inverter = dtu.inverters.get(reading.serial)
                if inverter is None:
                    if len(dtu.inverters) >= MAX_INVERTERS_PER_DTU:
                        continue  # told when the DTU listed too many
                    inverter = self._adopt(dtu, reading, serial)
                inverter.values = inverter.guard.update(reading, now=now)
                inverter.last_update = now
                if reading.power_limit is not None:
                    inverter.limit = reading.power_limit
        await self.emit(RealDataReceived(dtu, data, fresh, now))
        self.latencies.append(time.monotonic() - started)

    async def on_alarms(self, session: DtuSession, warnings: Warnings) -> None:
        dtu = self.dtu_for(session)
        by_inverter: dict[str, list[Alarm]] = {s: [] for s in dtu.inverters}
        listed: list[tuple[str, Alarm]] = []  # in the DTU's order
        for entry in warnings.warnings:
            alarms = by_inverter.get(entry.inverter_serial)
            if alarms is None:
                continue  # an inverter the DTU does not list: no state, no topic
            alarm = Alarm(entry.code, alarm_text(entry.code), entry.start, entry.end, entry.active)
            alarms.append(alarm)
            listed.append((entry.inverter_serial, alarm))
        for serial, alarms in by_inverter.items():
            if len(alarms) > MAX_ALARMS_PER_INVERTER:
                alarms = sorted(alarms, key=_alarm_start)[-MAX_ALARMS_PER_INVERTER:]
            dtu.inverters[serial].alarms = tuple(alarms)
        await self.emit(AlarmsChanged(dtu, self._new_alarms(dtu, listed)))

    def _new_alarms(
        self, dtu: DtuState, listed: list[tuple[str, Alarm]]
    ) -> tuple[tuple[str, Alarm], ...]:
        """Alarms not seen before (by inverter, code and start); old ones at start are not news."""
        first = id(dtu) not in self._alarms_seen
        seen = self._alarms_seen.setdefault(id(dtu), set())
        news: list[tuple[str, Alarm]] = []
        current: set[tuple[str, int, int]] = set()
        for serial, alarm in listed:
            marker = (serial, alarm.code, alarm.start)
            current.add(marker)
            if marker in seen:
                continue
            if first and not alarm.active:
                continue
            news.append((serial, alarm))
        # Only what the DTU still lists is remembered: the set cannot grow without end.
        self._alarms_seen[id(dtu)] = current
        return tuple(news)

    # --- commands -----------------------------------------------------------------

    async def submit(self, request: CommandRequest) -> CommandOutcome | None:
        """Check, pace and run a command; the outcome, or None for an ignored retained one-shot.

        Its progress is announced as :class:`CommandStatus` events (``pending``
        while it runs, then the outcome). A paced limit answers ``pending`` and
        is written later.
        """
        try:
            command = check(request)
        except CommandError as err:
            _LOGGER.warning("command %s for %s refused: %s", request.name, request.serial, err)
            return await self._finish(request, CommandOutcome("refused", str(err)), count=False)
        if command is None:
            _LOGGER.info("ignoring retained one-shot command %s", request.name)
            return None
        return await self._execute(request, command)

    def _label(self, serial: str) -> str:
        dtu = next((d for d in self.dtus if serial and serial in d.inverters), None)
        if dtu is None:
            dtu = next((d for d in self.dtus if d.serial == serial), None)
        return dtu.label if dtu is not None else ""

    async def _progress(self, request: CommandRequest, outcome: CommandOutcome) -> None:
        await self.emit(CommandStatus(request, outcome, self._label(request.serial), final=False))

    async def _finish(
        self, request: CommandRequest, outcome: CommandOutcome, *, count: bool = True
    ) -> CommandOutcome:
        if count and outcome.status == "ok":
            self.commands_done += 1
        elif count and outcome.status != "pending":
            self.commands_failed += 1
        await self.emit(CommandStatus(request, outcome, self._label(request.serial)))
        return outcome

    async def _execute(self, request: CommandRequest, command: Command) -> CommandOutcome:
        try:
            if command.spec.target is Target.CONTROLLER:
                handler = self.controller_handler
                if handler is None:
                    raise CommandError("this bridge runs no power controller")
                return await self._finish(request, await handler(command), count=False)
            if command.spec.target is Target.BATTERY:
                await self._progress(request, CommandOutcome("pending"))
                return await self._finish(request, await self.batteries.execute(command))
            if command.spec.target is Target.CLOUD:
                cloud = self.cloud_handler
                if cloud is None:
                    raise CommandError("this bridge does not use the Hoymiles cloud")
                await self._progress(request, CommandOutcome("pending"))
                return await self._finish(request, await cloud(command))
            if command.spec.target is Target.DTU:
                dtu = self.find_dtu(command.serial)
            else:
                dtu = self.find_inverter(command.serial)
                if command.spec.limit is not None:
                    return await self._limit(request, dtu, command)
            await self._progress(request, CommandOutcome("pending"))
            await self._run(dtu, command)
        except COMMAND_ERRORS as err:
            return await self._finish(request, outcome_for(err))
        return await self._finish(request, CommandOutcome("ok"))

    async def _run(self, dtu: DtuState, command: Command) -> None:
        spec, serial, value = command.spec, command.serial, command.value
        session = dtu.session
        result = await session.run_command(lambda client: spec.call(client, serial, value))
        if spec.performance_mode is not None:
            session.performance_mode = spec.performance_mode
        if spec.reads_alarms and isinstance(result, Warnings):
            await self.on_alarms(session, result)

    async def _limit(
        self, request: CommandRequest, dtu: DtuState, command: Command
    ) -> CommandOutcome:
        """Raises like :meth:`_execute`'s commands; answers ``ok`` or ``pending``."""
        assert command.spec.limit is not None
        value, note = limit_request(command, dtu.inverters[command.serial].device)
        key = (command.serial, command.spec.limit.persistent)
        pacer = self._pacers.setdefault(key, LimitPacer(self.options.limit_interval))
        now = time.monotonic()
        decision = pacer.offer(value, now)
        if decision is Decision.PENDING and request.unpaced and not command.spec.limit.persistent:
            pacer.pending = None  # a deferred write that wakes later finds nothing to do
            decision = Decision.SEND
        if decision is Decision.UNCHANGED:
            return await self._finish(
                request, CommandOutcome("ok", "unchanged", note=note), count=False
            )
        if decision is Decision.PENDING:
            if key not in self._deferred:
                task = asyncio.ensure_future(self._deferred_limit(request, dtu, command, pacer))
                task.set_name(f"deferred-limit-{command.serial}")
                self._deferred[key] = task
                task.add_done_callback(self._forget_deferred)
            return await self._finish(
                request,
                CommandOutcome(
                    "pending",
                    f"paced: sent in {max(0.0, pacer.due - now):.0f} s at the latest",
                    note=note,
                ),
            )
        await self._progress(request, CommandOutcome("pending"))
        await self._write_limit(dtu, command, value, pacer)
        # The note is the message too: the web console shows the message of an "ok".
        return await self._finish(request, CommandOutcome("ok", note, note=note))

    def _forget_deferred(self, task: asyncio.Task[None]) -> None:
        for key, known in list(self._deferred.items()):
            if known is task:
                del self._deferred[key]

    async def _deferred_limit(
        self, request: CommandRequest, dtu: DtuState, command: Command, pacer: LimitPacer
    ) -> None:
        await asyncio.sleep(max(0.0, pacer.due - time.monotonic()))
        value = pacer.pending
        if value is None:
            return
        pacer.pending = None
        try:
            await self._write_limit(dtu, command, value, pacer)
        except COMMAND_ERRORS as err:
            await self._finish(request, outcome_for(err))
        else:
            await self._finish(request, CommandOutcome("ok"))

    async def _write_limit(
        self, dtu: DtuState, command: Command, value: float, pacer: LimitPacer
    ) -> None:
        serial, spec = command.serial, command.spec
        pacer.sent(value, time.monotonic())
        try:
            await dtu.session.run_command(lambda client: spec.call(client, serial, value))
        except HoymilesError:
            pacer.failed()
            raise
        inverter = dtu.inverters.get(serial)
        if inverter is None:  # the DTU stopped listing it while the limit was written
            return
        applied = applied_percent(command, value, inverter.device)
        if applied is not None:
            inverter.limit = applied
        await self.emit(LimitChanged(dtu, serial))


def _alarm_start(alarm: Alarm) -> int:
    return alarm.start


def build_client_factory(
    min_spacing: float | None = None, request_timeout: float | None = None
) -> ClientFactory:
    """A factory for the sessions' clients (tests use shorter spacing and timeouts)."""

    def factory(target: DtuTarget) -> DtuClient:
        client = default_client(target)
        if min_spacing is not None:
            client.min_spacing = min_spacing
        if request_timeout is not None:
            client.request_timeout = request_timeout
        return client

    return factory


__all__ = [
    "MAX_ALARMS_PER_INVERTER",
    "MAX_INVERTERS_PER_DTU",
    "Fleet",
    "FrameHook",
    "Listener",
    "StatsSource",
    "build_client_factory",
]
