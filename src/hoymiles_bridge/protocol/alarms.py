"""Alarm codes to text: one table, correctable here (protocol.md section 4.8).

Which part of ``WarnInfo.code`` is the alarm id is uncertain. Radio-protocol
parsers take the low byte (8316 = 0x207C -> 124), yet ids above 255 exist.
:func:`alarm_text` tries the whole code first, then its low byte.
"""

from __future__ import annotations

from typing import Final

ALARM_TEXTS: Final[dict[int, str]] = {
    72: "Grid over-frequency: power derated",
    121: "Over-temperature protection",
    124: "Shut down by remote control",
    125: "Grid configuration parameter error",
    127: "Firmware error",
    129: "Abnormal bias",
    130: "Offline",
}

#: Ranges named by group when the exact id is not in the table.
_GROUPS: Final = (
    # Known as ranges only: grid over/under voltage or frequency, islanding;
    # MPPT/PV input over/under-voltage, no input, wiring.
    (141, 149, "Grid protection"),
    (205, 218, "PV input problem"),
    (301, 314, "Device fault"),
)


def alarm_text(code: int) -> str:
    """A short English text for an alarm code."""
    for candidate in (code, code & 0xFF):
        text = ALARM_TEXTS.get(candidate)
        if text is not None:
            return text
        for low, high, group in _GROUPS:
            if low <= candidate <= high:
                return f"{group} ({candidate})"
    return f"Unknown alarm {code}"


__all__ = ["ALARM_TEXTS", "alarm_text"]
