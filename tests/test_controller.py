"""The power controller's law, sans I/O, in virtual time (core/controller.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hoymiles_bridge.config.options import OptionsError, controller_problems, normalize, validate
from hoymiles_bridge.core.controller import (
    MAX_JUMP,
    Actuation,
    BatteryUnit,
    ControllerConfig,
    InverterUnit,
    Kind,
    Mode,
    PowerController,
    Tuning,
    parse_mode,
    split_battery,
    split_limit,
)
from hoymiles_bridge.errors import InvalidArgumentError


def unit(
    uid: str = "MSA-1", soc: float = 50.0, power: float = 0.0, seen: float = 0.0
) -> BatteryUnit:
    return BatteryUnit(uid, soc, 1000.0, 1000.0, power=power, seen_at=seen)


def inverter(
    serial: str = "116100000001", ac: float = 0.0, limit: float | None = 800.0
) -> InverterUnit:
    return InverterUnit(serial, 800.0, ac, controllable=True, limit=limit)


def controller(mode: Mode = Mode.ZERO_EXPORT, **kwargs: object) -> PowerController:
    return PowerController(ControllerConfig(mode=mode, **kwargs))  # type: ignore[arg-type]


# --- splitting --------------------------------------------------------------------


def test_split_battery_prefers_the_fuller_unit_when_discharging() -> None:
    shares = split_battery(1000.0, [unit("a", soc=90), unit("b", soc=30)], Tuning())
    assert shares["a"] > shares["b"] > 0
    assert sum(shares.values()) == pytest.approx(1000.0, abs=0.2)


def test_split_battery_prefers_the_emptier_unit_when_charging() -> None:
    shares = split_battery(-1000.0, [unit("a", soc=90), unit("b", soc=30)], Tuning())
    assert shares["b"] < shares["a"] < 0


def test_split_battery_respects_floor_ceiling_and_limits() -> None:
    tuning = Tuning(soc_floor=10, soc_ceiling=95)
    at_floor, full, middle = unit("floor", soc=10), unit("full", soc=95), unit("mid", soc=50)
    assert split_battery(1500.0, [at_floor, middle], tuning) == {"floor": 0.0, "mid": 1000.0}
    assert split_battery(-1500.0, [full, middle], tuning) == {"full": 0.0, "mid": -1000.0}


def test_split_battery_fills_the_others_when_one_is_at_its_limit() -> None:
    shares = split_battery(1800.0, [unit("a", soc=95), unit("b", soc=20)], Tuning())
    assert shares["a"] == 1000.0
    assert shares["b"] == pytest.approx(800.0, abs=0.2)


def test_split_limit_keeps_the_total_and_feeds_the_unshaded_inverter() -> None:
    sunny = InverterUnit("a", 800.0, 790.0, controllable=True, limit=800.0)
    shaded = InverterUnit("b", 800.0, 100.0, controllable=True, limit=800.0)
    limits = split_limit(800.0, [sunny, shaded])
    assert sum(limits.values()) == pytest.approx(800.0, abs=2)
    assert limits["a"] > limits["b"]
    assert limits["b"] >= 100.0


def test_split_limit_never_goes_under_the_two_percent_floor() -> None:
    limits = split_limit(0.0, [inverter("a"), inverter("b")])
    assert limits == {"a": 16.0, "b": 16.0}


# --- options ------------------------------------------------------------------------


def test_contradictions_name_the_fields() -> None:
    def problems(**controller: object) -> list[str]:
        clean = normalize({"dtus": [{"host": "192.0.2.1"}]})["controller"] | controller
        return controller_problems(clean)

    assert problems(mode="feed_in_cap") == [
        "controller.max_feed_in: controller.mode feed_in_cap needs a cap"
    ]
    (why,) = problems(target=-900, import_bias=50, max_feed_in=800)
    assert why.startswith("controller.target:")
    assert "controller.import_bias" in why and "controller.max_feed_in (800 W)" in why
    assert problems(meter_json_path="a.b") == [
        "controller.meter_json_path: set without controller.meter_topic"
    ]
    assert "cannot read" in problems(meter_topic="m", meter_json_path="a[x]")[0]
    assert problems(mode="zero_export", meter_topic="m", import_bias=20) == []
    with pytest.raises(OptionsError, match="controller.max_feed_in"):
        validate({"dtus": [{"host": "192.0.2.1"}], "controller": {"mode": "feed_in_cap"}})


def test_parse_mode() -> None:
    assert parse_mode(" Zero_Export ") is Mode.ZERO_EXPORT
    with pytest.raises(InvalidArgumentError, match="one of off, monitor"):
        parse_mode("max")


# --- the meter -----------------------------------------------------------------------


def test_implausible_jumps_and_out_of_order_readings_are_ignored() -> None:
    law = controller()
    assert law.meter(100.0, 1.0, stamp=10.0) is None
    assert "jumps" in (law.meter(100.0 + MAX_JUMP + 1, 2.0) or "")
    assert "out of order" in (law.meter(120.0, 3.0, stamp=9.0) or "")
    assert law.meter(float("nan"), 4.0) == "not a finite number"
    assert law.reading is not None
    assert law.reading.watts == 100.0
    assert law.ignored_readings == 3


# --- the fast loop --------------------------------------------------------------------


def test_importing_discharges_and_exporting_charges() -> None:
    law = controller()
    law.meter(500.0, 1.0)
    (action,) = law.step(1.0, [unit(seen=1.0)], [])
    assert action.kind is Kind.SETPOINT
    assert isinstance(action.value, float)
    assert action.value > 0
    assert "grid +500 W" in action.reason
    law = controller()
    law.meter(-500.0, 1.0)
    (action,) = law.step(1.0, [unit(seen=1.0)], [])
    assert isinstance(action.value, float)
    assert action.value < 0


def test_deadband_holds_and_import_bias_moves_the_target() -> None:
    law = controller(import_bias=50.0)
    law.meter(60.0, 1.0)  # 10 W from the target of +50 W: inside the deadband
    assert law.step(1.0, [unit(seen=1.0)], []) == []
    law.meter(200.0, 2.0)
    (action,) = law.step(2.0, [unit(seen=2.0)], [])
    assert "target +50 W" in action.reason


def test_slew_limits_each_step_and_anti_windup_keeps_the_output_in_range() -> None:
    law = controller(tuning=Tuning(slew=100.0))
    law.meter(5000.0, 1.0)
    law.step(1.0, [unit(seen=1.0)], [])
    assert law.battery_output == pytest.approx(100.0)
    for second in range(2, 60):
        law.meter(5000.0, float(second))
        law.step(float(second), [unit(seen=float(second))], [])
    assert law.battery_output == 1000.0  # the unit's limit, not the wound-up integral
    law.meter(-500.0, 60.0)
    law.step(60.0, [unit(seen=60.0)], [])
    assert law.battery_output < 1000.0  # it comes back at once


def test_monitor_computes_but_its_actions_are_only_shown() -> None:
    law = controller(Mode.MONITOR)
    law.meter(400.0, 1.0)
    actions = law.step(1.0, [unit(seen=1.0)], [])
    assert actions
    assert law.status(1.0)["last"] == [a.describe() for a in actions]
    assert law.status(1.0)["setpoints"] == {}  # nothing counts as sent


def test_off_does_nothing() -> None:
    law = controller(Mode.OFF)
    law.meter(400.0, 1.0)
    assert law.step(1.0, [unit(seen=1.0)], []) == []


def test_battery_actuations_per_minute_are_limited() -> None:
    law = controller(tuning=Tuning(battery_per_minute=5, deadband=0.0, min_step=0.0))
    sent = 0
    for second in range(60):
        law.meter(300.0 + 50 * (second % 2), float(second))
        sent += len(law.step(float(second), [unit(seen=float(second))], []))
    assert sent == 5
    assert law.rate_limited > 0


# --- safety ---------------------------------------------------------------------------


def test_missing_meter_zeroes_then_releases_the_battery() -> None:
    law = controller(meter_timeout=10.0, tuning=Tuning(release_after=60.0))
    law.meter(500.0, 0.0)
    assert law.step(0.0, [unit(seen=0.0)], [])
    assert law.step(10.0, [unit(seen=10.0)], []) == []
    (zero,) = law.step(11.0, [unit(seen=11.0)], [])
    assert (zero.kind, zero.value) == (Kind.SETPOINT, 0.0)
    assert "meter missing (silent for 11 s)" in zero.reason
    assert law.step(50.0, [unit(seen=50.0)], []) == []
    (general,) = law.step(71.0, [unit(seen=71.0)], [])
    assert (general.kind, general.value) == (Kind.EMS_MODE, "general")
    assert law.state == "meter missing"


def test_missing_meter_leaves_the_inverter_limits_alone() -> None:
    law = controller(meter_timeout=10.0, max_feed_in=600.0)
    law.meter(-900.0, 0.0)
    first = law.step(0.0, [], [inverter("a", ac=800.0), inverter("b", ac=800.0)])
    assert {a.kind for a in first} == {Kind.LIMIT}
    for second in range(11, 200, 5):
        actions = law.step(float(second), [], [inverter("a", ac=300.0), inverter("b", ac=300.0)])
        assert all(a.kind is not Kind.LIMIT for a in actions)


def test_a_silent_or_failed_battery_leaves_the_split() -> None:
    law = controller()
    law.meter(1500.0, 1.0)
    actions = law.step(1.0, [unit("a", seen=1.0), unit("b", seen=1.0)], [])
    assert {a.device for a in actions} == {"a", "b"}
    law.meter(1500.0, 30.0)
    actions = law.step(30.0, [unit("a", seen=30.0), unit("b", seen=1.0)], [])
    assert {a.device for a in actions if a.kind is Kind.SETPOINT} == {"a"}
    (back,) = [a for a in actions if a.device == "b"]  # its own mode, its keep-alive ends
    assert (back.kind, back.value) == (Kind.EMS_MODE, "general")
    assert back.reason == "left the split (no telemetry for 29 s)"
    law.meter(1500.0, 31.0)
    assert all(a.device == "a" for a in law.step(31.0, [unit("a", seen=31.0)], []))
    law.unit_failed("a", "refused", 31.0)
    law.meter(1500.0, 32.0)
    assert law.step(32.0, [unit("a", seen=32.0), unit("b", seen=1.0)], []) == []


def test_release_restores_what_the_controller_changed() -> None:
    law = controller(max_feed_in=600.0)
    law.meter(0.0, 0.0)
    law.step(0.0, [unit(seen=0.0)], [inverter("a", ac=790.0, limit=700.0), inverter("b", ac=790.0)])
    law.meter(900.0, 1.0)
    law.step(1.0, [unit(seen=1.0)], [])
    released = law.set_mode(Mode.MONITOR, 2.0)
    kinds = [(a.kind, a.device, a.value) for a in released]
    assert (Kind.SETPOINT, "MSA-1", 0.0) in kinds
    assert (Kind.EMS_MODE, "MSA-1", "general") in kinds
    assert (Kind.LIMIT, "a", 700.0) in kinds
    assert (Kind.LIMIT, "b", 800.0) in kinds
    assert all("released (mode monitor)" in a.reason for a in released)
    assert law.set_mode(Mode.OFF, 3.0) == []  # nothing left to release


# --- the slow loop ----------------------------------------------------------------------


def test_feed_in_cap_limits_the_inverters_total_and_paces_itself() -> None:
    law = controller(Mode.FEED_IN_CAP, max_feed_in=800.0, meter=False)
    producing = [inverter("a", ac=790.0), inverter("b", ac=790.0)]
    actions = law.step(0.0, [], producing)
    assert sum(a.value for a in actions if isinstance(a.value, float)) == pytest.approx(800, abs=2)
    assert all("feed-in cap 800 W" in a.reason for a in actions)
    assert law.step(10.0, [], producing) == []  # not before inverter_interval


def test_zero_export_throttles_inverters_only_when_batteries_are_full() -> None:
    def limits(battery_soc: float) -> list[Actuation]:
        law = controller(tuning=Tuning(soc_ceiling=95.0))
        sent = []
        for second in range(45):
            absorbed = battery_soc < 95.0 and second >= 3  # a battery with room takes it
            law.meter(-5.0 if absorbed else -600.0, float(second))
            units = [unit(soc=battery_soc, seen=float(second))]
            producing = [inverter("a", ac=800.0), inverter("b", ac=800.0)]
            sent += [a for a in law.step(float(second), units, producing) if a.kind is Kind.LIMIT]
        return sent

    throttled = limits(95.0)  # full: after full_after, at the next look (30 s)
    assert sum(a.value for a in throttled if isinstance(a.value, float)) == pytest.approx(1000, 2)
    assert "batteries take no more" in throttled[0].reason
    assert limits(50.0) == []  # room to charge: the battery takes it


# --- properties ---------------------------------------------------------------------

_SOC = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)
_LIMIT = st.floats(min_value=0.0, max_value=3000.0, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(
    total=st.floats(min_value=-10_000.0, max_value=10_000.0, allow_nan=False),
    units=st.lists(st.tuples(_SOC, _LIMIT, _LIMIT), min_size=0, max_size=6),
)
def test_split_battery_never_exceeds_a_limit_nor_the_total(
    total: float, units: list[tuple[float, float, float]]
) -> None:
    tuning = Tuning()
    batteries = [
        BatteryUnit(f"u{n}", soc, charge, discharge, seen_at=0.0)
        for n, (soc, charge, discharge) in enumerate(units)
    ]
    shares = split_battery(total, batteries, tuning)
    assert set(shares) == {b.id for b in batteries}
    for battery in batteries:
        share = shares[battery.id]
        assert -battery.charge_max - 0.1 <= share <= battery.discharge_max + 0.1
        if share > 0:
            assert battery.soc is not None and battery.soc > tuning.soc_floor
            assert total > 0
        if share < 0:
            assert battery.soc is not None and battery.soc < tuning.soc_ceiling
            assert total < 0
    assert abs(sum(shares.values())) <= abs(total) + 0.1 * len(batteries) + 1e-6


@settings(max_examples=300, deadline=None)
@given(
    total=st.floats(min_value=0.0, max_value=10_000.0, allow_nan=False),
    inverters=st.lists(
        st.tuples(
            st.sampled_from([300.0, 800.0, 1600.0, 2000.0]),
            st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
            st.one_of(st.none(), st.floats(min_value=0.0, max_value=1.0, allow_nan=False)),
        ),
        min_size=1,
        max_size=5,
    ),
)
def test_split_limit_stays_between_floor_and_rated_and_under_the_total(
    total: float, inverters: list[tuple[float, float, float | None]]
) -> None:
    units = [
        InverterUnit(
            f"i{n}",
            rated,
            rated * share,
            controllable=True,
            limit=None if limit is None else rated * limit,
        )
        for n, (rated, share, limit) in enumerate(inverters)
    ]
    limits = split_limit(total, units)
    floors = sum(u.rated_power * 0.02 for u in units)
    for unit_ in units:
        assert unit_.rated_power * 0.02 - 0.5 <= limits[unit_.serial] <= unit_.rated_power + 0.5
    assert sum(limits.values()) <= max(total, floors) + len(units)  # rounding
