"""Dependency promises: upb backend, gencode not newer than the runtime floor, CRC fallback,
the floors of the dependencies."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.internal import api_implementation
from packaging.requirements import Requirement
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


# --- floors -----------------------------------------------------------------------------------


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


@pytest.mark.parametrize(
    ("name", "floor"), [("aiohttp", "3.14.1"), ("protobuf", "6.33.5"), ("cryptography", "44.0.1")]
)
def test_runtime_floors(name: str, floor: str) -> None:
    """The oldest releases accepted have the security fixes we rely on."""
    requirement = next(r for r, extra in _requirements() if not extra and r.name == name)
    lowest = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
    assert lowest and min(lowest) >= Version(floor), str(requirement)
    assert Version(floor) in requirement.specifier
