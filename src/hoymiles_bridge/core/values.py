"""Values users can trust: plausibility checks, monotonic energy, daily yield.

:class:`InverterGuard` turns each :class:`~hoymiles_bridge.protocol.models.InverterData`
into the values the bridge publishes:

* energy totals never decrease; a total that drops (DTU reboot, glitch) is
  held at the last good value and logged;
* the daily yield resets at local midnight, never decreases during the day,
  and survives an inverter restart that zeroes the inverter's own counter
  (the "yield-day correction" OpenDTU users know);
* implausible values (reactive power 6553.5 var, 0 V while producing, ...)
  are dropped with a debug log, and the last good value stays.

Every limit lives in :data:`PLAUSIBLE`; correct them there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from hoymiles_bridge.protocol.devices import inverter_type, parse_serial
from hoymiles_bridge.protocol.models import InverterData

_LOGGER = logging.getLogger(__name__)

#: field -> (lowest, highest) accepted; "rated" limits scale with rated power.
PLAUSIBLE: Final[dict[str, tuple[float, float]]] = {
    "voltage": (0.0, 300.0),
    "frequency": (40.0, 70.0),
    "temperature": (-40.0, 120.0),
    "powerfactor": (0.0, 1.0),
    "port_voltage": (0.0, 120.0),
    "port_current": (0.0, 30.0),
}
#: Power-like values may exceed the rated power by this factor at most.
RATED_HEADROOM: Final = 1.5
#: Power below this (W) counts as "not producing".
PRODUCING_THRESHOLD: Final = 0.5


def local_day(ts: float) -> tuple[int, int, int]:
    lt = time.localtime(ts)
    return lt.tm_year, lt.tm_mon, lt.tm_mday


@dataclass(slots=True)
class _PortState:
    day: tuple[int, int, int] | None = None
    daily_offset: float = 0.0  # added after an inverter restart zeroed its counter
    daily_stale: float | None = None  # yesterday's counter, until the DTU resets it
    last_raw_daily: float | None = None
    published_daily: float = 0.0
    published_total: float = 0.0  # Wh


@dataclass(frozen=True, slots=True)
class InverterValues:
    """What the bridge publishes for one inverter (field keys as in mqtt/topics.py)."""

    serial: str
    values: dict[str, float]
    ports: dict[int, dict[str, float]]
    reachable: bool
    producing: bool


@dataclass(slots=True)
class InverterGuard:
    """Keeps the memory needed to publish trustworthy values for one inverter."""

    serial: str
    clock: Callable[[], float] = time.time
    rated_power: float = 0.0
    _ports: dict[int, _PortState] = field(default_factory=dict)
    _last_good: dict[str, float] = field(default_factory=dict)
    dropped: int = 0
    held_totals: int = 0

    def __post_init__(self) -> None:
        if not self.rated_power:
            self.rated_power = float(inverter_type(parse_serial(self.serial)).rated_power or 0)

    def _plausible(
        self, key: str, value: float, producing: bool, memo: str | None = None
    ) -> float | None:
        """``value`` when plausible for ``key``, else the last good one (kept under ``memo``)."""
        memo = memo or key
        low_high = PLAUSIBLE.get(key)
        ok = True
        if low_high is not None:
            low, high = low_high
            ok = low <= value <= high
            if key in {"voltage", "frequency"} and producing and value <= 0:
                ok = False
            if key in {"voltage", "frequency"} and not producing and value == 0:
                ok = True
        elif key in {"power", "port_power", "reactivepower"} and self.rated_power:
            ok = abs(value) <= self.rated_power * RATED_HEADROOM
        if ok:
            self._last_good[memo] = value
            return value
        self.dropped += 1
        _LOGGER.debug("%s: dropping implausible %s = %s", self.serial, memo, value)
        return self._last_good.get(memo)

    def _daily(
        self, port: int, state: _PortState, raw: float, producing: bool, now: float
    ) -> float:
        today = local_day(now)
        if state.day != today:
            first_day = state.day is None
            state.day = today
            state.daily_offset = 0.0
            state.published_daily = 0.0
            state.last_raw_daily = None
            # After our midnight the DTU may still show yesterday's counter.
            state.daily_stale = raw if (raw > 0 and not producing and not first_day) else None
        if state.daily_stale is not None:
            if raw < state.daily_stale:
                state.daily_stale = None  # the DTU reset its counter
            else:
                state.last_raw_daily = raw
                state.published_daily = max(state.published_daily, raw - state.daily_stale)
                return state.published_daily
        if state.last_raw_daily is not None and raw < state.last_raw_daily:
            # The inverter restarted and its own daily counter began at zero.
            state.daily_offset = state.published_daily
            _LOGGER.info(
                "%s port %d: daily yield went from %s to %s Wh; continuing from %s Wh",
                self.serial,
                port,
                state.last_raw_daily,
                raw,
                state.published_daily,
            )
        state.last_raw_daily = raw
        state.published_daily = max(state.published_daily, state.daily_offset + raw)
        return state.published_daily

    def _total(self, port: int, state: _PortState, raw: float) -> float:
        if raw < state.published_total:
            self.held_totals += 1
            _LOGGER.warning(
                "%s port %d: energy total dropped from %s to %s Wh; keeping %s Wh",
                self.serial,
                port,
                state.published_total,
                raw,
                state.published_total,
            )
            return state.published_total
        state.published_total = raw
        return raw

    def update(self, data: InverterData, *, now: float | None = None) -> InverterValues:
        now = self.clock() if now is None else now
        producing = data.reachable and data.power > PRODUCING_THRESHOLD
        per_port_rated = self.rated_power / max(len(data.ports), 1) if self.rated_power else 0.0
        ports: dict[int, dict[str, float]] = {}
        dc_power = 0.0
        for port in data.ports:
            state = self._ports.setdefault(port.port, _PortState())
            memo = f"port{port.port}_"
            voltage = self._plausible("port_voltage", port.voltage, producing, memo + "voltage")
            current = self._plausible("port_current", port.current, producing, memo + "current")
            power = self._plausible("port_power", port.power, producing, memo + "power")
            daily = self._daily(port.port, state, float(port.energy_daily), producing, now)
            total = self._total(port.port, state, float(port.energy_total))
            values: dict[str, float] = {"yieldday": daily, "yieldtotal": round(total / 1000, 3)}
            if voltage is not None:
                values["voltage"] = voltage
            if current is not None:
                values["current"] = current
            if power is not None:
                values["power"] = power
                dc_power += power
                if per_port_rated:
                    values["irradiation"] = round(power * 100 / per_port_rated, 1)
            ports[port.port] = values
        values = {}
        for key, raw in (
            ("power", data.power),
            ("voltage", data.voltage),
            ("current", data.current),
            ("frequency", data.frequency),
            ("powerfactor", abs(data.power_factor)),
            ("reactivepower", data.reactive_power),
            ("temperature", data.temperature),
        ):
            good = self._plausible(key, raw, producing)
            if good is not None:
                values[key] = good
        values["powerdc"] = round(dc_power, 1)
        ac = values.get("power", 0.0)
        values["efficiency"] = round(ac * 100 / dc_power, 2) if dc_power > 1 else 0.0
        values["yieldday"] = sum(p["yieldday"] for p in ports.values())
        values["yieldtotal"] = round(sum(p["yieldtotal"] for p in ports.values()), 3)
        return InverterValues(data.serial, values, ports, data.reachable, producing)

    def night(self, *, now: float | None = None) -> InverterValues:
        """The values to publish while the DTU is gone at night (policy ``zero``).

        Power-like values are 0; energy totals and today's yield are kept.
        """
        now = self.clock() if now is None else now
        ports: dict[int, dict[str, float]] = {}
        for number, state in sorted(self._ports.items()):
            if state.day != local_day(now):
                state.day = local_day(now)
                state.published_daily = 0.0
                state.daily_offset = 0.0
                state.last_raw_daily = None
                state.daily_stale = None
            ports[number] = {
                "power": 0.0,
                "voltage": 0.0,
                "current": 0.0,
                "irradiation": 0.0,
                "yieldday": state.published_daily,
                "yieldtotal": round(state.published_total / 1000, 3),
            }
        values = {
            "power": 0.0,
            "voltage": 0.0,
            "current": 0.0,
            "frequency": 0.0,
            "powerfactor": 0.0,
            "reactivepower": 0.0,
            "powerdc": 0.0,
            "efficiency": 0.0,
            "yieldday": sum(p["yieldday"] for p in ports.values()),
            "yieldtotal": round(sum(p["yieldtotal"] for p in ports.values()), 3),
        }
        if "temperature" in self._last_good:
            values["temperature"] = self._last_good["temperature"]
        return InverterValues(self.serial, values, ports, False, False)


__all__ = ["PLAUSIBLE", "InverterGuard", "InverterValues", "local_day"]
