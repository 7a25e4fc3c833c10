"""Typed models: scaling, immutability, lazy building of real data."""

from __future__ import annotations

import pytest

from hoymiles_bridge.errors import InvalidArgumentError
from hoymiles_bridge.protocol.devices import (
    built_in_dtu_serial,
    dtu_model,
    dtu_version,
    format_serial,
    inverter_hw_version,
    inverter_sw_version,
    inverter_type,
    parse_serial,
)
from hoymiles_bridge.protocol.models import RealData
from hoymiles_bridge.protocol.pb import realdata_pb2


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
