"""HM frames: header layout, encoding, strict parsing and an incremental splitter.

Standard frame (protocol.md section 2.2), all header fields big-endian::

    0  2  magic "HM"
    2  2  tag        (0xA311 = real data request, ...)
    4  2  sequence
    6  2  CRC-16/MODBUS of the payload only
    8  2  length     (header + payload; the GCM tag of an encrypted payload
                      is NOT counted, so such a frame is length + 16 bytes)
    10 n  payload    (protobuf, or AES-GCM ciphertext followed by its 16-byte tag)

Gateway / energy-storage tags use a 24-byte header (section 2.5) that adds a
marker, the gateway serial as u64 and a "number" before the payload.

Nothing here does I/O. Every failure is a :class:`~hoymiles_bridge.errors.FrameError`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, NamedTuple

from hoymiles_bridge.errors import (
    BadMagicError,
    CrcMismatchError,
    FrameError,
    FrameLengthError,
    TruncatedFrameError,
)
from hoymiles_bridge.protocol.crc import crc16_modbus

MAGIC: Final = b"HM"
HEADER_SIZE: Final = 10
EXTENDED_HEADER_SIZE: Final = 24
GCM_TAG_SIZE: Final = 16
#: Hard cap on one frame. The largest real replies (a full page of real data
#: for a DTU-Pro) are well under 4 KiB; anything bigger is garbage.
MAX_FRAME_SIZE: Final = 16 * 1024
#: The constant seen at offset 10 of every extended header (meaning unknown).
EXTENDED_MARKER: Final = 0x000E

_HEADER: Final = struct.Struct(">2sHHHH")
_EXTENDED_TAIL: Final = struct.Struct(">HQHH")  # bytes 10..24

#: Tag families (high byte) that use the 24-byte header: gateway (0xDB/0xDA)
#: and energy storage (0xC3/0xC2). Correct here if a device disagrees.
EXTENDED_FAMILIES: Final = frozenset({0xDB, 0xDA, 0xC3, 0xC2})


def is_extended_tag(tag: int) -> bool:
    """True when frames with this tag carry the 24-byte header."""
    return (tag >> 8) in EXTENDED_FAMILIES


@dataclass(frozen=True, slots=True)
class ExtendedHeader:
    """Bytes 10..24 of an extended frame."""

    serial: int = 0
    number: int = 0xFF
    marker: int = EXTENDED_MARKER
    reserved: int = 0

    @property
    def serial_hex(self) -> str:
        """The gateway serial as users see it (``430122480861``)."""
        return f"{self.serial:012X}"


class Frame(NamedTuple):
    """One frame as it crossed the wire (immutable).

    ``payload`` is what the CRC covers: the protobuf bytes, or for an
    encrypted frame the ciphertext without its GCM tag (kept in ``gcm_tag``).
    A NamedTuple rather than a dataclass: it is built for every frame and a
    tuple is several times cheaper to create.
    """

    tag: int
    sequence: int
    payload: bytes
    crc: int
    length: int
    crc_ok: bool = True
    gcm_tag: bytes = b""
    extended: ExtendedHeader | None = None

    @property
    def encrypted(self) -> bool:
        return bool(self.gcm_tag)

    @property
    def header_size(self) -> int:
        return EXTENDED_HEADER_SIZE if self.extended is not None else HEADER_SIZE

    @property
    def wire_size(self) -> int:
        return self.length + len(self.gcm_tag)

    def to_bytes(self) -> bytes:
        """The frame exactly as it is on the wire."""
        return _pack(self.tag, self.sequence, self.crc, self.payload, self.gcm_tag, self.extended)


def _pack(
    tag: int,
    sequence: int,
    crc: int,
    payload: bytes,
    gcm_tag: bytes,
    extended: ExtendedHeader | None,
) -> bytes:
    header_size = EXTENDED_HEADER_SIZE if extended is not None else HEADER_SIZE
    length = header_size + len(payload)
    head = _HEADER.pack(MAGIC, tag, sequence, crc, length)
    if extended is not None:
        head += _EXTENDED_TAIL.pack(
            extended.marker, extended.serial, extended.reserved, extended.number
        )
    return b"".join((head, payload, gcm_tag))


def encode_frame(
    tag: int,
    sequence: int,
    payload: bytes,
    *,
    gcm_tag: bytes = b"",
    extended: ExtendedHeader | None = None,
) -> bytes:
    """Build a frame. ``payload`` is the protobuf, or the ciphertext when ``gcm_tag`` is set."""
    if not 0 <= tag <= 0xFFFF:
        raise FrameError(f"tag {tag:#x} does not fit in 16 bits")
    if not 0 <= sequence <= 0xFFFF:
        raise FrameError(f"sequence {sequence} does not fit in 16 bits")
    if gcm_tag and len(gcm_tag) != GCM_TAG_SIZE:
        raise FrameError(f"GCM tag must be {GCM_TAG_SIZE} bytes, not {len(gcm_tag)}")
    header_size = EXTENDED_HEADER_SIZE if extended is not None else HEADER_SIZE
    if header_size + len(payload) + len(gcm_tag) > MAX_FRAME_SIZE:
        raise FrameLengthError(
            f"payload of {len(payload)} bytes exceeds the {MAX_FRAME_SIZE}-byte frame limit"
        )
    return _pack(tag, sequence, crc16_modbus(payload), payload, gcm_tag, extended)


def _check_length(length: int, header_size: int, raw: bytes, max_size: int) -> None:
    if length < header_size:
        raise FrameLengthError(
            f"length field {length} is smaller than the {header_size}-byte header", raw
        )
    if length > max_size:
        raise FrameLengthError(f"length field {length} exceeds the {max_size}-byte limit", raw)


def parse_frame(data: bytes, *, verify_crc: bool = True) -> Frame:
    """Parse exactly one complete frame.

    Whether the payload is encrypted is read from the size: a frame that is
    16 bytes longer than its length field carries a GCM tag. With
    ``verify_crc=False`` a CRC mismatch is reported in ``Frame.crc_ok``
    instead of raised (for the ``decode`` command and the inspector).
    """
    data = bytes(data)
    if len(data) < HEADER_SIZE:
        raise TruncatedFrameError(
            f"{len(data)} bytes is shorter than the {HEADER_SIZE}-byte header", data
        )
    magic, tag, sequence, crc, length = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise BadMagicError(f"frame starts with {magic.hex()} instead of 484d ('HM')", data)
    extended = is_extended_tag(tag)
    header_size = EXTENDED_HEADER_SIZE if extended else HEADER_SIZE
    _check_length(length, header_size, data, MAX_FRAME_SIZE)
    if len(data) == length:
        gcm_size = 0
    elif len(data) == length + GCM_TAG_SIZE and not extended:
        gcm_size = GCM_TAG_SIZE
    elif len(data) < length:
        raise TruncatedFrameError(
            f"frame announces {length} bytes but only {len(data)} are present", data
        )
    else:
        raise FrameLengthError(
            f"frame has {len(data)} bytes but its length field says {length}", data
        )
    return _build(data, tag, sequence, crc, length, header_size, gcm_size, verify_crc)


def _build(
    data: bytes,
    tag: int,
    sequence: int,
    crc: int,
    length: int,
    header_size: int,
    gcm_size: int,
    verify_crc: bool,
) -> Frame:
    header: ExtendedHeader | None = None
    if header_size == EXTENDED_HEADER_SIZE:
        marker, serial, reserved, number = _EXTENDED_TAIL.unpack_from(data, HEADER_SIZE)
        header = ExtendedHeader(serial=serial, number=number, marker=marker, reserved=reserved)
    payload = data[header_size:length]
    actual = crc16_modbus(payload)
    if actual != crc and verify_crc:
        raise CrcMismatchError(
            f"CRC mismatch on tag {tag:04X}: header says {crc:04X}, payload gives {actual:04X}",
            data[: length + gcm_size],
            expected=crc,
            actual=actual,
        )
    gcm_tag = data[length : length + gcm_size] if gcm_size else b""
    # positional: this runs for every frame and keywords cost more
    return Frame(tag, sequence, payload, crc, length, actual == crc, gcm_tag, header)


def peek_header(data: bytes) -> tuple[int, int] | None:
    """``(tag, sequence)`` of a buffer that starts with a header, else None."""
    if len(data) < HEADER_SIZE or data[:2] != MAGIC:
        return None
    _, tag, sequence, _, _ = _HEADER.unpack_from(data)
    return tag, sequence


EncryptedPredicate = Callable[[int], bool]


def _never(_tag: int) -> bool:
    return False


class FrameSplitter:
    """Cut a byte stream into frames, resynchronising on ``HM``.

    ``feed`` takes any chunk (a split frame, several frames, garbage) and
    returns the complete frames it now holds, each a :class:`Frame` or, for a
    malformed one, the :class:`FrameError` that describes it. Incomplete input
    is kept for the next call and never reported as an error.

    ``encrypted(tag)`` tells whether a frame with that tag carries a GCM tag
    after the length-counted bytes; the session sets it once it knows the DTU
    encrypts.
    """

    __slots__ = ("_buffer", "encrypted", "max_frame_size")

    def __init__(
        self,
        *,
        encrypted: EncryptedPredicate | None = None,
        max_frame_size: int = MAX_FRAME_SIZE,
    ) -> None:
        self._buffer = bytearray()
        self.encrypted: EncryptedPredicate = encrypted or _never
        self.max_frame_size = max_frame_size

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buffer)

    def clear(self) -> bytes:
        """Drop and return whatever is buffered (for a connection that closed)."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        return rest

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame | FrameError]:
        buf: bytes | bytearray
        if self._buffer:
            self._buffer += data
            buf = self._buffer
        else:
            # Common case: nothing held back. Work on the chunk itself and copy
            # only what is left over at the end.
            buf = data if isinstance(data, bytes) else bytes(data)
        out: list[Frame | FrameError] = []
        start = 0
        end = len(buf)
        while end - start >= 2:
            if buf[start] != 0x48 or buf[start + 1] != 0x4D:
                found = buf.find(MAGIC, start)
                # Keep a trailing "H": it may be the first half of the next magic.
                stop = found if found >= 0 else (end - 1 if buf[end - 1] == 0x48 else end)
                if stop > start:
                    out.append(
                        BadMagicError(
                            f"skipped {stop - start} bytes that are not part of a frame",
                            bytes(buf[start:stop]),
                        )
                    )
                    start = stop
                if found < 0:
                    break
                continue
            if end - start < HEADER_SIZE:
                break
            _, tag, sequence, crc, length = _HEADER.unpack_from(buf, start)
            header_size = EXTENDED_HEADER_SIZE if (tag >> 8) in EXTENDED_FAMILIES else HEADER_SIZE
            if length < header_size or length > self.max_frame_size:
                out.append(
                    FrameLengthError(
                        f"tag {tag:04X}: length field {length} is outside "
                        f"{header_size}..{self.max_frame_size}; resynchronising",
                        bytes(buf[start : start + HEADER_SIZE]),
                    )
                )
                start += 2  # step over this "HM" and look for the next one
                continue
            gcm_size = GCM_TAG_SIZE if header_size == HEADER_SIZE and self.encrypted(tag) else 0
            total = length + gcm_size
            if end - start < total:
                break
            if start == 0 and total == end and type(buf) is bytes:
                raw = buf  # the chunk is exactly one frame: no copy
            else:
                raw = bytes(buf[start : start + total])
            try:
                out.append(_build(raw, tag, sequence, crc, length, header_size, gcm_size, True))
            except FrameError as err:
                out.append(err)
                # A bad CRC may mean a truncated frame swallowed the start of the
                # next one: resume at the next "HM" inside the rejected bytes.
                inner = raw.find(MAGIC, 2)
                start += inner if inner > 0 else total
            else:
                start += total
        if buf is self._buffer:
            if start:
                del self._buffer[:start]
        elif start < end:
            self._buffer = bytearray(buf[start:])
        return out


__all__ = [
    "EXTENDED_HEADER_SIZE",
    "GCM_TAG_SIZE",
    "HEADER_SIZE",
    "MAGIC",
    "MAX_FRAME_SIZE",
    "ExtendedHeader",
    "Frame",
    "FrameSplitter",
    "encode_frame",
    "is_extended_tag",
    "parse_frame",
    "peek_header",
]
