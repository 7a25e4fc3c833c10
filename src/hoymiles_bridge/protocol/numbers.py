"""Numbers from untrusted JSON (a battery's MQTT, the Hoymiles cloud).

Both send numbers as numbers or as text (``"10.0"``). :func:`number` takes
either and answers ``None`` for anything else: true/false, long texts,
infinities and NaN included.
"""

from __future__ import annotations

import math
from typing import Final

#: Longest text a number may arrive as (``"1234.5"``).
MAX_NUMBER_TEXT: Final = 32


def number(value: object) -> float | None:
    """A finite number from a number or a short text of one; ``None`` for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str) and 0 < len(value) <= MAX_NUMBER_TEXT:
        try:
            result = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return result if math.isfinite(result) else None


__all__ = ["MAX_NUMBER_TEXT", "number"]
