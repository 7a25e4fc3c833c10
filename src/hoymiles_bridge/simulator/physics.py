"""A deterministic solar day: irradiance, port and grid values, energy counters.

Everything depends only on the simulated time and the inverter serial (which
seeds the clouds), so two runs with the same clock produce the same numbers.
Local time is ``time.localtime`` of the simulated Unix time.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

SUNRISE_HOUR: Final = 6.0
SUNSET_HOUR: Final = 20.0
#: DC -> AC conversion efficiency.
EFFICIENCY: Final = 0.955
#: Panels are a little larger than the inverter input (clipping at noon).
PANEL_OVERSIZE: Final = 1.1
#: Integration step for the energy counters, simulated seconds.
ENERGY_STEP: Final = 60.0
GRID_VOLTAGE: Final = 230.0
GRID_FREQUENCY: Final = 50.0


def local_hours(t: float) -> float:
    """Hours since local midnight (0.0 .. 24.0)."""
    lt = time.localtime(t)
    return lt.tm_hour + lt.tm_min / 60 + (lt.tm_sec + (t % 1)) / 3600


def local_day(t: float) -> tuple[int, int, int]:
    lt = time.localtime(t)
    return lt.tm_year, lt.tm_mon, lt.tm_mday


def local_midnight(t: float) -> float:
    """Unix time of the local midnight that starts the day of ``t``."""
    lt = time.localtime(t)
    return time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, 0, 0, 0, 0, 0, -1))


def next_local_midnight(t: float) -> float:
    lt = time.localtime(t)
    # mktime normalises day 32 etc.; noon avoids DST edge cases before truncating.
    tomorrow = time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday + 1, 12, 0, 0, 0, 0, -1))
    return local_midnight(tomorrow)


def utc_offset(t: float) -> int:
    """Local UTC offset in seconds at ``t``."""
    return time.localtime(t).tm_gmtoff


def is_daylight(t: float) -> bool:
    return SUNRISE_HOUR <= local_hours(t) < SUNSET_HOUR


def sun_elevation(t: float) -> float:
    """0 at night, a sine from sunrise (0) through noon (1) to sunset (0)."""
    hours = local_hours(t)
    if not SUNRISE_HOUR <= hours < SUNSET_HOUR:
        return 0.0
    return math.sin(math.pi * (hours - SUNRISE_HOUR) / (SUNSET_HOUR - SUNRISE_HOUR))


class SolarModel:
    """Irradiance and electrical values of one inverter, seeded by its serial."""

    def __init__(self, serial: int, ports: int, rated_power: int, phases: int = 1) -> None:
        self.serial = serial
        self.ports = ports
        self.rated_power = rated_power
        self.phases = phases
        rng = random.Random(serial)
        # Cloud factor: a sum of slow sines with seeded periods (10 min .. 2 h) and phases.
        self._clouds = [
            (2 * math.pi / rng.uniform(600, 7200), rng.uniform(0, 2 * math.pi), rng.uniform(0.3, 1))
            for _ in range(4)
        ]
        self._cloud_weight = sum(amplitude for _, _, amplitude in self._clouds)
        self._port_factor = [rng.uniform(0.88, 1.0) for _ in range(ports)]
        self._port_capacity = rated_power * PANEL_OVERSIZE / ports

    def cloud_factor(self, t: float) -> float:
        wave = sum(amp * math.sin(omega * t + phase) for omega, phase, amp in self._clouds)
        return min(1.0, max(0.35, 0.8 + 0.25 * wave / self._cloud_weight))

    def irradiance(self, t: float) -> float:
        """0..1 relative irradiance on the panels."""
        elevation = sun_elevation(t)
        if elevation <= 0:
            return 0.0
        return elevation * self.cloud_factor(t)

    def available_dc(self, t: float) -> list[float]:
        """DC power (W) each port could deliver at ``t``, before any limit."""
        irr = self.irradiance(t)
        return [self._port_capacity * irr * factor for factor in self._port_factor]

    def limited(self, dc: list[float], limit_permille: int, on: bool) -> tuple[list[float], float]:
        """Apply on/off and the power limit: (port DC powers, AC power) in W."""
        if not on:
            return [0.0] * len(dc), 0.0
        ac = sum(dc) * EFFICIENCY
        cap = self.rated_power * max(0, min(1000, limit_permille)) / 1000
        if ac > cap:
            scale = cap / ac if ac > 0 else 0.0
            return [p * scale for p in dc], cap
        return list(dc), ac

    def noise(self, t: float) -> random.Random:
        """A generator seeded by serial and whole second: same second, same noise."""
        return random.Random((self.serial << 20) ^ int(t))


@dataclass(slots=True)
class EnergyCounters:
    """Per-port lifetime (``et``) and today's (``ed``) energy in Wh.

    Both integrate the port power over simulated time and only grow; ``ed``
    restarts at 0 at local midnight.
    """

    et: list[float]
    ed: list[float]
    last: float

    def integrate(self, until: float, power: Callable[[float], list[float]]) -> None:
        """Advance to ``until``, integrating ``power(t)`` (W per port) in steps."""
        t = self.last
        if until <= t:
            return
        # Very long jumps use coarser steps (at most ~20000 evaluations).
        step = max(ENERGY_STEP, (until - t) / 20000)
        midnight = next_local_midnight(t)
        while t < until:
            end = min(t + step, until, midnight)
            watts = power((t + end) / 2)
            hours = (end - t) / 3600
            for index, value in enumerate(watts):
                gained = max(0.0, value) * hours
                self.et[index] += gained
                self.ed[index] += gained
            t = end
            if t >= midnight:
                self.ed = [0.0] * len(self.ed)
                midnight = next_local_midnight(t + 1)
        self.last = until


__all__ = [
    "EFFICIENCY",
    "SUNRISE_HOUR",
    "SUNSET_HOUR",
    "EnergyCounters",
    "SolarModel",
    "is_daylight",
    "local_day",
    "local_hours",
    "local_midnight",
    "next_local_midnight",
    "sun_elevation",
    "utc_offset",
]
