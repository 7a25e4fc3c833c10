"""Typed models: scaling, immutability, lazy building of real data."""

from __future__ import annotations

import re
from typing import Any

import pytest

from hoymiles_bridge.errors import InvalidArgumentError, InvalidSerialError, PayloadDecodeError
from hoymiles_bridge.protocol.devices import (
    SERIAL_PATTERN,
    built_in_dtu_serial,
    check_serial,
    dtu_model,
    dtu_version,
    format_serial,
    inverter_hw_version,
    inverter_sw_version,
    inverter_type,
    parse_serial,
)
from hoymiles_bridge.protocol.models import (
    AppInfo,
    CommandAck,
    DtuConfig,
    Heartbeat,
    NetworkInfo,
    RealData,
    Warnings,
)
from hoymiles_bridge.protocol.pb import (
    appinfo_pb2,
    command_pb2,
    config_pb2,
    heartbeat_pb2,
    network_pb2,
    realdata_pb2,
    warn_pb2,
)


def _page() -> realdata_pb2.RealDataNewFromDtu:
    """hoymiles-wifi issue #34, decoded-only example of an HMS-800W-2T (protocol.md 6.5)."""
    msg = realdata_pb2.RealDataNewFromDtu(sn="414393320732", time=1730880000, ap=1, ver=1)
    msg.sgs_datas.add(
        sn=0x141293320732, v=2334, freq=5002, p=342, i=14, pf=1000, temp=113, wnum=7, link=1
    )
    msg.pv_datas.add(sn=0x141293320732, pi=2, v=6, code=50331648)
    msg.pv_datas.add(sn=0x141293320732, pi=1, v=338, i=106, p=361, et=16107, ed=272, code=50921472)
    msg.dtu_p = 342
    msg.dtu_ed = 272
    return msg


def test_issue_example_scales_to_si_units() -> None:
    data = RealData.from_pb(_page())
    assert data.to_dict() == {
        "dtu_serial": "414393320732",
        "timestamp": 1730880000,
        "inverters": [
            {
                "serial": "141293320732",
                "model": "HMS-800W-2T",
                "voltage": 233.4,
                "current": 0.14,
                "power": 34.2,
                "reactive_power": 0.0,
                "frequency": 50.02,
                "power_factor": 1.0,
                "temperature": 11.3,
                "warning_count": 7,
                "link_status": 1,
                "ports": [
                    {
                        "port": 1,
                        "voltage": 33.8,
                        "current": 1.06,
                        "power": 36.1,
                        "energy_total": 16107,
                        "energy_daily": 272,
                        "error_code": 50921472,
                    },
                    {
                        "port": 2,
                        "voltage": 0.6,
                        "current": 0.0,
                        "power": 0.0,
                        "energy_total": 0,
                        "energy_daily": 0,
                        "error_code": 50331648,
                    },
                ],
            }
        ],
        "meters": [],
        "dtu_power": 34.2,
        "dtu_energy_daily": 272,
    }


def test_real_data_is_immutable_and_comparable() -> None:
    a = RealData.from_pb(_page())
    b = RealData.from_pb(_page())
    assert a == b and hash(a) == hash(b)
    with pytest.raises(AttributeError):
        a.timestamp = 5  # type: ignore[misc]
    eager = RealData(a.dtu_serial, a.timestamp, a.inverters, a.meters)
    assert eager == a
    assert "414393320732" in repr(a)


def test_totals_fall_back_to_inverter_sums_without_dtu_fields() -> None:
    page = _page()
    page.ClearField("dtu_p")
    page.ClearField("dtu_ed")
    data = RealData.from_pb(page)
    assert data.dtu_power == 34.2 and data.dtu_energy_daily == 272


def test_serials_models_versions() -> None:
    assert format_serial(0x116172207281) == "116172207281"
    assert parse_serial("0x116172207281") == 0x116172207281
    for bad in ("", "xyz", "1" * 17):
        with pytest.raises(InvalidArgumentError, match="not a serial number"):
            parse_serial(bad)
    assert inverter_type(0x116172207281).model.startswith("HM-")
    assert inverter_type(0x141293320732).ports == 2
    assert inverter_type(0x138212345678).phases == 3
    assert dtu_model("10F872226797") == "DTU-Pro"
    assert dtu_model("414393320732") == "DTUBI"
    assert dtu_model("zz") == "unknown"
    assert built_in_dtu_serial(0x141293320732) == "414393320732"
    assert built_in_dtu_serial(0x122295201023) == "414195201023"
    assert dtu_version(520) == "V00.02.08" and dtu_version(4097) == "V01.00.01"
    assert inverter_sw_version(10012) == "V01.00.12"
    assert inverter_hw_version(256) == "H00.04.00"


# --- the serial rule ----------------------------------------------------------------

#: Serials a hostile or broken DTU might send, each refused at decode.
BAD_SERIALS = [
    "10F8#72226797",
    "10F8+",
    "10F872226797/cmd",
    "+/#",
    "10F87222679G",
    "10F8 72226797",
    "10F872226797\n",
    "",
    "1" * 17,
    "A" * 300,
]


def _app_info(serial: str) -> appinfo_pb2.AppInfoFromDtu:
    msg = appinfo_pb2.AppInfoFromDtu(dtu_sn=serial, time=1646925306, device_nub=1)
    msg.pv_info.add(pv_sn=0x116172207281, pv_sw=10012, pv_hw=256)
    return msg


@pytest.mark.parametrize("serial", BAD_SERIALS)
def test_bad_dtu_serials_are_refused_at_decode(serial: str) -> None:
    page = _page()
    page.sn = serial
    with pytest.raises(InvalidSerialError, match=r"RealDataNewFromDtu\.sn"):
        RealData.from_pb(page)
    with pytest.raises(InvalidSerialError, match=r"AppInfoFromDtu\.dtu_sn"):
        AppInfo.from_pb(_app_info(serial))
    # The error is a protocol error, so every caller that survives a spoiled
    # reply survives this one too.
    assert issubclass(InvalidSerialError, PayloadDecodeError)


@pytest.mark.parametrize("serial", [s for s in BAD_SERIALS if s])
def test_bad_serials_in_other_replies_are_refused_too(serial: str) -> None:
    cases: list[tuple[Any, Any, str]] = [
        (Heartbeat, heartbeat_pb2.HeartbeatFromDtu(dtu_sn=serial), "HeartbeatFromDtu"),
        (DtuConfig, config_pb2.GetConfigFromDtu(dtu_sn=serial), "GetConfigFromDtu"),
        (NetworkInfo, network_pb2.NetworkInfoFromDtu(dtu_sn=serial), "NetworkInfoFromDtu"),
        (Warnings, warn_pb2.WarnFromDtu(dtu_sn=serial), "WarnFromDtu"),
        (CommandAck, command_pb2.CommandFromDtu(dtu_sn=serial), "CommandFromDtu"),
    ]
    for model, message, name in cases:
        with pytest.raises(InvalidSerialError, match=name):
            model.from_pb(message)


def test_the_refusal_is_one_sentence_naming_the_field_and_quoting_a_little() -> None:
    with pytest.raises(InvalidSerialError) as caught:
        AppInfo.from_pb(_app_info("A" * 300))
    text = str(caught.value)
    assert text == (
        f"the serial number in AppInfoFromDtu.dtu_sn, '{'A' * 24}'..., is not 1 to 16 hex digits"
    )
    with pytest.raises(InvalidSerialError, match="AppInfoFromDtu.dtu_sn is empty"):
        AppInfo.from_pb(_app_info(""))


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("10F872226797", "10F872226797"),
        ("414393320732", "414393320732"),
        ("10f872226797", "10F872226797"),
        ("10F872226797J", "10F872226797J"),
        ("1", "1"),
        ("F" * 16, "F" * 16),
    ],
)
def test_good_serials_pass_upper_cased(sent: str, kept: str) -> None:
    page = _page()
    page.sn = sent
    assert RealData.from_pb(page).dtu_serial == kept
    info = AppInfo.from_pb(_app_info(sent))
    assert info.dtu_serial == kept
    assert info.dtu_model == dtu_model(kept)


def test_optional_serials_may_be_left_out_and_every_serial_follows_the_rule() -> None:
    assert CommandAck.from_pb(command_pb2.CommandFromDtu(action=33)).dtu_serial == ""
    assert Heartbeat.from_pb(heartbeat_pb2.HeartbeatFromDtu()).dtu_serial == ""
    assert DtuConfig.from_pb(config_pb2.GetConfigFromDtu()).dtu_serial == ""
    assert NetworkInfo.from_pb(network_pb2.NetworkInfoFromDtu()).dtu_serial == ""
    assert Warnings.from_pb(warn_pb2.WarnFromDtu()).dtu_serial == ""
    rule = re.compile(SERIAL_PATTERN)
    # int64 serials, even negative or tiny ones, are printed as hex digits
    for raw in (0, 1, 0x116172207281, -1, -(2**63), 2**63 - 1):
        assert rule.fullmatch(format_serial(raw))
    info = AppInfo.from_pb(_app_info("10F872226797"))
    data = RealData.from_pb(_page())
    serials = [info.dtu_serial, data.dtu_serial, *(i.serial for i in info.inverters)]
    serials += [i.serial for i in data.inverters]
    assert all(rule.fullmatch(s) for s in serials)
    with pytest.raises(InvalidSerialError):
        check_serial("10F8/", "a test field", optional=True)
