"""The byte stream under a DTU connection, and the TCP socket that is its usual form.

A :class:`Transport` carries bytes to one DTU and back; it knows nothing of
frames. A :class:`~hoymiles_bridge.dtu.connection.Connection` opens one,
writes whole frames into it and hears what comes back through the
:class:`TransportListener` it passes to :meth:`Transport.open`.
:class:`TcpTransport` is the socket every real DTU needs;
:class:`~hoymiles_bridge.dtu.memory.MemoryTransport` is an in-memory
stand-in for tests.

Every transport keeps this contract:

* ``open`` is awaited once. It raises DtuTimeoutError when the peer does not
  answer within ``timeout`` seconds, and DtuConnectionError when it refuses
  or cannot be reached; the message names the address.
* After a successful ``open`` the listener hears ``data_received`` for every
  chunk of bytes, in order, then ``connection_lost`` exactly once: with None
  when the peer (or we) closed the stream cleanly, with the error that ended
  it otherwise. Both are called from the event loop, never from inside
  ``write`` or ``close``.
* ``write`` never blocks; bytes written once the stream is closing are dropped.
* ``close`` closes gracefully (pending bytes first) and may be called again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from hoymiles_bridge.errors import DtuConnectionError, DtuTimeoutError


class TransportListener(Protocol):
    """What a transport reports to: the connection that opened it."""

    def data_received(self, data: bytes) -> None:
        """Bytes arrived from the DTU (any chunking; frames may be split or joined)."""

    def connection_lost(self, exc: Exception | None) -> None:
        """The stream ended: None for a clean close, else the error that ended it."""


class Transport(Protocol):
    """One byte stream to a DTU, opened once and closed once."""

    async def open(self, listener: TransportListener, *, timeout: float) -> None:
        """Connect; from then on ``listener`` hears the incoming bytes and the end."""

    def write(self, data: bytes) -> None:
        """Queue ``data`` for sending."""

    def close(self) -> None:
        """Close gracefully; the listener hears ``connection_lost`` soon after."""

    def is_closing(self) -> bool:
        """Whether the stream is closed or closing (also before ``open``)."""


#: Makes the transport for one connection to ``(host, port)``.
TransportFactory = Callable[[str, int], Transport]


class _StreamProtocol(asyncio.Protocol):
    """asyncio glue: hands the socket's bytes and its end to the listener."""

    def __init__(self, listener: TransportListener) -> None:
        self._listener = listener

    def data_received(self, data: bytes) -> None:
        self._listener.data_received(data)

    def eof_received(self) -> bool | None:
        return None  # a half-closed DTU is a closed DTU: let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self._listener.connection_lost(exc)


class TcpTransport(Transport):
    """A TCP socket to ``host:port``, through the running event loop."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._transport: asyncio.Transport | None = None

    def __repr__(self) -> str:
        return f"TcpTransport({self.host}:{self.port})"

    async def open(self, listener: TransportListener, *, timeout: float) -> None:
        if self._transport is not None:
            raise DtuConnectionError(f"the socket to {self.host}:{self.port} was already opened")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                transport, _ = await loop.create_connection(
                    lambda: _StreamProtocol(listener), self.host, self.port
                )
        except TimeoutError:
            raise DtuTimeoutError(
                f"no answer from {self.host}:{self.port} within {timeout:g} s"
            ) from None
        except ConnectionRefusedError:
            raise DtuConnectionError(
                f"{self.host}:{self.port} refused the connection (is the DTU on, "
                "and is this its address?)"
            ) from None
        except OSError as err:
            raise DtuConnectionError(
                f"cannot connect to {self.host}:{self.port}: {err.strerror or err}"
            ) from None
        self._transport = transport

    def write(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.write(data)

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def is_closing(self) -> bool:
        return self._transport is None or self._transport.is_closing()


__all__ = ["TcpTransport", "Transport", "TransportFactory", "TransportListener"]
