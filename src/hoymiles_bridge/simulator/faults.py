"""Faults the simulator injects into its replies, switchable at run time.

Counters are consumed one per reply: ``faults.drop_replies = 2`` drops the
next two replies. Several kinds may be armed at once; they combine.
``clear()`` disarms everything.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, fields

#: The magic's first byte; left out of garbage so it cannot fake a frame start.
_H = 0x48


@dataclass
class Faults:
    #: Seconds to wait before every reply.
    delay: float = 0.0
    #: Send nothing.
    drop_replies: int = 0
    #: Send the first half of the reply frame, then nothing.
    truncate_replies: int = 0
    #: Flip the CRC in the header.
    corrupt_crc: int = 0
    #: Put 1..24 random bytes (never 'H') before the reply.
    garbage_before: int = 0
    #: Reply with sequence + 1000 (mod 65536).
    wrong_sequence: int = 0
    #: Send half the reply, then abort the connection (RST).
    close_mid_frame: int = 0
    #: Before the real reply, resend the previous reply of that tag with its old
    #: sequence. Only consumed when there is a previous reply of that tag.
    stale_reply: int = 0
    #: New TCP connections are closed at once; the current one is unaffected.
    refuse_connections: bool = False
    seed: int = 0
    rng: random.Random = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def clear(self) -> None:
        """Disarm every fault and reseed the generator."""
        for item in fields(self):
            if item.name in ("rng", "seed"):
                continue
            setattr(self, item.name, item.default)
        self.rng = random.Random(self.seed)

    def take(self, name: str) -> bool:
        """Consume one count of the counter ``name``; False when it is at 0."""
        value = getattr(self, name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            return False
        setattr(self, name, value - 1)
        return True

    def garbage(self) -> bytes:
        size = self.rng.randint(1, 24)
        return bytes(self.rng.choice([b for b in range(256) if b != _H]) for _ in range(size))

    @property
    def armed(self) -> bool:
        """Whether any fault is set."""
        return any(
            getattr(self, item.name) != item.default
            for item in fields(self)
            if item.name not in ("rng", "seed")
        )


__all__ = ["Faults"]
