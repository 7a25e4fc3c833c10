"""The power controller at work: meter readings in, registry commands out.

:class:`ControllerService` owns one :class:`~hoymiles_bridge.core.controller.PowerController`.
The MQTT adapter hands it the meter's payloads (:meth:`ControllerService.on_meter`);
it reads what the batteries and inverters report and carries the law's
actuations out through an :class:`Actuators` port. :class:`FleetActuators`
is that port in the bridge: every actuation becomes a
:class:`~hoymiles_bridge.core.commands.CommandRequest` submitted to the one
command registry (:meth:`~hoymiles_bridge.core.fleet.Fleet.submit`): the
inverters' ``limit_nonpersistent_absolute``, never a persistent limit, and
the batteries' ``setpoint`` and ``ems_mode`` (the battery hub keeps a
setpoint alive and switches the EMS mode to ``mqtt_ctrl`` for it).

Each actuation is announced as :class:`~hoymiles_bridge.core.events.ControllerActed`
with its reason; mode and state changes as
:class:`~hoymiles_bridge.core.events.ControllerChanged`. The last 15 minutes
(grid, battery, PV, target) are kept for the web UI's chart.

A mode switched at run time (Home Assistant's select, the web UI, the CLI) is
kept in the bridge's state directory (:meth:`ControllerService.keep_mode_in`),
so a restart carries on in it; a changed ``controller.mode`` option wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

from hoymiles_bridge.config.options import ControllerOptions
from hoymiles_bridge.core.commands import Command, CommandOutcome, CommandRequest, Target
from hoymiles_bridge.core.controller import (
    CONTROLLER_ORIGIN,
    Actuation,
    BatteryUnit,
    ControllerConfig,
    InverterUnit,
    Kind,
    Mode,
    PowerController,
    Tuning,
    parse_mode,
)
from hoymiles_bridge.core.events import ControllerActed, ControllerChanged, Event
from hoymiles_bridge.core.state import DtuState
from hoymiles_bridge.errors import InvalidArgumentError
from hoymiles_bridge.protocol.meter import MeterPayloadError, parse_path, read_meter

_LOGGER = logging.getLogger(__name__)

#: Seconds between two looks when no reading arrives (safety, the slow loop).
TICK: Final = 1.0
#: The chart's length: 15 minutes of one sample a second.
HISTORY: Final = 900
#: The file in the state directory that keeps a mode switched at run time.
MODE_FILE_NAME: Final = "controller-mode.json"
#: A longer mode file is not read (it is a few dozen bytes).
_MODE_FILE_MAX: Final = 1024

Emit = Callable[[Event], Awaitable[None]]


class Actuators(Protocol):
    """What the controller reads and drives: the bridge's batteries and inverters."""

    def batteries(self, now: float) -> Sequence[BatteryUnit]: ...

    def inverters(self) -> Sequence[InverterUnit]: ...

    def grid(self) -> tuple[float, float] | None:
        """The battery's own grid reading (``sys_grid_p``, W) and when it came, if any."""

    async def carry(self, actuation: Actuation) -> CommandOutcome | None:
        """Send one actuation through the registry; its outcome."""


def request_for(actuation: Actuation) -> CommandRequest:
    """The registry request that carries ``actuation`` out."""
    if actuation.kind is Kind.LIMIT:
        assert isinstance(actuation.value, float)
        return CommandRequest(
            Target.INVERTER,
            actuation.device,
            "limit_nonpersistent_absolute",
            f"{actuation.value:.0f}".encode(),
            origin=CONTROLLER_ORIGIN,
            unpaced=actuation.release,
        )
    if actuation.kind is Kind.SETPOINT:
        assert isinstance(actuation.value, float)
        payload = f"{actuation.value:.1f}".encode()
        return CommandRequest(
            Target.BATTERY, actuation.device, "setpoint", payload, origin=CONTROLLER_ORIGIN
        )
    payload = str(actuation.value).encode()
    return CommandRequest(
        Target.BATTERY, actuation.device, "ems_mode", payload, origin=CONTROLLER_ORIGIN
    )


class SubmitsCommands(Protocol):
    """The part of :class:`~hoymiles_bridge.core.fleet.Fleet` the actuators use."""

    async def submit(self, request: CommandRequest) -> CommandOutcome | None: ...


class FleetActuators:
    """The bridge's inverters (the fleet's state) and batteries, driven through the registry.

    ``batteries`` gives the battery units (none until the bridge has batteries);
    ``inverter_source`` the fleet's inverters as units.
    """

    def __init__(
        self,
        fleet: SubmitsCommands,
        inverter_source: Callable[[], Sequence[InverterUnit]],
        battery_source: Callable[[float], Sequence[BatteryUnit]] | None = None,
        grid_source: Callable[[], tuple[float, float] | None] | None = None,
    ) -> None:
        self._fleet = fleet
        self._inverters = inverter_source
        self._batteries = battery_source
        self._grid = grid_source

    def batteries(self, now: float) -> Sequence[BatteryUnit]:
        return self._batteries(now) if self._batteries is not None else ()

    def inverters(self) -> Sequence[InverterUnit]:
        return self._inverters()

    def grid(self) -> tuple[float, float] | None:
        return self._grid() if self._grid is not None else None

    async def carry(self, actuation: Actuation) -> CommandOutcome | None:
        return await self._fleet.submit(request_for(actuation))


def inverter_units(dtus: Sequence[DtuState]) -> list[InverterUnit]:
    """The fleet's inverters as the slow loop sees them.

    One is controllable when its DTU is reachable, its firmware takes
    non-persistent limits and its rated power is known.
    """
    units = []
    for dtu in dtus:
        for inverter in dtu.inverters.values():
            device = inverter.device
            rated = float(device.rated_power)
            values = inverter.values
            ac = values.values.get("power", 0.0) if values is not None else 0.0
            limit = None
            if inverter.limit is not None and rated:
                limit = round(min(inverter.limit, 100.0) * rated / 100, 1)
            units.append(
                InverterUnit(
                    device.serial,
                    rated_power=rated,
                    ac_power=ac,
                    controllable=dtu.available and device.supports_nonpersistent and rated > 0,
                    limit=limit,
                )
            )
    return units


class BatteryLike(Protocol):
    """What :func:`battery_units` reads of a battery's state (the battery hub's).

    ``values`` holds the firmware's fields (``soc``, ``bat_p``, ``sys_soc``,
    ``sys_bat_p``...), ``master`` is False for a slave (it takes no setpoint),
    ``setpoint_range`` the ``(low, high)`` W it accepts, ``last_quick`` when its
    1 s telemetry last came (the hub's monotonic clock).
    """

    @property
    def dev_id(self) -> str: ...

    @property
    def values(self) -> Mapping[str, object]: ...

    @property
    def available(self) -> bool: ...

    @property
    def master(self) -> bool | None: ...

    @property
    def setpoint_range(self) -> tuple[float, float]: ...

    @property
    def last_quick(self) -> float | None: ...


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def battery_units(batteries: Iterable[BatteryLike]) -> list[BatteryUnit]:
    """The batteries as the fast loop sees them: one unit per system (its master).

    A slave takes no setpoint; its master speaks for the system, with the
    system's SOC and power when it reports them (``sys_soc``, ``sys_bat_p``).
    """
    units = []
    for battery in batteries:
        if battery.master is False:
            continue
        values = battery.values
        soc = _number(values.get("sys_soc"))
        if soc is None:
            soc = _number(values.get("soc"))
        power = _number(values.get("sys_bat_p"))
        if power is None:
            power = _number(values.get("bat_p"))
        low, high = battery.setpoint_range
        units.append(
            BatteryUnit(
                battery.dev_id,
                soc=soc,
                charge_max=max(0.0, -low),
                discharge_max=max(0.0, high),
                power=power,
                seen_at=battery.last_quick,
                available=battery.available,
            )
        )
    return units


def battery_grid(batteries: Iterable[BatteryLike]) -> tuple[float, float] | None:
    """A master's own grid reading, ``(sys_grid_p W, when it came)``, for a bridge
    without a meter topic (the battery's meter serves; its sign follows ``meter_sign``)."""
    for battery in batteries:
        if battery.master is False or battery.last_quick is None:
            continue
        watts = _number(battery.values.get("sys_grid_p"))
        if watts is not None:
            return watts, battery.last_quick
    return None


def config_from(options: ControllerOptions, tuning: Tuning | None = None) -> ControllerConfig:
    """The law's configuration from the ``controller`` options."""
    return ControllerConfig(
        mode=parse_mode(options.mode),
        target=float(options.target),
        import_bias=float(options.import_bias),
        max_feed_in=None if options.max_feed_in is None else float(options.max_feed_in),
        meter_timeout=float(options.meter_timeout),
        meter=options.meter_topic is not None,
        tuning=tuning or Tuning(),
    )


class ControllerService:
    """One controller, its meter input, its actuations and its chart (see the module docs)."""

    def __init__(
        self,
        options: ControllerOptions,
        actuators: Actuators,
        emit: Emit,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        tick: float = TICK,
        tuning: Tuning | None = None,
    ) -> None:
        self.options = options
        self._actuators = actuators
        self._emit = emit
        self._clock = clock
        self._wall = wall
        self._tick = tick
        self.law = PowerController(config_from(options, tuning), now=clock())
        self._path = parse_path(options.meter_json_path) if options.meter_json_path else None
        self._lock = asyncio.Lock()
        #: Set by a new reading: run() steps at once.
        self._wake = asyncio.Event()
        self._state = self.law.state
        self._stopped = False
        #: (wall time, grid, battery, PV, target) once a second: the web UI's chart.
        self.history: deque[tuple[float, float | None, float, float, float]] = deque(maxlen=HISTORY)
        self._sampled_at = -float("inf")
        #: Where a mode switched at run time is kept (None: not kept).
        self._mode_file: Path | None = None
        #: When the battery's own grid reading last taken came (no meter topic).
        self._grid_at: float | None = None
        self.readings = 0

    def __repr__(self) -> str:
        return f"ControllerService({self.law!r})"

    @property
    def meter_topic(self) -> str | None:
        return self.options.meter_topic

    # --- input ---------------------------------------------------------------------------

    async def on_meter(self, payload: bytes, *, retained: bool = False) -> None:
        """A message on the meter topic; a bad one is logged at debug and changes nothing."""
        if retained:
            _LOGGER.debug("Meter: a retained reading is old news; ignored")
            return
        try:
            value = read_meter(
                payload,
                self._path,
                sign=self.options.meter_sign,
                unit=self.options.meter_unit,
            )
        except MeterPayloadError as err:
            self.law.ignored_readings += 1
            _LOGGER.debug("Meter: reading ignored: %s", err)
            return
        why = self.law.meter(value.watts, self._clock(), value.stamp)
        if why is not None:
            _LOGGER.debug("Meter: reading %.0f W ignored: %s", value.watts, why)
            return
        self.readings += 1
        # The loop acts on it (run()): the MQTT adapter's message handler never
        # waits for a DTU command.
        self._wake.set()

    async def execute(self, command: Command) -> CommandOutcome:
        """The registry's ``controller_mode`` command (Fleet.submit hands it over)."""
        if command.name != "controller_mode":
            return CommandOutcome("refused", f"unknown command {command.name!r}")
        return await self.set_mode(command.text)

    def _battery_meter(self) -> None:
        """Without a meter topic, a battery's own ``sys_grid_p`` is the meter."""
        if self.options.meter_topic is not None:
            return
        reading = self._actuators.grid()
        if reading is None or reading[1] == self._grid_at:
            return
        watts, at = reading
        self._grid_at = at
        if self.options.meter_sign == "export_positive":
            watts = -watts
        why = self.law.meter(watts, at)
        if why is None:
            self.readings += 1
        else:
            _LOGGER.debug("Battery meter: reading %.0f W ignored: %s", watts, why)

    async def set_mode(self, text: str) -> CommandOutcome:
        """Switch the mode (``off``, ``monitor``, ``zero_export``, ``feed_in_cap``)."""
        try:
            mode = parse_mode(text)
        except InvalidArgumentError as err:
            return CommandOutcome("refused", str(err))
        if mode is Mode.FEED_IN_CAP and self.law.config.max_feed_in is None:
            return CommandOutcome("refused", "feed_in_cap needs the option controller.max_feed_in")
        async with self._lock:  # switches from several sources are kept and told in order
            before = self.law.mode
            actions = self.law.set_mode(mode, self._clock())
            await self._carry_all(actions)
            if mode is not before:
                _LOGGER.info("Power controller: mode %s", mode.value)
                if self._mode_file is not None:
                    await asyncio.to_thread(self._keep_mode, self._mode_file, mode)
                await self._emit(
                    ControllerChanged(mode.value, self.law.state, f"controller mode {mode.value}")
                )
        return CommandOutcome("ok")

    def keep_mode_in(self, directory: Path) -> None:
        """Keep a mode switched at run time in ``directory`` (call before :meth:`run`).

        The kept mode is taken now when the ``controller.mode`` option is still
        the one it was switched from. A changed option wins, and the kept mode
        is forgotten. A file that cannot be read or written is no error.
        """
        path = directory / MODE_FILE_NAME
        self._mode_file = path
        try:
            with path.open(encoding="utf-8") as handle:
                kept = json.loads(handle.read(_MODE_FILE_MAX))
        except FileNotFoundError:
            return
        except (OSError, ValueError) as err:
            _LOGGER.warning("Power controller: the kept mode in %s is unreadable: %s", path, err)
            return
        option = kept.get("option") if isinstance(kept, dict) else None
        name = kept.get("mode") if isinstance(kept, dict) else None
        if option != self.options.mode or not isinstance(name, str):
            with contextlib.suppress(OSError):
                path.unlink()
            return
        try:
            mode = parse_mode(name)
        except InvalidArgumentError as err:
            _LOGGER.warning("Power controller: the kept mode is ignored: %s", err)
            return
        if mode is Mode.FEED_IN_CAP and self.law.config.max_feed_in is None:
            return
        if mode is not self.law.mode:
            self.law.set_mode(mode, self._clock())  # nothing was sent yet: nothing to release
            _LOGGER.info(
                "Power controller: mode %s, as switched before the restart "
                "(the option controller.mode says %s)",
                mode.value,
                self.options.mode,
            )

    def _keep_mode(self, path: Path, mode: Mode) -> None:
        """Write (or, back at the option's mode, remove) the kept mode.

        When that fails, the file is removed, so that a restart starts in the
        option's mode rather than in one kept earlier.
        """
        part = path.with_name(path.name + ".part")
        try:
            if mode.value == self.options.mode:
                path.unlink(missing_ok=True)
                return
            path.parent.mkdir(parents=True, exist_ok=True)
            part.write_text(
                json.dumps({"mode": mode.value, "option": self.options.mode}), encoding="utf-8"
            )
            part.replace(path)
        except OSError as err:
            for leftover in (part, path):
                with contextlib.suppress(OSError):
                    leftover.unlink(missing_ok=True)
            start = "the mode kept earlier" if path.exists() else self.options.mode
            _LOGGER.warning(
                "Power controller: cannot keep the mode in %s (%s); a restart starts in %s",
                path,
                err.strerror or err,
                start,
            )

    # --- running -------------------------------------------------------------------------

    async def run(self) -> None:
        """Act on each new reading, and look every ``tick`` seconds (safety, the slow
        loop), until cancelled."""
        while not self._stopped:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._tick):
                    await self._wake.wait()
            self._wake.clear()
            await self.step()

    async def step(self) -> None:
        """One look at the meter and the devices; carry out what the law wants."""
        if self._stopped:
            return
        async with self._lock:
            now = self._clock()
            self._battery_meter()
            actions = self.law.step(
                now, self._actuators.batteries(now), self._actuators.inverters()
            )
            self._sample(now)
            if self.law.mode.active:
                await self._carry_all(actions)
        state = self.law.state
        if state != self._state:
            self._state = state
            level = "warning" if state == "meter missing" else "info"
            await self._emit(
                ControllerChanged(self.law.mode.value, state, f"controller {state}", level)
            )

    async def stop(self) -> None:
        """The bridge stops: release everything the controller changed, then look no more."""
        if self._stopped:
            return
        self._stopped = True
        self._wake.set()
        async with self._lock:
            await self._carry_all(self.law.release("bridge stopped", self._clock()))

    async def _carry_all(self, actions: list[Actuation]) -> None:
        for action in actions:
            await self._carry(action)

    async def _carry(self, action: Actuation) -> None:
        outcome = await self._actuators.carry(action)
        if outcome is None:
            outcome = CommandOutcome("refused", "ignored")
        if outcome.status not in {"ok", "pending"}:
            now = self._clock()
            if action.kind is Kind.LIMIT:
                self.law.inverter_failed(action.device)
            else:
                self.law.unit_failed(action.device, outcome.text, now)
            _LOGGER.info("Power controller: %s: %s", action.describe(), outcome.text)
        await self._emit(ControllerActed(action, outcome))

    # --- showing it ----------------------------------------------------------------------

    def _sample(self, now: float) -> None:
        if now - self._sampled_at < 1.0:
            return
        self._sampled_at = now
        reading = self.law.reading
        grid = reading.watts if reading is not None and self.law.meter_fresh(now) else None
        pv = sum(i.ac_power for i in self._actuators.inverters())
        battery = sum(b.power or 0.0 for b in self._actuators.batteries(now))
        self.history.append(
            (
                round(self._wall(), 1),
                grid,
                round(battery, 1),
                round(pv, 1),
                self.law.config.grid_setpoint,
            )
        )

    def status(self, *, history: bool = False) -> dict[str, Any]:
        """The controller card's data: the law's status, the meter topic (and the chart)."""
        status = self.law.status(self._clock())
        status["meter_topic"] = self.options.meter_topic
        status["readings"] = self.readings
        status["running"] = not self._stopped
        if history:
            status["history"] = [list(sample) for sample in self.history]
        return status


__all__ = [
    "HISTORY",
    "MODE_FILE_NAME",
    "TICK",
    "Actuators",
    "BatteryLike",
    "ControllerService",
    "FleetActuators",
    "SubmitsCommands",
    "battery_grid",
    "battery_units",
    "config_from",
    "inverter_units",
    "request_for",
]
