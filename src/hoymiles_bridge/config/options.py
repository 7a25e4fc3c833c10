"""The bridge's options: one voluptuous schema for the add-on and standalone mode.

The keys are a contract shared by the add-on's ``/data/options.json`` and the
standalone ``--config`` file (YAML or JSON). Everything about them is built
from the option table in :mod:`hoymiles_bridge.config.table`: the schema, the
defaults of the typed :class:`Options` and the web UI's configuration form.
:func:`load_options` turns any problem into :class:`OptionsError` with one
plain line per problem, naming the key and what is expected.

Numbers are strict: a number option takes a whole number (an integer, a float
without a fraction such as ``35.0``, or text of at most 18 digits such as
``"35"``) within its bounds; true and false, fractions, infinities and NaN are
refused, and an option without an upper bound in the table stops at
:data:`MAX_WHOLE_NUMBER`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, assert_never

import voluptuous as vol
import yaml

from hoymiles_bridge.config.table import (
    DEFAULT_POLL_INTERVAL,
    FORM_SECTIONS,
    LOG_LEVELS,
    NIGHT_POLICIES,
    OPTIONS,
    SECRET_KEYS,
    Kind,
    OptionSpec,
    option,
)
from hoymiles_bridge.errors import InvalidArgumentError, InvalidSerialError
from hoymiles_bridge.protocol.devices import check_serial
from hoymiles_bridge.protocol.meter import parse_path


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


#: The largest value of a number option whose row gives no upper bound (what a
#: signed 32-bit integer holds): the options are stored and sent as JSON, and a
#: number with thousands of digits cannot even be printed.
MAX_WHOLE_NUMBER: Final = 2**31 - 1

#: Text that is a whole number: an optional sign and at most 18 digits.
_WHOLE_NUMBER_TEXT: Final = re.compile(r"[+-]?[0-9]{1,18}")


def _whole_number(value: Any) -> int:
    """``value`` as an ``int``: an integer, a float without a fraction or text of digits.

    True and false are refused although Python counts them as integers, and so
    are fractions, infinities, NaN and anything else.
    """
    if isinstance(value, bool):
        raise vol.Invalid("expected a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _WHOLE_NUMBER_TEXT.fullmatch(value.strip()):
        return int(value.strip())
    raise vol.Invalid("expected a whole number")


def _port(value: Any) -> int:
    port = _whole_number(value)
    if not 1 <= port <= 65535:
        raise vol.Invalid("expected a port number from 1 to 65535")
    return port


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


def _serial(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise vol.Invalid("expected a serial number of 12 hex digits")
    try:
        return check_serial(value.strip(), "the option")
    except InvalidSerialError:
        raise vol.Invalid(f"{value[:24]!r} is not a serial number (12 hex digits)") from None


def _names(spec: OptionSpec) -> Any:
    """The validator of a ``names`` option: a list of texts of bounded length and count."""
    name = vol.All(str, vol.Length(min=spec.min, max=spec.max))

    def check(value: Any) -> list[str]:
        if not isinstance(value, list | tuple):
            raise vol.Invalid("expected a list of names")
        if spec.count is not None and len(value) > spec.count:
            raise vol.Invalid(f"expected at most {spec.count} names")
        return [str(item) for item in vol.Schema([name])(list(value))]

    return check


def _distinct(spec: OptionSpec) -> Any:
    """A list's validator that refuses two items with the same ``spec.unique`` value."""

    def check(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen: set[Any] = set()
        for index, item in enumerate(items):
            value = item.get(spec.unique)
            if value is not None and value in seen:
                raise vol.Invalid(f"{value} is listed more than once", path=[index, spec.unique])
            seen.add(value)
        return items

    return check


def _too_few(spec: OptionSpec) -> str:
    if spec.min == 1:
        return f"expected at least one {spec.item}"
    return f"expected at least {spec.min} {spec.item}s"


def _value(spec: OptionSpec) -> Any:
    """The validator of an option's value (an optional one also takes ``None``)."""
    validator: Any
    match spec.kind:
        case "int":
            high = spec.max if spec.max is not None else MAX_WHOLE_NUMBER
            validator = vol.All(_whole_number, vol.Range(min=spec.min, max=high))
        case "bool":
            validator = bool
        case "text" | "secret":
            validator = (
                str
                if spec.min is None and spec.max is None
                else vol.All(str, vol.Length(min=spec.min, max=spec.max))
            )
        case "topic":
            validator = _topic
        case "host":
            validator = _host
        case "port":
            validator = _port
        case "serial":
            validator = _serial
        case "names":
            validator = _names(spec)
        case "choice":
            validator = vol.In(spec.choices)
            if spec.ignore_case:
                validator = vol.All(vol.Lower, validator)
        case "list":
            validator = [_schema(spec.fields)]
            if spec.min is not None:
                validator = vol.All(validator, vol.Length(min=spec.min, msg=_too_few(spec)))
            if spec.unique:
                validator = vol.All(validator, _distinct(spec))
        case "section":
            validator = _schema(spec.fields)
        case _:
            assert_never(spec.kind)
    return _or_none(validator) if spec.optional else validator


def _or_none(validator: Any) -> Any:
    """``validator`` that also takes ``None``, keeping the validator's own messages."""
    schema = vol.Schema(validator)

    def check(value: Any) -> Any:
        return None if value is None else schema(value)

    return check


def _schema(specs: tuple[OptionSpec, ...]) -> vol.Schema:
    """The schema of a mapping of the options ``specs``; one left out takes its default."""
    mapping: dict[vol.Marker, Any] = {}
    for spec in specs:
        if spec.required:
            marker: vol.Marker = vol.Required(spec.key)
        elif spec.kind == "section":
            marker = vol.Optional(spec.key, default=dict)
        elif spec.kind in ("list", "names"):
            marker = vol.Optional(spec.key, default=list)
        else:
            marker = vol.Optional(spec.key, default=spec.default)
        mapping[marker] = _value(spec)
    return vol.Schema(mapping)


SCHEMA: Final = _schema(OPTIONS)


# The typed options: one field per row of the table, in the table's order, with
# the table's defaults. _check_against_table below refuses to import while a
# field is missing, extra, typed or defaulted otherwise than its row.


def _default(path: str) -> Any:
    """The table's default of the option at ``path``, for the dataclasses below."""
    return option(path).default


@dataclass(frozen=True, slots=True)
class DtuOptions:
    host: str
    port: int = field(default=_default("dtus[].port"))
    name: str | None = field(default=_default("dtus[].name"))


@dataclass(frozen=True, slots=True)
class InverterOptions:
    serial: str
    name: str | None = field(default=_default("inverters[].name"))
    ports: tuple[str, ...] = field(default=_default("inverters[].ports"))


@dataclass(frozen=True, slots=True)
class BatteryOptions:
    dev_id: str
    name: str | None = field(default=_default("batteries[].name"))


@dataclass(frozen=True, slots=True)
class MqttOptions:
    host: str | None = field(default=_default("mqtt.host"))
    port: int = field(default=_default("mqtt.port"))
    username: str | None = field(default=_default("mqtt.username"))
    password: str | None = field(default=_default("mqtt.password"), repr=False)
    tls: bool = field(default=_default("mqtt.tls"))
    qos: int = field(default=_default("mqtt.qos"))


@dataclass(frozen=True, slots=True)
class CloudOptions:
    username: str | None = field(default=_default("cloud.username"))
    password: str | None = field(default=_default("cloud.password"), repr=False)
    poll_interval: int = field(default=_default("cloud.poll_interval"))
    stations: str | None = field(default=_default("cloud.stations"))
    allow_writes: bool = field(default=_default("cloud.allow_writes"))
    base_url: str | None = field(default=_default("cloud.base_url"))

    @property
    def enabled(self) -> bool:
        """Whether the cloud is used: a user name and a password are set."""
        return bool(self.username and self.password)


@dataclass(frozen=True, slots=True)
class ControllerOptions:
    mode: str = field(default=_default("controller.mode"))
    meter_topic: str | None = field(default=_default("controller.meter_topic"))
    meter_json_path: str | None = field(default=_default("controller.meter_json_path"))
    meter_sign: str = field(default=_default("controller.meter_sign"))
    meter_unit: str = field(default=_default("controller.meter_unit"))
    target: int = field(default=_default("controller.target"))
    import_bias: int = field(default=_default("controller.import_bias"))
    max_feed_in: int | None = field(default=_default("controller.max_feed_in"))
    meter_timeout: int = field(default=_default("controller.meter_timeout"))


def controller_problems(options: dict[str, Any]) -> list[str]:
    """Why clean ``controller`` options contradict each other, each naming its fields.

    Empty when they work together. The bridge refuses such options at start
    (and the configuration form refuses to save them).
    """
    mode = options["mode"]
    cap = options["max_feed_in"]
    setpoint = options["target"] + options["import_bias"]
    problems = []
    if mode == "feed_in_cap" and cap is None:
        problems.append("controller.max_feed_in: controller.mode feed_in_cap needs a cap")
    path = options["meter_json_path"]
    if path is not None and options["meter_topic"] is None:
        problems.append("controller.meter_json_path: set without controller.meter_topic")
    elif path is not None:
        try:
            parse_path(path)
        except InvalidArgumentError as err:
            problems.append(f"controller.meter_json_path: {err}")
    if cap is not None and -setpoint > cap:
        problems.append(
            f"controller.target: with controller.import_bias it asks to export {-setpoint} W, "
            f"more than controller.max_feed_in ({cap} W)"
        )
    return problems


@dataclass(frozen=True, slots=True)
class WebOptions:
    host: str = field(default=_default("web.host"))
    port: int = field(default=_default("web.port"))
    username: str | None = field(default=_default("web.username"))
    password: str | None = field(default=_default("web.password"), repr=False)


@dataclass(frozen=True, slots=True)
class Options:
    """Validated options (see DOCS.md for every key)."""

    dtus: tuple[DtuOptions, ...]
    inverters: tuple[InverterOptions, ...] = ()
    poll_interval: int = field(default=_default("poll_interval"))
    min_poll_interval: int | None = field(default=_default("min_poll_interval"))
    cloud_pause: bool = field(default=_default("cloud_pause"))
    release_socket_after: int = field(default=_default("release_socket_after"))
    performance_mode: bool = field(default=_default("performance_mode"))
    night_policy: str = field(default=_default("night_policy"))
    frozen_after: int = field(default=_default("frozen_after"))
    limit_interval: int = field(default=_default("limit_interval"))
    batteries: tuple[BatteryOptions, ...] = ()
    batteries_auto: bool = field(default=_default("batteries_auto"))
    battery_release_mode: str = field(default=_default("battery_release_mode"))
    mqtt: MqttOptions = field(default_factory=MqttOptions)
    base_topic: str = field(default=_default("base_topic"))
    discovery: bool = field(default=_default("discovery"))
    discovery_prefix: str = field(default=_default("discovery_prefix"))
    opendtu_topics: bool = field(default=_default("opendtu_topics"))
    publish_interval: int = field(default=_default("publish_interval"))
    cloud: CloudOptions = field(default_factory=CloudOptions)
    controller: ControllerOptions = field(default_factory=ControllerOptions)
    log_level: str = field(default=_default("log_level"))
    web: WebOptions = field(default_factory=WebOptions)


#: The dataclass of each list's items and of each section, by the option's key.
_RECORDS: Final[dict[str, type[Any]]] = {
    "dtus": DtuOptions,
    "inverters": InverterOptions,
    "batteries": BatteryOptions,
    "mqtt": MqttOptions,
    "cloud": CloudOptions,
    "controller": ControllerOptions,
    "web": WebOptions,
}

#: The annotation of an option of each kind in the dataclasses (lists and
#: sections: their record, see :func:`_annotation`).
_ANNOTATIONS: Final[dict[Kind, str]] = {
    "int": "int",
    "bool": "bool",
    "text": "str",
    "topic": "str",
    "host": "str",
    "port": "int",
    "choice": "str",
    "secret": "str",
    "serial": "str",
    "names": "tuple[str, ...]",
}


def _annotation(spec: OptionSpec) -> str:
    """The annotation of the option's field in its dataclass."""
    if spec.kind == "list":
        text = f"tuple[{_RECORDS[spec.key].__name__}, ...]"
    elif spec.kind == "section":
        text = _RECORDS[spec.key].__name__
    else:
        text = _ANNOTATIONS[spec.kind]
    return f"{text} | None" if spec.optional else text


def _disagreements(record: type[Any], specs: tuple[OptionSpec, ...]) -> Iterator[str]:
    """How the dataclass ``record`` differs from the table's rows ``specs``."""
    fields_ = dataclasses.fields(record)
    names, keys = [f.name for f in fields_], [spec.key for spec in specs]
    if names != keys:
        yield from (f"{record.__name__} has no field {k}" for k in keys if k not in names)
        yield from (f"{record.__name__}.{n} has no row" for n in names if n not in keys)
        if sorted(names) == sorted(keys):
            yield f"{record.__name__} has its fields in another order than the table"
        return
    missing = dataclasses.MISSING
    for field_, spec in zip(fields_, specs, strict=True):
        where = f"{record.__name__}.{field_.name}"
        if field_.type != _annotation(spec):
            yield f"{where} is {field_.type}, the table says {_annotation(spec)}"
        expected: tuple[Any, Any] = (spec.default, missing)
        if spec.kind == "section":
            expected = (missing, _RECORDS[spec.key])
        elif spec.required:
            expected = (missing, missing)
        elif spec.kind == "list":
            expected = ((), missing)
        default = (field_.default, field_.default_factory)
        if default != expected or type(default[0]) is not type(expected[0]):
            yield f"{where} has another default than the table"
        if field_.repr == (spec.kind == "secret"):
            yield f"{where} must {'not ' if field_.repr else ''}be in the repr"


def _check_against_table() -> None:
    """Refuse to import while the dataclasses above and the option table disagree."""
    holders = {spec.key for spec in OPTIONS if spec.kind in ("list", "section")}
    problems = [f"no dataclass for {key}" for key in sorted(holders - set(_RECORDS))]
    problems += [f"no row for {key}" for key in sorted(set(_RECORDS) - holders)]
    if not problems:
        problems += _disagreements(Options, OPTIONS)
        for key, record in _RECORDS.items():
            problems += _disagreements(record, option(key).fields)
    if problems:
        raise TypeError("options.py and the option table disagree: " + "; ".join(problems))


_check_against_table()


#: voluptuous' terse messages, said plainly.
_FRIENDLY: Final = {
    "extra keys not allowed": "unknown option",
    "required key not provided": "required option is missing",
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


def clean_option(path: str, data: Any) -> Any:
    """The clean value of the option at ``path`` (``mqtt.port``) in an options document.

    An option left out, or whose section is not a mapping, has its default.
    Raises :class:`OptionsError` naming ``path`` when the value is invalid,
    and :class:`KeyError` for a path the table does not have; an option of a
    list's items (``dtus[].host``) is not one value, so it is not looked up.
    """
    if "[]" in path:
        raise KeyError(path)
    spec = option(path)
    present, value = _get(data if isinstance(data, dict) else {}, path)
    if not present:
        return spec.default
    try:
        return vol.Schema(_value(spec))(value)
    except vol.Invalid as err:
        raise OptionsError([f"{path}: {_describe(err)[1]}"]) from None


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
    problems = controller_problems(clean["controller"])
    if problems:
        raise OptionsError(problems)
    return clean


def validate(data: Any) -> Options:
    """Validate a parsed options document; raises OptionsError."""
    return from_clean(normalize(data))


def from_clean(clean: dict[str, Any]) -> Options:
    """:class:`Options` from a document :func:`normalize` returned."""
    values: dict[str, Any] = {}
    for spec in OPTIONS:
        value = clean[spec.key]
        if spec.kind == "list":
            value = tuple(_RECORDS[spec.key](**_record(spec, item)) for item in value)
        elif spec.kind == "section":
            value = _RECORDS[spec.key](**value)
        values[spec.key] = value
    return Options(**values)


def _record(spec: OptionSpec, item: dict[str, Any]) -> dict[str, Any]:
    """A clean list item's values for its dataclass (lists of names become tuples)."""
    return {
        sub.key: tuple(item[sub.key]) if sub.kind == "names" else item[sub.key]
        for sub in spec.fields
    }


def load_options(path: str | Path) -> Options:
    """Read a YAML or JSON options file and validate it."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OptionsError([f"{file}: no such file"]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise OptionsError([f"{file}: cannot be read ({err})"]) from None
    kind = "JSON" if file.suffix == ".json" else "YAML"
    try:
        data = json.loads(text) if kind == "JSON" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        line = getattr(err, "lineno", None) or getattr(
            getattr(err, "problem_mark", None), "line", None
        )
        where = (
            f" near line {line + 1 if isinstance(err, yaml.YAMLError) else line}"
            if line is not None
            else ""
        )
        raise OptionsError([f"{file}: not valid {kind}{where}"]) from None
    except (ValueError, RecursionError) as err:
        raise OptionsError([f"{file}: not valid {kind}: {unreadable_value(err)}"]) from None
    return validate(data)


def unreadable_value(err: ValueError | RecursionError) -> str:
    """Why a YAML or JSON text that parsed could still not be turned into values.

    The parsers raise :class:`ValueError` for a number with more digits than
    Python converts (``sys.get_int_max_str_digits()``) or, in YAML, a date that
    does not exist, and :class:`RecursionError` for nesting deeper than the
    interpreter's stack.
    """
    if isinstance(err, RecursionError):
        return "its lists or mappings are nested too deeply"
    if "integer string conversion" in str(err):
        return f"a number is too long (more than {sys.get_int_max_str_digits()} digits)"
    return "a value cannot be read, such as a date that does not exist"


# --- the configuration form -----------------------------------------------------
#
# What the web UI's configuration page shows, field by field: the option
# table's rows, as the web UI's config.js reads them.

FieldKind = Literal["int", "bool", "text", "host", "port", "choice", "secret", "names", "list"]


@dataclass(frozen=True, slots=True)
class FormField:
    """One field of the configuration form.

    ``key`` is the option's path (``poll_interval``, ``mqtt.port``; for the
    fields of a list's item, their key: ``host``, ``port``, ``name``). ``kind``
    is the table's kind, except that a topic and a serial are ``text``; a
    ``list`` has a row of ``fields`` per item (``item`` names one), ``names``
    up to ``count`` texts. ``optional`` fields may be
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
    item: str = ""
    count: int | None = None

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
        if self.item:
            data["item"] = self.item
        if self.count is not None:
            data["count"] = self.count
        return data


#: The form's kind of each kind of option (a section has no field of its own).
_FORM_KINDS: Final[dict[Kind, FieldKind]] = {
    "int": "int",
    "bool": "bool",
    "text": "text",
    "topic": "text",
    "host": "host",
    "port": "port",
    "choice": "choice",
    "secret": "secret",
    "serial": "text",
    "names": "names",
    "list": "list",
}


def _form_field(spec: OptionSpec, key: str, holder: OptionSpec) -> FormField:
    """The form's field for the option ``spec`` at ``key``.

    ``holder`` gives the field's form section, ``addon`` and ``restart``: the
    option itself, or the list or section that holds it.
    """
    return FormField(
        key,
        _FORM_KINDS[spec.kind],
        holder.section,
        spec.label,
        spec.help,
        default=[] if spec.kind in ("list", "names") else spec.default,
        optional=spec.optional,
        min=None if spec.kind == "list" else spec.min,
        max=spec.max,
        choices=spec.choices,
        addon=holder.addon,
        restart=holder.restart,
        fields=tuple(_form_field(sub, sub.key, spec) for sub in spec.fields),
        item=spec.item,
        count=spec.count,
    )


def _form_fields() -> tuple[FormField, ...]:
    """Every field of the form, section by section in the order of FORM_SECTIONS."""
    found: list[FormField] = []
    for spec in OPTIONS:
        if spec.kind == "section":
            found += (_form_field(sub, f"{spec.key}.{sub.key}", spec) for sub in spec.fields)
        else:
            found.append(_form_field(spec, spec.key, spec))
    order = [key for key, _, _ in FORM_SECTIONS]
    return tuple(sorted(found, key=lambda f: order.index(f.section)))


FORM_FIELDS: Final = _form_fields()


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
        if field_.kind == "list":
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
    known = {spec.key for spec in OPTIONS if spec.addon or not addon}

    def prune(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: prune(v) for k, v in value.items() if v is not None}
        if isinstance(value, list | tuple):
            return [prune(v) for v in value]
        return value

    return {k: prune(v) for k, v in clean.items() if k in known and v is not None}


__all__ = [
    "DEFAULT_POLL_INTERVAL",
    "FORM_FIELDS",
    "FORM_SECTIONS",
    "LOG_LEVELS",
    "MAX_WHOLE_NUMBER",
    "NIGHT_POLICIES",
    "SCHEMA",
    "SECRET_KEYS",
    "BatteryOptions",
    "CloudOptions",
    "ControllerOptions",
    "DtuOptions",
    "FormField",
    "InverterOptions",
    "MqttOptions",
    "Options",
    "OptionsError",
    "WebOptions",
    "clean_option",
    "controller_problems",
    "form_description",
    "form_values",
    "from_clean",
    "load_options",
    "normalize",
    "storable",
    "unreadable_value",
    "validate",
]
