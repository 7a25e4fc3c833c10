"""A real Mosquitto broker for the tests, plus helpers that talk to it.

* :class:`Mosquitto` runs ``mosquitto`` on 127.0.0.1 and a free port, with its
  config and log in a temporary directory; it can restart on the same port.
* :class:`Subscriber` records what the broker delivers on a topic pattern.
* :class:`TcpProxy` sits between a client and the broker so a test can cut
  the connection abruptly (no DISCONNECT packet: the broker fires the will)
  and refuse new connections for a while.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Self

import aiomqtt

from hoymiles_bridge.mqtt.link import MqttMessage
from hoymiles_bridge.mqtt.local_broker import LocalBroker, find_mosquitto

HOST = "127.0.0.1"


class MosquittoMissingError(RuntimeError):
    """The mosquitto binary is not installed."""


class Mosquitto(LocalBroker):
    """The package's private broker, plus an optional password mode for tests."""

    def __init__(
        self, workdir: Path, *, username: str | None = None, password: str | None = None
    ) -> None:
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        if find_mosquitto() is None:
            raise MosquittoMissingError(
                "the MQTT tests need the mosquitto broker, which is not installed; "
                "run scripts/test.sh, which installs it (apt package 'mosquitto')"
            )
        super().__init__(HOST, workdir=workdir)
        self.username = username
        self.password = password

    def config_lines(self) -> list[str]:
        lines = [*super().config_lines(), "log_type all"]
        if self.username is None or self.password is None:
            return lines
        passwd_tool = shutil.which("mosquitto_passwd")
        if passwd_tool is None:
            raise MosquittoMissingError("mosquitto_passwd is not installed")
        password_file = self.workdir / "passwords"
        subprocess.run(
            [passwd_tool, "-c", "-b", str(password_file), self.username, self.password],
            check=True,
            capture_output=True,
        )
        lines = [line for line in lines if not line.startswith("allow_anonymous")]
        return [*lines, "allow_anonymous false", f"password_file {password_file}"]


class Subscriber:
    """Records every message the broker delivers on ``pattern``.

    ``last`` maps each topic to its latest payload; ``messages`` keeps all of
    them in arrival order. Use as ``async with Subscriber(port, "t/#") as sub``.
    """

    def __init__(
        self,
        port: int,
        pattern: str = "#",
        *,
        username: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
    ) -> None:
        self.port = port
        self.pattern = pattern
        self.last: dict[str, bytes] = {}
        self.messages: list[MqttMessage] = []
        self._changed = asyncio.Event()
        self._client = aiomqtt.Client(
            HOST, port, username=username, password=password, identifier=client_id
        )
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self._client.__aenter__()
        await self._client.subscribe(self.pattern, qos=1)
        self._reader = asyncio.create_task(self._read(), name=f"subscriber[{self.pattern}]")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._reader
        with contextlib.suppress(aiomqtt.MqttError):
            await self._client.__aexit__(exc_type, exc, tb)

    async def _read(self) -> None:
        async for message in self._client.messages:
            payload = message.payload
            data = bytes(payload) if isinstance(payload, bytes | bytearray) else b""
            received = MqttMessage(message.topic.value, data, message.retain, message.qos)
            self.messages.append(received)
            self.last[received.topic] = data
            self._changed.set()

    async def wait_for_all(self, topics: Iterable[str], timeout: float = 10.0) -> None:
        """Wait until each of ``topics`` has a payload."""
        for topic in topics:
            await self.wait_for(topic, timeout=timeout)

    def payloads(self, topic: str) -> list[bytes]:
        return [m.payload for m in self.messages if m.topic == topic]

    async def wait_for(
        self,
        topic: str,
        predicate: Callable[[bytes], bool] | None = None,
        timeout: float = 10.0,
    ) -> bytes:
        """Wait until the latest payload on ``topic`` satisfies ``predicate`` (or exists)."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    self._changed.clear()
                    payload = self.last.get(topic)
                    if payload is not None and (predicate is None or predicate(payload)):
                        return payload
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"no matching message on {topic} within {timeout} s; "
                f"last payload: {self.last.get(topic)!r}"
            ) from None


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to the broker; can cut and refuse connections.

    Refusing closes the listening socket rather than accepting and closing,
    so a client sees what a stopped broker does (ECONNREFUSED at once).
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.WriteTransport] = set()
        self._pipes: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    async def __aenter__(self) -> Self:
        await self.listen()
        return self

    async def listen(self) -> None:
        """Accept connections (again), on the same port as before."""
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, HOST, self.port)
            self.port = self._server.sockets[0].getsockname()[1]

    def refuse(self) -> None:
        """Stop listening: new connections are refused at once (ECONNREFUSED)."""
        server, self._server = self._server, None
        if server is not None:
            # close() stops listening at once; wait_closed() would also wait
            # for the proxied connections (Python >= 3.12), which live on.
            server.close()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cut()
        self.refuse()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    def hold(self) -> None:
        """Stop forwarding (both ways) until :meth:`release`: bytes wait in the proxy."""
        self._flowing.clear()

    def release(self) -> None:
        self._flowing.set()

    def cut(self) -> None:
        """Abort every proxied connection on both sides, without any MQTT goodbye."""
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._transports.update((writer.transport, up_writer.transport))
        for source, sink, direction in ((reader, up_writer, "up"), (up_reader, writer, "down")):
            pipe = asyncio.create_task(self._pipe(source, sink), name=f"tcp-proxy-{direction}")
            self._pipes.add(pipe)
            pipe.add_done_callback(self._pipes.discard)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                await self._flowing.wait()
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            sink.transport.abort()
