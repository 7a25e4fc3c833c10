"""The bridge's options: one voluptuous schema for the add-on and standalone mode.

The keys are a contract shared by the add-on's ``/data/options.json`` and the
standalone ``--config`` file (YAML or JSON). :func:`load_options` turns any
problem into :class:`OptionsError` with one plain line per problem, naming
the key and what is expected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import voluptuous as vol
import yaml

from hoymiles_bridge.errors import InvalidArgumentError

LOG_LEVELS: Final = ("debug", "info", "warning", "error")
NIGHT_POLICIES: Final = ("zero", "unavailable")
#: Polls closer than this make the DTU repeat old data and starve the cloud
#: upload (protocol.md 5.2/5.4); newer firmware wants more (see policy.py).
DEFAULT_POLL_INTERVAL: Final = 35


class OptionsError(InvalidArgumentError):
    """The options are invalid. ``problems`` holds one sentence per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _port(value: Any) -> int:
    port = vol.Coerce(int)(value)
    if not 1 <= port <= 65535:
        raise vol.Invalid("expected a port number from 1 to 65535")
    return int(port)


def _host(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise vol.Invalid("expected a host name or IP address")
    text = value.strip()
    if any(c.isspace() for c in text) or "/" in text:
        raise vol.Invalid(f"{text!r} is not a host name or IP address")
    return text


def _topic(value: Any) -> str:
    if not isinstance(value, str) or not value.strip("/ "):
        raise vol.Invalid("expected a topic such as 'solar'")
    text = value.strip().strip("/")
    if any(c in text for c in "+#\0") or any(c.isspace() for c in text):
        raise vol.Invalid(f"{text!r} may not contain spaces, '+' or '#'")
    return text


_DTU = vol.Schema(
    {
        vol.Required("host"): _host,
        vol.Optional("port", default=10081): _port,
        vol.Optional("name", default=None): vol.Any(None, vol.All(str, vol.Length(min=1, max=64))),
    }
)

_MQTT = vol.Schema(
    {
        vol.Optional("host", default=None): vol.Any(None, _host),
        vol.Optional("port", default=1883): _port,
        vol.Optional("username", default=None): vol.Any(None, str),
        vol.Optional("password", default=None): vol.Any(None, str),
        vol.Optional("tls", default=False): bool,
    }
)

_WEB = vol.Schema(
    {
        vol.Optional("host", default="127.0.0.1"): _host,
        vol.Optional("port", default=8099): _port,
        vol.Optional("username", default=None): vol.Any(None, str),
        vol.Optional("password", default=None): vol.Any(None, str),
    }
)

SCHEMA: Final = vol.Schema(
    {
        vol.Required("dtus"): vol.All([_DTU], vol.Length(min=1, msg="expected at least one DTU")),
        vol.Optional("poll_interval", default=DEFAULT_POLL_INTERVAL): vol.All(
            vol.Coerce(int), vol.Range(min=1, max=3600)
        ),
        vol.Optional("min_poll_interval", default=None): vol.Any(
            None, vol.All(vol.Coerce(int), vol.Range(min=1, max=3600))
        ),
        vol.Optional("cloud_pause", default=False): bool,
        vol.Optional("release_socket_after", default=60): vol.All(
            vol.Coerce(int), vol.Range(min=0, max=86400)
        ),
        vol.Optional("performance_mode", default=False): bool,
        vol.Optional("night_policy", default="zero"): vol.In(NIGHT_POLICIES),
        vol.Optional("frozen_after", default=10): vol.All(vol.Coerce(int), vol.Range(min=2)),
        vol.Optional("limit_interval", default=30): vol.All(
            vol.Coerce(int), vol.Range(min=0, max=3600)
        ),
        vol.Optional("mqtt", default=dict): _MQTT,
        vol.Optional("base_topic", default="solar"): _topic,
        vol.Optional("discovery", default=True): bool,
        vol.Optional("discovery_prefix", default="homeassistant"): _topic,
        vol.Optional("log_level", default="info"): vol.All(vol.Lower, vol.In(LOG_LEVELS)),
        vol.Optional("web", default=dict): _WEB,
    }
)


@dataclass(frozen=True, slots=True)
class DtuOptions:
    host: str
    port: int = 10081
    name: str | None = None


@dataclass(frozen=True, slots=True)
class MqttOptions:
    host: str | None = None
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False


@dataclass(frozen=True, slots=True)
class WebOptions:
    host: str = "127.0.0.1"
    port: int = 8099
    username: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Options:
    """Validated options (see DOCS.md for every key)."""

    dtus: tuple[DtuOptions, ...]
    poll_interval: int = DEFAULT_POLL_INTERVAL
    min_poll_interval: int | None = None
    cloud_pause: bool = False
    release_socket_after: int = 60
    performance_mode: bool = False
    night_policy: str = "zero"
    frozen_after: int = 10
    limit_interval: int = 30
    mqtt: MqttOptions = field(default_factory=MqttOptions)
    base_topic: str = "solar"
    discovery: bool = True
    discovery_prefix: str = "homeassistant"
    log_level: str = "info"
    web: WebOptions = field(default_factory=WebOptions)


#: voluptuous' terse messages, said plainly.
_FRIENDLY: Final = {
    "extra keys not allowed": "unknown option",
    "required key not provided": "required option is missing",
    "expected int": "expected a whole number",
    "expected bool": "expected true or false",
    "expected str": "expected text",
    "expected a list": "expected a list",
    "expected a dictionary": "expected a mapping of keys to values",
    "not a valid value": "not one of the allowed values",
}


def _describe(error: vol.Invalid) -> str:
    path = ""
    for part in error.path:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    message = _FRIENDLY.get(error.msg, error.msg)
    return f"{path or 'options'}: {message}"


def validate(data: Any) -> Options:
    """Validate a parsed options document; raises OptionsError."""
    if not isinstance(data, dict):
        raise OptionsError(["options: expected a mapping of option names to values"])
    try:
        clean = SCHEMA(data)
    except vol.MultipleInvalid as err:
        raise OptionsError(sorted({_describe(e) for e in err.errors})) from None
    except vol.Invalid as err:
        raise OptionsError([_describe(err)]) from None
    return Options(
        dtus=tuple(DtuOptions(**d) for d in clean["dtus"]),
        poll_interval=clean["poll_interval"],
        min_poll_interval=clean["min_poll_interval"],
        cloud_pause=clean["cloud_pause"],
        release_socket_after=clean["release_socket_after"],
        performance_mode=clean["performance_mode"],
        night_policy=clean["night_policy"],
        frozen_after=clean["frozen_after"],
        limit_interval=clean["limit_interval"],
        mqtt=MqttOptions(**clean["mqtt"]),
        base_topic=clean["base_topic"],
        discovery=clean["discovery"],
        discovery_prefix=clean["discovery_prefix"],
        log_level=clean["log_level"],
        web=WebOptions(**clean["web"]),
    )


def load_options(path: str | Path) -> Options:
    """Read a YAML or JSON options file and validate it."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OptionsError([f"{file}: no such file"]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise OptionsError([f"{file}: cannot be read ({err})"]) from None
    try:
        data = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        line = getattr(err, "lineno", None) or getattr(
            getattr(err, "problem_mark", None), "line", None
        )
        where = (
            f" near line {line + 1 if isinstance(err, yaml.YAMLError) else line}"
            if line is not None
            else ""
        )
        raise OptionsError(
            [f"{file}: not valid {'JSON' if file.suffix == '.json' else 'YAML'}{where}"]
        ) from None
    return validate(data)


__all__ = [
    "SCHEMA",
    "DtuOptions",
    "MqttOptions",
    "Options",
    "OptionsError",
    "WebOptions",
    "load_options",
    "validate",
]
