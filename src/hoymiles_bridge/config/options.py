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
from typing import Any, Final, Literal

import voluptuous as vol
import yaml

from hoymiles_bridge.errors import InvalidArgumentError

LOG_LEVELS: Final = ("debug", "info", "warning", "error")
NIGHT_POLICIES: Final = ("zero", "unavailable")
#: Polls closer than this make the DTU repeat old data and starve the cloud
#: upload (protocol.md 5.2/5.4); newer firmware wants more (see policy.py).
DEFAULT_POLL_INTERVAL: Final = 35


class OptionsError(InvalidArgumentError):
    """The options are invalid.

    ``problems`` holds one line per problem, ``"<path>: <message>"``; ``fields``
    maps each path (``poll_interval``, ``mqtt.port``, ``dtus[0].host``) to its
    message, for forms that show the message next to the field.
    """

    def __init__(self, problems: list[str], fields: dict[str, str] | None = None) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        if fields is None:
            fields = {}
            for problem in problems:
                path, _, message = problem.partition(": ")
                fields[path] = f"{fields[path]}; {message}" if path in fields else message
        self.fields = fields

    def sentence(self) -> str:
        """One plain sentence for the user, naming the invalid options."""
        if len(self.fields) == 1:
            ((path, message),) = self.fields.items()
            return f"The option {path} is invalid: {message}."
        return f"{len(self.fields)} options are invalid: {', '.join(self.fields)}."


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


def _describe(error: vol.Invalid) -> tuple[str, str]:
    """The error's path (``dtus[0].host``) and its plain message."""
    path = ""
    for part in error.path:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "options", _FRIENDLY.get(error.msg, error.msg)


def _options_error(errors: list[vol.Invalid]) -> OptionsError:
    found = sorted({_describe(e) for e in errors})
    fields: dict[str, str] = {}
    for path, message in found:
        fields[path] = f"{fields[path]}; {message}" if path in fields else message
    return OptionsError([f"{path}: {message}" for path, message in found], fields)


def normalize(data: Any) -> dict[str, Any]:
    """Validate a parsed options document; the clean document with every default filled in.

    Raises :class:`OptionsError`.
    """
    if not isinstance(data, dict):
        raise OptionsError(["options: expected a mapping of option names to values"])
    try:
        clean: dict[str, Any] = SCHEMA(data)
    except vol.MultipleInvalid as err:
        raise _options_error(list(err.errors)) from None
    except vol.Invalid as err:
        raise _options_error([err]) from None
    return clean


def validate(data: Any) -> Options:
    """Validate a parsed options document; raises OptionsError."""
    return from_clean(normalize(data))


def from_clean(clean: dict[str, Any]) -> Options:
    """:class:`Options` from a document :func:`normalize` returned."""
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


# --- the configuration form -----------------------------------------------------
#
# What the web UI's configuration page shows, field by field. The keys, bounds
# and choices mirror SCHEMA above (tests/test_options.py checks both ways, and
# against config.yaml's schema, so they cannot drift apart).

FieldKind = Literal["int", "bool", "text", "host", "port", "choice", "secret", "dtus"]


@dataclass(frozen=True, slots=True)
class FormField:
    """One field of the configuration form.

    ``key`` is the option's path (``poll_interval``, ``mqtt.port``; for the
    fields of one DTU, ``host``, ``port``, ``name``). ``optional`` fields may be
    left empty (``null``). ``addon`` says whether the add-on has the option
    (config.yaml's schema); ``restart`` what applies a change: ``bridge`` (a
    restart of the bridge) or ``process`` (the whole process, e.g. the web
    server's address).
    """

    key: str
    kind: FieldKind
    section: str
    label: str
    help: str = ""
    default: Any = None
    optional: bool = False
    min: int | None = None
    max: int | None = None
    choices: tuple[str, ...] = ()
    addon: bool = True
    restart: Literal["bridge", "process"] = "bridge"
    fields: tuple[FormField, ...] = ()

    def describe(self) -> dict[str, Any]:
        """The field as JSON for the web UI."""
        data: dict[str, Any] = {
            "key": self.key,
            "kind": self.kind,
            "section": self.section,
            "label": self.label,
            "help": self.help,
            "default": self.default,
            "optional": self.optional,
            "restart": self.restart,
        }
        if self.min is not None:
            data["min"] = self.min
        if self.max is not None:
            data["max"] = self.max
        if self.choices:
            data["choices"] = list(self.choices)
        if self.fields:
            data["fields"] = [f.describe() for f in self.fields]
        return data


#: The form's sections, in order: key, title, what they hold.
FORM_SECTIONS: Final = (
    ("dtus", "DTUs", "The DTUs (or HMS-W inverters) the bridge talks to."),
    ("polling", "Polling", "How often and how gently the bridge asks the DTUs."),
    ("mqtt", "MQTT", "The broker. In the add-on, leave the host empty to use the Supervisor's."),
    ("homeassistant", "Home Assistant", "Topics and MQTT discovery."),
    ("web", "Web", "Where this web UI listens (standalone only)."),
    ("logging", "Logging", ""),
)

_DTU_FIELDS: Final = (
    FormField("host", "host", "dtus", "Host", "IP address or host name of the DTU."),
    FormField("port", "port", "dtus", "Port", "The DTU's TCP port.", default=10081),
    FormField(
        "name",
        "text",
        "dtus",
        "Name",
        "Shown in Home Assistant (optional).",
        optional=True,
        min=1,
        max=64,
    ),
)

FORM_FIELDS: Final[tuple[FormField, ...]] = (
    FormField("dtus", "dtus", "dtus", "DTUs", "At least one DTU.", default=[], fields=_DTU_FIELDS),
    FormField(
        "poll_interval",
        "int",
        "polling",
        "Poll interval (s)",
        "Seconds between two real-data polls of a DTU.",
        default=DEFAULT_POLL_INTERVAL,
        min=1,
        max=3600,
    ),
    FormField(
        "min_poll_interval",
        "int",
        "polling",
        "Minimum poll interval (s)",
        "Empty: 35 s, or 120 s on DTU firmware V01.01.00+. Lower it only if your DTU copes.",
        optional=True,
        min=1,
        max=3600,
    ),
    FormField(
        "cloud_pause",
        "bool",
        "polling",
        "Pause during cloud uploads",
        "Do not poll in the DTU's cloud-upload slots, so the S-Miles app keeps its data.",
        default=False,
    ),
    FormField(
        "release_socket_after",
        "int",
        "polling",
        "Release the connection after (s)",
        "Close the connection between polls when the interval is this long (0 = never).",
        default=60,
        min=0,
        max=86400,
    ),
    FormField(
        "performance_mode",
        "bool",
        "polling",
        "Performance mode",
        "Ask the DTU for fresh data on every poll.",
        default=False,
    ),
    FormField(
        "night_policy",
        "choice",
        "polling",
        "At night",
        "zero: 0 W and totals kept; unavailable: entities unavailable while the DTU is off.",
        default="zero",
        choices=NIGHT_POLICIES,
    ),
    FormField(
        "frozen_after",
        "int",
        "polling",
        "Frozen after (polls)",
        "Polls with the same DTU timestamp before the data counts as frozen.",
        default=10,
        min=2,
    ),
    FormField(
        "limit_interval",
        "int",
        "polling",
        "Limit interval (s)",
        "Seconds between two power-limit writes to an inverter.",
        default=30,
        min=0,
        max=3600,
    ),
    FormField(
        "mqtt.host",
        "host",
        "mqtt",
        "Broker host",
        "Empty: the Supervisor's broker (add-on) or 127.0.0.1 (standalone).",
        optional=True,
    ),
    FormField("mqtt.port", "port", "mqtt", "Broker port", "", default=1883),
    FormField("mqtt.username", "text", "mqtt", "User name", "", optional=True),
    FormField(
        "mqtt.password",
        "secret",
        "mqtt",
        "Password",
        "Never shown; leave it as it is to keep it, empty it to remove it.",
        optional=True,
    ),
    FormField("mqtt.tls", "bool", "mqtt", "TLS", "Connect with TLS.", default=False),
    FormField(
        "base_topic",
        "text",
        "homeassistant",
        "Base topic",
        "Root of every topic, e.g. solar.",
        default="solar",
    ),
    FormField(
        "discovery",
        "bool",
        "homeassistant",
        "MQTT discovery",
        "Announce the devices to Home Assistant.",
        default=True,
    ),
    FormField(
        "discovery_prefix",
        "text",
        "homeassistant",
        "Discovery prefix",
        "As set in Home Assistant's MQTT integration.",
        default="homeassistant",
    ),
    FormField(
        "web.host",
        "host",
        "web",
        "Listen on",
        "127.0.0.1 keeps the UI on this machine.",
        default="127.0.0.1",
        addon=False,
        restart="process",
    ),
    FormField("web.port", "port", "web", "Port", "", default=8099, addon=False, restart="process"),
    FormField(
        "web.username",
        "text",
        "web",
        "User name",
        "Basic auth when listening beyond this machine.",
        optional=True,
        addon=False,
        restart="process",
    ),
    FormField(
        "web.password",
        "secret",
        "web",
        "Password",
        "Never shown; leave it as it is to keep it, empty it to remove it.",
        optional=True,
        addon=False,
        restart="process",
    ),
    FormField(
        "log_level",
        "choice",
        "logging",
        "Log level",
        "",
        default="info",
        choices=LOG_LEVELS,
    ),
)

#: The paths of the options that hold secrets (never shown, never logged).
SECRET_KEYS: Final = tuple(f.key for f in FORM_FIELDS if f.kind == "secret")


def form_description(*, addon: bool) -> dict[str, Any]:
    """The form for the web UI: its sections and fields (the add-on's only when ``addon``)."""
    fields = [f for f in FORM_FIELDS if f.addon or not addon]
    used = {f.section for f in fields}
    return {
        "sections": [
            {"key": key, "label": label, "help": text}
            for key, label, text in FORM_SECTIONS
            if key in used
        ],
        "fields": [f.describe() for f in fields],
    }


def _get(data: dict[str, Any], key: str) -> tuple[bool, Any]:
    """``(present, value)`` of a dotted path in ``data``."""
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _set(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def form_values(raw: Any, *, addon: bool) -> dict[str, Any]:
    """The form's values: ``raw`` options (valid or not) with every missing one defaulted.

    Secrets are returned as they are: mask them before they leave the process.
    """
    data = raw if isinstance(raw, dict) else {}
    values: dict[str, Any] = {}
    for field_ in FORM_FIELDS:
        if addon and not field_.addon:
            continue
        present, value = _get(data, field_.key)
        if field_.kind == "dtus":
            items = value if present and isinstance(value, list) else []
            value = [
                {
                    sub.key: item.get(sub.key, sub.default) if isinstance(item, dict) else None
                    for sub in field_.fields
                }
                for item in items
            ]
        elif not present:
            value = field_.default
        _set(values, field_.key, value)
    return values


def storable(clean: dict[str, Any], *, addon: bool) -> dict[str, Any]:
    """What to store of a :func:`normalize`-d document: no empty (``None``) values.

    ``addon`` also drops the options the add-on does not have (``web``): the
    Supervisor validates against config.yaml's schema, where an optional key
    must be absent rather than ``null``.
    """
    known = {f.key.split(".")[0] for f in FORM_FIELDS if f.addon or not addon}

    def prune(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: prune(v) for k, v in value.items() if v is not None}
        if isinstance(value, list | tuple):
            return [prune(v) for v in value]
        return value

    return {k: prune(v) for k, v in clean.items() if k in known and v is not None}


__all__ = [
    "FORM_FIELDS",
    "FORM_SECTIONS",
    "SCHEMA",
    "SECRET_KEYS",
    "DtuOptions",
    "FormField",
    "MqttOptions",
    "Options",
    "OptionsError",
    "WebOptions",
    "form_description",
    "form_values",
    "from_clean",
    "load_options",
    "normalize",
    "storable",
    "validate",
]
