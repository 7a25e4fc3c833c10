"""Power limits: what the DTU is sent, how often, and the ranges the entities offer.

Persistent limits go to the inverter's EEPROM in percent; non-persistent ones
are sent in W. :func:`limit_request` converts what a user asked for into what
the DTU gets; :class:`LimitPacer` lets at most one write through per interval
with the latest value winning; :func:`limit_range` is the ``(min, max, step)``
that Home Assistant's number entities and the web console offer (OpenDTU's:
0..100 %, 0 W..rated power). A request under the inverter's 2 % floor
(:data:`~hoymiles_bridge.protocol.actions.MIN_LIMIT_PERCENT`) or above its
rated power is clamped, and the command's outcome says so (:func:`clamp_limit`).
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
    """``(min, max, step)`` of a power-limit entity: what the registry accepts.

    0..100 % or 0 W..rated power, as OpenDTU offers; values under the 2 %
    floor are accepted and clamped (:func:`clamp_limit`). The state topics the
    entities read stay inside these ranges (:func:`shown_limit`).
    """
    if spec.limit is not None and spec.limit.relative:
        return 0.0, LIMIT_MAX_PERCENT, LIMIT_STEP_PERCENT
    return 0.0, _ceiling(rated_power), LIMIT_STEP_WATT


def _ceiling(rated_power: int) -> int:
    return rated_power if rated_power > 0 else FALLBACK_RATED_POWER


def clamp_limit(spec: CommandSpec, value: float, rated_power: int) -> tuple[float, str]:
    """``value`` (in the spec's unit) inside the inverter's safe range, and a note when moved.

    In %: at least :data:`MIN_LIMIT_PERCENT`. In W: at least 2 % and at most
    the rated power (with an unknown rated power, 2 % of and at most
    :data:`FALLBACK_RATED_POWER`, the largest inverter). The note is what the
    command's outcome says: ``clamped to 2 %``, ``clamped to 16 W (2 %)``,
    ``clamped to 800 W (the rated power)``; empty when nothing changed.
    """
    if spec.limit is None:
        raise CommandError(f"{spec.name} is not a limit")
    if spec.limit.relative:
        if value < MIN_LIMIT_PERCENT:
            return MIN_LIMIT_PERCENT, f"clamped to {MIN_LIMIT_PERCENT:g} %"
        return min(value, LIMIT_MAX_PERCENT), ""
    ceiling = _ceiling(rated_power)
    floor = math.ceil(ceiling * MIN_LIMIT_PERCENT * 10 / 100) / 10
    if value < floor:
        return floor, f"clamped to {floor:g} W ({MIN_LIMIT_PERCENT:g} %)"
    if value > ceiling:
        what = "the rated power" if rated_power > 0 else "the largest inverter's"
        return float(ceiling), f"clamped to {ceiling} W ({what})"
    return value, ""


def limit_request(command: Command, inverter: InverterDevice) -> tuple[float, str]:
    """The value the DTU gets (percent for persistent limits, watts for the others) and
    the note of :func:`clamp_limit` when the request had to be moved into the safe range."""
    kind = command.spec.limit
    if kind is None:
        raise CommandError(f"{command.name} is not a limit")
    rated = inverter.rated_power
    if not rated and kind.persistent != kind.relative:
        unit = "%" if kind.persistent else "W"
        raise CommandError(f"the inverter's rated power is unknown; use the {unit} limit")
    value, note = clamp_limit(command.spec, command.value, rated)
    if kind.persistent:
        if kind.relative:
            return value, note
        return max(MIN_LIMIT_PERCENT, round(value * 100 / rated, 1)), note
    if kind.relative:
        return round(value * rated / 100, 1), note
    return value, note


def shown_limit(percent: float, rated_power: int) -> tuple[float, float | None]:
    """The applied limit as the state topics show it: ``(percent, watts or None)``.

    Kept inside the limit entities' ranges (0..100 %, 0 W..rated), so Home
    Assistant never refuses a state; a DTU that reports more than 100 % (no
    limit) is shown as 100 %.
    """
    shown = min(max(percent, 0.0), LIMIT_MAX_PERCENT)
    if rated_power <= 0:
        return shown, None
    return shown, round(shown * rated_power / 100, 1)


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
    "clamp_limit",
    "limit_range",
    "limit_request",
    "shown_limit",
]
