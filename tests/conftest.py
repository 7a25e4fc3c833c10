"""Shared fixtures: the reference vectors in ../shared/vectors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
_VECTOR_CANDIDATES = [
    ROOT / "tests" / "vectors" / "frames.json",
    ROOT.parent / "shared" / "vectors" / "frames.json",
]


def load_vectors() -> list[dict[str, Any]]:
    for path in _VECTOR_CANDIDATES:
        if path.exists():
            frames: list[dict[str, Any]] = json.loads(path.read_text())["frames"]
            return frames
    raise FileNotFoundError("frames.json not found in tests/vectors or ../shared/vectors")


@pytest.fixture(scope="session")
def vectors() -> list[dict[str, Any]]:
    return load_vectors()
