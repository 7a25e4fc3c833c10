"""Commands that arrive over MQTT: parsing, validation and limit pacing.

Nothing here talks to a DTU. :func:`parse_command` turns a topic and payload
into a :class:`Command` or raises :class:`CommandError` with a reason that is
published back on the command's status topic. Payload rules follow OpenDTU:
non-persistent limits and restarts are ignored when the message is retained
(a retained restart would restart the inverter at every reconnect).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Final

from hoymiles_bridge.errors import InvalidArgumentError
from hoymiles_bridge.mqtt.topics import DTU_COMMAND_NAMES, INVERTER_COMMAND_NAMES

#: Longest payload a command may have (a number, "ON", "PRESS"...).
MAX_PAYLOAD: Final = 32
MIN_LIMIT_PERCENT: Final = 2.0
#: Commands that must never act on a retained message.
IGNORE_WHEN_RETAINED: Final = frozenset(
    {
        "limit_nonpersistent_relative",
        "limit_nonpersistent_absolute",
        "restart",
        "reboot",
        "performance_mode",
        "power",
    }
)
_TRUE: Final = frozenset({"1", "on", "true", "press"})
_FALSE: Final = frozenset({"0", "off", "false"})


class CommandError(InvalidArgumentError):
    """A command was refused before reaching the DTU; the message says why."""


class Target(enum.Enum):
    INVERTER = "inverter"
    DTU = "dtu"


@dataclass(frozen=True, slots=True)
class Command:
    target: Target
    serial: str  # inverter serial, or DTU serial ("" = the only DTU)
    name: str
    value: float

    @property
    def is_limit(self) -> bool:
        return self.name.startswith("limit_")

    @property
    def relative(self) -> bool:
        return self.name.endswith("_relative")

    @property
    def persistent(self) -> bool:
        return "_persistent_" in self.name


def _text(payload: bytes) -> str:
    if len(payload) > MAX_PAYLOAD:
        raise CommandError(f"payload is longer than {MAX_PAYLOAD} bytes")
    try:
        return payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CommandError("payload is not text") from None


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CommandError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise CommandError(f"{text!r} is not a finite number")
    return value


def _switch(text: str) -> float:
    lowered = text.lower()
    if lowered in _TRUE:
        return 1.0
    if lowered in _FALSE:
        return 0.0
    raise CommandError(f"{text!r} is not 0 or 1")


def split_topic(base: str, topic: str) -> tuple[Target, str, str] | None:
    """``(target, serial, name)`` of a command topic, None if it is not one."""
    if not topic.startswith(base + "/"):
        return None
    parts = topic[len(base) + 1 :].split("/")
    if len(parts) == 3 and parts[1] == "cmd":
        if parts[0] == "dtu":
            return Target.DTU, "", parts[2]
        return Target.INVERTER, parts[0].upper(), parts[2]
    if len(parts) == 4 and parts[0] == "dtu" and parts[2] == "cmd":
        return Target.DTU, parts[1].upper(), parts[3]
    return None


def parse_command(base: str, topic: str, payload: bytes, *, retained: bool) -> Command | None:
    """Validate a command message; None means "ignore quietly" (a retained one-shot)."""
    where = split_topic(base, topic)
    if where is None:
        return None
    target, serial, name = where
    known = INVERTER_COMMAND_NAMES if target is Target.INVERTER else DTU_COMMAND_NAMES
    if name not in known:
        raise CommandError(f"unknown command {name!r}")
    if retained and name in IGNORE_WHEN_RETAINED:
        return None
    text = _text(payload)
    if not text:
        raise CommandError("payload is empty")
    if name.startswith("limit_"):
        value = _number(text)
        if name.endswith("_relative") and not MIN_LIMIT_PERCENT <= value <= 100:
            raise CommandError(f"limit {value:g} % is outside {MIN_LIMIT_PERCENT:g}..100 %")
        if name.endswith("_absolute") and value <= 0:
            raise CommandError(f"limit {value:g} W must be above 0 W")
    elif name == "power":
        value = _switch(text)
    else:  # restart, reboot, performance_mode: a press
        value = _switch(text)
        if value != 1.0:
            raise CommandError(f"send 1 to {name.replace('_', ' ')}")
    return Command(target, serial, name, value)


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
    "Command",
    "CommandError",
    "Decision",
    "LimitPacer",
    "Target",
    "parse_command",
    "split_topic",
]
