"""CRC-16/MODBUS over frame payloads.

poly 0x8005 (reflected 0xA001), init 0xFFFF, no final xor; ``crc(b"123456789")``
is 0x4B37 and the empty payload gives 0xFFFF (protocol.md section 2.3).

crcmod's C extension does the work. When the extension did not build on this
machine, one warning is logged and a table-driven pure-Python version is used.
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


def crc16_modbus_python(data: bytes | bytearray | memoryview) -> int:
    """Table-driven pure-Python CRC-16/MODBUS (the fallback)."""
    crc = CRC_INIT
    table = _TABLE
    for byte in bytes(data):
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


def _load_fast() -> tuple[Callable[[bytes], int], bool]:
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
else:

    def crc16_modbus(data: bytes) -> int:
        """CRC-16/MODBUS, pure Python (crcmod's C extension is missing)."""
        _warn_once()
        return crc16_modbus_python(data)


__all__ = ["USING_C_EXTENSION", "crc16_modbus", "crc16_modbus_python"]
