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

The splitter's cost is linear in its input, whatever the input. Garbage full
of ``HM`` headers that each announce the largest frame used to cost a CRC
over up to 16 KiB per header; now only the first candidate of a bad stretch
is hashed on its own, and the overlapping candidates after it are checked
from CRC registers of the stream kept every few bytes (see
:class:`_Resync`). Errors keep the header and at most :data:`KEPT_BAD_BYTES`
bytes of what they reject.
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
from hoymiles_bridge.protocol.crc import CRC_INIT, crc16_modbus, crc16_update, crc16_zeros

MAGIC: Final = b"HM"
HEADER_SIZE: Final = 10
EXTENDED_HEADER_SIZE: Final = 24
GCM_TAG_SIZE: Final = 16
#: Hard cap on one frame. The largest real replies (a full page of real data
#: for a DTU-Pro) are well under 4 KiB; anything bigger is garbage.
MAX_FRAME_SIZE: Final = 16 * 1024
#: The constant seen at offset 10 of every extended header (meaning unknown).
EXTENDED_MARKER: Final = 0x000E
#: How many bytes of rejected data (after the header, if any) a splitter error
#: keeps in ``raw``: enough to recognise it in the inspector, never a 16 KiB copy.
KEPT_BAD_BYTES: Final = 64

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
    payload = data[header_size:length]
    actual = crc16_modbus(payload)
    if actual != crc and verify_crc:
        raise _crc_error(tag, crc, actual, data[: length + gcm_size])
    return _assemble(
        data, tag, sequence, crc, length, header_size, gcm_size, payload, actual == crc
    )


def _assemble(
    data: bytes,
    tag: int,
    sequence: int,
    crc: int,
    length: int,
    header_size: int,
    gcm_size: int,
    payload: bytes,
    crc_ok: bool,
) -> Frame:
    """The Frame of ``data`` (one whole frame) whose ``payload`` was already cut and checked."""
    header: ExtendedHeader | None = None
    if header_size == EXTENDED_HEADER_SIZE:
        marker, serial, reserved, number = _EXTENDED_TAIL.unpack_from(data, HEADER_SIZE)
        header = ExtendedHeader(serial=serial, number=number, marker=marker, reserved=reserved)
    gcm_tag = data[length : length + gcm_size] if gcm_size else b""
    # positional: this runs for every frame and keywords cost more
    return Frame(tag, sequence, payload, crc, length, crc_ok, gcm_tag, header)


def _crc_error(tag: int, expected: int, actual: int, raw: bytes) -> CrcMismatchError:
    return CrcMismatchError(
        f"CRC mismatch on tag {tag:04X}: header says {expected:04X}, payload gives {actual:04X}",
        raw,
        expected=expected,
        actual=actual,
    )


def error_excerpt(data: bytes | bytearray) -> bytes:
    """What an error about the rejected ``data`` keeps: its header and KEPT_BAD_BYTES more."""
    head = peek_header(bytes(data[:HEADER_SIZE]))
    header_size = EXTENDED_HEADER_SIZE if head is not None and is_extended_tag(head[0]) else 0
    return bytes(data[: max(header_size, HEADER_SIZE) + KEPT_BAD_BYTES])


def peek_header(data: bytes) -> tuple[int, int] | None:
    """``(tag, sequence)`` of a buffer that starts with a header, else None."""
    if len(data) < HEADER_SIZE or data[:2] != MAGIC:
        return None
    _, tag, sequence, _, _ = _HEADER.unpack_from(data)
    return tag, sequence


EncryptedPredicate = Callable[[int], bool]


def _never(_tag: int) -> bool:
    return False


#: Spacing in bytes of the CRC registers a resynchronising splitter keeps. Each
#: check of a candidate hashes at most this many bytes twice.
_CHECKPOINT: Final = 16


class _Resync:
    """CRC registers of the stream while the splitter works through a bad stretch.

    After a candidate frame fails its CRC, the splitter tries every ``HM``
    inside the rejected bytes, and each of those may announce up to 16 KiB.
    Hashing each candidate's payload on its own would cost the announced
    length per candidate. Instead this keeps ``z(x)``, the CRC register
    (started at 0) over the stream from a fixed origin up to the absolute
    position ``x``, at every multiple of :data:`_CHECKPOINT`; the CRC of any
    range then follows from two registers (``crc.py`` explains why), and each
    byte of the stream is hashed once however many candidates cover it.

    The stretch ends at ``frontier``, the end of the furthest rejected
    candidate; past it the splitter drops this object and hashes frames the
    plain way again. ``hashed`` counts the bytes run through the CRC.
    """

    __slots__ = ("frontier", "grid", "grid_start", "hashed", "head", "head_z")

    def __init__(self, origin: int, frontier: int) -> None:
        self.frontier = frontier
        #: A position with a known register (the origin, later the buffer start).
        self.head = origin
        self.head_z = 0
        #: Registers at ``grid_start + i * _CHECKPOINT``, all beyond ``head``.
        self.grid: list[int] = []
        self.grid_start = origin - origin % _CHECKPOINT + _CHECKPOINT
        self.hashed = 0

    def register(self, buf: bytes | bytearray, base: int, x: int) -> int:
        """``z(x)``; ``buf`` holds the stream from the absolute position ``base`` on."""
        step = _CHECKPOINT
        if x < self.grid_start:
            pos, z = self.head, self.head_z
        else:
            index = (x - self.grid_start) // step
            grid = self.grid
            if index >= len(grid):
                # Extend the grid up to x: every byte is hashed once, here.
                pos = self.grid_start + (len(grid) - 1) * step if grid else self.head
                z = grid[-1] if grid else self.head_z
                target = self.grid_start + index * step
                while pos < target:
                    following = self.grid_start + len(grid) * step
                    z = crc16_update(z, buf[pos - base : following - base])
                    self.hashed += following - pos
                    grid.append(z)
                    pos = following
            pos = self.grid_start + index * step
            z = grid[index]
        if x > pos:
            z = crc16_update(z, buf[pos - base : x - base])
            self.hashed += x - pos
        return z

    def crc(self, buf: bytes | bytearray, base: int, first: int, stop: int) -> int:
        """CRC-16/MODBUS of the stream bytes ``first..stop`` (absolute positions)."""
        z_first = self.register(buf, base, first)
        return crc16_zeros(CRC_INIT ^ z_first, stop - first) ^ self.register(buf, base, stop)

    def move_head(self, buf: bytes | bytearray, base: int, position: int) -> None:
        """Keep what is needed from ``position`` on (the splitter drops the bytes before it)."""
        if position <= self.head:
            return
        self.head_z = self.register(buf, base, position)
        self.head = position
        if position >= self.grid_start:
            passed = (position - self.grid_start) // _CHECKPOINT + 1
            del self.grid[:passed]
            self.grid_start += passed * _CHECKPOINT


class FrameSplitter:
    """Cut a byte stream into frames, resynchronising on ``HM``.

    ``feed`` takes any chunk (a split frame, several frames, garbage) and
    returns the complete frames it now holds, each a :class:`Frame` or, for a
    malformed one, the :class:`FrameError` that describes it. Incomplete input
    is kept for the next call and never reported as an error.

    After a frame fails its CRC, every ``HM`` inside its bytes is tried as the
    start of a frame (a truncated frame may have swallowed the start of the
    next one), as is every ``HM`` in garbage. The work stays linear in the
    input however many such candidates there are: :attr:`crc_bytes` counts
    the bytes run through the CRC so far, at most a few times the bytes fed.
    An error's ``raw`` holds the header and at most :data:`KEPT_BAD_BYTES`
    bytes after it.

    ``encrypted(tag)`` tells whether a frame with that tag carries a GCM tag
    after the length-counted bytes; the session sets it once it knows the DTU
    encrypts.
    """

    __slots__ = (
        "_buffer",
        "_crc_bytes",
        "_last_frame_end",
        "_offset",
        "_resync",
        "encrypted",
        "max_frame_size",
    )

    def __init__(
        self,
        *,
        encrypted: EncryptedPredicate | None = None,
        max_frame_size: int = MAX_FRAME_SIZE,
    ) -> None:
        self._buffer = bytearray()
        self.encrypted: EncryptedPredicate = encrypted or _never
        self.max_frame_size = max_frame_size
        #: Absolute stream position of the first byte in ``_buffer``.
        self._offset = 0
        self._last_frame_end = 0
        self._resync: _Resync | None = None
        self._crc_bytes = 0

    @property
    def pending(self) -> int:
        """Bytes held back waiting for the rest of a frame."""
        return len(self._buffer)

    @property
    def crc_bytes(self) -> int:
        """Bytes run through the CRC so far (the splitter's work, for tests and benchmarks)."""
        return self._crc_bytes + (self._resync.hashed if self._resync is not None else 0)

    @property
    def unframed(self) -> int:
        """Bytes received since the end of the last good frame (held-back bytes included)."""
        return self._offset + len(self._buffer) - self._last_frame_end

    def clear(self) -> bytes:
        """Drop and return whatever is buffered (for a connection that closed)."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        self._offset += len(rest)
        self._end_resync()
        return rest

    def _end_resync(self) -> None:
        if self._resync is not None:
            self._crc_bytes += self._resync.hashed
            self._resync = None

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame | FrameError]:
        buf: bytes | bytearray
        if self._buffer:
            self._buffer += data
            buf = self._buffer
        else:
            # Common case: nothing held back. Work on the chunk itself and copy
            # only what is left over at the end.
            buf = data if isinstance(data, bytes) else bytes(data)
        base = self._offset  # absolute position of buf[0]
        out: list[Frame | FrameError] = []
        start = 0
        end = len(buf)
        resync = self._resync
        while end - start >= 2:
            if resync is not None and base + start >= resync.frontier:
                self._end_resync()
                resync = None
            if buf[start] != 0x48 or buf[start + 1] != 0x4D:
                found = buf.find(MAGIC, start)
                # Keep a trailing "H": it may be the first half of the next magic.
                stop = found if found >= 0 else (end - 1 if buf[end - 1] == 0x48 else end)
                if stop > start:
                    out.append(
                        BadMagicError(
                            f"skipped {stop - start} bytes that are not part of a frame",
                            bytes(buf[start : min(stop, start + KEPT_BAD_BYTES)]),
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
            if resync is None:
                if start == 0 and total == end and type(buf) is bytes:
                    raw = buf  # the chunk is exactly one frame: no copy
                else:
                    raw = bytes(buf[start : start + total])
                payload = raw[header_size:length]
                actual = crc16_modbus(payload)
                self._crc_bytes += length - header_size
            else:  # resynchronising: the CRC from the stored registers, no copy yet
                first = base + start + header_size
                actual = resync.crc(buf, base, first, base + start + length)
                raw = payload = b""
            if actual == crc:
                if resync is not None:
                    raw = bytes(buf[start : start + total])
                    payload = raw[header_size:length]
                out.append(
                    _assemble(raw, tag, sequence, crc, length, header_size, gcm_size, payload, True)
                )
                start += total
                self._last_frame_end = base + start
                continue
            kept = min(total, header_size + KEPT_BAD_BYTES)
            out.append(_crc_error(tag, crc, actual, bytes(buf[start : start + kept])))
            # A bad CRC may mean a truncated frame swallowed the start of the
            # next one: resume at the next "HM" inside the rejected bytes.
            if resync is None:
                resync = self._resync = _Resync(base + start, base + start + total)
            else:
                resync.frontier = max(resync.frontier, base + start + total)
            inner = buf.find(MAGIC, start + 2, start + total)
            start = inner if inner >= 0 else start + total
        if resync is not None:
            if base + start >= resync.frontier:
                self._end_resync()
            else:
                resync.move_head(buf, base, base + start)
        if buf is self._buffer:
            if start:
                del self._buffer[:start]
        elif start < end:
            self._buffer = bytearray(buf[start:])
        self._offset = base + start
        return out


__all__ = [
    "EXTENDED_HEADER_SIZE",
    "GCM_TAG_SIZE",
    "HEADER_SIZE",
    "KEPT_BAD_BYTES",
    "MAGIC",
    "MAX_FRAME_SIZE",
    "ExtendedHeader",
    "Frame",
    "FrameSplitter",
    "encode_frame",
    "error_excerpt",
    "is_extended_tag",
    "parse_frame",
    "peek_header",
]
