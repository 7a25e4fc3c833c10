"""Dependency promises: upb backend, gencode not newer than the runtime floor, CRC fallback,
the floors of the dependencies and constraints.txt, which pins every package installed."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.internal import api_implementation
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from hoymiles_bridge import __version__

ROOT = Path(__file__).resolve().parents[1]
PB = ROOT / "src" / "hoymiles_bridge" / "protocol" / "pb"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_protobuf_uses_upb() -> None:
    assert api_implementation.Type() == "upb"


def test_gencode_not_newer_than_runtime_floor() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    floor_spec = next(d for d in project["dependencies"] if d.startswith("protobuf"))
    floor = re.search(r">=([\d.]+)", floor_spec)
    assert floor is not None
    versions = set()
    for module in PB.glob("*_pb2.py"):
        found = re.search(r"Protobuf Python Version: ([\d.]+)", module.read_text())
        assert found is not None, module.name
        versions.add(found.group(1))
    assert len(versions) == 1
    assert _version(versions.pop()) <= _version(floor.group(1))


def test_py_typed_and_version() -> None:
    assert (ROOT / "src" / "hoymiles_bridge" / "py.typed").exists()
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


def test_crc_falls_back_with_one_warning_when_c_extension_is_missing() -> None:
    code = (
        "import logging, sys\n"
        "sys.modules['crcmod._crcfunext'] = None\n"
        "logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(message)s')\n"
        "from hoymiles_bridge.protocol import crc\n"
        "assert not crc.USING_C_EXTENSION\n"
        "assert crc.crc16_modbus(b'123456789') == 0x4B37\n"
        "assert crc.crc16_modbus(b'') == 0xFFFF\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and "C extension" in warnings[0]


# --- floors and constraints.txt ---------------------------------------------------


def _project() -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project


def _requirements() -> list[tuple[Requirement, str]]:
    """Every requirement of pyproject.toml with its extra ("" for the runtime ones)."""
    project = _project()
    found = [(Requirement(text), "") for text in project["dependencies"]]
    for extra, texts in project["optional-dependencies"].items():
        found += [(Requirement(text), extra) for text in texts]
    return found


def _pins() -> dict[str, str]:
    """constraints.txt as {canonical name: version}."""
    pins: dict[str, str] = {}
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    for number, line in enumerate(lines, 1):
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([a-z0-9]+(?:-[a-z0-9]+)*)==([0-9][0-9A-Za-z.+!-]*)", line)
        assert match, f"constraints.txt:{number}: {line!r} is not name==version"
        name, version = match.groups()
        assert name == canonicalize_name(name), f"constraints.txt:{number}: {name}"
        assert name not in pins, f"constraints.txt:{number}: {name} twice"
        pins[name] = version
    assert list(pins) == sorted(pins), "constraints.txt is not sorted by name"
    return pins


@pytest.mark.parametrize(
    ("name", "floor"), [("aiohttp", "3.14.1"), ("protobuf", "6.33.5"), ("cryptography", "44.0.1")]
)
def test_runtime_floors(name: str, floor: str) -> None:
    """The oldest releases accepted have the security fixes we rely on."""
    requirement = next(r for r, extra in _requirements() if not extra and r.name == name)
    lowest = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    assert lowest and min(lowest) >= Version(floor), str(requirement)
    assert Version(floor) in requirement.specifier


def test_protobuf_stays_below_7_and_hoymiles_wifi_at_0_6_0() -> None:
    protobuf = next(r for r, extra in _requirements() if not extra and r.name == "protobuf")
    assert Version("7.0") not in protobuf.specifier
    assert Version("7.0") > Version(_pins()["protobuf"])
    wifi = next(r for r, _ in _requirements() if r.name == "hoymiles-wifi")
    assert str(wifi.specifier) == "==0.6.0" and _pins()["hoymiles-wifi"] == "0.6.0"


def test_constraints_pin_every_requirement_within_its_range() -> None:
    pins = _pins()
    assert "hoymiles-bridge" not in pins
    for requirement, extra in _requirements():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} ({extra or 'runtime'}) is not in constraints.txt"
        assert requirement.specifier.contains(
            pins[name], prereleases=True
        ), f"constraints.txt pins {name}=={pins[name]}, pyproject.toml asks for {requirement}"
    for tool in ("pip", "setuptools", "wheel"):  # scripts/bootstrap.sh installs them too
        assert tool in pins, tool


def test_constraints_pin_the_installed_dependency_tree() -> None:
    """Each package the installed requirements need in turn (on this Python) is pinned.

    Requirements that are not installed here (an extra this venv lacks) are
    not followed: their own requirements are unknown without them.
    """
    pins = _pins()
    todo = [
        (requirement, {extra})
        for requirement, extra in _requirements()
        if requirement.marker is None or requirement.marker.evaluate({"extra": extra})
    ]
    seen: set[str] = set()
    while todo:
        requirement, _ = todo.pop()
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} (needed as {requirement}) is not in constraints.txt"
        if name in seen:
            continue
        seen.add(name)
        try:
            needs = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        extras = {"", *requirement.extras}
        for text in needs:
            need = Requirement(text)
            if need.marker is None or any(need.marker.evaluate({"extra": e}) for e in extras):
                todo.append((need, extras))
    assert {"aiohttp", "yarl", "multidict", "pytest", "playwright"} <= seen


def test_bootstrap_installs_from_the_constraints() -> None:
    """Every pip install of scripts/bootstrap.sh takes constraints.txt, which its stamp hashes."""
    text = (ROOT / "scripts" / "bootstrap.sh").read_text()
    assert re.search(r'^CONSTRAINTS="\$ROOT/constraints\.txt"$', text, re.MULTILINE)
    installs = [line for line in text.splitlines() if "pip install" in line]
    assert installs and all('-c "$CONSTRAINTS"' in line for line in installs), installs
    stamp = next(line for line in text.splitlines() if line.startswith("stamp_value="))
    assert re.search(r'sha256sum "\$ROOT/pyproject\.toml" "\$CONSTRAINTS"', stamp), stamp
