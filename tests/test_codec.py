"""Registry and codec: every reference frame decodes to the expected message."""

from __future__ import annotations

from typing import Any

import pytest

from hoymiles_bridge.errors import EncryptionError, PayloadDecodeError, UnknownMessageError
from hoymiles_bridge.protocol.codec import decode_frame, encode_message
from hoymiles_bridge.protocol.crypto import PayloadCipher
from hoymiles_bridge.protocol.frame import encode_frame, parse_frame
from hoymiles_bridge.protocol.pb import appinfo_pb2, command_pb2, realdata_pb2
from hoymiles_bridge.protocol.registry import (
    BY_TAG,
    Direction,
    reply_tag,
    request_tag_for,
)

from .conftest import load_vectors

VECTORS = load_vectors()


def _field_values(message: Any) -> dict[int, Any]:
    return {f.number: v for f, v in message.ListFields()}


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v["name"])
def test_every_vector_decodes(vector: dict[str, Any]) -> None:
    frame = parse_frame(bytes.fromhex(vector["hex"]))
    expect = vector.get("expect", {})
    cipher = PayloadCipher.from_hex(expect["enc_rand"]) if "enc_rand" in expect else None
    decoded = decode_frame(frame, cipher)
    assert decoded.spec is not None, "every vector tag is in the registry"
    assert decoded.message is not None
    for number, value in expect.get("payload_fields", {}).items():
        assert _field_values(decoded.message)[int(number)] == value
    if "action" in expect:
        assert _field_values(decoded.message)[2] == expect["action"]
    if "data" in expect:
        assert _field_values(decoded.message)[7] == expect["data"]


def test_app_info_reply_fields() -> None:
    vector = next(v for v in VECTORS if v["name"].startswith("app_info_reply"))
    decoded = decode_frame(parse_frame(bytes.fromhex(vector["hex"])))
    msg = decoded.message
    assert isinstance(msg, appinfo_pb2.AppInfoFromDtu)
    exp = vector["expect"]
    assert msg.dtu_sn == exp["dtu_serial"]
    assert msg.device_nub == exp["device_nub"] and msg.pv_nub == exp["pv_nub"]
    assert msg.dtu_info.dtu_sw == exp["dtu_sw"] and msg.dtu_info.dtu_hw == exp["dtu_hw"]
    assert [f"{p.pv_sn:012X}" for p in msg.pv_info] == exp["inverters"]
    assert decoded.direction is Direction.FROM_DTU and decoded.name == "AppInfoFromDtu"


def test_unknown_tag_is_a_raw_frame_not_an_error() -> None:
    decoded = decode_frame(parse_frame(encode_frame(0xA399, 1, b"\x08\x01")))
    assert decoded.spec is None and decoded.message is None
    assert decoded.plaintext == b"\x08\x01" and decoded.name == "Unknown_A399"
    assert decoded.direction is Direction.TO_DTU


def test_garbage_payload_is_typed_error() -> None:
    with pytest.raises(PayloadDecodeError):
        decode_frame(parse_frame(encode_frame(0xA211, 1, b"\xff\xff\xff")))


def test_encrypted_without_key_is_typed_error() -> None:
    vector = next(v for v in VECTORS if v["name"].startswith("encrypted_"))
    with pytest.raises(EncryptionError):
        decode_frame(parse_frame(bytes.fromhex(vector["hex"])))


def test_encode_message_roundtrip_with_and_without_cipher() -> None:
    msg = realdata_pb2.RealDataNewToDtu(ymd_hms="2024-01-01 00:00:00", oft=28800, time=1)
    cipher = PayloadCipher(bytes(range(16)))
    for c in (None, cipher):
        decoded = decode_frame(parse_frame(encode_message(msg, 42, cipher=c)), c)
        assert decoded.message == msg and decoded.tag == 0xA311 and decoded.sequence == 42
        assert decoded.frame.encrypted is (c is not None)
    # app info always travels in clear
    raw = encode_message(appinfo_pb2.AppInfoToDtu(time=1), 1, cipher=cipher)
    assert not parse_frame(raw).encrypted


def test_registry_shape() -> None:
    assert reply_tag(0xA311) == 0xA211 and reply_tag(0x2305) == 0x2205
    assert request_tag_for(command_pb2.CommandToDtu()) == 0xA305
    with pytest.raises(UnknownMessageError):
        reply_tag(0xA211)
    names = [s.name for s in BY_TAG.values()]
    assert len(names) == len(set(names))
    for spec in BY_TAG.values():
        to_dtu = spec.name.endswith("ToDtu")
        assert (spec.direction is Direction.TO_DTU) == to_dtu, spec.name
