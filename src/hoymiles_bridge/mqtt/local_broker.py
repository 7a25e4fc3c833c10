"""A private Mosquitto: started on a free localhost port, stopped on exit.

The demo uses it where no broker is configured (``hoymiles-bridge demo``), and
the tests build their brokers on it. It needs Debian's ``mosquitto`` package;
``scripts/demo.sh`` and ``scripts/test.sh`` install it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import random
import shutil
import signal
import socket
import tempfile
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from hoymiles_bridge.errors import HoymilesError

_CANDIDATES: Final = ("mosquitto", "/usr/sbin/mosquitto")
#: How long start() waits for the broker to accept connections.
START_TIMEOUT: Final = 10.0
#: How long stop() waits after SIGTERM before it kills the broker.
STOP_TIMEOUT: Final = 5.0


class BrokerUnavailableError(HoymilesError):
    """No Mosquitto binary to start, or it did not come up."""


def find_mosquitto() -> str | None:
    for candidate in _CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


#: Where :func:`free_port` looks first: below the kernel's ephemeral ports.
_QUIET_PORTS: Final = (20000, 32767)
_EPHEMERAL_RANGE: Final = Path("/proc/sys/net/ipv4/ip_local_port_range")
#: The ports this process was given lately (not handed out twice).
_handed_out: deque[int] = deque(maxlen=512)


def _quiet_range() -> tuple[int, int]:
    """Ports no outgoing connection is given (they come from the ephemeral range)."""
    low, high = _QUIET_PORTS
    with contextlib.suppress(OSError, ValueError, IndexError):
        first = int(_EPHEMERAL_RANGE.read_text().split()[0])
        high = min(high, first - 1)
    return low, high


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on now, for a server started soon.

    It is taken below the kernel's ephemeral range where that is known: a port
    from that range could be given to an outgoing connection (any client's)
    between this check and the server's bind.
    """
    low, high = _quiet_range()
    for _ in range(64 if high > low else 0):
        port = random.randint(low, high)
        if port in _handed_out:  # handed out but maybe not bound yet
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _handed_out.append(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        chosen: int = sock.getsockname()[1]
        return chosen


class LocalBroker:
    """``async with LocalBroker() as broker:`` gives a Mosquitto on ``broker.port``.

    Config and log live in ``workdir`` (a temporary directory by default,
    removed on exit). ``port`` stays the same across :meth:`restart`.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        *,
        workdir: Path | None = None,
        extra_config: Sequence[str] = (),
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._own_dir = (
            tempfile.TemporaryDirectory(prefix="mosquitto-") if workdir is None else None
        )
        self.workdir = Path(self._own_dir.name) if self._own_dir is not None else workdir
        assert self.workdir is not None
        self.conf_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self.extra_config = list(extra_config)
        self._process: asyncio.subprocess.Process | None = None

    def config_lines(self) -> list[str]:
        lines = [
            f"listener {self.port} {self.host}",
            "persistence false",
            # Without it Mosquitto holds small packets (PUBACKs) back ~40 ms.
            "set_tcp_nodelay true",
            f"log_dest file {self.log_path}",
            "connection_messages true",
            # Run as whoever runs us: as root, mosquitto would otherwise switch to
            # the 'mosquitto' user, who cannot write to the work directory.
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
            *self.extra_config,
        ]
        if not any(line.startswith("allow_anonymous") for line in lines):
            lines.append("allow_anonymous true")
        return lines

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    async def start(self) -> None:
        binary = find_mosquitto()
        if binary is None:
            raise BrokerUnavailableError(
                "no MQTT broker is configured and Mosquitto is not installed "
                "(apt-get install mosquitto, or run scripts/demo.sh as root)"
            )
        if self.running:
            raise BrokerUnavailableError("Mosquitto is already running")
        self.conf_path.write_text("\n".join(self.config_lines()) + "\n")
        self._process = await asyncio.create_subprocess_exec(
            binary,
            "-c",
            str(self.conf_path),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await self._wait_listening()

    async def _wait_listening(self) -> None:
        assert self._process is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while True:
            if self._process.returncode is not None:
                raise BrokerUnavailableError(
                    f"Mosquitto exited with {self._process.returncode}:\n{self.log_tail()}"
                )
            try:
                async with asyncio.timeout(0.5):
                    _, writer = await asyncio.open_connection(self.host, self.port)
            except (OSError, TimeoutError):
                if loop.time() > deadline:
                    await self.stop()
                    raise BrokerUnavailableError(
                        f"Mosquitto did not listen on {self.host}:{self.port} within "
                        f"{START_TIMEOUT:g} s:\n{self.log_tail()}"
                    ) from None
                await asyncio.sleep(0.05)
            else:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                return

    async def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()

    async def restart(self, down_for: float = 0.0) -> None:
        """Stop, stay down ``down_for`` seconds, and start again on the same port."""
        await self.stop()
        if down_for:
            await asyncio.sleep(down_for)
        await self.start()

    def cleanup(self) -> None:
        if self._own_dir is not None:
            self._own_dir.cleanup()
            self._own_dir = None

    async def __aenter__(self) -> LocalBroker:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()
        self.cleanup()


__all__ = ["BrokerUnavailableError", "LocalBroker", "find_mosquitto", "free_port"]
