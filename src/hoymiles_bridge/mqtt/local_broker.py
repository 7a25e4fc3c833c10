"""A private Mosquitto for the demo: started on a free localhost port, stopped on exit.

Used only where no broker is configured (``hoymiles-bridge demo``). It needs
Debian's ``mosquitto`` package; ``scripts/demo.sh`` installs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Final

from hoymiles_bridge.errors import HoymilesError

_CANDIDATES: Final = ("mosquitto", "/usr/sbin/mosquitto")
_START_TIMEOUT: Final = 10.0


class BrokerUnavailableError(HoymilesError):
    """No Mosquitto binary to start."""


def find_mosquitto() -> str | None:
    for candidate in _CANDIDATES:
        path = shutil.which(candidate) or (candidate if Path(candidate).is_file() else None)
        if path:
            return path
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class LocalBroker:
    """``async with LocalBroker() as broker:`` gives a Mosquitto on ``broker.port``."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._process: asyncio.subprocess.Process | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    async def start(self) -> None:
        binary = find_mosquitto()
        if binary is None:
            raise BrokerUnavailableError(
                "no MQTT broker is configured and Mosquitto is not installed "
                "(apt-get install mosquitto, or run scripts/demo.sh as root)"
            )
        self._dir = tempfile.TemporaryDirectory(prefix="hoymiles-mosquitto-")
        conf = Path(self._dir.name) / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} {self.host}\nallow_anonymous true\npersistence false\n"
            # Without it Mosquitto holds small packets (PUBACKs) back ~40 ms.
            "set_tcp_nodelay true\n"
            f"log_dest file {Path(self._dir.name) / 'mosquitto.log'}\n"
        )
        self._process = await asyncio.create_subprocess_exec(
            binary,
            "-c",
            str(conf),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _START_TIMEOUT
        while True:
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                if self._process.returncode is not None or loop.time() > deadline:
                    await self.stop()
                    raise BrokerUnavailableError(
                        f"Mosquitto did not start on {self.host}:{self.port}"
                    ) from None
                await asyncio.sleep(0.05)
            else:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                return

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    async def __aenter__(self) -> LocalBroker:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()


__all__ = ["BrokerUnavailableError", "LocalBroker", "find_mosquitto", "free_port"]
