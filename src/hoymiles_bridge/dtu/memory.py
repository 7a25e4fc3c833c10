"""In-memory transports: a DTU that lives inside the process, for tests.

A :class:`MemoryEndpoint` stands for one DTU address; its
:meth:`~MemoryEndpoint.transport` method is a
:data:`~hoymiles_bridge.dtu.transport.TransportFactory`::

    endpoint = MemoryEndpoint(responder)
    client = DtuClient("dtu", transport_factory=endpoint.transport)

Every chunk a client writes (the connection writes one whole frame at a
time) goes to the ``responder``, a callable from request bytes to reply
bytes; None or ``b""`` means no reply. It runs inside ``write``, so what it
raises reaches the writer (a broken test DTU fails loudly); its replies
arrive through the event loop, as from a socket, never from inside
``write``. Like a real DTU the endpoint serves one client at a time: a new
connection closes the previous one cleanly, which that client sees as
displacement.

Trouble to simulate:

* ``refuse`` - opening fails with DtuConnectionError (nothing listening, a
  DTU that is rebooting or dark at night);
* ``unreachable`` - opening waits its whole timeout, then fails with
  DtuTimeoutError (a DTU that is off the network);
* ``silent`` - requests are swallowed, so every request times out;
* ``reply_delay`` - seconds (on the event loop's clock) before a reply arrives;
* :meth:`~MemoryEndpoint.displace` - the DTU closes the session cleanly, as
  when another client took its single socket;
* :meth:`~MemoryEndpoint.drop` - the session breaks with an error (a reset);
* :meth:`~MemoryEndpoint.send` - bytes of the DTU's own: pushes, garbage,
  half frames.

Nothing here opens a socket or reads a clock of its own; with an event loop
whose clock is virtual, timeouts and delays cost no real time.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Final

from hoymiles_bridge.dtu.transport import Transport, TransportListener
from hoymiles_bridge.errors import DtuConnectionError, DtuTimeoutError

#: Turns the bytes a client wrote into the bytes the DTU answers (None: no answer).
Responder = Callable[[bytes], bytes | None]

#: How many written chunks :attr:`MemoryEndpoint.received` keeps.
RECEIVED_MEMORY: Final = 256


class MemoryTransport(Transport):
    """One in-memory stream between a client and a :class:`MemoryEndpoint`."""

    def __init__(self, endpoint: MemoryEndpoint, host: str, port: int) -> None:
        self.endpoint = endpoint
        self.host = host
        self.port = port
        #: 1 for the endpoint's first accepted connection, 2 for the next...; 0 until open.
        self.number = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: TransportListener | None = None
        self._closing = False  # no more writes: we closed, or the DTU did
        self._closed_by_us = False  # we closed: drop whatever still arrives
        self._lost = False  # the listener heard connection_lost

    def __repr__(self) -> str:
        return f"MemoryTransport({self.host}:{self.port} #{self.number})"

    # --- the client's side (the Transport protocol) ---------------------------

    async def open(self, listener: TransportListener, *, timeout: float) -> None:
        if self._loop is not None or self._closing:
            raise DtuConnectionError(
                f"the stream to {self.host}:{self.port} was already opened or closed"
            )
        await self.endpoint._accept(self, timeout)
        self._loop = asyncio.get_running_loop()
        self._listener = listener

    def write(self, data: bytes) -> None:
        if self._loop is None or self._closing:
            return
        self.endpoint._received(self, bytes(data))

    def close(self) -> None:
        if self._loop is None:
            self._closing = self._closed_by_us = self._lost = True
            return
        if self._closing:
            self._closed_by_us = True
            return
        self._closing = self._closed_by_us = True
        self._loop.call_soon(self._connection_lost, None)

    def is_closing(self) -> bool:
        return self._loop is None or self._closing

    # --- the DTU's side ------------------------------------------------------------

    @property
    def open_for_peer(self) -> bool:
        """Whether the DTU can still send on this stream."""
        return self._loop is not None and not self._closing

    def deliver(self, data: bytes, delay: float = 0.0) -> None:
        """Send ``data`` to the client, ``delay`` seconds from now."""
        if self._loop is None or self._closing or not data:
            return
        if delay > 0:
            self._loop.call_later(delay, self._data_received, bytes(data))
        else:
            self._loop.call_soon(self._data_received, bytes(data))

    def end(self, exc: Exception | None = None) -> None:
        """The DTU ends the stream: cleanly (None) or with ``exc`` (a reset)."""
        if self._loop is None or self._closing:
            return
        self._closing = True
        # Scheduled after the bytes already sent, so the client reads them first.
        self._loop.call_soon(self._connection_lost, exc)

    # --- delivery on the event loop ---------------------------------------------------

    def _data_received(self, data: bytes) -> None:
        if self._lost or self._closed_by_us or self._listener is None:
            return  # the stream ended before these bytes made it
        self._listener.data_received(data)

    def _connection_lost(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self.endpoint._forget(self)
        if self._listener is not None:
            self._listener.connection_lost(exc)


class MemoryEndpoint:
    """One DTU address in memory: accepts one client at a time, answers through a responder."""

    def __init__(self, responder: Responder | None = None) -> None:
        #: Request bytes in, reply bytes out; None = answer nothing.
        self.responder = responder
        #: Opening fails at once with DtuConnectionError.
        self.refuse = False
        #: Opening waits its timeout, then fails with DtuTimeoutError.
        self.unreachable = False
        #: Requests reach nobody: no responder call, no reply.
        self.silent = False
        #: Seconds before a reply arrives.
        self.reply_delay = 0.0
        #: The connection being served, if any.
        self.current: MemoryTransport | None = None
        #: Connections tried, and accepted.
        self.attempts = 0
        self.connections = 0
        #: Connections closed because a newer client connected, or by :meth:`displace`.
        self.displaced = 0
        #: The last chunks clients wrote, oldest first.
        self.received: deque[bytes] = deque(maxlen=RECEIVED_MEMORY)

    def __repr__(self) -> str:
        return f"MemoryEndpoint({self.connections} connections)"

    def transport(self, host: str, port: int) -> MemoryTransport:
        """A new, unopened transport to this endpoint (a ``TransportFactory``)."""
        return MemoryTransport(self, host, port)

    @property
    def connected(self) -> bool:
        return self.current is not None and self.current.open_for_peer

    # --- trouble ----------------------------------------------------------------------

    def displace(self) -> bool:
        """Close the current session cleanly, as a DTU does for a new client.

        Returns whether there was a session to close.
        """
        current = self.current
        if current is None or not current.open_for_peer:
            return False
        self.displaced += 1
        current.end(None)
        return True

    def drop(self, reason: str = "connection reset by peer") -> bool:
        """Break the current session with an error. Returns whether there was one."""
        current = self.current
        if current is None or not current.open_for_peer:
            return False
        current.end(ConnectionResetError(reason))
        return True

    def send(self, data: bytes, delay: float = 0.0) -> bool:
        """Send bytes of the DTU's own on the current session. Returns whether there was one."""
        current = self.current
        if current is None or not current.open_for_peer:
            return False
        current.deliver(data, delay)
        return True

    # --- called by the transports ---------------------------------------------------------

    async def _accept(self, transport: MemoryTransport, timeout: float) -> None:
        self.attempts += 1
        address = f"{transport.host}:{transport.port}"
        if self.unreachable:
            await asyncio.sleep(timeout)
            raise DtuTimeoutError(f"no answer from {address} within {timeout:g} s")
        if self.refuse:
            raise DtuConnectionError(f"{address} refused the connection")
        self.displace()  # one client at a time: the newcomer wins
        self.connections += 1
        transport.number = self.connections
        self.current = transport

    def _received(self, transport: MemoryTransport, data: bytes) -> None:
        self.received.append(data)
        if self.silent or self.responder is None:
            return
        reply = self.responder(data)
        if reply:
            transport.deliver(reply, self.reply_delay)

    def _forget(self, transport: MemoryTransport) -> None:
        if self.current is transport:
            self.current = None


__all__ = ["MemoryEndpoint", "MemoryTransport", "Responder"]
