"""The option table against itself and against every file that describes the options.

``hoymiles_bridge.config.table`` is the one place the options are defined; the
schema, the typed options and the form are built from it. The add-on's own
files say the same things again for the Supervisor and for people, so they are
checked here row by row: config.yaml (defaults and types), both translations,
bridge.example.yaml and the options table of DOCS.md.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from hoymiles_bridge.config.options import FORM_FIELDS, SECRET_KEYS, Options, validate
from hoymiles_bridge.config.table import FORM_SECTIONS, OPTIONS, OptionSpec, option, walk
from hoymiles_bridge.protocol.devices import SERIAL_PATTERN

ROOT = Path(__file__).resolve().parents[1]
LANGUAGES = ("en", "de")
DTU = {"host": "192.168.1.50"}
BOUNDED = ("int", "text", "secret", "names")


def _load(name: str) -> Any:
    return yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))


def _holders() -> list[OptionSpec]:
    return [spec for spec in OPTIONS if spec.kind in ("list", "section")]


# --- the table itself -----------------------------------------------------------


def test_keys_are_unique_names() -> None:
    paths = [path for path, _ in walk()]
    assert len(paths) == len(set(paths))
    for path, spec in walk():
        assert re.fullmatch(r"[a-z][a-z_]*", spec.key), path
        assert option(path) is spec
    with pytest.raises(KeyError):
        option("no_such_option")


def test_every_row_is_consistent() -> None:
    for path, spec in walk():
        holds = spec.kind in ("list", "section")
        assert bool(spec.fields) == holds, path
        assert bool(spec.choices) == (spec.kind == "choice"), path
        assert not spec.ignore_case or spec.kind == "choice", path
        assert bool(spec.item) == (spec.kind == "list"), path
        assert not spec.unique or spec.unique in [sub.key for sub in spec.fields], path
        assert (spec.count is not None) == (spec.kind == "names"), path
        if spec.min is not None or spec.max is not None:
            assert spec.kind in (*BOUNDED, "list"), path
        if spec.kind == "list":
            assert spec.max is None, path  # "at least": only a lower bound has a message
        if spec.kind == "names":
            assert spec.default == () and not spec.optional, path
        elif spec.required or spec.optional or holds:
            assert spec.default is None, path
        assert not (spec.required and spec.optional), path
        if spec.kind == "choice" and spec.default is not None:
            assert spec.default in spec.choices, path
        if spec.kind == "int" and spec.default is not None:
            assert spec.min is None or spec.default >= spec.min, path
            assert spec.max is None or spec.default <= spec.max, path
        # A section has no form field of its own; every other option has a label.
        assert bool(spec.label) != (spec.kind == "section"), path
        assert not (spec.kind == "section" and spec.help), path


def test_nesting_is_one_level_deep() -> None:
    sections = {key for key, _, _ in FORM_SECTIONS}
    for spec in OPTIONS:
        assert spec.section in sections, spec.key
        for sub in spec.fields:
            # What is held takes its form section, add-on flag and restart from its holder.
            assert sub.kind not in ("list", "section"), f"{spec.key}.{sub.key}"
            assert (sub.section, sub.addon, sub.restart) == ("", True, "bridge"), sub.key
    assert {spec.section for spec in OPTIONS} == sections


def test_secrets_sit_in_sections() -> None:
    # The stores find a secret as "<section>.<key>" (config/store.py).
    secrets = tuple(path for path, spec in walk() if spec.kind == "secret")
    assert secrets == SECRET_KEYS == ("mqtt.password", "cloud.password", "web.password")
    for path in SECRET_KEYS:
        holder, _, key = path.partition(".")
        assert option(holder).kind == "section" and key, path


def test_defaults_are_what_validate_fills_in() -> None:
    options = validate({"dtus": [dict(DTU)]})
    for spec in OPTIONS:
        if spec.kind == "section":
            record = getattr(options, spec.key)
            for sub in spec.fields:
                assert getattr(record, sub.key) == sub.default, f"{spec.key}.{sub.key}"
        elif spec.kind == "list" and spec.key == "dtus":  # the one given above
            for sub in spec.fields:
                if not sub.required:
                    assert getattr(options.dtus[0], sub.key) == sub.default, sub.key
        elif spec.kind == "list":
            assert getattr(options, spec.key) == (), spec.key
        else:
            assert getattr(options, spec.key) == spec.default, spec.key
    assert Options(dtus=()).web == options.web  # the dataclasses' defaults are the table's


def test_the_form_has_a_field_per_option() -> None:
    keys = {f.key for f in FORM_FIELDS}
    for path, spec in walk():
        if spec.kind == "section" or "[]" in path:
            continue
        assert path in keys, path
    for spec in OPTIONS:
        if spec.kind == "list":
            found = next(f for f in FORM_FIELDS if f.key == spec.key)
            assert found.kind == "list" and found.item == spec.item, spec.key
            assert [f.key for f in found.fields] == [sub.key for sub in spec.fields]


# --- config.yaml --------------------------------------------------------------


def _supervisor_type(spec: OptionSpec, *, nested: bool) -> Any:
    """The Supervisor's option type for ``spec`` (``int(1,3600)``, ``port?``)."""
    if spec.kind == "serial":
        return f"match(^{SERIAL_PATTERN}$)"
    if spec.kind == "names":
        # A list of texts; the "?" of its item lets the list be left out.
        return [f"str({spec.min},{spec.max})?"]
    base = {
        "int": "int",
        "bool": "bool",
        "text": "str",
        "topic": "str",
        "host": "str",
        "port": "port",
        "choice": "list",
        "secret": "password",
    }[spec.kind]
    if spec.kind == "choice":
        base += f"({'|'.join(spec.choices)})"
    elif spec.min is not None or spec.max is not None:
        low = "" if spec.min is None else spec.min
        high = "" if spec.max is None else spec.max
        base += f"({low},{high})"
    # Top-level options with a default are given in `options:`; nested ones may be left out.
    optional = spec.optional or (nested and not spec.required)
    return base + ("?" if optional else "")


def _addon_schema() -> dict[str, Any]:
    schema: dict[str, Any] = {}
    for spec in OPTIONS:
        if not spec.addon:
            continue
        if spec.kind in ("list", "section"):
            fields = {sub.key: _supervisor_type(sub, nested=True) for sub in spec.fields}
            schema[spec.key] = [fields] if spec.kind == "list" else fields
        else:
            schema[spec.key] = _supervisor_type(spec, nested=False)
    return schema


def _addon_defaults() -> dict[str, Any]:
    """What the add-on starts with: every top-level option that may not be left empty."""
    defaults: dict[str, Any] = {}
    for spec in OPTIONS:
        if not spec.addon or spec.optional:
            continue
        if spec.kind == "list":
            defaults[spec.key] = []  # setup mode until one is added
        elif spec.kind == "section":
            defaults[spec.key] = {}  # every option of a section may be left out
        else:
            defaults[spec.key] = spec.default
    return defaults


def test_config_yaml_schema_is_the_table() -> None:
    schema = _load("config.yaml")["schema"]
    assert schema == _addon_schema()
    assert list(schema) == list(_addon_schema()), "config.yaml lists the options in another order"


def test_config_yaml_options_are_the_table_defaults() -> None:
    defaults = _load("config.yaml")["options"]
    assert defaults == _addon_defaults()
    for key, value in defaults.items():
        assert type(value) is type(_addon_defaults()[key]), key  # no 0 for false


# --- translations -------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_translations_name_and_describe_every_option(language: str) -> None:
    entries = _load(f"translations/{language}.yaml")["configuration"]
    addon = [spec for spec in OPTIONS if spec.addon]
    assert list(entries) == [spec.key for spec in addon], "stale, missing or reordered keys"
    for spec in addon:
        entry = entries[spec.key]
        assert set(entry) == ({"name", "description"} | ({"fields"} if spec.fields else set()))
        items = [(spec.key, entry)]
        if spec.fields:
            assert list(entry["fields"]) == [sub.key for sub in spec.fields], spec.key
            items += [(f"{spec.key}.{k}", sub) for k, sub in entry["fields"].items()]
        for path, item in items:
            assert set(item) >= {"name", "description"}, path
            for text in (item["name"], item["description"]):
                assert isinstance(text, str) and text.strip(), path


# --- bridge.example.yaml ------------------------------------------------------


def _keys_of(document: dict[str, Any]) -> list[str]:
    """The option paths used in an options document (``mqtt.port``, ``dtus[].host``)."""
    paths = []
    for key, value in document.items():
        paths.append(key)
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, dict):
                joint = "[]." if isinstance(value, list) else "."
                paths += [f"{key}{joint}{sub}" for sub in item]
    return paths


def _uncommented(text: str) -> str:
    """The example with its commented-out options (``# username: solar``) put in."""
    return re.sub(r"^(\s*)# ([a-z_]+:)", r"\1\2", text, flags=re.MULTILINE)


def test_the_example_uses_only_options_of_the_table() -> None:
    text = (ROOT / "bridge.example.yaml").read_text(encoding="utf-8")
    table = {path for path, _ in walk()}
    for document in (yaml.safe_load(text), yaml.safe_load(_uncommented(text))):
        unknown = [path for path in _keys_of(document) if path not in table]
        assert not unknown
        validate(document)


def test_the_example_shows_every_option_with_its_default() -> None:
    # Its header: "Only `dtus` is required; the other values shown are the defaults."
    text = (ROOT / "bridge.example.yaml").read_text(encoding="utf-8")
    document = yaml.safe_load(_uncommented(text))
    assert set(_keys_of(document)) == {path for path, _ in walk()}
    for path, spec in walk():
        if spec.kind in ("list", "section") or spec.optional or spec.required or "[]" in path:
            continue
        holder, _, key = path.rpartition(".")
        value = document[holder][key] if holder else document[key]
        assert value == spec.default and type(value) is type(spec.default), path


# --- DOCS.md ------------------------------------------------------------------


def _docs_rows() -> dict[str, list[str]]:
    """The rows of DOCS.md's options table: option key to its cells."""
    text = (ROOT / "DOCS.md").read_text(encoding="utf-8")
    section = text.split("\n## Options\n", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, list[str]] = {}
    for line in section.splitlines():
        found = re.match(r"^\| `([a-z_]+)` \|(.*)\|$", line)
        if found:
            assert found.group(1) not in rows, f"two rows for {found.group(1)}"
            rows[found.group(1)] = [cell.strip() for cell in found.group(2).split(" | ")]
    return rows


def _yaml_scalar(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def test_docs_document_every_option() -> None:
    rows = _docs_rows()
    assert list(rows) == [spec.key for spec in OPTIONS], "stale, missing or reordered rows"
    for spec in OPTIONS:
        default, meaning = rows[spec.key]
        for sub in spec.fields:
            assert f"`{sub.key}`" in meaning, f"DOCS.md: {spec.key} does not name `{sub.key}`"
        if spec.required:
            assert default == "(required)", spec.key
        elif spec.default is not None:
            assert default == f"`{_yaml_scalar(spec.default)}`", spec.key
        if not spec.addon:
            assert "standalone only" in meaning.lower(), spec.key


def test_docs_defaults_of_held_options() -> None:
    # "`port` (10081)": where DOCS.md states a held option's default, it is the table's.
    rows = _docs_rows()
    for holder in _holders():
        meaning = rows[holder.key][1]
        for sub in holder.fields:
            stated = re.search(rf"`{sub.key}` \((\w+)\)", meaning)
            if stated and sub.default is not None:
                assert stated.group(1) == _yaml_scalar(sub.default), f"{holder.key}.{sub.key}"


def test_secret_options_are_masked_by_the_one_secret_list() -> None:
    """Every secret option is masked wherever options are shown (protocol/secrets.py)."""
    from hoymiles_bridge.config.options import SECRET_KEYS as SECRET_OPTIONS
    from hoymiles_bridge.protocol.secrets import MASK, SECRET_KEYS, mask_secrets

    assert SECRET_OPTIONS
    for path in SECRET_OPTIONS:
        section, _, leaf = path.rpartition(".")
        assert leaf in SECRET_KEYS, path
        assert mask_secrets({section: {leaf: "hunter2"}}) == {section: {leaf: MASK}}
