"""CRC-16/MODBUS over frame payloads.

poly 0x8005 (reflected 0xA001), init 0xFFFF, no final xor; ``crc(b"123456789")``
is 0x4B37 and the empty payload gives 0xFFFF (protocol.md section 2.3).

crcmod's C extension does the work. When the extension did not build on this
machine, one warning is logged and a table-driven pure-Python version is used.

The CRC register is linear: processing byte ``b`` turns register ``r`` into
``A(r) ^ T[b]`` with ``A(r) = (r >> 8) ^ T[r & 0xFF]``. So if ``z(x)`` is the
register (started at 0) after the first ``x`` bytes of a stream, the CRC of
the bytes ``a..b`` is ``A^(b-a)(CRC_INIT ^ z(a)) ^ z(b)``, and
:func:`crc16_zeros` applies ``A^n`` (``n`` zero bytes) in at most 16 table
steps. The frame splitter uses this to check many overlapping frame
candidates without hashing each one's bytes again (``frame.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

_LOGGER = logging.getLogger(__name__)

CRC_INIT: Final = 0xFFFF
_POLY_REFLECTED: Final = 0xA001


def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _POLY_REFLECTED if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE: Final = _make_table()


def crc16_modbus_python(data: bytes | bytearray | memoryview, register: int = CRC_INIT) -> int:
    """Table-driven pure-Python CRC-16/MODBUS (the fallback), continuing from ``register``."""
    crc = register
    table = _TABLE
    for byte in bytes(data):
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


def _load_fast() -> tuple[Callable[..., int], bool]:
    try:
        import crcmod
    except ImportError:
        return crc16_modbus_python, False
    try:
        import crcmod._crcfunext
    except ImportError:
        return crc16_modbus_python, False
    fast = crcmod.mkCrcFun(0x18005, rev=True, initCrc=CRC_INIT, xorOut=0x0000)
    return fast, True


_FAST, USING_C_EXTENSION = _load_fast()
_warned = False


def _warn_once() -> None:
    global _warned
    if not _warned:
        _warned = True
        _LOGGER.warning("crcmod's C extension is not available; using the slower pure-Python CRC")


if USING_C_EXTENSION:
    crc16_modbus: Callable[[bytes], int] = _FAST

    def crc16_update(register: int, data: bytes | bytearray) -> int:
        """The register after ``data``, starting from ``register``."""
        return _FAST(data, register)

else:

    def crc16_modbus(data: bytes) -> int:
        """CRC-16/MODBUS, pure Python (crcmod's C extension is missing)."""
        _warn_once()
        return crc16_modbus_python(data)

    def crc16_update(register: int, data: bytes | bytearray) -> int:
        """The register after ``data``, starting from ``register`` (pure Python)."""
        _warn_once()
        return crc16_modbus_python(data, register)


# --- zero bytes in logarithmic time ---------------------------------------------------


def _shift_tables() -> tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]:
    """For k = 0..15, the map ``A^(2^k)`` as two 256-entry tables (low and high byte).

    ``A^m`` is linear, so it is known by the images of the 16 one-bit
    registers; the images for ``2m`` zero bytes are those for ``m`` applied twice.
    """

    def apply(columns: list[int], register: int) -> int:
        out = 0
        for bit, column in enumerate(columns):
            if register >> bit & 1:
                out ^= column
        return out

    columns = [(1 << bit >> 8) ^ _TABLE[(1 << bit) & 0xFF] for bit in range(16)]  # A itself
    levels = []
    for _ in range(16):
        low = [0] * 256
        high = [0] * 256
        for value in range(1, 256):
            lowest = (value & -value).bit_length() - 1
            low[value] = low[value & (value - 1)] ^ columns[lowest]
            high[value] = high[value & (value - 1)] ^ columns[lowest + 8]
        levels.append((tuple(low), tuple(high)))
        columns = [apply(columns, column) for column in columns]
    return tuple(levels)


_SHIFT: Final = _shift_tables()


def crc16_zeros(register: int, count: int) -> int:
    """The register after ``count`` (0..65535) zero bytes, in at most 16 table steps."""
    level = 0
    while count:
        if count & 1:
            low, high = _SHIFT[level]
            register = low[register & 0xFF] ^ high[register >> 8]
        count >>= 1
        level += 1
    return register


__all__ = [
    "CRC_INIT",
    "USING_C_EXTENSION",
    "crc16_modbus",
    "crc16_modbus_python",
    "crc16_update",
    "crc16_zeros",
]
