"""Simulated time: the wall clock of a simulated DTU, with speed-up and time travel.

``SimClock(speed=60)`` runs an hour of simulated time per real minute;
``advance(seconds)`` jumps ahead at once (tests use it instead of sleeping).
"""

from __future__ import annotations

import time

from hoymiles_bridge.errors import InvalidArgumentError


class SimClock:
    """Simulated Unix time = start + monotonic elapsed x speed + manual offset."""

    __slots__ = ("_mono_start", "_offset", "_speed", "_start")

    def __init__(self, speed: float = 1.0, start: float | None = None) -> None:
        if not speed > 0:
            raise InvalidArgumentError(f"speed must be greater than 0, not {speed}")
        self._speed = float(speed)
        self._start = time.time() if start is None else float(start)
        self._mono_start = time.monotonic()
        self._offset = 0.0

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> float:
        """Current simulated Unix time in seconds."""
        elapsed = time.monotonic() - self._mono_start
        return self._start + elapsed * self._speed + self._offset

    def advance(self, seconds: float) -> None:
        """Jump ``seconds`` of simulated time ahead (time travel for tests)."""
        if seconds < 0:
            raise InvalidArgumentError(f"the clock only moves forward, not by {seconds} s")
        self._offset += seconds

    def real_seconds(self, sim_seconds: float) -> float:
        """How many real seconds pass while ``sim_seconds`` of simulated time do."""
        return sim_seconds / self._speed

    def __repr__(self) -> str:
        return f"SimClock(speed={self._speed}, now={self.now():.1f})"


__all__ = ["SimClock"]
