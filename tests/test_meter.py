"""Grid-meter payloads (protocol/meter.py): numbers, JSON paths, sign, unit, bad input."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hoymiles_bridge.errors import InvalidArgumentError
from hoymiles_bridge.protocol.meter import (
    MAX_PAYLOAD,
    MeterPayloadError,
    parse_path,
    read_meter,
)

SHELLY_PRO_3EM = json.dumps(
    {
        "id": 0,
        "a_act_power": 120.5,
        "b_act_power": -30.1,
        "c_act_power": 15.0,
        "total_current": 1.2,
        "total_act_power": 105.4,
        "total_aprt_power": 300.2,
    }
).encode()
TASMOTA_SML = b'{"Time":"2026-12-01T10:00:05","SML":{"Total_in":1234.5,"Power":-412}}'


def test_paths() -> None:
    assert parse_path("total_act_power") == ("total_act_power",)
    assert parse_path("$.SML.Power") == ("SML", "Power")
    assert parse_path("phases[1].p") == ("phases", 1, "p")
    assert parse_path("phases.0.p") == ("phases", 0, "p")
    for bad in ("", "$", "a..b", "a[x]"):
        with pytest.raises(InvalidArgumentError):
            parse_path(bad)


def test_shelly_tasmota_and_a_plain_number() -> None:
    assert read_meter(SHELLY_PRO_3EM, parse_path("total_act_power")).watts == 105.4
    sml = read_meter(TASMOTA_SML, parse_path("SML.Power"))
    assert sml.watts == -412.0
    assert sml.stamp is not None
    assert read_meter(b" -87.5 ").watts == -87.5
    assert read_meter(b'{"p": [{"w": "12"}]}', parse_path("p[0].w")).watts == 12.0


def test_sign_and_unit() -> None:
    assert read_meter(b"0.4", sign="export_positive", unit="kW").watts == -400.0
    assert read_meter(b"-1.5", unit="kW").watts == -1500.0
    assert read_meter(b"0", sign="export_positive").watts == 0.0


def test_shelly_millisecond_stamp() -> None:
    reading = read_meter(b'{"ts": 1764583205123, "p": 5}', parse_path("p"))
    assert reading.stamp == pytest.approx(1764583205.123)


@pytest.mark.parametrize(
    ("payload", "path", "why"),
    [
        (b"", None, "empty"),
        (b"unavailable", None, "not a number"),
        (b"nan", None, "finite"),
        (b"\xff\xfe", None, "not text"),
        (b"{", ("p",), "not JSON"),
        (b'{"q": 1}', ("p",), "no 'p'"),
        (b'{"p": true}', ("p",), "true/false"),
        (b'{"p": {"x": 1}}', ("p",), "not a number"),
        (b'{"p": [1]}', ("p", 3), "past the list"),
        (b"[1, 2]", ("p",), "cannot look up"),
        (b"1e12", None, "beyond"),
        (b"1" * (MAX_PAYLOAD + 1), None, "longer"),
        (b"[" * 5000 + b"]" * 5000, ("p",), "not JSON"),
    ],
)
def test_bad_payloads_say_why(payload: bytes, path: tuple[str, ...] | None, why: str) -> None:
    with pytest.raises(MeterPayloadError, match=why):
        read_meter(payload, path)


@settings(max_examples=500, deadline=None)
@given(payload=st.binary(max_size=200), path=st.sampled_from([None, ("p",), ("a", 0, "b")]))
def test_any_payload_reads_or_says_why(payload: bytes, path: tuple[str | int, ...] | None) -> None:
    try:
        value = read_meter(payload, path, sign="export_positive", unit="kW")
    except MeterPayloadError:
        return
    assert abs(value.watts) <= 1_000_000
