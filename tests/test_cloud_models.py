"""The cloud's answers parsed without trust: any JSON at all gives typed values or a typed error."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from hoymiles_bridge.cloud import facts
from hoymiles_bridge.cloud.models import (
    MAX_DEVICES,
    number,
    parse_battery,
    parse_flow,
    parse_station,
    parse_station_data,
    parse_station_page,
    text,
)
from hoymiles_bridge.errors import CloudResponseError

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["10.0", "-", "", "1e999", "NaN", " 42 ", "0x10"]),
)
KEYS = st.sampled_from(
    [
        "sid", "id", "name", "list", "total", "devices", "type", "sn", "warn_data", "connect",
        "flow", "dly", "con", "soc", "power", "pv", "bat", "grid", "load", "sp",
        "today_eq", "month_eq", "year_eq", "total_eq", "reflux_station_data", "bms_soc",
        "bms_in_eq", "bms_out_eq", "real_data", "bms_temp", "bms_state",
    ]
)  # fmt: skip
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.one_of(KEYS, st.text()), inner, max_size=6)
    ),
    max_leaves=40,
)


def _finite_or_none(*values: Any) -> bool:
    return all(v is None or (isinstance(v, float) and math.isfinite(v)) for v in values)


@settings(max_examples=300, deadline=None)
@given(JSON)
def test_any_json_parses_to_typed_values(data: Any) -> None:
    flow = parse_flow(data)
    assert _finite_or_none(flow.soc, flow.pv, flow.battery, flow.grid, flow.load)
    assert flow.soc is None or 0 <= flow.soc <= 100
    energy = parse_station_data(data)
    assert _finite_or_none(energy.today, energy.total, energy.battery_in, energy.soc)
    assert energy.today is None or energy.today >= 0
    battery = parse_battery(1, data)
    assert battery.state is None or isinstance(battery.state, int)
    try:
        stations, _ = parse_station_page(data)
    except CloudResponseError:
        return
    for station in stations:
        assert station.sid > 0 and isinstance(station.name, str)
        assert len(station.all_devices()) <= MAX_DEVICES


def test_a_deep_or_wide_device_tree_is_bounded() -> None:
    deep: dict[str, Any] = {"id": 1, "type": 6, "devices": []}
    node = deep
    for index in range(100):
        child: dict[str, Any] = {"id": index + 2, "type": 1, "devices": []}
        node["devices"] = [child]
        node = child
    station = parse_station({"sid": 5, "devices": [deep]})
    assert len(station.all_devices()) == 8  # MAX_TREE_DEPTH levels
    wide = parse_station({"sid": 5, "devices": [{"id": i, "type": 6} for i in range(1, 1000)]})
    assert len(wide.all_devices()) == MAX_DEVICES


def test_numbers_and_texts() -> None:
    assert number("10.0") == 10.0 and number(" 42 ") == 42.0
    for bad in ("-", "", "NaN", "1e999", True, None, [1], "x" * 40):
        assert number(bad) is None
    assert text("Balcony\x00\x1b[31m") == "Balcony[31m"
    assert text({"a": 1}) == "" and len(text("x" * 1000)) == 128


def test_the_refusal_table() -> None:
    assert facts.refusal("token error,please Re-login.") is facts.Refusal.TOKEN
    assert facts.refusal("The number of logins exceeds the daily maximum limit.") is (
        facts.Refusal.DAILY_CAP
    )
    assert facts.refusal("Something new") is facts.Refusal.OTHER
