"""What the API's page modules share: the error type, body reading, the API's context.

:mod:`hoymiles_bridge.web.api` registers the routes of each page module
(:mod:`.config_api`, :mod:`.console_api`, :mod:`.history_api`); they see the
API only through :class:`ApiContext`, so nothing imports back up.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, Final, Protocol

from aiohttp import web

from hoymiles_bridge.config.store import ConfigStore
from hoymiles_bridge.core.fleet import Fleet
from hoymiles_bridge.core.state import DtuState
from hoymiles_bridge.web.hub import WebHub, encode

#: Biggest request body the API reads (a pasted frame is at most 16 KiB of bytes).
MAX_BODY: Final = 64 * 1024
#: Most digits a whole number in a body may have; no option or command needs more.
MAX_DIGITS: Final = 20


class BadRequest(Exception):  # noqa: N818 - reads better at the raise sites
    """Answered with ``status`` and ``{"error": message}``."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class ApiContext(Protocol):
    """What a page module may use of the API."""

    hub: WebHub
    config_store: ConfigStore | None

    @property
    def fleet(self) -> Fleet:
        """The fleet; raises :class:`BadRequest` (503) while the service is starting it."""
        ...

    def clock(self) -> float: ...

    def dtu(self, name: str | None, *, what: str = "field") -> DtuState:
        """The DTU named by label, serial or host; raises :class:`BadRequest`."""
        ...


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def json_text(text: str, **headers: str) -> web.Response:
    """An already encoded JSON body."""
    return web.Response(text=text, content_type="application/json", headers=headers or None)


def json_data(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=encode(data), status=status, content_type="application/json")


class _Unusable:
    """What the parser keeps in place of a number no field can take (see :func:`parse_json`)."""

    __slots__ = ("problem",)

    def __init__(self, problem: str) -> None:
        #: Completes "the field '<path>' ...".
        self.problem = problem


def _whole(text: str) -> int | _Unusable:
    if len(text) - text.startswith("-") > MAX_DIGITS:
        return _Unusable(f"has more than {MAX_DIGITS} digits")
    return int(text)


def _real(text: str) -> float | _Unusable:
    value = float(text)
    return value if math.isfinite(value) else _Unusable("is too large to be a number")


def _constant(name: str) -> _Unusable:
    return _Unusable(f"must be a finite number, not {name}")


def _first_unusable(body: Any) -> tuple[str, _Unusable] | None:
    """The path (``options.dtus[0].port``) and problem of the first unusable number."""
    stack: list[tuple[str, Any]] = [("", body)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, _Unusable):
            return path, value
        if isinstance(value, dict):
            items = [(f"{path}.{key}" if path else str(key), item) for key, item in value.items()]
        elif isinstance(value, list):
            items = [(f"{path}[{index}]", item) for index, item in enumerate(value)]
        else:
            continue
        stack.extend(reversed(items))  # depth first, in the document's order
    return None


def parse_json(text: str) -> Any:
    """``text`` as JSON, strictly; raises :class:`BadRequest` with one sentence.

    Python's parser takes ``NaN``, ``Infinity`` and ``1e999`` (infinite), and
    gives up on whole numbers of thousands of digits with a ``ValueError``
    unlike any other; deep nesting exhausts its recursion. None of these is a
    value of any field: the answer names the field that held it.
    """
    try:
        body = json.loads(text, parse_int=_whole, parse_float=_real, parse_constant=_constant)
    except json.JSONDecodeError:
        raise BadRequest("the body is not valid JSON") from None
    except RecursionError:
        raise BadRequest("the body is nested too deeply") from None
    found = _first_unusable(body)
    if found is not None:
        path, unusable = found
        if not path:
            raise BadRequest("the body must be a JSON object")
        raise BadRequest(f"the field {path!r} {unusable.problem}")
    return body


async def read_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object (at most MAX_BODY, see :func:`parse_json`).

    Raises :class:`BadRequest`.
    """
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise BadRequest(f"the body is larger than {MAX_BODY} bytes", status=413)
    try:
        text = await request.text()
    except (UnicodeDecodeError, LookupError):  # not in its charset, or an unknown charset
        raise BadRequest("the body is not text in its charset (send UTF-8 JSON)") from None
    if len(text) > MAX_BODY:
        raise BadRequest(f"the body is larger than {MAX_BODY} bytes", status=413)
    body = parse_json(text)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def text_field(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    """A text field of a body; raises :class:`BadRequest` naming it."""
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise BadRequest(f"the field {name!r} is required")
        return None
    if not isinstance(value, str):
        raise BadRequest(f"the field {name!r} must be text")
    return value.strip()


Clock = Callable[[], float]

__all__ = [
    "MAX_BODY",
    "MAX_DIGITS",
    "ApiContext",
    "BadRequest",
    "Clock",
    "error",
    "json_data",
    "json_text",
    "parse_json",
    "read_body",
    "text_field",
]
