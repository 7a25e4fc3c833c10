"""The Home Assistant add-on package: config.yaml, translations, images, Dockerfile, build.

config.yaml is checked against the add-on linter's JSON schema and, key by key,
against the voluptuous schema in ``hoymiles_bridge.config.options`` (the option
keys are a contract between the add-on and standalone mode).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import voluptuous as vol
import yaml

from hoymiles_bridge import __version__
from hoymiles_bridge.config import options as options_module
from hoymiles_bridge.config.options import OptionsError, validate

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_CANDIDATES = [
    Path(__file__).resolve().parents[2] / "shared" / "schemas" / "addon-config.schema.json",
    ROOT / "tests" / "schemas" / "addon-config.schema.json",
]
#: Options of the standalone mode only: the add-on serves its web UI through
#: ingress (DOCS.md says so in the option's row).
STANDALONE_ONLY = {"web"}
LANGUAGES = ("en", "de")
#: What a Supervisor option type looks like (Supervisor apps/options.py).
_TYPE = re.compile(
    r"^(?P<kind>str|password|int|float|bool|email|url|port|match|list|device)"
    r"(?:\((?P<args>.*)\))?(?P<optional>\?)?$"
)
DTU = {"host": "192.168.1.50"}
INVERTER = {"serial": "116112345678", "ports": ["East"]}


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    data = _load_yaml(ROOT / "config.yaml")
    assert isinstance(data, dict)
    return data


def _linter_schema_path() -> Path:
    return next(path for path in SCHEMA_CANDIDATES if path.exists())


# --- config.yaml --------------------------------------------------------------


def test_config_validates_against_the_linter_schema(config: dict[str, Any]) -> None:
    schema = json.loads(_linter_schema_path().read_text(encoding="utf-8"))
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(config), key=str)
    assert not errors, [e.message for e in errors]


def test_config_has_no_key_at_its_default(config: dict[str, Any]) -> None:
    # The linter also errors on keys equal to the schema's default value.
    schema = json.loads(_linter_schema_path().read_text(encoding="utf-8"))
    redundant = [
        key
        for key, sub in schema["properties"].items()
        if "default" in sub and key in config and config[key] == sub["default"]
    ]
    assert not redundant


def test_schema_copy_matches_shared_schema() -> None:
    shared, copied = SCHEMA_CANDIDATES
    if not shared.exists():
        pytest.skip("../shared is not there (clean clone)")
    assert json.loads(copied.read_text()) == json.loads(shared.read_text())


def test_config_essentials(config: dict[str, Any]) -> None:
    assert config["version"] == __version__
    assert config["slug"] == "hoymiles_bridge"
    assert config["arch"] == ["aarch64", "amd64"]
    assert config["init"] is False  # s6-overlay v3 must be PID 1
    assert config["ingress"] is True
    # Defaults the linter wants left out, but which the add-on relies on.
    assert config.get("ingress_port", 8099) == 8099
    assert config.get("startup", "application") == "application"
    assert config.get("boot", "auto") == "auto"
    assert "watchdog" not in config  # obsolete: the Dockerfile has a HEALTHCHECK
    assert "webui" not in config
    # /services/mqtt and /addons/self/* need no hassio_api, only the service grant.
    assert not config.get("hassio_api", False)
    assert any(s.startswith("mqtt:") for s in config["services"])
    # built on the device until images are published (DOCS.md, "Installation")
    assert "image" not in config
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "builder.yaml").read_text())
    steps = [s.get("uses", "") for job in workflow["jobs"].values() for s in job["steps"]]
    assert any(s.startswith("home-assistant/builder/actions/build-image@") for s in steps)


def test_no_other_addon_config_in_the_repository() -> None:
    # Supervisor parses every config.(yaml|yml|json) outside dot-folders and rootfs/.
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "rootfs"]
        for name in files:
            path = Path(folder, name)
            if path.stem == "config" and path.suffix in {".yaml", ".yml", ".json"}:
                found.append(path.relative_to(ROOT).as_posix())
    assert found == ["config.yaml"]


# --- options: config.yaml vs the voluptuous schema ---------------------------


def _mapping_of(validator: Any) -> dict[Any, Any] | None:
    """The dict schema inside a validator (vol.Schema, vol.All, vol.Any, [item])."""
    if isinstance(validator, vol.Schema):
        return validator.schema if isinstance(validator.schema, dict) else None
    if isinstance(validator, vol.All | vol.Any):
        for inner in validator.validators:
            found = _mapping_of(inner)
            if found is not None:
                return found
    if isinstance(validator, list):
        for inner in validator:
            found = _mapping_of(inner)
            if found is not None:
                return found
    return None


def _vol_keys(mapping: dict[Any, Any]) -> dict[str, Any]:
    return {
        str(marker.schema if isinstance(marker, vol.Marker) else marker): v
        for marker, v in mapping.items()
    }


def _leaves(schema: dict[str, Any]) -> Iterator[tuple[tuple[str, ...], str]]:
    """(path, Supervisor type) of every option; list items are path element "[]"."""
    for key, typ in schema.items():
        if isinstance(typ, dict):
            for sub, subtyp in typ.items():
                yield (key, sub), subtyp
        elif isinstance(typ, list):
            item = typ[0]
            if isinstance(item, dict):
                for sub, subtyp in item.items():
                    if isinstance(subtyp, list):  # a list of texts in each item
                        yield (key, "[]", sub, "[]"), subtyp[0]
                    else:
                        yield (key, "[]", sub), subtyp
            else:
                yield (key, "[]"), item
        else:
            yield (key,), typ


def _base(config: dict[str, Any]) -> dict[str, Any]:
    """config.yaml's defaults with one DTU filled in: what Supervisor writes."""
    data = copy.deepcopy(config["options"])
    data["dtus"] = [dict(DTU)]
    data["inverters"] = [dict(INVERTER)]
    data["batteries"] = [{"dev_id": "MSA-280024370560", "name": "Cellar"}]
    return data


def _with(base: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(base)
    target: Any = data
    for part in path[:-1]:
        target = target[0] if part == "[]" else target.setdefault(part, {})
    if path[-1] == "[]":
        target[:] = [value]
    elif value is _ABSENT:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value
    return data


_ABSENT = object()


def _probes(typ: str) -> tuple[list[Any], list[Any]]:
    """Values Supervisor accepts and rejects for an option type."""
    match = _TYPE.match(typ)
    assert match, f"not a Supervisor option type: {typ}"
    kind, args = match["kind"], match["args"]
    low, high = (None, None)
    if args is not None and kind in {"int", "str", "password", "float"}:
        first, _, second = args.partition(",")
        low = int(first) if first.strip() else None
        high = int(second) if second.strip() else None
    if kind == "bool":
        return [True, False], ["maybe"]
    if kind == "port":
        return [1, 10081, 65535], [0, 65536]
    if kind == "int":
        accept = [low if low is not None else 0, high if high is not None else 10**6]
        reject = [
            v
            for v in (None if low is None else low - 1, None if high is None else high + 1)
            if v is not None
        ]
        return accept, reject
    if kind in {"str", "password"}:
        accept = ["a" * max(low or 1, 1)] + (["a" * high] if high else [])
        reject = (["a" * (low - 1)] if low else []) + (["a" * (high + 1)] if high else [])
        return accept, reject
    if kind == "list":
        return list(args.split("|")), ["not-one-of-them"]
    if kind == "match":
        pattern = re.compile(args)
        accept, reject = ["116112345678", "a1b2c3d4e5f6"], ["", "1161/2345", "+", "#", "x" * 12]
        assert all(pattern.match(v) for v in accept) and not any(pattern.match(v) for v in reject)
        return accept, reject
    raise AssertionError(f"no probes for option type {typ}")


def test_validate_accepts_the_addon_defaults_with_a_dtu(config: dict[str, Any]) -> None:
    options = validate(_base(config))
    assert options.dtus[0].host == DTU["host"]


def test_unconfigured_addon_starts_in_setup_mode(config: dict[str, Any]) -> None:
    # The add-on's defaults have no DTU: valid, the bridge waits in setup mode.
    assert validate(copy.deepcopy(config["options"])).dtus == ()


def test_same_option_keys(config: dict[str, Any]) -> None:
    schema = config["schema"]
    top = _vol_keys(options_module.SCHEMA.schema)
    assert set(top) - STANDALONE_ONLY == set(schema)
    assert set(config["options"]) <= set(schema)
    for key, typ in schema.items():
        if isinstance(typ, dict | list):
            inner = _mapping_of(top[key])
            assert inner is not None, key
            fields = typ if isinstance(typ, dict) else typ[0]
            assert set(_vol_keys(inner)) == set(fields), key


def test_option_types_agree(config: dict[str, Any]) -> None:
    base = _base(config)
    for path, typ in _leaves(config["schema"]):
        accept, reject = _probes(typ)
        for value in accept:
            document = _with(base, path, value)
            if path == ("controller", "mode"):
                document["controller"]["max_feed_in"] = 800  # feed_in_cap needs its cap
            if path == ("controller", "meter_json_path"):
                document["controller"]["meter_topic"] = "meter"  # a path needs a topic
            try:
                validate(document)
            except OptionsError as err:  # pragma: no cover - the failure message
                pytest.fail(f"{'.'.join(path)}={value!r} ({typ}) refused: {err}")
        for value in reject:
            try:
                validate(_with(base, path, value))
            except OptionsError:
                continue
            pytest.fail(f"{'.'.join(path)}={value!r} ({typ}) accepted, Supervisor refuses it")


def test_optional_options_agree(config: dict[str, Any]) -> None:
    base = _base(config)
    for path, typ in _leaves(config["schema"]):
        if path[-1] == "[]":
            continue
        top_level_default = len(path) == 1 and path[0] in config["options"]
        optional = typ.endswith("?") or top_level_default
        problems: list[str] = []
        try:
            validate(_with(base, path, _ABSENT))
        except OptionsError as err:
            problems = err.problems
        name = ".".join(path)
        if optional:
            assert not problems, f"{name} ({typ}) may be left out, but: {problems}"
        else:
            assert problems, f"{name} ({typ}) is required by Supervisor, optional here"


def test_defaults_agree(config: dict[str, Any]) -> None:
    minimal = validate({"dtus": [dict(DTU)]})
    for key, value in config["options"].items():
        if key in {"dtus", "inverters", "batteries", "mqtt", "cloud", "controller"}:
            continue
        assert getattr(minimal, key) == value, key
    assert config["options"]["mqtt"] == {}  # every broker field is optional
    assert config["options"]["cloud"] == {}  # and every cloud field
    assert config["options"]["controller"] == {}  # and every controller field
    assert not minimal.cloud.enabled
    assert config["options"]["dtus"] == []
    assert config["options"]["inverters"] == [] and minimal.inverters == ()


# --- translations and documentation ------------------------------------------


def _option_paths(schema: dict[str, Any]) -> Iterator[tuple[str, ...]]:
    for key, typ in schema.items():
        yield (key,)
        fields = (
            typ
            if isinstance(typ, dict)
            else (typ[0] if isinstance(typ, list) and isinstance(typ[0], dict) else {})
        )
        for sub in fields:
            yield (key, sub)


def _translation(entries: dict[str, Any], path: tuple[str, ...]) -> Any:
    entry = entries.get(path[0])
    for part in path[1:]:
        entry = (entry or {}).get("fields", {}).get(part)
    return entry


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_option_is_translated(config: dict[str, Any], language: str) -> None:
    data = _load_yaml(ROOT / "translations" / f"{language}.yaml")
    entries = data["configuration"]
    assert set(entries) == set(config["schema"])
    for path in _option_paths(config["schema"]):
        entry = _translation(entries, path)
        assert isinstance(entry, dict), path
        assert isinstance(entry.get("name"), str) and entry["name"].strip(), path
        assert isinstance(entry.get("description"), str) and entry["description"].strip(), path


def test_german_is_not_english(config: dict[str, Any]) -> None:
    en = _load_yaml(ROOT / "translations" / "en.yaml")["configuration"]
    de = _load_yaml(ROOT / "translations" / "de.yaml")["configuration"]
    for path in _option_paths(config["schema"]):
        english, german = _translation(en, path), _translation(de, path)
        assert english["description"] != german["description"], path


def _docs_rows() -> dict[str, str]:
    rows = {}
    for line in (ROOT / "DOCS.md").read_text(encoding="utf-8").splitlines():
        found = re.match(r"^\| `([a-z_]+)` \|", line)
        if found:
            rows.setdefault(found.group(1), line)
    return rows


def test_every_option_is_documented(config: dict[str, Any]) -> None:
    rows = _docs_rows()
    for path in _option_paths(config["schema"]):
        assert path[0] in rows, f"DOCS.md has no row for `{path[0]}`"
        assert f"`{path[-1]}`" in rows[path[0]], path
    for key in STANDALONE_ONLY:
        assert "standalone only" in rows[key].lower(), key


# --- images and Dockerfile ----------------------------------------------------


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", path
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_store_images() -> None:
    assert _png_size(ROOT / "icon.png") == (128, 128)
    assert _png_size(ROOT / "logo.png") == (250, 100)


def test_dockerfile(config: dict[str, Any]) -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.MULTILINE))
    base = args["BUILD_FROM"]
    image, _, tag = base.rpartition(":")
    assert "/" in image and tag and tag != "latest" and re.search(r"\d", tag), base
    assert re.search(r"^FROM \$\{?BUILD_FROM\}?( AS [\w-]+)?$", text, re.MULTILINE)
    assert args["BUILD_VERSION"] == config["version"] == __version__
    assert re.search(r'io\.hass\.version="\$\{BUILD_VERSION\}"', text)
    assert 'io.hass.type="app"' in text
    health = re.search(r"^HEALTHCHECK .*(?:\n    .*)*", text, re.MULTILINE)
    assert health and f"127.0.0.1:{config.get('ingress_port', 8099)}/health" in health.group(0)
    # the base image's curl (docker-base installs it), checked often while starting
    assert '"curl", "--fail"' in health.group(0)
    assert "--start-interval=" in health.group(0) and "--start-period=" in health.group(0)
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    copied = {
        source
        for line in re.findall(r"^COPY (.+)$", text, re.MULTILINE)
        for source in line.split()[:-1]
    }
    for source in ("pyproject.toml", "README.md", "constraints.txt", "src", "protos"):
        assert source in copied, source
        assert (ROOT / source).exists() and source not in ignored, source
    assert "rootfs" in copied and "rootfs" not in ignored
    # the packages are installed at the versions constraints.txt pins
    installs = re.findall(r"pip install .*", text)
    assert installs and all("-c /tmp/src/constraints.txt " in line for line in installs)
    # from wheels only: nothing compiles on the device (no gcc in the image build)
    assert all("--only-binary=:all:" in line for line in installs)
    assert "gcc" not in text
    for kept_out in (".git", ".venv", "tests", "benchmarks", "docs"):
        assert kept_out in ignored, kept_out


def test_dockerfile_arch_label_follows_the_platform(config: dict[str, Any]) -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r'io\.hass\.arch="\$\{BUILD_ARCH:-\$\{HOYMILES_BRIDGE_ARCH\}\}"', text)
    assert re.search(r"^FROM platform-\$\{TARGETARCH\}$", text, re.MULTILINE)
    # one stage per TARGETARCH, naming the arch as Home Assistant does: exactly config.yaml's
    stages = re.findall(
        r"^FROM \$\{BUILD_FROM\} AS platform-(\w+)\nENV HOYMILES_BRIDGE_ARCH=(\w+)$",
        text,
        re.MULTILINE,
    )
    assert dict(stages) == {"amd64": "amd64", "arm64": "aarch64"}
    assert sorted(arch for _, arch in stages) == sorted(config["arch"])


def _dockerfile_env(name: str) -> int:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    found = re.search(rf"^ENV {name}=(\d+)$", text, re.MULTILINE)
    assert found, f"the Dockerfile does not set {name}"
    return int(found.group(1))


def test_a_clean_stop_fits_inside_the_timeouts(config: dict[str, Any]) -> None:
    from hoymiles_bridge.addon import runner
    from hoymiles_bridge.web import server

    # the bridge's own bound: the MQTT goodbye, then the web server's shutdown
    goodbye = runner._STOP_TIMEOUT + server._SHUTDOWN_TIMEOUT
    s6_grace = _dockerfile_env("S6_SERVICES_GRACETIME") / 1000  # then s6 sends SIGKILL
    s6_kill_grace = 3.0  # S6_KILL_GRACETIME's default, for the other processes
    assert goodbye + 2 <= s6_grace
    # Docker's wait before its own SIGKILL (Supervisor range 10..300 s)
    assert 10 <= config["timeout"] <= 300
    assert s6_grace + s6_kill_grace + 5 <= config["timeout"]


def test_minimum_home_assistant_takes_the_discovery_payloads(config: dict[str, Any]) -> None:
    from hoymiles_bridge.mqtt import discovery

    from .ha_discovery_schema import DEVICE_KEYS

    # "sn" (serial_number) first came with 2024.2 (home-assistant/core#108069)
    assert config["homeassistant"] == "2024.2.0"
    assert "sn" in DEVICE_KEYS
    assert "2024.2" in (discovery.__doc__ or "")


def test_license_is_the_apache_license() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'license = "Apache-2.0"' in pyproject
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in (ROOT / "Dockerfile").read_text(
        encoding="utf-8"
    )


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint is not installed")
    result = subprocess.run(
        [hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- build: what the Dockerfile does, without Docker -------------------------


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _source_tree(target: Path) -> Path:
    """A clean clone of the repository (a plain copy outside git)."""
    git = shutil.which("git")
    if git and (ROOT / ".git").exists():
        subprocess.run([git, "clone", "--quiet", str(ROOT), str(target)], check=True)
    else:
        shutil.copytree(
            ROOT,
            target,
            ignore=shutil.ignore_patterns(".*", "__pycache__", "build", "dist", "*.egg-info"),
        )
    return target


@pytest.mark.timeout(900)
def test_clean_clone_builds_and_installs(tmp_path: Path) -> None:
    env = _clean_env()
    source = _source_tree(tmp_path / "src")
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(wheels),
            str(source),
        ],
        check=True,
        env=env,
    )
    (wheel,) = wheels.glob("hoymiles_bridge-*.whl")
    assert wheel.name.startswith(f"hoymiles_bridge-{__version__}-")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "hoymiles_bridge/py.typed" in names
    assert any(n.startswith("hoymiles_bridge/protocol/pb/") for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=env)
    python = venv / "bin" / "python"
    # as the Dockerfile does: the dependencies at the versions constraints.txt pins
    constraints = source / "constraints.txt"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "-c", str(constraints), str(wheel)],
        check=True,
        env=env,
    )
    pins = dict(line.split("==") for line in constraints.read_text().splitlines() if "==" in line)
    frozen = subprocess.run(
        [str(python), "-m", "pip", "list", "--format", "json"],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    for package in json.loads(frozen.stdout):
        name = re.sub(r"[-_.]+", "-", package["name"]).lower()
        if name not in ("hoymiles-bridge", "pip", "setuptools", "wheel"):  # (the venv's own)
            assert pins.get(name) == package["version"], (name, package["version"])
    result = subprocess.run(
        [str(venv / "bin" / "hoymiles-bridge"), "--version"],
        check=True,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.stdout.strip() == f"hoymiles-bridge {__version__}"
