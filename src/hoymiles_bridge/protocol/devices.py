"""What a serial number says about the device: model, ports, rated power.

Everything here is one table per device family, taken from protocol.md
section 7. The tables disagree between projects in places; correct them here
and nowhere else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from hoymiles_bridge.errors import InvalidArgumentError, InvalidSerialError


@dataclass(frozen=True, slots=True)
class InverterType:
    """What the first two bytes of an inverter serial tell."""

    series: str  # "HM", "HMS", "HMT", "SOL-H", "meter"
    ports: int  # PV inputs; 0 when unknown
    rated_power: int  # W; 0 when the prefix is shared by several ratings
    model: str  # the name users see, e.g. "HMS-800W-2T"
    phases: int = 1


UNKNOWN_INVERTER: Final = InverterType("unknown", 0, 0, "unknown")

#: Inverter serial prefix (first two bytes) -> type. Where one prefix covers
#: several ratings, ``rated_power`` is the largest and the model names the range.
INVERTER_TYPES: Final[dict[int, InverterType]] = {
    0x1014: InverterType("HMS", 2, 0, "HMS-xxx-2T"),
    0x1121: InverterType("HM", 1, 400, "HM-300/350/400"),
    0x1122: InverterType("HM", 1, 400, "HM-300/350/400"),
    0x1124: InverterType("HMS", 1, 400, "HMS-300/350/400-1T"),
    0x1125: InverterType("HM", 1, 400, "HM-400"),
    0x1141: InverterType("HM", 2, 800, "HM-600/700/800"),
    0x1142: InverterType("HM", 2, 800, "HM-600/700/800"),
    0x1144: InverterType("HMS", 2, 1000, "HMS-1000W-2T"),
    0x1161: InverterType("HM", 4, 1500, "HM-1000/1200/1500"),
    0x1162: InverterType("HM", 4, 1500, "HM-1000/1200/1500"),
    0x1164: InverterType("HMS", 4, 2000, "HMS-1600/1800/2000-4T"),
    0x1222: InverterType("HMS", 4, 2000, "HMS-2000DW-4T"),
    0x1382: InverterType("HMT", 6, 2250, "HMT-2250-6T", phases=3),
    0x1400: InverterType("HMS", 1, 450, "HMS-450W-1T"),
    0x1403: InverterType("HMS", 1, 500, "HMS-400W/500W-1T"),
    0x1410: InverterType("HMS", 2, 1000, "HMS-xxxW-2T"),
    # HMS-800W-2T and HMS-1000W-2T share this prefix; the 800 W unit is the common one.
    0x1412: InverterType("HMS", 2, 800, "HMS-800W-2T"),
    0x2821: InverterType("SOL-H", 2, 1000, "SOL-H1000"),
    0x10C0: InverterType("meter", 0, 0, "DDSU666"),
    0x37FF: InverterType("meter", 0, 0, "DTSU666"),
}

#: Prefix byte 0x13 is the three-phase HMT range whatever the second byte is.
_HMT_FALLBACK: Final = InverterType("HMT", 6, 0, "HMT", phases=3)


def inverter_type(serial: int) -> InverterType:
    """Look up an inverter by its int64 serial (as sent in protobuf)."""
    prefix = (serial >> 32) & 0xFFFF
    known = INVERTER_TYPES.get(prefix)
    if known is not None:
        return known
    if prefix >> 8 == 0x13:
        return _HMT_FALLBACK
    return UNKNOWN_INVERTER


def inverter_model(serial: int) -> str:
    return inverter_type(serial).model


#: DTU serial prefix (first two bytes of the 12-hex-digit string) -> model.
DTU_MODELS: Final[dict[int, str]] = {
    **dict.fromkeys(
        (0x10F7, 0x10F8, 0x10FB, 0x10FC, 0x10FD, 0x4100, 0x4101, 0x4120, 0x4121), "DTU-Pro"
    ),
    **dict.fromkeys((0x10D3, 0x10D8, 0x10D9, 0x4110, 0x4111, 0x4130, 0x4132, 0x4133), "DTU-Lite-S"),
    0x10D2: "DTU-G100",
    **dict.fromkeys((0x10D6, 0x10D7, 0x4131), "DTU-Lite"),
    **dict.fromkeys(
        (
            0x1124,
            0x1125,
            0x1143,
            0x1144,
            0x1145,
            0x1164,
            0x1165,
            0x1166,
            0x1167,
            0x1222,
            0x1361,
            0x1362,
            0x1381,
            0x1382,
            0x1403,
            0x1412,
            0x1422,
            0x1423,
            0x4141,
            0x4143,
            0x4144,
        ),
        "DTUBI",
    ),
    0xD030: "DTU-SLS",
    0x4301: "DTS-WIFI-G1",
}


def dtu_model(serial: str) -> str:
    """Model of a DTU from its serial string (``"414393320732"`` -> ``"DTUBI"``)."""
    text = serial.strip().upper().removesuffix("J")
    try:
        prefix = int(text[:4], 16)
    except ValueError:
        return "unknown"
    return DTU_MODELS.get(prefix, "unknown")


_HEX_DIGITS: Final = frozenset("0123456789abcdef")

# --- the serial rule ---------------------------------------------------------

#: The one rule for a serial number a device sends as text (the DTU serial,
#: ``dtu_sn``/``sn`` in replies): 1 to 16 hex digits, optionally followed by
#: one ``J`` (some DTUs print their serial so; hoymiles-wifi drops the ``J``
#: before the model lookup, and :func:`dtu_model` does too). Lower-case
#: digits are accepted and upper-cased. Serials sent as int64 (inverters,
#: meters) are printed by :func:`format_serial` and always follow the rule.
#: Serials become MQTT topic levels and Home Assistant ids, so nothing else -
#: no ``/``, ``+``, ``#``, spaces or control characters - may pass. Correct
#: the rule here and nowhere else.
SERIAL_PATTERN: Final = "[0-9A-Fa-f]{1,16}[Jj]?"
_SERIAL_RE: Final = re.compile(SERIAL_PATTERN)
#: How much of a refused serial an error message quotes.
_QUOTED: Final = 24


def check_serial(value: str, field: str, *, optional: bool = False) -> str:
    """``value`` upper-cased when it follows :data:`SERIAL_PATTERN`.

    ``field`` names where the serial came from (``"AppInfoFromDtu.dtu_sn"``).
    With ``optional`` an empty value (the DTU left the field out) is allowed
    and returned as ``""``; anything else that breaks the rule raises
    :class:`~hoymiles_bridge.errors.InvalidSerialError`.
    """
    if _SERIAL_RE.fullmatch(value):
        return value.upper()
    if not value:
        if optional:
            return ""
        raise InvalidSerialError(f"the serial number in {field} is empty")
    quoted = repr(value[:_QUOTED]) + ("..." if len(value) > _QUOTED else "")
    raise InvalidSerialError(f"the serial number in {field}, {quoted}, is not 1 to 16 hex digits")


def format_serial(serial: int) -> str:
    """An int64 serial as printed on the label: 12 (up to 16) uppercase hex digits.

    The result always follows :data:`SERIAL_PATTERN`.
    """
    return f"{serial & 0xFFFFFFFFFFFFFFFF:012X}"


def parse_serial(text: str) -> int:
    """The inverse of :func:`format_serial`; accepts an optional ``0x``."""
    cleaned = text.strip().lower().removeprefix("0x")
    if 0 < len(cleaned) <= 16 and all(c in _HEX_DIGITS for c in cleaned):
        return int(cleaned, 16)
    raise InvalidArgumentError(f"{text!r} is not a serial number (expected 12 hex digits)")


def built_in_dtu_serial(inverter_serial: int) -> str:
    """The serial of the DTU built into an HMS-W inverter (``41`` + prefix byte rule).

    Observed: inverter ``141293320732`` has DTU ``414393320732`` and
    ``122295201023`` has ``414195201023``: ``41``, two model digits, then the
    inverter's last eight hex digits. The model digits follow DTU_MODELS (4143
    for 2T, 4141 for 4T), with 4144 for anything else.
    """
    ports = inverter_type(inverter_serial).ports
    middle = {2: "43", 4: "41"}.get(ports, "44")
    return f"41{middle}{format_serial(inverter_serial)[-8:]}"


# --- version numbers --------------------------------------------------------


def dtu_version(value: int) -> str:
    """DTU firmware/hardware version: 520 -> ``V00.02.08``."""
    return f"V{value // 4096:02d}.{(value // 256) % 16:02d}.{value % 256:02d}"


def inverter_sw_version(value: int) -> str:
    """Inverter firmware: 10012 -> ``V01.00.12``."""
    return f"V{value // 10000:02d}.{(value % 10000) // 100:02d}.{value % 100:02d}"


def inverter_hw_version(value: int) -> str:
    """Inverter hardware: 256 -> ``H00.04.00``."""
    return f"H{value // 2048:02d}.{(value // 64) % 32:02d}.{value % 64:02d}"


__all__ = [
    "DTU_MODELS",
    "INVERTER_TYPES",
    "SERIAL_PATTERN",
    "InverterType",
    "built_in_dtu_serial",
    "check_serial",
    "dtu_model",
    "dtu_version",
    "format_serial",
    "inverter_hw_version",
    "inverter_model",
    "inverter_sw_version",
    "inverter_type",
    "parse_serial",
]
