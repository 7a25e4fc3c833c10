"""Waiting in tests for something that must happen (the deadline turns a hang into a failure)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest


async def until(
    check: Callable[[], Awaitable[bool]], what: str, timeout: float = 20.0, step: float = 0.05
) -> None:
    """Poll ``check`` every ``step`` s until it holds; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(step)
