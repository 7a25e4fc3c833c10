"""The battery firmware's MQTT interface without a broker: topics, parsing, payloads, TOU rules."""

from __future__ import annotations

import json

import pytest

from hoymiles_bridge.errors import InvalidArgumentError
from hoymiles_bridge.protocol import battery as fw
from hoymiles_bridge.protocol.battery import (
    FIELDS,
    FIELDS_BY_KEY,
    BatteryPayloadError,
    FirmwareTopics,
    Inbound,
    Outbound,
    Source,
    TouError,
)

DEV = "MSA-280024370560"


def test_field_keys_are_unique_and_every_field_is_typed() -> None:
    assert len(FIELDS_BY_KEY) == len(FIELDS)
    for f in FIELDS:
        assert f.sources, f.key
        if f.kind == "number":
            assert f.low is not None and f.high is not None and f.low < f.high, f.key
        if f.device_class == "energy":
            assert f.unit == "Wh" and f.state_class == "total_increasing", f.key
        if f.device_class == "enum":
            assert f.options and f.state_class is None, f.key
        assert f.system == f.key.startswith("system_") or f.key == "ems_mode", f.key


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        (f"homeassistant/sensor/{DEV}/quick/state", (DEV, Inbound.QUICK, "")),
        (f"homeassistant/sensor/{DEV}/system/state", (DEV, Inbound.SYSTEM, "")),
        (f"homeassistant/sensor/{DEV}/tou_day_plan/ack", (DEV, Inbound.DAY_ACK, "")),
        (f"homeassistant/sensor/{DEV}/tou_plan/status", (DEV, Inbound.PLAN_STATUS, "")),
        (f"homeassistant/switch/{DEV}/config", (DEV, Inbound.CONFIG, "switch")),
        (f"homeassistant/select/{DEV}/ems_mode/config", (DEV, Inbound.CONFIG, "ems_mode")),
        (f"homeassistant/text/{DEV}/tou_day3/config", (DEV, Inbound.CONFIG, "tou_day3")),
        (f"homeassistant/text/{DEV}/other/config", None),
        ("homeassistant/sensor/hoymiles_bat_X/soc/config", None),  # our own entities
        ("homeassistant/sensor/bad id/quick/state", None),
        ("homeassistant/sensor/a+b/quick/state", None),
        (f"homeassistant/sensor/{'x' * 65}/quick/state", None),
        (f"other/sensor/{DEV}/quick/state", None),
        (f"homeassistant/sensor/{DEV}/quick", None),
    ],
)
def test_topics_are_taken_apart_strictly(topic: str, expected: object) -> None:
    found = fw.parse_topic("homeassistant", topic)
    got = None if found is None else (found.dev_id, found.kind, found.key)
    assert got == expected


def test_every_command_and_config_topic_round_trips() -> None:
    topics = FirmwareTopics("homeassistant", DEV)
    assert topics.command(Outbound.SETPOINT) == f"homeassistant/number/{DEV}/power_ctrl/set"
    assert topics.command(Outbound.EMS_MODE) == f"homeassistant/select/{DEV}/ems_mode/command"
    assert topics.command(Outbound.REBOOT) == f"homeassistant/button/{DEV}/reboot/trigger"
    for config in fw.FIRMWARE_CONFIGS:
        found = fw.parse_topic("homeassistant", topics.config(config.key))
        assert found is not None and found.key == config.key
    for kind in Inbound:
        if kind is not Inbound.CONFIG:
            found = fw.parse_topic("homeassistant", topics.inbound(kind))
            assert found is not None and found.kind is kind
    with pytest.raises(InvalidArgumentError):
        FirmwareTopics("homeassistant", "no/slash")


QUICK = {
    "grid_on_p": 120.5,
    "grid_off_p": 0,
    "bat_sts": "discharge",
    "bat_p": 120.5,
    "soc": 55.25,
    "heat": False,
    "sys_soc": 55.25,
    "sys_load_p": 300,
}


def test_quick_parses_numbers_and_strings_alike() -> None:
    plain = fw.parse_state(Source.QUICK, json.dumps(QUICK).encode())
    strings = {k: str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v
               for k, v in QUICK.items()}  # fmt: skip
    as_text = fw.parse_state(Source.QUICK, json.dumps(strings).encode())
    assert plain.values == as_text.values
    assert plain.values["battery_power"] == 120.5 and plain.values["heating"] is False
    assert plain.values["system_soc"] == 55.25 and plain.values["battery_state"] == "discharge"
    assert plain.dropped == ()


def test_implausible_and_wrong_values_are_dropped_not_raised() -> None:
    bad = {"soc": 250, "bat_p": [1], "grid_on_p": "1e99", "bat_sts": "dancing", "heat": "maybe"}
    reading = fw.parse_state(Source.QUICK, json.dumps(bad).encode())
    assert reading.values == {}
    assert len(reading.dropped) == 5
    nan = fw.parse_state(Source.QUICK, b'{"soc": NaN, "bat_p": Infinity}')
    assert nan.values == {}


@pytest.mark.parametrize(
    "payload",
    [b"", b"nope", b"[]", b"42", b"\xff", b"[" * 100_000, b'{"a":' + b" " * fw.MAX_STATE_PAYLOAD],
)
def test_garbage_raises_one_typed_error(payload: bytes) -> None:
    with pytest.raises(BatteryPayloadError):
        fw.parse_state(Source.QUICK, payload)


def test_grid_items_are_matched_on_type_not_position() -> None:
    device = {
        "grid": [
            {"type": "inv", "v": 229.0, "p": 50},
            {"type": "grid_off", "v": 0, "f": 0},
            {"type": "grid_on", "v": "231.2", "f": "50.02", "etout": 1234.5},
            "junk",
        ],
        "packs": [{"id": 2, "soc": 80, "temp": 21.5, "heat": 1}],
        "pvs": [{"id": "1", "p": 150}],
    }
    values = fw.parse_state(Source.DEVICE, json.dumps(device).encode()).values
    assert values["grid_on_voltage"] == 231.2 and values["inv_voltage"] == 229.0
    assert values["grid_on_frequency"] == 50.02 and values["grid_on_etout"] == 1234.5
    assert values["pack2_soc"] == 80 and values["pack2_heating"] is True
    assert values["pv1_power"] == 150 and "pack1_soc" not in values


def test_system_state_fills_the_system_fields() -> None:
    system = {"pv_p": 400, "soc": 70, "chg_e": 900, "ems_mode": "mqtt_ctrl", "bat_p": -250}
    values = fw.parse_state(Source.SYSTEM, json.dumps(system).encode()).values
    assert values == {
        "system_pv_power": 400,
        "system_soc": 70,
        "system_charge_energy_today": 900,
        "ems_mode": "mqtt_ctrl",
        "system_battery_power": -250,
    }


def test_config_gives_model_serial_and_range() -> None:
    config = {"min": -1000, "max": 2000, "device": {"identifiers": ["280024370560"],
              "model": "MS-A2", "sw_version": "V01.06.03"}}  # fmt: skip
    info = fw.parse_config(json.dumps(config).encode())
    assert (info.model, info.serial, info.firmware) == ("MS-A2", "280024370560", "V01.06.03")
    assert fw.symmetric_range(info.minimum or 0, info.maximum or 0) == (-1000, 1000)
    silly = fw.parse_config(b'{"min": 5, "max": 1e12, "device": {"identifiers": ["a/b"]}}')
    assert silly.minimum is None and silly.serial is None


def test_profiles_by_model_or_serial() -> None:
    assert fw.profile_for("HiBattery 4020 X").rated_power == 2000
    assert fw.profile_for(None, "280512345678").model == "HiBattery 4020 X"
    assert fw.profile_for("unknown thing") is fw.DEFAULT_PROFILE


def test_keepalive_perturbation_alternates_and_stays_in_range() -> None:
    assert [fw.perturbed(100, n, -1000, 1000) for n in range(4)] == [100.1, 100.2, 100.1, 100.2]
    assert fw.perturbed(1000, 1, -1000, 1000) == 999.8  # never above the range
    assert fw.setpoint_payload(-300) == "-300.0"
    assert json.loads(fw.phase_payload(800)) == {"phase_a": 800, "phase_b": 800, "phase_c": 800}


PERIOD = {"mode": 1, "ts": 8, "te": 24, "sh": 90, "sl": 10, "pc": 800, "pd": 100}


def test_a_valid_day_plan_is_kept_as_sent() -> None:
    plan = fw.day_plan({"day_idx": 2, "day_plan": [PERIOD, {**PERIOD, "ts": 24, "te": 30}]})
    assert json.loads(plan.payload())["day_plan"][0] == PERIOD


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ({"day_idx": 0, "day_plan": []}, "day_idx 0 is outside 1..8"),
        ({"day_idx": 1, "day_plan": [PERIOD] * 13}, "at most 12 periods"),
        ({"day_idx": 1, "day_plan": [PERIOD, PERIOD]}, "overlap"),
        ({"day_idx": 1, "day_plan": [{**PERIOD, "mode": 3}]}, "mode 3"),
        ({"day_idx": 1, "day_plan": [{**PERIOD, "te": 97}]}, "te 97 is outside 0..96"),
        ({"day_idx": 1, "day_plan": [{**PERIOD, "ts": 30}]}, "must be before"),
        ({"day_idx": 1, "day_plan": [{**PERIOD, "sl": 5}]}, "sl 5 is outside 10..100"),
        ({"day_idx": 1, "day_plan": [{**PERIOD, "pc": 1500}]}, "pc 1500 is outside 100..1000"),
        ({"day_idx": 1, "day_plan": [{**PERIOD, "ts": 1.5}]}, "whole number"),
        ({"day_idx": 1, "day_plan": "x"}, "list of periods"),
        ([], "JSON object"),
    ],
)
def test_day_plan_rules(plan: object, message: str) -> None:
    with pytest.raises(TouError, match=message):
        fw.day_plan(plan)


def test_pc_pd_grow_with_the_units() -> None:
    fw.day_plan({"day_idx": 1, "day_plan": [{**PERIOD, "pc": 1500}]}, units=2)


@pytest.mark.parametrize(
    ("week", "message"),
    [
        ({"week_plan": [{"week": ["Mon", "Mon"], "day_idx": 1}]}, "already planned"),
        ({"week_plan": [{"week": ["Monday"], "day_idx": 1}]}, "not one of"),
        ({"week_plan": [{"week": ["Mon"], "day_idx": 9}]}, "outside 1..8"),
        ({"week": []}, "week_plan list"),
    ],
)
def test_week_plan_rules(week: object, message: str) -> None:
    with pytest.raises(TouError, match=message):
        fw.week_plan(week)


@pytest.mark.parametrize(
    ("kind", "table"),
    [(Inbound.DAY_ACK, fw.DAY_ACKS), (Inbound.WEEK_ACK, fw.WEEK_ACKS),
     (Inbound.PLAN_STATUS, fw.PLAN_STATUS)],
)  # fmt: skip
def test_every_ack_code_has_a_text(kind: Inbound, table: dict[int, str]) -> None:
    for code, text in table.items():
        ack = fw.parse_ack(kind, json.dumps({"status": str(code), "err_msg": "x"}).encode())
        assert ack.status == code and ack.text == text and ack.ok == (code == 0)
    assert "unknown status 99" in fw.parse_ack(kind, b'{"status": 99}').describe()
    with pytest.raises(BatteryPayloadError):
        fw.parse_ack(kind, b'{"err_msg": "no status"}')


def test_docs_list_every_battery_entity() -> None:
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[1] / "DOCS.md").read_text(encoding="utf-8")
    table = docs.split("<!-- battery-entities:start -->")[1].split("<!-- battery-entities:end -->")[
        0
    ]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    keys = [line.split("|")[1].strip().strip("`") for line in rows]
    assert keys == [f.key for f in FIELDS], "DOCS.md's battery table is stale"
