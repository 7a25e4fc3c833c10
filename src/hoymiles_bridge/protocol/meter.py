"""Grid-meter payloads: a number, or a value at a JSON path, in W, without I/O.

The power controller reads the grid power from any MQTT topic. The payload is
either a plain number (a Home Assistant statestream topic: ``"-412.5"``) or a
JSON object with the number at a path: Shelly Pro 3EM ``total_act_power``,
Tasmota SML ``SML.Power``, ``ENERGY.Power``, a list index as ``phases[0].p``
or ``phases.0.p``. :func:`parse_path` checks a path once, at start;
:func:`read_meter` turns one payload into a :class:`MeterValue`, import
positive, in W, or raises :class:`MeterPayloadError` saying why.

A payload's own timestamp, when it has one (Shelly ``ts``, Tasmota ``Time``,
a top-level ``timestamp``), is kept, so a reading that arrives out of order can
be told from a new one.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from hoymiles_bridge.errors import InvalidArgumentError

#: Signs a meter may use.
SIGNS: Final = ("import_positive", "export_positive")
#: Units a meter may use.
UNITS: Final = ("W", "kW")
#: The largest payload read (a Shelly Pro 3EM status is about 1 KiB).
MAX_PAYLOAD: Final = 16 * 1024
#: The largest grid power believed, W (a house connection is well under it).
MAX_POWER: Final = 1_000_000.0
#: Keys of a payload's own timestamp, in the order they are tried.
_STAMP_KEYS: Final = ("ts", "timestamp", "Time", "time")
_SEGMENT: Final = re.compile(r"^([^.\[\]]+)((?:\[\d+\])*)$")
_INDEX: Final = re.compile(r"\[(\d+)\]")


class MeterPayloadError(ValueError):
    """A meter payload that gives no reading (the sentence says why)."""


@dataclass(frozen=True, slots=True)
class MeterValue:
    """One reading: grid power in W, import positive, and the payload's own timestamp."""

    watts: float
    stamp: float | None = None


def parse_path(path: str) -> tuple[str | int, ...]:
    """The steps of a JSON path (``a.b[0].c``, ``$.a.b``, ``a.0.c``); raises on a bad one.

    Raises :class:`~hoymiles_bridge.errors.InvalidArgumentError`.
    """
    text = path.strip()
    if text.startswith("$"):
        text = text[1:].lstrip(".")
    if not text:
        raise InvalidArgumentError("the JSON path is empty")
    steps: list[str | int] = []
    for part in text.split("."):
        match = _SEGMENT.match(part)
        if match is None:
            raise InvalidArgumentError(f"JSON path {path!r}: cannot read {part!r}")
        key, indices = match.groups()
        steps.append(int(key) if key.isdigit() else key)
        steps.extend(int(i) for i in _INDEX.findall(indices))
    return tuple(steps)


def _number(value: object, where: str) -> float:
    if isinstance(value, bool):
        raise MeterPayloadError(f"{where} is true/false, not a number")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise MeterPayloadError(f"{where} {value[:32]!r} is not a number") from None
    else:
        raise MeterPayloadError(f"{where} is not a number")
    if not math.isfinite(number):
        raise MeterPayloadError(f"{where} is not a finite number")
    return number


def _walk(data: object, steps: tuple[str | int, ...]) -> object:
    node = data
    for step in steps:
        if isinstance(node, dict):
            key = str(step)
            if key not in node:
                raise MeterPayloadError(f"no {key!r} in the payload")
            node = node[key]
        elif isinstance(node, list) and isinstance(step, int):
            if step >= len(node):
                raise MeterPayloadError(f"index {step} is past the list's end")
            node = node[step]
        else:
            raise MeterPayloadError(f"cannot look up {step!r} in a {type(node).__name__}")
    return node


def _stamp(data: object) -> float | None:
    """The payload's own timestamp (s), if it has a readable one."""
    if not isinstance(data, dict):
        return None
    for key in _STAMP_KEYS:
        value = data.get(key)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int | float) and math.isfinite(value):
            return float(value) / 1000 if value > 1e11 else float(value)
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value).timestamp()
            except ValueError:
                continue
    return None


def read_meter(
    payload: bytes,
    path: tuple[str | int, ...] | None = None,
    *,
    sign: str = "import_positive",
    unit: str = "W",
) -> MeterValue:
    """The grid power in ``payload``: W, import positive; raises :class:`MeterPayloadError`."""
    if len(payload) > MAX_PAYLOAD:
        raise MeterPayloadError(f"payload is longer than {MAX_PAYLOAD} bytes")
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise MeterPayloadError("payload is not text") from None
    if not text:
        raise MeterPayloadError("payload is empty")
    stamp = None
    if path:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            raise MeterPayloadError("payload is not JSON") from None
        value = _number(_walk(data, path), "the value")
        stamp = _stamp(data)
    else:
        value = _number(text, "the payload")
    if unit == "kW":
        value *= 1000.0
    if sign == "export_positive":
        value = -value
    if abs(value) > MAX_POWER:
        raise MeterPayloadError(f"{value:g} W is beyond any house connection")
    return MeterValue(value + 0.0, stamp)


__all__ = [
    "MAX_PAYLOAD",
    "SIGNS",
    "UNITS",
    "MeterPayloadError",
    "MeterValue",
    "parse_path",
    "read_meter",
]
