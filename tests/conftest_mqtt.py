"""The ``mosquitto`` fixture: a fresh, real broker per test.

Use it from a test module with
``from .conftest_mqtt import mosquitto_fixture  # noqa: F401`` and a test
argument named ``mosquitto`` (the function has another name so that the
argument does not shadow the import), or register this module as a plugin in
tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .mosquitto import Mosquitto


@pytest.fixture(name="mosquitto")
async def mosquitto_fixture(tmp_path: Path) -> AsyncIterator[Mosquitto]:
    broker = Mosquitto(tmp_path)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()
