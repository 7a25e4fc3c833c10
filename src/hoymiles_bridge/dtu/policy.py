"""How often, and when, a session may talk to its DTU.

A DTU serves one client at a time and uploads to the Hoymiles cloud on a
fixed grid; polling too often makes it repeat old data and can starve the
cloud upload (protocol.md sections 5.2 and 5.4). The numbers below are the
bridge's defaults; each is named and can be corrected here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

#: Without performance mode a DTU refreshes about every 30 s; 35 s polls see
#: fresh data every time and leave the cloud upload alone.
MIN_INTERVAL_DEFAULT: Final = 35
#: DTU firmware from V01.01.00 on (2025, encryption era) needs far more room:
#: users report gaps below 40 s and recommend 120 s.
MIN_INTERVAL_NEW_FIRMWARE: Final = 120
NEW_FIRMWARE_FROM: Final = 0x1100  # raw dtu_sw of V01.01.00
#: App info, config and network info are re-read this often (seconds).
INFO_INTERVAL: Final = 600
#: Cloud upload grid (newer firmware uploads every 5 min): pause from second
#: 50 of every minute ending in 4 or 9, for CLOUD_PAUSE_SECONDS (dtuGateway's
#: observation of HMS-W uploads at :05:02, :10:02, ...).
CLOUD_GRID_SECONDS: Final = 300
CLOUD_PAUSE_START: Final = 4 * 60 + 50
CLOUD_PAUSE_SECONDS: Final = 30
#: Back-off after connection failures: first wait, cap.
RETRY_INITIAL: Final = 5.0
RETRY_MAX: Final = 300.0
#: Back-off after another client (the S-Miles app) displaced us: first, cap.
DISPLACED_INITIAL: Final = 60.0
DISPLACED_MAX: Final = 900.0
#: Failed polls in a row before inverters count as unreachable (as OpenDTU).
UNREACHABLE_AFTER: Final = 2


def firmware_min_interval(dtu_firmware_raw: int | None) -> int:
    """The smallest safe poll interval for a DTU firmware (raw ``dtu_sw``)."""
    if dtu_firmware_raw is not None and dtu_firmware_raw >= NEW_FIRMWARE_FROM:
        return MIN_INTERVAL_NEW_FIRMWARE
    return MIN_INTERVAL_DEFAULT


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """One DTU session's policy. ``min_interval`` None = firmware-aware default."""

    interval: float = MIN_INTERVAL_DEFAULT
    min_interval: float | None = None
    cloud_pause: bool = False
    release_socket_after: float = 60
    performance_mode: bool = False
    frozen_after: int = 10
    info_interval: float = INFO_INTERVAL
    retry_initial: float = RETRY_INITIAL
    retry_max: float = RETRY_MAX
    displaced_initial: float = DISPLACED_INITIAL
    displaced_max: float = DISPLACED_MAX

    def effective_interval(self, dtu_firmware_raw: int | None) -> float:
        floor = (
            self.min_interval
            if self.min_interval is not None
            else firmware_min_interval(dtu_firmware_raw)
        )
        return max(self.interval, floor)

    def releases_socket(self, interval: float) -> bool:
        return self.release_socket_after > 0 and interval >= self.release_socket_after

    def describe(self, dtu_firmware_raw: int | None) -> str:
        interval = self.effective_interval(dtu_firmware_raw)
        parts = [f"poll every {interval:g} s"]
        if interval > self.interval:
            parts.append(f"(asked {self.interval:g} s; the firmware needs at least {interval:g} s)")
        parts.append(
            "socket released between polls"
            if self.releases_socket(interval)
            else "socket kept open"
        )
        parts.append("cloud-upload pauses on" if self.cloud_pause else "no cloud-upload pauses")
        parts.append("performance mode on" if self.performance_mode else "performance mode off")
        return ", ".join(parts)

    def cloud_pause_left(self, now: float) -> float:
        """Seconds until the current cloud-upload pause ends (0 outside a pause)."""
        if not self.cloud_pause:
            return 0.0
        into = (now - CLOUD_PAUSE_START) % CLOUD_GRID_SECONDS
        return CLOUD_PAUSE_SECONDS - into if into < CLOUD_PAUSE_SECONDS else 0.0

    @staticmethod
    def backoff(failures: int, initial: float, cap: float, rng: random.Random) -> float:
        """Capped exponential back-off with jitter (between half and the full step)."""
        step: float = min(cap, initial * 2.0 ** max(failures - 1, 0))
        return step * (0.5 + rng.random() / 2)


__all__ = [
    "MIN_INTERVAL_DEFAULT",
    "MIN_INTERVAL_NEW_FIRMWARE",
    "UNREACHABLE_AFTER",
    "PollPolicy",
    "firmware_min_interval",
]
