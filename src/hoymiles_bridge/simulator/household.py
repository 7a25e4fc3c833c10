"""A simulated household for the power controller: load, PV, batteries, inverters, a meter.

Everything here is physics in virtual time; nothing talks to a network. A
:class:`Household` is advanced with :meth:`Household.advance` and holds:

* a :class:`LoadProfile`: a base load with noise, a fridge's cycles, kettle
  and oven steps at set times (or the steps a test adds);
* PV: a clear-day bell with passing clouds (:class:`PvProfile`), shared by
  :class:`SimInverter` s that each feed in at most their limit, and follow a
  new limit only after the DTU's delay;
* :class:`SimBattery` s that follow a setpoint (``mqtt_ctrl``; + discharge,
  - charge) with a first-order response, forget it after 60-90 s without a
  repeat (the firmware's keep-alive rule) and then run their own
  self-consumption mode (``general``): a slower step response to the meter;
* a :class:`Meter` that reports the grid power (import positive) every
  ``interval`` s, ``delay`` s late with ``jitter``.

The grid power is load - PV - battery power. The module imports nothing from
the bridge but errors, so it cannot share a bug with the controller.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Final

from hoymiles_bridge.errors import InvalidArgumentError

#: The firmware forgets a setpoint not repeated within this window (msa2.md 1.5: 60-90 s).
FORGET_MIN: Final = 60.0
FORGET_MAX: Final = 90.0
DAY: Final = 86_400.0


@dataclass
class Step:
    """An appliance: ``watts`` from ``start`` for ``duration`` s (seconds of the day)."""

    start: float
    duration: float
    watts: float

    def at(self, t: float) -> float:
        return self.watts if self.start <= t % DAY < self.start + self.duration else 0.0


def _default_steps() -> list[Step]:
    hour = 3600.0
    return [
        Step(6.9 * hour, 180, 2000),  # kettle, breakfast
        Step(7.5 * hour, 1500, 800),  # coffee machine and toaster
        Step(10.0 * hour, 5400, 2000),  # washing machine heating
        Step(12.2 * hour, 2700, 2500),  # oven
        Step(13.0 * hour, 240, 2000),  # kettle
        Step(15.5 * hour, 3600, 1200),  # dishwasher
        Step(16.2 * hour, 180, 2000),  # kettle
        Step(18.5 * hour, 3000, 2500),  # oven
        Step(19.6 * hour, 2400, 1800),  # induction hob
        Step(21.0 * hour, 7200, 300),  # television and lights
    ]


@dataclass
class LoadProfile:
    """The house's consumption, W: base load, noise, a fridge, appliance steps."""

    base: float = 180.0
    noise: float = 15.0
    fridge: float = 90.0
    steps: list[Step] = field(default_factory=_default_steps)
    seed: int = 1

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def at(self, t: float) -> float:
        day = t % DAY
        fridge = self.fridge if (day % 3600) < 1200 else 0.0
        evening = 150.0 if 17 * 3600 <= day < 23 * 3600 else 0.0
        steps = sum(step.at(day) for step in self.steps)
        return max(0.0, self.base + fridge + evening + steps + self._rng.gauss(0, self.noise))


@dataclass
class PvProfile:
    """PV power available to the inverters, W: a clear-day bell with passing clouds."""

    peak: float = 1800.0
    sunrise: float = 6.0 * 3600
    sunset: float = 20.5 * 3600
    clouds: bool = True
    seed: int = 2

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        #: Cloud shadows: (start, duration, depth), fixed per seed.
        self._shadows = [
            (rng.uniform(self.sunrise, self.sunset), rng.uniform(60, 900), rng.uniform(0.3, 0.8))
            for _ in range(25 if self.clouds else 0)
        ]

    def at(self, t: float) -> float:
        day = t % DAY
        if not self.sunrise < day < self.sunset:
            return 0.0
        phase = (day - self.sunrise) / (self.sunset - self.sunrise)
        power: float = self.peak * math.sin(math.pi * phase) ** 1.5
        for start, duration, depth in self._shadows:
            if start <= day < start + duration:
                power *= 1 - depth
        return power


@dataclass
class SimInverter:
    """A micro-inverter: its share of the PV, capped by its (non-persistent) limit.

    A new limit takes effect ``delay`` s after it was sent (the DTU's answer
    and the inverter's ramp); ``limit`` is what the inverter applies.
    """

    serial: str
    rated: float
    share: float
    delay: float = 8.0
    limit: float | None = None
    power: float = 0.0
    limits_taken: int = 0
    _pending: deque[tuple[float, float]] = field(default_factory=deque)

    def set_limit(self, watts: float, now: float) -> None:
        if not 0 <= watts <= self.rated * 1.5:
            raise InvalidArgumentError(f"limit {watts:g} W is out of range")
        self._pending.append((now + self.delay, watts))
        self.limits_taken += 1

    def advance(self, now: float, pv: float) -> None:
        while self._pending and self._pending[0][0] <= now:
            self.limit = self._pending.popleft()[1]
        ceiling = self.rated if self.limit is None else min(self.rated, self.limit)
        self.power = max(0.0, min(pv * self.share, ceiling))


@dataclass
class SimBattery:
    """An MS-A2-like battery: a setpoint it follows, forgets, and its own mode.

    ``tau`` is its time constant following a setpoint; in ``general`` mode it
    regulates to its own view of the meter every ``own_interval`` s with
    ``own_tau`` (the slower self-consumption mode of the benchmark's baseline).
    ``standby`` holds 0 W (the benchmark's "no control" baseline).
    ``responsive`` False makes it ignore commands (a unit gone silent); it
    then also stops reporting (``reporting``).
    """

    dev_id: str
    capacity: float = 2240.0  # Wh
    soc: float = 50.0
    charge_max: float = 1000.0
    discharge_max: float = 1000.0
    tau: float = 2.0
    own_interval: float = 5.0
    own_tau: float = 8.0
    efficiency: float = 0.95
    soc_floor: float = 10.0
    soc_ceiling: float = 100.0
    mode: str = "general"
    setpoint: float = 0.0
    power: float = 0.0
    responsive: bool = True
    seed: int = 3
    last_setpoint_at: float = -math.inf
    commands: int = 0
    _own_target: float = 0.0
    _own_at: float = -math.inf
    _forget_after: float = FORGET_MIN

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._forget_after = self._rng.uniform(FORGET_MIN, FORGET_MAX)

    @property
    def reporting(self) -> bool:
        return self.responsive

    def command_setpoint(self, watts: float, now: float) -> None:
        """``power_ctrl/set``: works in ``mqtt_ctrl`` only (the controller selects it first)."""
        if not self.responsive:
            return
        self.commands += 1
        if self.mode != "mqtt_ctrl":
            return
        self.setpoint = max(-self.charge_max, min(self.discharge_max, watts))
        self.last_setpoint_at = now
        self._forget_after = self._rng.uniform(FORGET_MIN, FORGET_MAX)

    def command_mode(self, mode: str, now: float) -> None:
        if not self.responsive:
            return
        self.commands += 1
        self.mode = mode
        if mode == "mqtt_ctrl":
            self.last_setpoint_at = now

    def _allowed(self, watts: float) -> float:
        if watts > 0 and self.soc <= self.soc_floor:
            return 0.0
        if watts < 0 and self.soc >= self.soc_ceiling:
            return 0.0
        return watts

    def advance(self, now: float, dt: float, grid_seen: float) -> None:
        """Move on ``dt`` s; ``grid_seen`` is the meter the battery itself reads (general)."""
        if self.mode == "mqtt_ctrl" and now - self.last_setpoint_at > self._forget_after:
            self.mode = "general"  # the keep-alive ran out
        if self.mode == "mqtt_ctrl":
            want, tau = self.setpoint, self.tau
        elif self.mode == "standby":  # the "no control" baseline: the battery idles
            want, tau = 0.0, self.tau
        else:
            if now - self._own_at >= self.own_interval:
                self._own_at = now
                self._own_target = max(
                    -self.charge_max, min(self.discharge_max, self.power + grid_seen)
                )
            want, tau = self._own_target, self.own_tau
        want = self._allowed(want)
        self.power += (want - self.power) * (1 - math.exp(-dt / tau))
        self.power = self._allowed(self.power)
        energy = self.power * dt / 3600  # Wh out of (+) or into (-) the house
        if energy > 0:
            self.soc -= energy / self.efficiency / self.capacity * 100
        else:
            self.soc -= energy * self.efficiency / self.capacity * 100
        self.soc = max(0.0, min(100.0, self.soc))


@dataclass
class Meter:
    """A grid meter: the grid power every ``interval`` s, ``delay`` s late, with jitter."""

    interval: float = 1.0
    delay: float = 0.3
    jitter: float = 0.2
    noise: float = 3.0
    seed: int = 4
    silent: bool = False
    _next: float = 0.0
    _queue: deque[tuple[float, float, float]] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def sample(self, now: float, grid: float) -> None:
        if now + 1e-9 < self._next:
            return
        self._next = now + self.interval
        if self.silent:
            return
        late = self.delay + self._rng.uniform(0, self.jitter)
        self._queue.append((now + late, grid + self._rng.gauss(0, self.noise), now))

    def due(self, now: float) -> list[tuple[float, float]]:
        """The readings delivered by ``now``: ``(W, measured at)``."""
        out = []
        while self._queue and self._queue[0][0] <= now:
            _, watts, measured = self._queue.popleft()
            out.append((watts, measured))
        return out


@dataclass
class Totals:
    """What the household's grid connection saw, and how well a target was held."""

    imported: float = 0.0  # Wh
    exported: float = 0.0  # Wh
    pv_available: float = 0.0  # Wh the panels offered
    pv_fed: float = 0.0  # Wh the inverters fed in
    seconds: float = 0.0
    within: float = 0.0  # seconds within the band
    band: float = 30.0


@dataclass
class Household:
    """Load, PV, inverters, batteries and a meter in one place (see the module docs)."""

    load: LoadProfile = field(default_factory=LoadProfile)
    pv: PvProfile = field(default_factory=PvProfile)
    inverters: list[SimInverter] = field(default_factory=list)
    batteries: list[SimBattery] = field(default_factory=list)
    meter: Meter = field(default_factory=Meter)
    now: float = 0.0
    grid: float = 0.0
    totals: Totals = field(default_factory=Totals)
    #: Extra load a test switches on and off, W.
    extra: float = 0.0

    @classmethod
    def balcony(cls, *, start: float = 0.0, batteries: int = 1, seed: int = 1) -> Household:
        """Two 800 W inverters on 1.8 kWp and ``batteries`` MS-A2 units."""
        house = cls(
            load=LoadProfile(seed=seed),
            pv=PvProfile(seed=seed + 1),
            inverters=[
                SimInverter("116180000001", 800.0, 0.5),
                SimInverter("116180000002", 800.0, 0.5),
            ],
            batteries=[
                SimBattery(f"MSA-28002437056{n}", soc=60.0 - 15 * n, seed=seed + 10 + n)
                for n in range(batteries)
            ],
            meter=Meter(seed=seed + 3),
            now=start,
        )
        house.meter._next = start
        return house

    @property
    def pv_power(self) -> float:
        return sum(inverter.power for inverter in self.inverters)

    @property
    def battery_power(self) -> float:
        return sum(b.power for b in self.batteries)

    def load_at(self) -> float:
        return self.load.at(self.now) + self.extra

    def advance(self, dt: float, target: float = 0.0) -> list[tuple[float, float]]:
        """Move on ``dt`` s; the meter readings delivered meanwhile, ``(W, measured at)``."""
        now = self.now + dt
        pv = self.pv.at(now)
        for inverter in self.inverters:
            inverter.advance(now, pv)
        for battery in self.batteries:
            battery.advance(now, dt, self.grid)
        self.now = now
        self.grid = self.load_at() - self.pv_power - self.battery_power
        totals = self.totals
        energy = self.grid * dt / 3600
        if energy > 0:
            totals.imported += energy
        else:
            totals.exported -= energy
        totals.seconds += dt
        offered = sum(min(pv * i.share, i.rated) for i in self.inverters)
        totals.pv_available += offered * dt / 3600
        totals.pv_fed += self.pv_power * dt / 3600
        if abs(self.grid - target) <= totals.band:
            totals.within += dt
        self.meter.sample(now, self.grid)
        return self.meter.due(now)


__all__ = [
    "DAY",
    "FORGET_MAX",
    "FORGET_MIN",
    "Household",
    "LoadProfile",
    "Meter",
    "PvProfile",
    "SimBattery",
    "SimInverter",
    "Step",
    "Totals",
]
