"""Command action codes (``CommandToDtu.action``) and their parameter formats.

protocol.md section 4.5 lists them; the client and the simulator both use
this one table. Names follow the original Hoymiles constants.
"""

from __future__ import annotations

import enum
from typing import Final


class Action(enum.IntEnum):
    DTU_REBOOT = 1
    DTU_UPGRADE = 2
    MI_REBOOT = 3
    MI_START = 6
    MI_SHUTDOWN = 7
    #: ``data = "A:<limit in 0.1 %>,B:0,C:0\\r"``; persistent (inverter EEPROM).
    LIMIT_POWER = 8
    MI_LOCK = 12
    MI_UNLOCK = 13
    #: "Performance data mode": fresh data on every poll until the DTU reboots.
    POLL_ALL = 33
    GRID_FILE_READ = 41
    CLEAR_ALARM = 42
    ALARM_LIST = 50
    ALARM_SINGLE = 51
    #: Non-persistent watt limit, HMS-W with DTU firmware V01.01.01+; known from
    #: hoymiles-wifi 0.6, not in protocol.md. ``data = "S:1,P:<0.1 W>\\r"``.
    LIMIT_POWER_TEMPORARY = 211
    INV_BOOT_UP = 8193
    INV_SHUTDOWN = 8194
    INV_REBOOT = 8195


def limit_data(permille: int) -> str:
    """The ``data`` of a persistent limit: ``A:500,B:0,C:0\\r`` is 50 %."""
    return f"A:{permille},B:0,C:0\r"


def temporary_limit_data(deciwatts: int) -> str:
    """The ``data`` of a non-persistent limit: ``S:1,P:1005\\r`` is 100.5 W."""
    return f"S:1,P:{deciwatts}\r"


#: The lowest persistent limit an inverter takes, in percent of its rated power
#: (protocol.md section 5.5: dtuGateway raises lower values to 2 %).
MIN_LIMIT_PERCENT: Final = 2.0

#: The DTU firmware (raw ``dtu_sw``) from which the temporary limit works (V01.01.01).
TEMPORARY_LIMIT_FIRMWARE: Final = 0x1101

__all__ = [
    "MIN_LIMIT_PERCENT",
    "TEMPORARY_LIMIT_FIRMWARE",
    "Action",
    "limit_data",
    "temporary_limit_data",
]
