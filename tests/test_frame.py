"""Frame codec: every reference vector, every split point, hostile input."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hoymiles_bridge.errors import (
    BadMagicError,
    CrcMismatchError,
    FrameError,
    FrameLengthError,
    TruncatedFrameError,
)
from hoymiles_bridge.protocol import frame as frame_module
from hoymiles_bridge.protocol.crc import (
    CRC_INIT,
    crc16_modbus,
    crc16_modbus_python,
    crc16_update,
    crc16_zeros,
)
from hoymiles_bridge.protocol.frame import (
    GCM_TAG_SIZE,
    HEADER_SIZE,
    KEPT_BAD_BYTES,
    MAX_FRAME_SIZE,
    ExtendedHeader,
    Frame,
    FrameSplitter,
    encode_frame,
    parse_frame,
)

from .conftest import load_vectors

VECTORS = load_vectors()
PLAIN = [v for v in VECTORS if "encrypted" not in v["name"]]


def test_crc_check_values() -> None:
    assert crc16_modbus(b"123456789") == 0x4B37
    assert crc16_modbus(b"") == 0xFFFF
    assert crc16_modbus(bytes.fromhex("1080e10118b8ddc6a806")) == 0x4049
    assert crc16_modbus_python(b"123456789") == 0x4B37


@given(st.binary(max_size=600))
def test_crc_fallback_matches_fast_path(data: bytes) -> None:
    assert crc16_modbus_python(data) == crc16_modbus(data)


@pytest.mark.parametrize("vector", PLAIN, ids=lambda v: v["name"])
def test_reference_frames_parse_and_reencode(vector: dict[str, object]) -> None:
    raw = bytes.fromhex(str(vector["hex"]))
    frame = parse_frame(raw)
    expect = vector.get("expect") or {}
    assert isinstance(expect, dict)
    if "tag" in expect:
        assert f"{frame.tag:04X}" == expect["tag"]
    if "sequence" in expect:
        assert frame.sequence == expect["sequence"]
    if expect.get("extended_header"):
        assert frame.extended is not None
        assert frame.extended.number == expect["number"]
        if "serial" in expect:
            assert frame.extended.serial_hex == expect["serial"]
    assert frame.to_bytes() == raw
    assert encode_frame(frame.tag, frame.sequence, frame.payload, extended=frame.extended) == raw


@pytest.mark.parametrize("vector", PLAIN, ids=lambda v: v["name"])
def test_every_split_point(vector: dict[str, object]) -> None:
    raw = bytes.fromhex(str(vector["hex"]))
    for cut in range(len(raw) + 1):
        splitter = FrameSplitter()
        got = splitter.feed(raw[:cut]) + splitter.feed(raw[cut:])
        assert len(got) == 1, cut
        assert isinstance(got[0], Frame)
        assert got[0].to_bytes() == raw
        assert splitter.pending == 0


def test_byte_by_byte_stream_of_all_vectors() -> None:
    stream = b"".join(bytes.fromhex(str(v["hex"])) for v in PLAIN)
    splitter = FrameSplitter()
    frames: list[Frame | FrameError] = []
    for i in range(len(stream)):
        frames += splitter.feed(memoryview(stream)[i : i + 1])
    assert [f.to_bytes() for f in frames if isinstance(f, Frame)] == [
        bytes.fromhex(str(v["hex"])) for v in PLAIN
    ]
    assert all(isinstance(f, Frame) for f in frames)


def test_many_frames_in_one_chunk() -> None:
    raws = [encode_frame(0xA211, n, bytes([n]) * n) for n in range(50)]
    got = FrameSplitter().feed(bytearray(b"".join(raws)))
    assert [f.to_bytes() for f in got if isinstance(f, Frame)] == raws


def test_garbage_before_frame_resyncs() -> None:
    raw = encode_frame(0xA202, 7, b"\x08\x01")
    splitter = FrameSplitter()
    got = splitter.feed(b"\x00\x01garbageH" + raw + b"zz")
    assert isinstance(got[0], BadMagicError)
    assert got[0].raw == b"\x00\x01garbageH"
    assert isinstance(got[1], Frame)
    assert got[1].sequence == 7
    # trailing junk is reported; nothing stays buffered
    assert isinstance(got[2], BadMagicError)
    assert splitter.pending == 0


def test_lone_trailing_h_is_kept_for_the_next_chunk() -> None:
    raw = encode_frame(0xA202, 1, b"")
    splitter = FrameSplitter()
    assert [type(e) for e in splitter.feed(b"xx" + raw[:1])] == [BadMagicError]
    assert splitter.pending == 1
    got = splitter.feed(raw[1:])
    assert len(got) == 1
    assert isinstance(got[0], Frame)


def test_bad_crc_is_reported_and_stream_continues() -> None:
    good = encode_frame(0xA211, 1, b"\x10\x01")
    bad = bytearray(encode_frame(0xA211, 2, b"\x10\x02"))
    bad[6] ^= 0xFF
    got = FrameSplitter().feed(bytes(bad) + good)
    assert isinstance(got[0], CrcMismatchError)
    assert got[0].raw == bytes(bad)
    assert isinstance(got[1], Frame)
    assert got[1].sequence == 1


@pytest.mark.parametrize("length", [0, 9, MAX_FRAME_SIZE + 1, 0xFFFF])
def test_impossible_length_resyncs(length: int) -> None:
    hostile = struct.pack(">2sHHHH", b"HM", 0xA211, 1, 0, length) + b"\x00" * 4
    good = encode_frame(0xA211, 9, b"\x10\x01")
    got = FrameSplitter().feed(hostile + good)
    assert isinstance(got[0], FrameLengthError)
    assert isinstance(got[-1], Frame)
    assert got[-1].sequence == 9


def test_oversize_length_does_not_wait_for_bytes() -> None:
    splitter = FrameSplitter()
    got = splitter.feed(struct.pack(">2sHHHH", b"HM", 0xA211, 1, 0, 60000))
    assert isinstance(got[0], FrameLengthError)
    assert splitter.pending < 10


def test_zero_length_payload_frame() -> None:
    raw = bytes.fromhex("484da3030001ffff000a")
    frame = parse_frame(raw)
    assert frame.payload == b""
    assert frame.crc == 0xFFFF


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", TruncatedFrameError),
        (b"HM\xa3\x11", TruncatedFrameError),
        (b"XX" + bytes(8), BadMagicError),
        (bytes.fromhex("484da3110001a56900290a13"), TruncatedFrameError),
        (bytes.fromhex("484da3030001ffff000a00"), FrameLengthError),
        (bytes.fromhex("484da3030001fffe000a"), CrcMismatchError),
        (bytes.fromhex("484da3030001ffff0009"), FrameLengthError),
    ],
)
def test_parse_frame_hostile(data: bytes, error: type[FrameError]) -> None:
    with pytest.raises(error):
        parse_frame(data)


def test_parse_frame_lenient_crc() -> None:
    frame = parse_frame(bytes.fromhex("484da3030001fffe000a"), verify_crc=False)
    assert frame.crc_ok is False


def test_encrypted_frame_is_length_plus_tag() -> None:
    raw = encode_frame(0xA211, 3, b"cipher", gcm_tag=bytes(GCM_TAG_SIZE))
    frame = parse_frame(raw)
    assert frame.encrypted
    assert frame.length == 16
    assert frame.wire_size == 32
    splitter = FrameSplitter(encrypted=lambda tag: tag == 0xA211)
    got = splitter.feed(raw[:20]) + splitter.feed(raw[20:])
    assert isinstance(got[0], Frame)
    assert got[0].gcm_tag == bytes(GCM_TAG_SIZE)


def test_extended_header_roundtrip() -> None:
    ext = ExtendedHeader(serial=0x430122480861, number=1)
    raw = encode_frame(0xC302, 2, b"\x08\x01", extended=ext)
    frame = parse_frame(raw)
    assert frame.extended == ext
    assert frame.payload == b"\x08\x01"
    assert frame.length == 26


def test_encode_rejects_out_of_range() -> None:
    with pytest.raises(FrameError):
        encode_frame(0x1_0000, 0, b"")
    with pytest.raises(FrameError):
        encode_frame(0xA311, -1, b"")
    with pytest.raises(FrameLengthError):
        encode_frame(0xA311, 0, bytes(MAX_FRAME_SIZE))


@settings(max_examples=300)
@given(
    tag=st.integers(0, 0xFFFF),
    seq=st.integers(0, 0xFFFF),
    payload=st.binary(max_size=300),
)
def test_property_encode_decode_identity(tag: int, seq: int, payload: bytes) -> None:
    ext = ExtendedHeader(serial=seq * 7) if tag >> 8 in {0xDB, 0xDA, 0xC3, 0xC2} else None
    raw = encode_frame(tag, seq, payload, extended=ext)
    frame = parse_frame(raw)
    assert (frame.tag, frame.sequence, frame.payload, frame.extended) == (tag, seq, payload, ext)
    got = FrameSplitter().feed(raw)
    assert len(got) == 1
    assert isinstance(got[0], Frame)
    assert got[0].to_bytes() == raw


@settings(max_examples=500)
@given(st.lists(st.binary(max_size=64), max_size=8))
def test_property_random_bytes_only_give_typed_errors(chunks: list[bytes]) -> None:
    splitter = FrameSplitter()
    for chunk in chunks:
        for item in splitter.feed(chunk):
            assert isinstance(item, Frame | FrameError)
    data = b"".join(chunks)
    with contextlib.suppress(FrameError):
        parse_frame(data, verify_crc=bool(len(data) % 2))


@given(st.binary(max_size=64))
def test_property_random_tail_after_magic(tail: bytes) -> None:
    with contextlib.suppress(FrameError):
        parse_frame(b"HM" + tail)
    for item in FrameSplitter().feed(b"HM" + tail):
        assert isinstance(item, Frame | FrameError)


def test_truncated_frame_followed_by_full_frame_recovers_the_second() -> None:
    first = encode_frame(0xA211, 1, bytes(range(40)))
    second = encode_frame(0xA211, 2, b"\x10\x02")
    got = FrameSplitter().feed(first[:25] + second * 3)
    frames = [f for f in got if isinstance(f, Frame)]
    assert any(isinstance(f, CrcMismatchError | FrameLengthError) for f in got)
    assert frames and all(f.sequence == 2 and f.payload == b"\x10\x02" for f in frames)


# --- linear cost on hostile streams --------------------------------------------------------

#: A header announcing the largest frame, with a CRC that its "payload" will not have.
HOSTILE_HEADER = struct.pack(">2sHHHH", b"HM", 0xA211, 1, 0, MAX_FRAME_SIZE)
MIB = 1024 * 1024
#: Bytes run through the CRC per byte fed, at most (measured: about 2.4 for the
#: stream below; the splitter before this bound hashed about 1500 per byte fed).
WORK_PER_BYTE = 4


def _hostile_stream(size: int, embedded: dict[int, bytes] | None = None) -> bytes:
    """``size`` bytes of HOSTILE_HEADER back to back, with ``embedded`` frames at offsets."""
    data = bytearray((HOSTILE_HEADER * (size // HEADER_SIZE + 1))[:size])
    for offset, frame in (embedded or {}).items():
        data[offset : offset + len(frame)] = frame
    return bytes(data)


class _CrcCounter:
    """Counts the bytes the splitter hands to the CRC functions, independently of it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.hashed = 0
        plain, update = frame_module.crc16_modbus, frame_module.crc16_update

        def counted_plain(data: bytes) -> int:
            self.hashed += len(data)
            return plain(data)

        def counted_update(register: int, data: bytes | bytearray) -> int:
            self.hashed += len(data)
            return update(register, data)

        monkeypatch.setattr(frame_module, "crc16_modbus", counted_plain)
        monkeypatch.setattr(frame_module, "crc16_update", counted_update)


@pytest.mark.parametrize("chunk", [MIB, 1460], ids=["one-chunk", "tcp-segments"])
def test_a_mebibyte_of_maximum_length_headers_costs_linear_work(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = _CrcCounter(monkeypatch)
    data = _hostile_stream(MIB)
    splitter = FrameSplitter()
    items: list[Frame | FrameError] = []
    for at in range(0, len(data), chunk):
        items += splitter.feed(data[at : at + chunk])
    assert counter.hashed == splitter.crc_bytes
    assert splitter.crc_bytes <= WORK_PER_BYTE * len(data)
    # every candidate was still tried: one error per header that could be completed
    assert len(items) == (len(data) - splitter.pending) // HEADER_SIZE
    assert all(isinstance(i, CrcMismatchError) for i in items)
    # no error holds more than the header and KEPT_BAD_BYTES of what it rejects
    assert all(
        len(i.raw) <= HEADER_SIZE + KEPT_BAD_BYTES for i in items if isinstance(i, FrameError)
    )
    assert splitter.pending <= MAX_FRAME_SIZE
    assert splitter.unframed == len(data)


def test_frames_hidden_in_a_mebibyte_of_hostile_headers_are_all_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frames = {
        offset: encode_frame(0xA211, number, bytes([number]) * (number * 37 % 900))
        for number, offset in enumerate(range(1000, MIB - 20_000, 65_530), start=1)
    }
    frames[500_003] = encode_frame(0xDA01, 99, b"\x08\x01", extended=ExtendedHeader(serial=7))
    data = _hostile_stream(MIB, frames)
    counter = _CrcCounter(monkeypatch)
    splitter = FrameSplitter()
    items = splitter.feed(data[: MIB // 2]) + splitter.feed(data[MIB // 2 :])
    found = [i.to_bytes() for i in items if isinstance(i, Frame)]
    # (a frame in the last 16 KiB would wait, as before, for the bytes the
    # header in front of it announces: that is why none is placed there)
    assert found == [frames[offset] for offset in sorted(frames)]
    assert counter.hashed == splitter.crc_bytes <= WORK_PER_BYTE * len(data)


def test_a_bad_frame_of_16_kib_keeps_only_its_header_and_64_bytes() -> None:
    bad = bytearray(encode_frame(0xA211, 5, bytes(MAX_FRAME_SIZE - HEADER_SIZE)))
    bad[6] ^= 0xFF
    good = encode_frame(0xA211, 6, b"\x10\x01")
    items = FrameSplitter().feed(bytes(bad) + b"\x00" * 500 + good)
    error, skipped, frame = items
    assert isinstance(error, CrcMismatchError)
    assert error.raw == bytes(bad[: HEADER_SIZE + KEPT_BAD_BYTES])
    assert isinstance(skipped, BadMagicError) and "500 bytes" in str(skipped)
    assert skipped.raw == bytes(KEPT_BAD_BYTES)
    assert isinstance(frame, Frame) and frame.sequence == 6


def test_unframed_counts_the_bytes_since_the_last_good_frame() -> None:
    splitter = FrameSplitter()
    good = encode_frame(0xA211, 1, b"\x10\x01")
    splitter.feed(b"junk" + good)
    assert splitter.unframed == 0
    splitter.feed(b"HM\xa2\x11" + b"zz")
    assert splitter.unframed == 6
    splitter.feed(good[:5])
    assert splitter.unframed == 6 + 5
    splitter.feed(good[5:])
    assert splitter.unframed == 0


@given(st.binary(max_size=400), st.data())
def test_property_crc_of_any_range_from_two_registers(data: bytes, draw: st.DataObject) -> None:
    first = draw.draw(st.integers(0, len(data)))
    stop = draw.draw(st.integers(first, len(data)))
    z_first, z_stop = crc16_update(0, data[:first]), crc16_update(0, data[:stop])
    assert crc16_zeros(CRC_INIT ^ z_first, stop - first) ^ z_stop == crc16_modbus(data[first:stop])
    register = draw.draw(st.integers(0, 0xFFFF))
    count = draw.draw(st.integers(0, 3000))
    assert crc16_zeros(register, count) == crc16_update(register, bytes(count))
    assert crc16_modbus_python(data, register) == crc16_update(register, data)
