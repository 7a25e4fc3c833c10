"""protocol.requests: the read-request builders and the fields they share."""

from __future__ import annotations

import re
import time

import pytest

from hoymiles_bridge.dtu import client as dtu_client
from hoymiles_bridge.protocol import requests as build
from hoymiles_bridge.protocol.pb import realdata_pb2
from hoymiles_bridge.protocol.registry import BY_NAME, request_tag_for

NOW = 1_700_000_000


def test_ymd_hms_is_local_time() -> None:
    text = build.ymd_hms(NOW)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", text)
    assert time.mktime(time.strptime(text, "%Y-%m-%d %H:%M:%S")) == NOW


def test_app_offset_is_still_importable_from_the_client() -> None:
    assert dtu_client.APP_OFFSET == build.APP_OFFSET == 28800


@pytest.mark.parametrize("name", sorted(build.READ_REQUESTS))
def test_read_requests_are_registered_under_their_name(name: str) -> None:
    message = build.READ_REQUESTS[name](NOW)
    assert type(message).__name__ == name
    assert BY_NAME[name].tag == request_tag_for(message)


def test_pages_and_the_legacy_real_data() -> None:
    new = build.real_data_new(NOW, 2)
    legacy = build.real_data_legacy(NOW, 2)
    assert isinstance(legacy, realdata_pb2.RealDataToDtu)
    assert (new.cp, new.oft, new.time, new.ymd_hms) == (
        legacy.cp,
        legacy.oft,
        legacy.time,
        legacy.ymd_hms,
    )
    assert build.warnings(NOW, 3).package_now == 3
    assert build.history_power(NOW, 1).cp == 1


def test_dev_config_fetch_names_the_device_in_hex() -> None:
    request = build.dev_config_fetch(
        NOW, dtu_serial="414393320732", device_serial=0x141293320732, rule_type=1
    )
    assert request.dev_sn == "141293320732" and request.tid == request.time == NOW
