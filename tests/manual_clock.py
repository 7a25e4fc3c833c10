"""A clock that moves only when a test says so (time travel without sleeping)."""

from __future__ import annotations


class ManualClock:
    """Monotonic seconds that move only with :meth:`advance`."""

    def __init__(self, start: float = 10_000.0) -> None:
        self.time = start

    def now(self) -> float:
        return self.time

    def advance(self, seconds: float) -> None:
        self.time += seconds
