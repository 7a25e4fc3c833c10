"""A checker for Home Assistant MQTT discovery messages, from the documented rules.

This is not a mock of Home Assistant: it encodes what addon.md section 8 and
the MQTT integration docs state (topic form, abbreviations, required keys,
device-class units, state classes, entity categories), so a payload that
passes here uses only what those documents promise. The key lists are an
allow-list: anything else is reported, including ``obj_id``/``object_id`` and
``def_ent_id``/``default_entity_id``, which must not be sent because the first
is deprecated since 2025.10 and the second does not exist before it.

:func:`check_message` returns a list of problems (empty when fine);
:func:`check_fleet` also checks uniqueness across every message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

COMPONENTS = frozenset({"sensor", "binary_sensor", "number", "button", "switch", "select"})

#: Options every entity platform accepts (abbreviation table; ``qos`` and
#: ``~`` have no abbreviation).
COMMON_KEYS = frozenset(
    {
        "~",
        "name",
        "uniq_id",
        "dev",
        "o",
        "avty",
        "avty_t",
        "avty_tpl",
        "avty_mode",
        "pl_avail",
        "pl_not_avail",
        "ic",
        "ent_cat",
        "en",
        "json_attr_t",
        "json_attr_tpl",
        "e",
        "qos",
    }
)

COMPONENT_KEYS: dict[str, frozenset[str]] = {
    "sensor": frozenset(
        {
            "stat_t",
            "val_tpl",
            "dev_cla",
            "stat_cla",
            "unit_of_meas",
            "sug_dsp_prc",
            "exp_aft",
            "frc_upd",
            "lrst_val_tpl",
            "ops",
        }
    ),
    "binary_sensor": frozenset(
        {"stat_t", "val_tpl", "dev_cla", "pl_on", "pl_off", "off_dly", "exp_aft", "frc_upd"}
    ),
    "number": frozenset(
        {
            "cmd_t",
            "cmd_tpl",
            "stat_t",
            "val_tpl",
            "min",
            "max",
            "step",
            "mode",
            "unit_of_meas",
            "dev_cla",
            "opt",
            "ret",
            "pl_rst",
        }
    ),
    "button": frozenset({"cmd_t", "cmd_tpl", "pl_prs", "dev_cla", "ret"}),
    "select": frozenset({"cmd_t", "cmd_tpl", "stat_t", "val_tpl", "ops", "opt", "ret"}),
    "switch": frozenset(
        {
            "cmd_t",
            "stat_t",
            "val_tpl",
            "pl_on",
            "pl_off",
            "stat_on",
            "stat_off",
            "opt",
            "ret",
            "dev_cla",
        }
    ),
}

REQUIRED_KEYS: dict[str, frozenset[str]] = {
    "sensor": frozenset({"stat_t"}),
    "binary_sensor": frozenset({"stat_t"}),
    "number": frozenset({"cmd_t"}),
    "button": frozenset({"cmd_t"}),
    "switch": frozenset({"cmd_t"}),
    "select": frozenset({"cmd_t", "ops"}),
}

#: Device keys Home Assistant 2024.2 (config.yaml's minimum) accepts; ``via_device``
#: has no abbreviation. ``sn`` (serial_number) is new in 2024.2: 2024.1 rejects the
#: payload for it (core issue #108069). Not allowed: ``mdl_id`` (model_id, newer still).
DEVICE_KEYS = frozenset(
    {"ids", "cns", "name", "mf", "mdl", "hw", "sw", "sa", "sn", "cu", "via_device"}
)
#: The schemes a device's configuration_url may use (Home Assistant's validator).
CONFIGURATION_URL_SCHEMES = ("http://", "https://", "homeassistant://")
ORIGIN_KEYS = frozenset({"name", "sw", "url"})
AVAILABILITY_ITEM_KEYS = frozenset({"t", "pl_avail", "pl_not_avail", "val_tpl"})

#: Keys that must not appear: deprecated, or unknown to older releases.
FORBIDDEN_KEYS = frozenset({"obj_id", "object_id", "def_ent_id", "default_entity_id"})

#: Sensor device class -> allowed units (addon.md 8.5); ``None`` = no unit.
SENSOR_UNITS: dict[str, frozenset[str | None]] = {
    "power": frozenset({"mW", "W", "kW", "MW", "GW", "TW"}),
    "energy": frozenset(
        {"J", "kJ", "MJ", "GJ", "mWh", "Wh", "kWh", "MWh", "GWh", "TWh", "cal", "kcal"}
    ),
    "voltage": frozenset({"V", "mV", "µV", "kV", "MV"}),
    "current": frozenset({"A", "mA", "µA"}),
    "frequency": frozenset({"mHz", "Hz", "kHz", "MHz", "GHz"}),
    "temperature": frozenset({"°C", "°F", "K"}),
    "battery": frozenset({"%"}),
    "power_factor": frozenset({"%", None}),
    "reactive_power": frozenset({"mvar", "var", "kvar"}),
    "apparent_power": frozenset({"mVA", "VA", "kVA"}),
    "signal_strength": frozenset({"dB", "dBm"}),
    "duration": frozenset({"d", "h", "min", "s", "ms", "µs"}),
    "timestamp": frozenset({None}),
    "enum": frozenset({None}),
}
STATE_CLASSES = frozenset({"measurement", "total", "total_increasing"})
ENERGY_STATE_CLASSES = frozenset({"total", "total_increasing"})

BINARY_SENSOR_CLASSES = frozenset(
    {
        "battery",
        "battery_charging",
        "carbon_monoxide",
        "cold",
        "connectivity",
        "door",
        "garage_door",
        "gas",
        "heat",
        "light",
        "lock",
        "moisture",
        "motion",
        "moving",
        "occupancy",
        "opening",
        "plug",
        "power",
        "presence",
        "problem",
        "running",
        "safety",
        "smoke",
        "sound",
        "tamper",
        "update",
        "vibration",
        "window",
    }
)
BUTTON_CLASSES = frozenset({"identify", "restart", "update"})
SWITCH_CLASSES = frozenset({"outlet", "switch"})
ENTITY_CATEGORIES = frozenset({"config", "diagnostic"})
AVAILABILITY_MODES = frozenset({"all", "any", "latest"})
NUMBER_MODES = frozenset({"auto", "box", "slider"})
MIN_STEP = 0.001

_ID_CHARS = "[a-zA-Z0-9_-]+"


def topic_pattern(prefix: str) -> re.Pattern[str]:
    components = "|".join(sorted(COMPONENTS))
    return re.compile(rf"^{re.escape(prefix)}/({components})/{_ID_CHARS}/{_ID_CHARS}/config$")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_device(dev: Any) -> list[str]:
    if not isinstance(dev, dict):
        return ["dev is not an object"]
    problems = [f"unknown device key {k!r}" for k in dev if k not in DEVICE_KEYS]
    ids = dev.get("ids")
    if isinstance(ids, str):
        ids = [ids]
    if not ids or not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
        problems.append("dev.ids must be a non-empty string or list of strings")
    problems.extend(
        f"dev.{k} must be a string"
        for k, v in dev.items()
        if k not in {"ids", "cns"} and not isinstance(v, str)
    )
    url = dev.get("cu")
    if isinstance(url, str) and not url.startswith(CONFIGURATION_URL_SCHEMES):
        problems.append(f"dev.cu {url!r} is not an http(s):// or homeassistant:// URL")
    return problems


def _check_origin(origin: Any) -> list[str]:
    if not isinstance(origin, dict):
        return ["o (origin) is missing or not an object"]
    problems = [f"unknown origin key {k!r}" for k in origin if k not in ORIGIN_KEYS]
    if not isinstance(origin.get("name"), str) or not origin["name"]:
        problems.append("o.name is required")
    return problems


def _check_availability(payload: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    if "avty" in payload and "avty_t" in payload:
        problems.append("avty and avty_t are mutually exclusive")
    items = payload.get("avty", [])
    if not isinstance(items, list) or ("avty" in payload and not items):
        return [*problems, "avty must be a non-empty list"]
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("t"), str):
            problems.append(f"availability item without topic: {item!r}")
            continue
        problems.extend(
            f"unknown availability key {k!r}" for k in item if k not in AVAILABILITY_ITEM_KEYS
        )
    mode = payload.get("avty_mode")
    if mode is not None and mode not in AVAILABILITY_MODES:
        problems.append(f"avty_mode {mode!r} not in {sorted(AVAILABILITY_MODES)}")
    return problems


def _check_sensor(payload: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    device_class = payload.get("dev_cla")
    unit = payload.get("unit_of_meas")
    state_class = payload.get("stat_cla")
    if device_class is not None:
        allowed = SENSOR_UNITS.get(device_class)
        if allowed is None:
            problems.append(f"sensor device_class {device_class!r} is not allowed here")
        elif unit not in allowed:
            problems.append(f"unit {unit!r} is not valid for device_class {device_class!r}")
    if state_class is not None and state_class not in STATE_CLASSES:
        problems.append(f"state_class {state_class!r} not in {sorted(STATE_CLASSES)}")
    if device_class == "energy" and state_class not in ENERGY_STATE_CLASSES:
        problems.append("energy sensors need state_class total or total_increasing")
    if device_class in {"timestamp", "enum"} and state_class is not None:
        problems.append(f"a {device_class} sensor cannot have a state_class")
    precision = payload.get("sug_dsp_prc")
    if precision is not None and (not isinstance(precision, int) or precision < 0):
        problems.append("sug_dsp_prc must be a non-negative integer")
    if payload.get("ent_cat") == "config":
        problems.append("read-only sensors cannot use entity_category config")
    return problems


def _check_binary_sensor(payload: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    device_class = payload.get("dev_cla")
    if device_class is not None and device_class not in BINARY_SENSOR_CLASSES:
        problems.append(f"binary_sensor device_class {device_class!r} unknown")
    for key in ("pl_on", "pl_off"):
        if key in payload and not isinstance(payload[key], str):
            problems.append(f"{key} must be a string")
    if "pl_on" in payload and payload.get("pl_on") == payload.get("pl_off"):
        problems.append("pl_on and pl_off are equal")
    if payload.get("ent_cat") == "config":
        problems.append("read-only binary sensors cannot use entity_category config")
    return problems


def _check_number(payload: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    low, high, step = payload.get("min", 1), payload.get("max", 100), payload.get("step", 1)
    if not all(_is_number(v) for v in (low, high, step)):
        return ["number min/max/step must be numbers"]
    if not low < high:
        problems.append(f"number min {low} must be below max {high}")
    if step < MIN_STEP:
        problems.append(f"number step {step} must be at least {MIN_STEP}")
    mode = payload.get("mode")
    if mode is not None and mode not in NUMBER_MODES:
        problems.append(f"number mode {mode!r} not in {sorted(NUMBER_MODES)}")
    device_class = payload.get("dev_cla")
    if device_class is not None:
        allowed = SENSOR_UNITS.get(device_class)
        if allowed is None or payload.get("unit_of_meas") not in allowed:
            problems.append(f"number device_class {device_class!r} / unit mismatch")
    return problems


def _check_button(payload: dict[str, Any]) -> list[str]:
    device_class = payload.get("dev_cla")
    if device_class is not None and device_class not in BUTTON_CLASSES:
        return [f"button device_class {device_class!r} not in {sorted(BUTTON_CLASSES)}"]
    return []


def _check_switch(payload: dict[str, Any]) -> list[str]:
    device_class = payload.get("dev_cla")
    if device_class is not None and device_class not in SWITCH_CLASSES:
        return [f"switch device_class {device_class!r} not in {sorted(SWITCH_CLASSES)}"]
    return []


def _check_select(payload: dict[str, Any]) -> list[str]:
    options = payload.get("ops")
    if not isinstance(options, list) or not options or not all(isinstance(o, str) for o in options):
        return ["select options must be a non-empty list of texts"]
    return []


_PER_COMPONENT = {
    "select": _check_select,
    "sensor": _check_sensor,
    "binary_sensor": _check_binary_sensor,
    "number": _check_number,
    "button": _check_button,
    "switch": _check_switch,
}


def check_message(topic: str, text: str, prefix: str = "homeassistant") -> list[str]:
    """Every rule one discovery message breaks (empty list: valid)."""
    match = topic_pattern(prefix).match(topic)
    if match is None:
        return [f"topic {topic!r} is not <prefix>/<component>/<node_id>/<object_id>/config"]
    component = match.group(1)
    try:
        payload = json.loads(text)
    except ValueError as exc:
        return [f"payload is not JSON: {exc}"]
    if not isinstance(payload, dict):
        return ["payload is not a JSON object"]

    problems: list[str] = []
    allowed = COMMON_KEYS | COMPONENT_KEYS[component]
    for key in payload:
        if key in FORBIDDEN_KEYS:
            problems.append(f"key {key!r} must not be sent")
        elif key not in allowed:
            problems.append(f"key {key!r} is not a documented {component} option")
    problems.extend(
        f"{component} requires {key!r}"
        for key in sorted(REQUIRED_KEYS[component] | {"uniq_id", "dev", "o"})
        if key not in payload
    )
    if not isinstance(payload.get("uniq_id", ""), str) or not payload.get("uniq_id"):
        problems.append("uniq_id must be a non-empty string")
    name = payload.get("name")
    if name is not None and not isinstance(name, str):
        problems.append("name must be a string or null")
    for key, value in payload.items():
        if key.endswith("_t") and not (isinstance(value, str) and value):
            problems.append(f"{key} must be a non-empty topic")
        elif key.endswith("_t") and any(c in value for c in "+#"):
            problems.append(f"{key} {value!r} contains a wildcard")
    if "dev" in payload:
        problems.extend(_check_device(payload["dev"]))
    if "o" in payload:
        problems.extend(_check_origin(payload["o"]))
    problems.extend(_check_availability(payload))
    category = payload.get("ent_cat")
    if category is not None and category not in ENTITY_CATEGORIES:
        problems.append(f"entity_category {category!r} not in {sorted(ENTITY_CATEGORIES)}")
    if "en" in payload and not isinstance(payload["en"], bool):
        problems.append("en (enabled_by_default) must be a boolean")
    if "ic" in payload and not str(payload["ic"]).startswith("mdi:"):
        problems.append("icons are mdi:<name>")
    problems.extend(_PER_COMPONENT[component](payload))
    return problems


def check_fleet(messages: Iterable[tuple[str, str]], prefix: str = "homeassistant") -> list[str]:
    """:func:`check_message` for each, plus unique topics and unique ids."""
    problems: list[str] = []
    topics: set[str] = set()
    unique_ids: dict[str, str] = {}
    for topic, text in messages:
        problems.extend(f"{topic}: {p}" for p in check_message(topic, text, prefix))
        if topic in topics:
            problems.append(f"{topic}: published twice")
        topics.add(topic)
        try:
            uid = json.loads(text).get("uniq_id")
        except (ValueError, AttributeError):
            continue
        if isinstance(uid, str):
            if uid in unique_ids:
                problems.append(f"{topic}: unique id {uid!r} also used by {unique_ids[uid]}")
            unique_ids[uid] = topic
    return problems
