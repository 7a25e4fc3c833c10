"""Power limits: what the DTU is sent, how often, and the ranges the entities offer.

Persistent limits go to the inverter's EEPROM in percent; non-persistent ones
are sent in W. :func:`limit_request` converts what a user asked for into what
the DTU gets; :class:`LimitPacer` lets at most one write through per interval
with the latest value winning; :func:`limit_range` is the ``(min, max, step)``
that Home Assistant's number entities and the web console offer. The 2 %
floor is :data:`~hoymiles_bridge.protocol.actions.MIN_LIMIT_PERCENT`.
"""

from __future__ import annotations

import enum
import math
from typing import Final

from hoymiles_bridge.core.commands import Command, CommandError, CommandSpec
from hoymiles_bridge.core.state import InverterDevice
from hoymiles_bridge.protocol.actions import MIN_LIMIT_PERCENT

LIMIT_MAX_PERCENT: Final = 100.0
LIMIT_STEP_PERCENT: Final = 0.1
LIMIT_STEP_WATT: Final = 1
#: Used as the maximum when the serial does not tell the rated power.
FALLBACK_RATED_POWER: Final = 2250


def limit_range(spec: CommandSpec, rated_power: int) -> tuple[float, float, float]:
    """``(min, max, step)`` of a power-limit entity."""
    if spec.limit is not None and spec.limit.relative:
        return MIN_LIMIT_PERCENT, LIMIT_MAX_PERCENT, LIMIT_STEP_PERCENT
    rated = rated_power if rated_power > 0 else FALLBACK_RATED_POWER
    return max(1, round(rated * MIN_LIMIT_PERCENT / 100)), rated, LIMIT_STEP_WATT


def limit_request(command: Command, inverter: InverterDevice) -> float:
    """The value the DTU gets: percent for persistent limits, watts for the others."""
    kind = command.spec.limit
    if kind is None:
        raise CommandError(f"{command.name} is not a limit")
    rated = inverter.rated_power
    value = command.value
    if kind.persistent:
        if kind.relative:
            return value
        if not rated:
            raise CommandError("the inverter's rated power is unknown; use the % limit")
        if value > rated:
            raise CommandError(f"limit {value:g} W is above the rated {rated} W")
        return max(MIN_LIMIT_PERCENT, round(value * 100 / rated, 1))
    if kind.relative:
        if not rated:
            raise CommandError("the inverter's rated power is unknown; use the W limit")
        return round(value * rated / 100, 1)
    if rated and value > rated:
        raise CommandError(f"limit {value:g} W is above the rated {rated} W")
    return value


def applied_percent(command: Command, sent: float, inverter: InverterDevice) -> float | None:
    """The limit in percent once ``sent`` was taken (None when the rated power is unknown)."""
    kind = command.spec.limit
    if kind is not None and kind.persistent:
        return sent
    rated = inverter.rated_power
    return round(sent * 100 / rated, 1) if rated else None


class Decision(enum.Enum):
    SEND = "send"
    PENDING = "pending"
    UNCHANGED = "unchanged"


class LimitPacer:
    """At most one limit write per ``interval`` seconds; the latest value wins.

    ``offer`` answers SEND (write now), PENDING (write ``pending`` at
    ``due``) or UNCHANGED (the value equals the last one written).
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.last_value: float | None = None
        self.last_sent: float | None = None
        self.pending: float | None = None

    @property
    def due(self) -> float:
        return (self.last_sent or 0.0) + self.interval

    def offer(self, value: float, now: float) -> Decision:
        if self.last_value is not None and math.isclose(value, self.last_value, abs_tol=1e-6):
            self.pending = None
            return Decision.UNCHANGED
        if self.last_sent is None or now >= self.due:
            self.pending = None
            return Decision.SEND
        self.pending = value
        return Decision.PENDING

    def sent(self, value: float, now: float) -> None:
        self.last_value = value
        self.last_sent = now

    def failed(self) -> None:
        """Forget the last value so the same value may be tried again."""
        self.last_value = None


__all__ = [
    "FALLBACK_RATED_POWER",
    "LIMIT_MAX_PERCENT",
    "LIMIT_STEP_PERCENT",
    "LIMIT_STEP_WATT",
    "Decision",
    "LimitPacer",
    "applied_percent",
    "limit_range",
    "limit_request",
]
