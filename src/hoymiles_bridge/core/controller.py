"""The power controller's law: zero export and feed-in caps, without I/O.

:class:`PowerController` is fed grid-meter readings (:meth:`~PowerController.meter`)
and what the bridge knows about its batteries and inverters (:class:`BatteryUnit`,
:class:`InverterUnit`), and answers with :class:`Actuation` s: a battery
setpoint, a battery's EMS mode or an inverter's non-persistent limit, each with
its reason. It never sends anything itself and reads time only from the
``now`` it is given, so tests drive it in virtual time;
:mod:`hoymiles_bridge.core.controller_service` carries its actuations out
through the command registry.

Sign conventions: the grid power is **import positive** (W drawn from the
grid), a battery setpoint is **+ discharge / - charge** (the MS-A2's own), an
inverter limit is the AC power in W it may feed in.

The two loops:

* **fast** (every new meter reading): a PI controller in position form drives
  the total battery power ``u`` so the grid power meets the grid setpoint
  ``target + import_bias``. The error inside ``deadband`` counts as zero;
  ``u`` is clamped to what the usable units can charge and discharge, and the
  integrator is recomputed from the clamped output (anti-windup by back
  calculation); ``u`` moves at most ``slew`` W/s. ``u`` is split across the
  units by the charge they have left to give or take (:func:`split_battery`).
* **slow** (every ``inverter_interval`` s): the inverters' non-persistent
  limits. ``feed_in_cap`` keeps their total AC power at or under
  ``max_feed_in``; ``zero_export`` also throttles them when the grid exports
  more than wanted and the batteries cannot take more (full, at their charge
  limit, or none). The total is split by :func:`split_limit`.

Safety: readings older than ``meter_timeout`` make the meter missing: the
batteries get 0 W at once and their own ``general`` mode after
``release_after`` s more; the inverter limits stay as they are. Leaving an
active mode (``off``, ``monitor``, the bridge stopping) releases everything:
batteries to 0 W and ``general``, inverters back to the limit they had before
the controller's first change. At most ``battery_per_minute`` battery and
``inverter_per_minute`` inverter actuations go out per minute.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from hoymiles_bridge.errors import InvalidArgumentError

#: The controller's modes; ``monitor`` is the default.
MODES: Final = ("off", "monitor", "zero_export", "feed_in_cap")
#: A reading this far from the last one (W) is implausible and ignored.
MAX_JUMP: Final = 20_000.0
#: The ``origin`` of the registry requests the controller sends (no MQTT topic).
CONTROLLER_ORIGIN: Final = "controller"
#: The inverter's lowest limit, in % of its rated power (protocol/actions.py's floor).
LIMIT_FLOOR_PERCENT: Final = 2.0


class Mode(enum.Enum):
    OFF = "off"
    MONITOR = "monitor"
    ZERO_EXPORT = "zero_export"
    FEED_IN_CAP = "feed_in_cap"

    @property
    def active(self) -> bool:
        """Whether the mode sends anything."""
        return self in (Mode.ZERO_EXPORT, Mode.FEED_IN_CAP)


class Kind(enum.Enum):
    """What an :class:`Actuation` changes."""

    SETPOINT = "setpoint"  # a battery's power setpoint, W (+ discharge / - charge)
    EMS_MODE = "ems_mode"  # a battery's EMS mode (``general`` on release)
    LIMIT = "limit"  # an inverter's non-persistent limit, W


@dataclass(frozen=True, slots=True)
class Tuning:
    """The control law's parameters (DOCS.md, "Power controller", lists them).

    The defaults were tuned against the simulated household
    (:mod:`hoymiles_bridge.simulator.household`) with a 1 s meter and a battery
    that follows its setpoint with a 2 s time constant.
    """

    #: Proportional gain, W of battery power per W of grid error.
    kp: float = 0.7
    #: Integral gain, per second.
    ki: float = 0.45
    #: Grid errors within this many W count as zero (no actuation for noise).
    deadband: float = 20.0
    #: The total battery power moves at most this many W per second.
    slew: float = 3000.0
    #: A unit's setpoint is sent again only when it moved this many W (the
    #: battery's keep-alive holds it otherwise).
    min_step: float = 20.0
    #: Battery actuations (setpoints and modes) per minute, over all units.
    battery_per_minute: int = 90
    #: Inverter limit changes per minute, over all inverters.
    inverter_per_minute: int = 6
    #: The batteries count as full (the inverters may be throttled) once the
    #: output has sat at their charge limit this long, s (not for a transient).
    full_after: float = 10.0
    #: Seconds between two looks at the inverter limits (and per inverter at least).
    inverter_interval: float = 30.0
    #: A limit is changed only when it moves this many W (or 2 % of the rated power).
    limit_hysteresis: float = 20.0
    #: Seconds without a meter reading after ``meter_timeout`` before ``general``.
    release_after: float = 60.0
    #: A battery whose telemetry is older than this (s) leaves the split.
    unit_timeout: float = 20.0
    #: Seconds a battery that refused or failed a command stays out of the split.
    unit_cooldown: float = 60.0
    #: No discharging at or under this SOC (%).
    soc_floor: float = 10.0
    #: No charging at or above this SOC (%).
    soc_ceiling: float = 100.0
    #: Within this many % of the floor or ceiling a unit's share tapers off.
    soc_taper: float = 10.0
    #: The longest step of the integrator, s (a meter that paused).
    max_dt: float = 5.0


@dataclass(frozen=True, slots=True)
class ControllerConfig:
    """The ``controller`` options as the law needs them (W, s)."""

    mode: Mode = Mode.MONITOR
    target: float = 0.0
    import_bias: float = 0.0
    max_feed_in: float | None = None
    meter_timeout: float = 10.0
    #: A meter topic is set. Without one, readings may still come (a battery's
    #: ``sys_grid_p``), and the feed-in cap runs on the inverters' own power.
    meter: bool = True
    tuning: Tuning = field(default_factory=Tuning)

    @property
    def grid_setpoint(self) -> float:
        """The grid power the fast loop aims at, W (import positive)."""
        return self.target + self.import_bias


@dataclass(frozen=True, slots=True)
class BatteryUnit:
    """One battery (or battery system, through its master) the fast loop may drive."""

    id: str
    #: State of charge, % (None: not known yet; the unit is not used).
    soc: float | None
    #: The most it charges / discharges, W (both positive).
    charge_max: float
    discharge_max: float
    #: The power it reports, W (+ discharge), if it does.
    power: float | None = None
    #: When its telemetry last arrived (the controller's clock), None: never.
    seen_at: float | None = None
    available: bool = True


@dataclass(frozen=True, slots=True)
class InverterUnit:
    """One inverter the slow loop may limit (non-persistent limits only)."""

    serial: str
    rated_power: float
    #: Its AC power now, W.
    ac_power: float
    #: Whether it takes non-persistent limits (firmware) and its DTU is reachable.
    controllable: bool
    #: The limit it applies now, W (None: not known).
    limit: float | None = None


@dataclass(frozen=True, slots=True)
class Actuation:
    """One change the controller wants: what, on which device, the value and why."""

    kind: Kind
    device: str
    value: float | str
    reason: str
    #: Part of a release: neither the rate limits nor the registry's limit pacing
    #: may hold it back (a stop must not leave a limit behind).
    release: bool = False

    def describe(self) -> str:
        if self.kind is Kind.SETPOINT:
            assert isinstance(self.value, float)
            return f"battery {self.device} setpoint {self.value:+.0f} W: {self.reason}"
        if self.kind is Kind.EMS_MODE:
            return f"battery {self.device} EMS mode {self.value}: {self.reason}"
        assert isinstance(self.value, float)
        return f"inverter {self.device} limit {self.value:.0f} W: {self.reason}"


@dataclass(frozen=True, slots=True)
class Reading:
    """A grid-meter reading: W (import positive), when it arrived, its own timestamp."""

    watts: float
    at: float
    stamp: float | None = None


class _RateLimit:
    """At most ``per_minute`` events in any 60 s window."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._times: deque[float] = deque()

    def allows(self, now: float, count: int = 1) -> bool:
        while self._times and now - self._times[0] >= 60.0:
            self._times.popleft()
        return len(self._times) + count <= self.per_minute

    def take(self, now: float, count: int = 1) -> None:
        self._times.extend([now] * count)

    def used(self, now: float) -> int:
        self.allows(now, 0)
        return len(self._times)


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def _soc_weight(distance: float, taper: float) -> float:
    """A unit's weight from its SOC distance (%) to the floor or ceiling: 0..1."""
    if distance <= 0:
        return 0.0
    if taper <= 0:
        return 1.0
    return min(1.0, distance / taper) * (0.5 + 0.5 * min(1.0, distance / 100.0))


def unit_limits(unit: BatteryUnit, tuning: Tuning) -> tuple[float, float]:
    """``(most charge, most discharge)`` of a unit now, W (both >= 0), by its SOC."""
    soc = unit.soc
    if soc is None:
        return 0.0, 0.0
    charge = unit.charge_max if soc < tuning.soc_ceiling else 0.0
    discharge = unit.discharge_max if soc > tuning.soc_floor else 0.0
    return max(0.0, charge), max(0.0, discharge)


def split_battery(total: float, units: Sequence[BatteryUnit], tuning: Tuning) -> dict[str, float]:
    """``total`` W (+ discharge) over ``units``, by their SOC and limits.

    Discharging, a unit's weight grows with its charge above the floor;
    charging, with its room under the ceiling. No unit gets more than its
    limit; what one cannot take goes to the others (water filling). A unit at
    its floor gets no discharge, one at its ceiling no charge.
    """
    shares = {unit.id: 0.0 for unit in units}
    if not units or abs(total) < 1e-9:
        return shares
    discharging = total > 0
    caps: dict[str, float] = {}
    weights: dict[str, float] = {}
    for unit in units:
        charge, discharge = unit_limits(unit, tuning)
        soc = unit.soc if unit.soc is not None else 0.0
        if discharging:
            caps[unit.id] = discharge
            distance = soc - tuning.soc_floor
        else:
            caps[unit.id] = charge
            distance = tuning.soc_ceiling - soc
        weights[unit.id] = _soc_weight(distance, tuning.soc_taper) * caps[unit.id]
    left = abs(total)
    open_units = {uid for uid, cap in caps.items() if cap > 0 and weights[uid] > 0}
    while left > 1e-6 and open_units:
        weight = sum(weights[uid] for uid in open_units)
        full = set()
        given = 0.0
        for uid in open_units:
            want = left * weights[uid] / weight
            room = caps[uid] - shares[uid]
            take = min(want, room)
            shares[uid] += take
            given += take
            if room - take <= 1e-6:
                full.add(uid)
        left -= given
        if not full:
            break
        open_units -= full
    sign = 1.0 if discharging else -1.0
    return {uid: round(sign * watts, 1) for uid, watts in shares.items()}


def split_limit(total: float, inverters: Sequence[InverterUnit]) -> dict[str, float]:
    """``total`` W of limits over ``inverters``, by their rated power.

    An inverter producing well under its current limit (shade, a weaker
    string) is given its production plus a margin, and the rest goes to the
    others; no inverter gets more than its rated power or less than its 2 %
    floor.
    """
    limits: dict[str, float] = {}
    if not inverters:
        return limits
    floors = {i.serial: i.rated_power * LIMIT_FLOOR_PERCENT / 100 for i in inverters}
    caps: dict[str, float] = {}
    for inverter in inverters:
        cap = inverter.rated_power
        limited = inverter.limit is not None and inverter.ac_power >= inverter.limit * 0.9
        if not limited:
            # It makes what its panels give: room for that and a margin to grow.
            cap = min(cap, max(inverter.ac_power * 1.2 + 0.05 * inverter.rated_power, 0.0))
        caps[inverter.serial] = max(cap, floors[inverter.serial])
    left = max(total, sum(floors.values()))
    shares = dict.fromkeys(caps, 0.0)
    open_units = set(caps)
    while left > 1e-6 and open_units:
        rated = sum(i.rated_power for i in inverters if i.serial in open_units) or 1.0
        full = set()
        given = 0.0
        for inverter in inverters:
            if inverter.serial not in open_units:
                continue
            want = left * inverter.rated_power / rated
            room = caps[inverter.serial] - shares[inverter.serial]
            take = min(want, room)
            shares[inverter.serial] += take
            given += take
            if room - take <= 1e-6:
                full.add(inverter.serial)
        left -= given
        if not full:
            break
        open_units -= full
    if left > 1e-6:
        # Everyone is at the cap of what they make: give the rest by rated power.
        for inverter in inverters:
            room = inverter.rated_power - shares[inverter.serial]
            take = min(room, left)
            shares[inverter.serial] += take
            left -= take
    for inverter in inverters:
        limits[inverter.serial] = round(
            _clamp(shares[inverter.serial], floors[inverter.serial], inverter.rated_power)
        )
    return limits


@dataclass
class _UnitMemo:
    """What the controller sent a battery, and whether it is out of the split."""

    sent: float | None = None
    sent_at: float | None = None
    excluded_until: float = -math.inf
    why_excluded: str = ""


@dataclass
class _InverterMemo:
    sent: float | None = None
    sent_at: float = -math.inf
    #: The limit before the controller's first change (restored on release), W.
    original: float | None = None


class PowerController:
    """The control law (see the module docs). Not thread-safe; one per bridge."""

    def __init__(self, config: ControllerConfig, *, now: float = 0.0) -> None:
        self.config = config
        self.tuning = config.tuning
        self._mode = config.mode
        self._reading: Reading | None = None
        self._used_at: float | None = None
        self._previous: Reading | None = None
        self._integral = 0.0
        self._output = 0.0
        #: The most the usable batteries charge now (W, <= 0): at it, they are "full".
        self._low = 0.0
        #: Since when the output sits at ``_low`` (the batteries take no more).
        self._full_since: float | None = None
        self._primed = False
        self._meter_lost_at: float | None = None
        self._released_general = False
        self._units: dict[str, _UnitMemo] = {}
        self._inverters: dict[str, _InverterMemo] = {}
        self._inverter_total: float | None = None
        self._inverter_at = -math.inf
        self._battery_rate = _RateLimit(self.tuning.battery_per_minute)
        self._inverter_rate = _RateLimit(self.tuning.inverter_per_minute)
        self.started_at = now
        #: The last actuations computed (also in monitor: what it would do).
        self.last: list[Actuation] = []
        #: Counters for the status.
        self.actuations = 0
        self.ignored_readings = 0
        self.rate_limited = 0
        self.last_error: float | None = None
        self.state = "idle"

    def __repr__(self) -> str:
        return f"PowerController(mode={self._mode.value}, state={self.state})"

    # --- the meter ---------------------------------------------------------------------

    def meter(self, watts: float, at: float, stamp: float | None = None) -> str | None:
        """Take a reading (W, import positive); None if taken, else why it was ignored.

        Ignored: a value that is not finite, one that jumps more than
        :data:`MAX_JUMP` from the last one, and one whose own timestamp
        ``stamp`` is older than the last reading's (out of order).
        """
        why = self._implausible(watts, stamp)
        if why is not None:
            self.ignored_readings += 1
            return why
        self._reading = Reading(watts, at, stamp)
        return None

    def _implausible(self, watts: float, stamp: float | None) -> str | None:
        if not math.isfinite(watts):
            return "not a finite number"
        last = self._reading
        if last is None:
            return None
        if stamp is not None and last.stamp is not None and stamp < last.stamp:
            return f"out of order (stamp {stamp:g} < {last.stamp:g})"
        if abs(watts - last.watts) > MAX_JUMP:
            return f"jumps {watts - last.watts:+.0f} W from the last reading"
        return None

    @property
    def reading(self) -> Reading | None:
        return self._reading

    def meter_fresh(self, now: float) -> bool:
        reading = self._reading
        return reading is not None and now - reading.at <= self.config.meter_timeout

    # --- modes -------------------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        return self._mode

    def set_mode(self, mode: Mode, now: float) -> list[Actuation]:
        """Switch modes; leaving an active mode answers the release actuations."""
        if mode is self._mode:
            return []
        was_active = self._mode.active
        self._mode = mode
        self._reset_loop()
        if was_active and not mode.active:
            return self.release(f"mode {mode.value}", now)
        return []

    def _reset_loop(self) -> None:
        self._integral = 0.0
        self._output = 0.0
        self._primed = False
        self._used_at = None
        self._previous = None
        self._inverter_at = -math.inf
        self._full_since = None

    def release(self, why: str, now: float) -> list[Actuation]:
        """Everything back: batteries to 0 W and ``general``, inverters to their old limits.

        Only what the controller changed is released. Release actuations pass
        the rate limits and the registry's limit pacing (a stop must not be held back).
        """
        actions: list[Actuation] = []
        for uid, memo in self._units.items():
            if memo.sent is None:
                continue
            actions.append(Actuation(Kind.SETPOINT, uid, 0.0, f"released ({why})", True))
            actions.append(Actuation(Kind.EMS_MODE, uid, "general", f"released ({why})", True))
            memo.sent = None
        for serial, inverter in self._inverters.items():
            if inverter.sent is None:
                continue
            back = inverter.original
            if back is None:
                continue
            actions.append(Actuation(Kind.LIMIT, serial, float(back), f"released ({why})", True))
            inverter.sent = None
        self._inverter_total = None
        self._reset_loop()
        self.last = actions
        self.actuations += len(actions)
        return actions

    def unit_failed(self, uid: str, why: str, now: float) -> None:
        """A battery refused or did not take a command: out of the split for a while."""
        memo = self._units.setdefault(uid, _UnitMemo())
        memo.excluded_until = now + self.tuning.unit_cooldown
        memo.why_excluded = why
        memo.sent = None

    def inverter_failed(self, serial: str) -> None:
        """A limit was not taken: forget it, so it is tried again at the next look."""
        memo = self._inverters.get(serial)
        if memo is not None:
            memo.sent = None

    # --- the loops ---------------------------------------------------------------------

    def usable(self, batteries: Sequence[BatteryUnit], now: float) -> list[BatteryUnit]:
        """The batteries the fast loop may drive now."""
        timeout = self.tuning.unit_timeout
        ready = []
        for unit in batteries:
            memo = self._units.get(unit.id)
            if memo is not None and now < memo.excluded_until:
                continue
            if not unit.available or unit.soc is None:
                continue
            if unit.seen_at is None or now - unit.seen_at > timeout:
                continue
            ready.append(unit)
        return ready

    def step(
        self, now: float, batteries: Sequence[BatteryUnit], inverters: Sequence[InverterUnit]
    ) -> list[Actuation]:
        """One look: the actuations due now (in ``monitor`` computed, to be shown only)."""
        actions: list[Actuation] = []
        if self._mode is Mode.OFF:
            self.state = "off"
            self.last = []
            return actions
        fresh = self.meter_fresh(now)
        if fresh:
            if self._meter_lost_at is not None:
                self._meter_lost_at = None
                self._released_general = False
                self._reset_loop()
            self.state = "regulating"
            actions += self._fast(now, batteries)
        elif self.config.meter or self._reading is not None:
            actions += self._meter_missing(now)
        else:
            self.state = "no meter"
        if fresh or not self.config.meter:
            # Without a meter topic the feed-in cap still runs, on the inverters' power.
            actions += self._slow(now, inverters, fresh=fresh)
        actions += self._dropped_units(now, batteries)
        if self._mode is Mode.MONITOR:
            self.last = actions or self.last
            return actions
        actions = self._rate_limited(actions, now)
        if actions:
            self.last = actions
            self.actuations += len(actions)
        return actions

    def _dropped_units(self, now: float, batteries: Sequence[BatteryUnit]) -> list[Actuation]:
        """A unit we drove that left the split gets its own mode back (``general``).

        That also ends the bridge's keep-alive of its last setpoint, so a unit
        that comes back does not follow a stale one; the others take its share.
        """
        usable = {u.id for u in self.usable(batteries, now)}
        seen = {u.id: u for u in batteries}
        actions = []
        for uid, memo in self._units.items():
            if memo.sent is None or uid in usable:
                continue
            memo.sent = None
            unit = seen.get(uid)
            if unit is None or unit.seen_at is None:
                why = "gone"
            elif not unit.available:
                why = "unavailable"
            elif unit.soc is None:
                why = "no SOC"
            else:
                why = f"no telemetry for {now - unit.seen_at:.0f} s"
            actions.append(Actuation(Kind.EMS_MODE, uid, "general", f"left the split ({why})"))
        return actions

    def _meter_missing(self, now: float) -> list[Actuation]:
        actions: list[Actuation] = []
        reading = self._reading
        age = "no reading yet" if reading is None else f"silent for {now - reading.at:.0f} s"
        if self._meter_lost_at is None:
            self._meter_lost_at = now
            self._reset_loop()
            for uid, memo in self._units.items():
                if memo.sent is not None and memo.sent != 0.0:
                    actions.append(Actuation(Kind.SETPOINT, uid, 0.0, f"meter missing ({age})"))
                    memo.sent = 0.0
                    memo.sent_at = now
        elif not self._released_general and now - self._meter_lost_at >= self.tuning.release_after:
            self._released_general = True
            for uid, memo in self._units.items():
                if memo.sent is None:
                    continue
                actions.append(
                    Actuation(
                        Kind.EMS_MODE, uid, "general", f"meter missing ({age}): battery's own mode"
                    )
                )
                memo.sent = None
        self.state = "meter missing" if reading is not None else "waiting for meter"
        return actions

    def _fast(self, now: float, batteries: Sequence[BatteryUnit]) -> list[Actuation]:
        reading = self._reading
        if reading is None or reading.at == self._used_at:
            return []
        units = self.usable(batteries, now)
        tuning = self.tuning
        error = reading.watts - self.config.grid_setpoint
        self.last_error = error
        effective = 0.0 if abs(error) <= tuning.deadband else error
        dt = (
            1.0 if self._used_at is None else _clamp(reading.at - self._used_at, 0.0, tuning.max_dt)
        )
        self._used_at = reading.at
        low = -sum(unit_limits(u, tuning)[0] for u in units)
        high = sum(unit_limits(u, tuning)[1] for u in units)
        self._low = low
        if not units:
            self._reset_loop()
            self._used_at = reading.at
            if self._full_since is None:
                self._full_since = now
            return []
        if not self._primed:
            # Bumpless start: from what the batteries do now.
            self._output = _clamp(sum(u.power or 0.0 for u in units), low, high)
            self._integral = self._output
            self._primed = True
        self._integral += tuning.ki * dt * effective
        wanted = tuning.kp * effective + self._integral
        step = tuning.slew * max(dt, 0.1)
        output = _clamp(wanted, self._output - step, self._output + step)
        output = _clamp(output, low, high)
        # Anti-windup: the integrator holds what the clamped output needs.
        self._integral = output - tuning.kp * effective
        self._output = output
        if output > low + tuning.min_step:
            self._full_since = None
        elif self._full_since is None:
            self._full_since = now
        return self._battery_actions(output, units, now, error)

    def _battery_actions(
        self, output: float, units: Sequence[BatteryUnit], now: float, error: float
    ) -> list[Actuation]:
        split = split_battery(output, units, self.tuning)
        actions = []
        setpoint = self.config.grid_setpoint
        reason = f"grid {error + setpoint:+.0f} W, target {setpoint:+.0f} W"
        for uid, watts in split.items():
            memo = self._units.setdefault(uid, _UnitMemo())
            before = memo.sent if memo.sent is not None else 0.0
            small = abs(watts - before) < self.tuning.min_step
            if small and not (watts == 0.0 and memo.sent not in (None, 0.0)):
                continue
            actions.append(Actuation(Kind.SETPOINT, uid, float(watts), reason))
        return actions

    @property
    def battery_output(self) -> float:
        """The total battery power the fast loop asks for now, W (+ discharge)."""
        return self._output

    def _slow(
        self, now: float, inverters: Sequence[InverterUnit], *, fresh: bool
    ) -> list[Actuation]:
        tuning = self.tuning
        if now - self._inverter_at < tuning.inverter_interval:
            return []
        usable = [i for i in inverters if i.controllable and i.rated_power > 0]
        if not usable:
            return []
        self._inverter_at = now
        rated = sum(i.rated_power for i in usable)
        produced = sum(i.ac_power for i in usable)
        cap = self.config.max_feed_in
        total = self._inverter_total
        why = ""
        if self._mode is not Mode.FEED_IN_CAP and fresh and self._reading is not None:
            error = self._reading.watts - self.config.grid_setpoint
            since = self._full_since
            full = since is not None and now - since >= tuning.full_after
            if error < -tuning.deadband - tuning.limit_hysteresis and full:
                total = max(0.0, produced + error)
                why = f"exporting {-self._reading.watts:.0f} W, batteries take no more"
            elif total is not None and (error > tuning.deadband or self._output > tuning.min_step):
                # Importing, or a battery covers what the limited inverters could:
                # PV first, so the limit goes up.
                total = total + max(error, self._output, 0.1 * rated)
                why = f"grid {self._reading.watts:+.0f} W, batteries {self._output:+.0f} W: raised"
        over = cap is not None and (total is not None or produced > cap * 0.9)
        if cap is not None and over and (total is None or total > cap):
            total = cap
            why = why or f"feed-in cap {cap:.0f} W"
        if total is None:
            return []
        if total >= rated and (cap is None or cap >= rated):
            total = rated
            why = why or "no limit needed"
        self._inverter_total = None if total >= rated else total
        return self._limit_actions(total, usable, now, why)

    def _limit_actions(
        self, total: float, inverters: Sequence[InverterUnit], now: float, why: str
    ) -> list[Actuation]:
        actions = []
        for serial, watts in split_limit(total, inverters).items():
            inverter = next(i for i in inverters if i.serial == serial)
            memo = self._inverters.setdefault(serial, _InverterMemo())
            current = memo.sent if memo.sent is not None else inverter.limit
            hysteresis = max(self.tuning.limit_hysteresis, inverter.rated_power * 0.02)
            if current is not None and abs(current - watts) < hysteresis:
                continue
            if memo.sent is None and inverter.limit is not None and watts >= inverter.limit:
                continue  # not limited by us, and no tighter than its own limit
            if memo.original is None:
                memo.original = (
                    inverter.limit if inverter.limit is not None else inverter.rated_power
                )
            actions.append(Actuation(Kind.LIMIT, serial, float(watts), why))
        return actions

    def _rate_limited(self, actions: list[Actuation], now: float) -> list[Actuation]:
        """The actuations the per-minute limits let through; they are remembered as sent."""
        kept = []
        for action in actions:
            released = action.release or action.reason.startswith(
                ("meter missing", "left the split")
            )
            rate = self._inverter_rate if action.kind is Kind.LIMIT else self._battery_rate
            if not released and not rate.allows(now):
                self.rate_limited += 1
                continue
            rate.take(now)
            self._remember(action, now)
            kept.append(action)
        return kept

    def _remember(self, action: Actuation, now: float) -> None:
        if action.kind is Kind.SETPOINT:
            assert isinstance(action.value, float)
            memo = self._units.setdefault(action.device, _UnitMemo())
            memo.sent = action.value
            memo.sent_at = now
        elif action.kind is Kind.LIMIT:
            assert isinstance(action.value, float)
            imemo = self._inverters.setdefault(action.device, _InverterMemo())
            imemo.sent = action.value
            imemo.sent_at = now

    # --- showing it --------------------------------------------------------------------

    def status(self, now: float) -> dict[str, Any]:
        """What the web UI and MQTT show: mode, state, meter, target, the last actuations."""
        reading = self._reading
        return {
            "mode": self._mode.value,
            "state": self.state,
            "target": self.config.grid_setpoint,
            "max_feed_in": self.config.max_feed_in,
            "grid": reading.watts if reading is not None else None,
            "meter_age": round(now - reading.at, 1) if reading is not None else None,
            "battery": round(self._output, 1),
            "setpoints": {uid: m.sent for uid, m in self._units.items() if m.sent is not None},
            "limits": {s: m.sent for s, m in self._inverters.items() if m.sent is not None},
            "last": [a.describe() for a in self.last],
            "actuations": self.actuations,
            "ignored_readings": self.ignored_readings,
            "rate_limited": self.rate_limited,
        }


def parse_mode(text: str) -> Mode:
    """The :class:`Mode` called ``text``; raises :class:`InvalidArgumentError`."""
    try:
        return Mode(text.strip().lower())
    except ValueError:
        raise InvalidArgumentError(
            f"unknown controller mode {text[:32]!r}; one of {', '.join(MODES)}"
        ) from None


__all__ = [
    "CONTROLLER_ORIGIN",
    "LIMIT_FLOOR_PERCENT",
    "MAX_JUMP",
    "MODES",
    "Actuation",
    "BatteryUnit",
    "ControllerConfig",
    "InverterUnit",
    "Kind",
    "Mode",
    "PowerController",
    "Reading",
    "Tuning",
    "parse_mode",
    "split_battery",
    "split_limit",
]
