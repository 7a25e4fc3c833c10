"""Dependency promises: upb backend, gencode not newer than the runtime floor, CRC fallback."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from google.protobuf.internal import api_implementation

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
