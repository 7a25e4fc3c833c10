"""Options: one schema, plain messages naming the key, exit code 2 without a traceback."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import voluptuous as vol
import yaml

from hoymiles_bridge.config.options import (
    FORM_FIELDS,
    SCHEMA,
    SECRET_KEYS,
    FormField,
    InverterOptions,
    OptionsError,
    clean_option,
    form_description,
    form_values,
    load_options,
    normalize,
    storable,
    validate,
)

ROOT = Path(__file__).resolve().parents[1]


def test_defaults() -> None:
    options = validate({"dtus": [{"host": "192.168.1.50"}]})
    assert options.dtus[0].port == 10081 and options.dtus[0].name is None
    assert options.poll_interval == 35 and options.min_poll_interval is None
    assert options.base_topic == "solar" and options.discovery is True
    assert options.discovery_prefix == "homeassistant" and options.night_policy == "zero"
    assert options.mqtt.port == 1883 and options.web.port == 8099
    assert options.web.host == "127.0.0.1"


def test_every_problem_named_once() -> None:
    with pytest.raises(OptionsError) as info:
        validate(
            {
                "dtus": [{"host": "bad host", "port": 99999}],
                "poll_interval": "often",
                "night_policy": "dark",
                "base_topic": "solar/#",
                "mqtt": {"tls": "yes"},
                "unknown": 1,
            }
        )
    problems = info.value.problems
    assert problems == sorted(problems)
    joined = "\n".join(problems)
    for key in (
        "dtus[0].host",
        "dtus[0].port",
        "poll_interval",
        "night_policy",
        "base_topic",
        "mqtt.tls",
        "unknown: unknown option",
    ):
        assert key in joined, key
    assert "Traceback" not in joined


def test_missing_dtus_and_not_a_mapping() -> None:
    with pytest.raises(OptionsError, match="dtus: required option is missing"):
        validate({})
    with pytest.raises(OptionsError, match="expected a mapping"):
        validate(["dtus"])
    # No DTU yet is valid: the bridge starts in setup mode.
    assert validate({"dtus": []}).dtus == ()


def test_yaml_and_json_files(tmp_path: Path) -> None:
    yaml_file = tmp_path / "bridge.yaml"
    yaml_file.write_text("dtus:\n  - host: 10.0.0.5\n    name: Roof\nbase_topic: pv\n")
    assert load_options(yaml_file).dtus[0].name == "Roof"
    json_file = tmp_path / "bridge.json"
    json_file.write_text('{"dtus": [{"host": "10.0.0.5"}], "log_level": "DEBUG"}')
    assert load_options(json_file).log_level == "debug"
    bad = tmp_path / "bad.yaml"
    bad.write_text("dtus: [\n")
    with pytest.raises(OptionsError, match="not valid YAML"):
        load_options(bad)
    with pytest.raises(OptionsError, match="no such file"):
        load_options(tmp_path / "missing.yaml")


def test_secrets_not_in_repr() -> None:
    options = validate(
        {"dtus": [{"host": "h"}], "mqtt": {"password": "s3cret"}, "web": {"password": "w3b"}}
    )
    assert "s3cret" not in repr(options) and "w3b" not in repr(options)


def test_run_with_bad_config_exits_2_with_one_line_per_problem(tmp_path: Path) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text("dtus:\n  - port: 0\npoll_interval: -3\n")
    result = subprocess.run(
        [sys.executable, "-m", "hoymiles_bridge.cli.main", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "error: dtus[0].host: required option is missing",
        "error: dtus[0].port: expected a port number from 1 to 65535",
        "error: poll_interval: value must be at least 1",
    ]


# --- per-field messages and the configuration form ---------------------------------

_BASE: dict[str, Any] = {"dtus": [{"host": "192.0.2.1"}]}


def test_problems_by_field() -> None:
    with pytest.raises(OptionsError) as info:
        validate(
            {"dtus": [{"host": "bad host", "port": 0}], "poll_interval": 0, "mqtt": {"port": 0}}
        )
    fields = info.value.fields
    assert set(fields) == {"dtus[0].host", "dtus[0].port", "poll_interval", "mqtt.port"}
    assert fields["poll_interval"] == "value must be at least 1"
    assert info.value.problems == sorted(f"{k}: {v}" for k, v in fields.items())
    assert info.value.sentence() == "4 options are invalid: " + ", ".join(fields) + "."
    with pytest.raises(OptionsError) as one:
        validate({**_BASE, "poll_interval": "often"})
    assert one.value.sentence() == "The option poll_interval is invalid: expected a whole number."


def _schema_paths(schema: Any, prefix: str = "") -> set[str]:
    """Every option path of a voluptuous schema: ``mqtt.port``, ``dtus[].host``."""
    paths: set[str] = set()
    mapping = schema.schema if isinstance(schema, vol.Schema) else schema
    for key, value in mapping.items():
        name = prefix + str(key.schema if isinstance(key, vol.Marker) else key)
        paths.add(name)
        inner = value
        if isinstance(inner, vol.All):
            inner = inner.validators[0]
        if isinstance(inner, list):
            paths |= _schema_paths(inner[0], name + "[].")
        elif isinstance(inner, vol.Schema) and isinstance(inner.schema, dict):
            paths |= _schema_paths(inner, name + ".")
    return paths


def _form_paths() -> set[str]:
    paths: set[str] = set()
    for field in FORM_FIELDS:
        paths.add(field.key)
        if "." in field.key:
            paths.add(field.key.split(".")[0])
        paths |= {f"{field.key}[].{sub.key}" for sub in field.fields}
    return paths


def test_the_form_covers_every_option_of_the_schema() -> None:
    assert _form_paths() == _schema_paths(SCHEMA)


def _addon_schema_paths(schema: dict[str, Any], prefix: str = "") -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in schema.items():
        name = prefix + key
        if isinstance(value, list) and isinstance(value[0], dict):
            found |= _addon_schema_paths(value[0], name + "[].")
        elif isinstance(value, list):
            found[name] = value  # a list of texts (``names``)
        elif isinstance(value, dict):
            found |= _addon_schema_paths(value, name + ".")
        else:
            found[name] = value
    return found


def _form_field(path: str) -> FormField:
    if "[]." in path:
        parent, _, sub = path.partition("[].")
        return next(s for f in FORM_FIELDS if f.key == parent for s in f.fields if s.key == sub)
    return next(f for f in FORM_FIELDS if f.key == path)


def test_the_form_matches_config_yaml() -> None:
    """Every add-on option has a form field of the same kind, bounds and choices."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    addon = _addon_schema_paths(config["schema"])
    assert {f.key for f in FORM_FIELDS if f.addon and f.kind != "list"} == {
        p for p in addon if "[]" not in p
    }
    assert not any(f.addon for f in FORM_FIELDS if f.key.startswith("web"))
    for path, spec in addon.items():
        field = _form_field(path)
        if isinstance(spec, list):
            assert field.kind == "names", path
            assert spec == [f"str({field.min},{field.max})?"], path
            continue
        match = re.fullmatch(r"(\w+)(?:\((.*)\))?(\?)?", spec)
        assert match, spec
        kind, args, optional = match.groups()
        expected = {"int": "int", "port": "port", "bool": "bool", "list": "choice", "match": "text"}
        expected |= {"password": "secret", "str": field.kind if field.kind != "secret" else ""}
        assert field.kind == expected[kind], path
        if kind == "int":
            low, _, high = (args or ",").partition(",")
            assert field.min == (int(low) if low else None), path
            assert field.max == (int(high) if high else None), path
        if kind == "list":
            assert tuple(args.split("|")) == field.choices, path
        if kind == "str" and args:
            assert (field.min, field.max) == tuple(int(a) for a in args.split(",")), path
        defaulted = ("mqtt.port", "mqtt.tls", "mqtt.qos", "dtus[].port", "cloud.poll_interval")
        defaulted += tuple(
            f"controller.{key}"
            for key in (
                "mode",
                "meter_sign",
                "meter_unit",
                "target",
                "import_bias",
                "meter_timeout",
            )
        )
        if optional is not None and path not in (*defaulted, "cloud.allow_writes"):
            assert field.optional, path


def _with(path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(_BASE)
    if path.startswith("dtus[0]."):
        doc["dtus"][0][path.split(".", 1)[1]] = value
    elif "." in path:
        section, key = path.split(".")
        doc[section] = {key: value}
    else:
        doc[path] = value
    return doc


def _numeric_fields() -> list[tuple[str, FormField]]:
    found = []
    for field in FORM_FIELDS:
        if field.kind in ("int", "port"):
            found.append((field.key, field))
        found += [(f"dtus[0].{s.key}", s) for s in field.fields if s.kind in ("int", "port")]
    return found


@pytest.mark.parametrize(("path", "field"), _numeric_fields(), ids=lambda x: str(x))
def test_the_form_states_the_bounds_validate_accepts(path: str, field: FormField) -> None:
    low = 1 if field.kind == "port" else field.min
    high = 65535 if field.kind == "port" else field.max
    assert low is not None
    validate(_with(path, low))
    with pytest.raises(OptionsError) as below:
        validate(_with(path, low - 1))
    assert set(below.value.fields) == {path}
    if high is None:
        validate(_with(path, 10**9))
    else:
        validate(_with(path, high))
        with pytest.raises(OptionsError) as above:
            validate(_with(path, high + 1))
        assert set(above.value.fields) == {path}
    if field.default is not None:
        assert validate(_BASE) == validate(_with(path, field.default))


def test_choices_and_defaults_match_validate() -> None:
    defaults = validate(_BASE)
    for field in FORM_FIELDS:
        for choice in field.choices:
            data = _with(field.key, choice)
            if field.key == "controller.mode":
                data["controller"]["max_feed_in"] = 800  # feed_in_cap needs its cap
            validate(data)
        if field.choices:
            with pytest.raises(OptionsError):
                validate(_with(field.key, "no-such-choice"))
        if field.kind != "list" and not field.optional:
            section, _, key = field.key.partition(".")
            value = getattr(getattr(defaults, section), key) if key else getattr(defaults, section)
            assert value == field.default, field.key


def test_form_values_fill_defaults_and_storable_drops_empties() -> None:
    values = form_values({"dtus": [{"host": "h"}], "mqtt": {"password": "pw"}}, addon=True)
    assert values["dtus"] == [{"host": "h", "port": 10081, "name": None}]
    assert values["poll_interval"] == 35 and values["mqtt"]["password"] == "pw"
    assert "web" not in values and "web" in form_values({}, addon=False)
    clean = normalize({"dtus": [{"host": "h"}], "web": {"port": 9000}})
    addon = storable(clean, addon=True)
    assert "web" not in addon and "min_poll_interval" not in addon
    assert addon["mqtt"] == {"port": 1883, "tls": False, "qos": 0}
    assert addon["dtus"] == [{"host": "h", "port": 10081}]
    assert storable(clean, addon=False)["web"] == {"host": "127.0.0.1", "port": 9000}
    description = form_description(addon=True)
    assert "web" not in {s["key"] for s in description["sections"]}
    assert SECRET_KEYS == ("mqtt.password", "cloud.password", "web.password")


# --- strict numbers ------------------------------------------------------------------

#: Values no number option takes: booleans, fractions, infinities, NaN, text that is
#: not a whole number, and containers.
_NOT_WHOLE_NUMBERS: list[Any] = [
    True,
    False,
    35.9,
    0.5,
    float("inf"),
    float("-inf"),
    float("nan"),
    "35.9",
    "1e999",
    "Infinity",
    "9" * 5000,
    "35 s",
    "",
    [35],
    {"value": 35},
]


_NUMERIC_IDS = [path for path, _ in _numeric_fields()]


def _value_at(options: Any, path: str) -> Any:
    """The value of the option at ``path`` (``mqtt.port``, ``dtus[0].port``) in ``options``."""
    node = options
    for part in path.replace("[0]", ".0").split("."):
        node = node[int(part)] if part.isdigit() else getattr(node, part)
    return node


@pytest.mark.parametrize(("path", "field"), _numeric_fields(), ids=_NUMERIC_IDS)
def test_numbers_are_whole_finite_and_not_booleans(path: str, field: FormField) -> None:
    for value in _NOT_WHOLE_NUMBERS:
        with pytest.raises(OptionsError) as info:
            validate(_with(path, value))
        assert info.value.fields == {path: "expected a whole number"}, repr(value)[:20]
        assert info.value.sentence() == f"The option {path} is invalid: expected a whole number."
    # a whole number written as a float without a fraction, or as text, is that number
    low = 1 if field.kind == "port" else field.min
    assert low is not None
    for value in (float(low), str(low), f" {low} "):
        found = _value_at(validate(_with(path, value)), path)
        assert found == low and type(found) is int, value


@pytest.mark.parametrize(("path", "field"), _numeric_fields(), ids=_NUMERIC_IDS)
def test_huge_numbers_are_out_of_bounds(path: str, field: FormField) -> None:
    if field.kind == "port":
        too_big = too_small = "expected a port number from 1 to 65535"
    else:
        # an option without an upper bound in the table still stops at 2**31 - 1
        too_big = f"value must be at most {field.max if field.max is not None else 2**31 - 1}"
        too_small = f"value must be at least {field.min}"
    for value, message in (
        (10**5000, too_big),
        (1e300, too_big),
        (2**31, too_big),
        (-(10**5000), too_small),
        (-1e300, too_small),
    ):
        with pytest.raises(OptionsError) as info:
            validate(_with(path, value))
        assert info.value.fields == {path: message}, f"a {type(value).__name__}: {message}"


def test_optional_numbers_say_what_is_wrong() -> None:
    assert validate(_with("min_poll_interval", None)).min_poll_interval is None
    for value, message in (
        (0, "value must be at least 1"),
        (True, "expected a whole number"),
        ("often", "expected a whole number"),
    ):
        with pytest.raises(OptionsError) as info:
            validate(_with("min_poll_interval", value))
        assert info.value.fields == {"min_poll_interval": message}, value


def test_files_with_numbers_that_are_not_options(tmp_path: Path) -> None:
    """YAML and JSON numbers that are not whole, finite numbers give a field's message."""
    head = "dtus:\n  - host: 192.0.2.1\n"
    for name, text in (
        ("bool.yaml", head + "poll_interval: true\n"),
        ("fraction.yaml", head + "poll_interval: 35.9\n"),
        ("infinite.yaml", head + "poll_interval: .inf\n"),
        ("exponent.yaml", head + "poll_interval: 1.0e+999\n"),
        ("nan.yaml", head + "poll_interval: .nan\n"),
        ("infinite.json", '{"dtus": [{"host": "192.0.2.1"}], "poll_interval": Infinity}'),
        ("exponent.json", '{"dtus": [{"host": "192.0.2.1"}], "poll_interval": 1e999}'),
        ("nan.json", '{"dtus": [{"host": "192.0.2.1"}], "poll_interval": NaN}'),
    ):
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(OptionsError) as info:
            load_options(path)
        assert info.value.fields == {"poll_interval": "expected a whole number"}, name
    whole = tmp_path / "whole.yaml"
    whole.write_text(head + "poll_interval: 35.0\n")
    assert load_options(whole).poll_interval == 35


def test_files_that_cannot_be_read_as_values(tmp_path: Path) -> None:
    """A number with thousands of digits, a date that does not exist or nesting too deep
    is one line naming the file, not a traceback."""
    digits = "9" * 5000
    for name, text, problem in (
        ("huge.yaml", f"dtus:\n  - host: h\npoll_interval: {digits}\n", "a number is too long"),
        ("huge.json", f'{{"dtus": [{{"host": "h"}}], "poll_interval": {digits}}}', "too long"),
        ("date.yaml", "dtus:\n  - host: h\n    name: 2025-02-30\n", "date that does not exist"),
        ("deep.yaml", "[" * 100_000, "nested too deeply"),
        ("deep.json", "[" * 100_000, "nested too deeply"),
    ):
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(OptionsError) as info:
            load_options(path)
        kind = "JSON" if name.endswith(".json") else "YAML"
        assert len(info.value.problems) == 1, name
        assert info.value.problems[0].startswith(f"{path}: not valid {kind}: "), name
        assert problem in info.value.problems[0], name


def test_clean_option() -> None:
    """One option's clean value, as the schema gives it, or its default when left out."""
    assert clean_option("mqtt.port", {}) == 1883
    assert clean_option("mqtt.port", {"mqtt": "not a section"}) == 1883
    assert clean_option("mqtt.port", {"mqtt": {"port": "8883"}}) == 8883
    assert clean_option("mqtt.host", {"mqtt": {"host": " broker.lan "}}) == "broker.lan"
    assert clean_option("mqtt.host", {"mqtt": {"host": None}}) is None
    with pytest.raises(OptionsError) as info:
        clean_option("mqtt.port", {"mqtt": {"port": True}})
    assert info.value.fields == {"mqtt.port": "expected a whole number"}
    for path in ("dtus[].host", "no_such_option"):
        with pytest.raises(KeyError):
            clean_option(path, {})


# --- inverter names --------------------------------------------------------------------


def _inverters(*items: Any) -> dict[str, Any]:
    return {"dtus": [{"host": "192.0.2.1"}], "inverters": list(items)}


def test_inverter_names_are_read_and_serials_upper_cased() -> None:
    options = validate(
        _inverters({"serial": " 1161abcdef01 ", "name": "Garage", "ports": ["East", "West"]})
    )
    assert options.inverters == (
        InverterOptions(serial="1161ABCDEF01", name="Garage", ports=("East", "West")),
    )
    assert validate(_inverters({"serial": "116112345678"})).inverters[0].ports == ()
    assert validate({"dtus": [{"host": "h"}]}).inverters == ()
    # Topic and HTML characters are only text: names are payloads, never topic levels.
    odd = validate(_inverters({"serial": "116112345678", "name": "a/b+#<script>"}))
    assert odd.inverters[0].name == "a/b+#<script>"


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        ({"name": "x"}, "inverters[0].serial: required option is missing"),
        ({"serial": "1161/2345678"}, "inverters[0].serial: '1161/2345678' is not a serial"),
        ({"serial": "solar/#"}, "inverters[0].serial: 'solar/#' is not a serial number"),
        ({"serial": 116112345678}, "inverters[0].serial: expected a serial number"),
        ({"serial": "116112345678", "name": ""}, "inverters[0].name: length of value"),
        ({"serial": "116112345678", "name": "n" * 65}, "inverters[0].name: length of value"),
        ({"serial": "116112345678", "ports": ["p"] * 7}, "inverters[0].ports: expected at most 6"),
        ({"serial": "116112345678", "ports": ["p", ""]}, "inverters[0].ports[1]: length of value"),
        ({"serial": "116112345678", "ports": ["p" * 33]}, "inverters[0].ports[0]: length of"),
        ({"serial": "116112345678", "ports": "East"}, "inverters[0].ports: expected a list"),
        ({"serial": "116112345678", "colour": "red"}, "inverters[0].colour: unknown option"),
    ],
)
def test_bad_inverter_names_are_named_plainly(item: dict[str, Any], problem: str) -> None:
    with pytest.raises(OptionsError) as caught:
        validate(_inverters(item))
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(problem)


def test_a_serial_listed_twice_is_refused() -> None:
    with pytest.raises(OptionsError) as caught:
        validate(_inverters({"serial": "116112345678"}, {"serial": "116112345678".lower()}))
    assert caught.value.problems == ["inverters[1].serial: 116112345678 is listed more than once"]
    assert caught.value.sentence() == (
        "The option inverters[1].serial is invalid: 116112345678 is listed more than once."
    )


def test_the_form_has_the_inverter_list() -> None:
    described = form_description(addon=True)
    (field,) = [f for f in described["fields"] if f["key"] == "inverters"]
    assert field["kind"] == "list" and field["item"] == "inverter"
    ports = next(f for f in field["fields"] if f["key"] == "ports")
    assert (ports["kind"], ports["count"], ports["min"], ports["max"]) == ("names", 6, 1, 32)
    values = form_values({"inverters": [{"serial": "116112345678", "ports": ["E"]}]}, addon=True)
    assert values["inverters"] == [{"serial": "116112345678", "name": None, "ports": ["E"]}]
    clean = normalize(_inverters({"serial": "116112345678", "ports": ("E",)}))
    assert storable(clean, addon=True)["inverters"] == [{"serial": "116112345678", "ports": ["E"]}]
