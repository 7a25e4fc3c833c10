"""Values users can trust: monotonic totals, daily yield, plausibility."""

from __future__ import annotations

import time

from hoymiles_bridge.core.values import InverterGuard
from hoymiles_bridge.protocol.models import InverterData, PortData

SERIAL = "141293320732"


def _day(hour: float, day: int = 10) -> float:
    return time.mktime((2026, 6, day, 0, 0, 0, 0, 0, -1)) + hour * 3600


def _data(
    power: float, daily: tuple[int, int], total: tuple[int, int], **kw: float
) -> InverterData:
    ports = tuple(
        PortData(n + 1, 35.0, power / 70, power / 2, total[n], daily[n], 0) for n in range(2)
    )
    fields: dict[str, float] = {
        "voltage": 230.0,
        "current": power / 230,
        "power": power,
        "reactive_power": 0.0,
        "frequency": 50.0,
        "power_factor": 1.0,
        "temperature": 30.0,
    }
    fields.update(kw)
    return InverterData(
        SERIAL,
        "HMS-800W-2T",
        fields["voltage"],
        fields["current"],
        fields["power"],
        fields["reactive_power"],
        fields["frequency"],
        fields["power_factor"],
        fields["temperature"],
        0,
        1,
        ports,
    )


def test_totals_never_decrease() -> None:
    guard = InverterGuard(SERIAL)
    first = guard.update(_data(300, (100, 100), (5000, 6000)), now=_day(10))
    assert first.values["yieldtotal"] == 11.0
    dropped = guard.update(_data(300, (110, 110), (10, 6010)), now=_day(10.1))
    assert dropped.ports[1]["yieldtotal"] == 5.0
    assert guard.held_totals == 1


def test_daily_yield_survives_inverter_restart_and_resets_at_midnight() -> None:
    guard = InverterGuard(SERIAL)
    guard.update(_data(300, (400, 500), (5000, 6000)), now=_day(12))
    after_restart = guard.update(_data(300, (20, 30), (5020, 6030)), now=_day(13))
    assert after_restart.ports[1]["yieldday"] == 420
    assert after_restart.values["yieldday"] == 420 + 530
    later = guard.update(_data(300, (60, 70), (5060, 6070)), now=_day(14))
    assert later.values["yieldday"] == 460 + 570
    # the next morning: the DTU still shows yesterday's counters before it resets
    stale = guard.update(_data(0, (60, 70), (5060, 6070)), now=_day(5, day=11))
    assert stale.values["yieldday"] == 0
    fresh = guard.update(_data(100, (5, 6), (5065, 6076)), now=_day(8, day=11))
    assert fresh.values["yieldday"] == 11


def test_implausible_values_are_dropped_keeping_the_last_good_one() -> None:
    guard = InverterGuard(SERIAL)
    guard.update(_data(300, (1, 1), (1, 1)), now=_day(10))
    bad = guard.update(
        _data(300, (2, 2), (2, 2), reactive_power=6553.5, voltage=0.0), now=_day(10.1)
    )
    assert bad.values["reactivepower"] == 0.0
    assert bad.values["voltage"] == 230.0
    assert guard.dropped == 2


def test_night_values_keep_totals() -> None:
    guard = InverterGuard(SERIAL)
    guard.update(_data(300, (100, 200), (5000, 6000)), now=_day(18))
    night = guard.night(now=_day(22))
    assert night.values["power"] == 0 and night.values["yieldday"] == 300
    assert night.values["yieldtotal"] == 11.0
    assert guard.night(now=_day(1, day=11)).values["yieldday"] == 0
