"""Running the PyPI client ``hoymiles-wifi`` as a subprocess against our simulator."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

HOST = "127.0.0.2"  # hoymiles-wifi always connects to port 10081
PORT = 10081


def noon_today() -> float:
    lt = time.localtime()
    return time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, 12, 0, 0, 0, 0, -1))


async def hoymiles_wifi(*args: str, stdin: str = "", timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hoymiles_wifi",
        "--host",
        HOST,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def json_tail(output: str) -> dict[str, Any]:
    """The JSON object hoymiles-wifi prints last (interactive prompts come before it)."""
    start = output.find("{")
    assert start >= 0, f"no JSON in output: {output!r}"
    data: dict[str, Any] = json.loads(output[start:])
    return data
