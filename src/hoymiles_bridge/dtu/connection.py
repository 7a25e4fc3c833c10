"""One session to a DTU: framing, reply correlation, timeouts.

A :class:`Connection` lives exactly as long as its transport (a TCP socket
unless a :data:`~hoymiles_bridge.dtu.transport.TransportFactory` says
otherwise). It never reconnects by itself;
:class:`~hoymiles_bridge.dtu.client.DtuClient` opens a new one when needed.

Reply correlation follows what real DTUs do (protocol.md section 5.3): a
reply is matched by its tag first; its sequence number picks the waiter when
it matches one, but a DTU may answer with its own counter, so an unknown
sequence goes to the oldest waiter for that tag. A reply whose sequence
belongs to a request that was already given up (a timeout here, or a request
of a previous session) is stale and discarded - never handed to another
caller. Frames nobody waits for are unsolicited pushes.

A peer that sends garbage is not talked to for long: after
:data:`MAX_FRAME_ERRORS` malformed frames in a row, or
:data:`MAX_UNFRAMED_BYTES` bytes without one good frame, the connection
closes itself and every waiting request fails with a
:class:`~hoymiles_bridge.errors.DtuConnectionError` that says why (the
session then backs off as after any lost connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from google.protobuf.message import Message

from hoymiles_bridge.dtu.transport import TcpTransport, Transport, TransportFactory
from hoymiles_bridge.errors import (
    DtuConnectionError,
    DtuDisplacedError,
    DtuTimeoutError,
    FrameError,
    HoymilesError,
    InvalidStateError,
    ProtocolError,
    TruncatedFrameError,
)
from hoymiles_bridge.protocol.codec import DecodedFrame, decode_frame, encode_message
from hoymiles_bridge.protocol.crypto import PayloadCipher, is_encrypted_tag
from hoymiles_bridge.protocol.frame import (
    ExtendedHeader,
    Frame,
    FrameSplitter,
    error_excerpt,
    parse_frame,
    peek_header,
)
from hoymiles_bridge.protocol.registry import Direction, reply_tag, request_tag_for

_LOGGER = logging.getLogger(__name__)

DEFAULT_PORT: Final = 10081
#: Opening the socket. DTUs on WiFi answer SYNs within a second or two.
CONNECT_TIMEOUT: Final = 5.0
#: Waiting for a reply. Real DTUs answer in 0.3-0.7 s; hoymiles-wifi waits 10 s.
REQUEST_TIMEOUT: Final = 10.0
#: How many given-up sequence numbers to remember for stale-reply detection.
_RETIRED_MEMORY: Final = 256
#: Malformed frames in a row (no good frame between them) after which the
#: connection is closed. A DTU sends whole frames; a garbled reply or two, or
#: a few stray bytes, are far below this.
MAX_FRAME_ERRORS: Final = 16
#: Bytes received without one good frame after which the connection is
#: closed: four times the largest frame the splitter accepts.
MAX_UNFRAMED_BYTES: Final = 64 * 1024


class ConnectionState(enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class FrameEvent:
    """A frame that crossed the wire (or failed to), for observers such as the inspector.

    ``direction`` is ``to_dtu`` for frames we sent. ``decoded`` is None when
    the frame could not be decoded; ``error`` then says why.
    """

    timestamp: float
    direction: Direction
    raw: bytes
    frame: Frame | None
    decoded: DecodedFrame | None
    error: HoymilesError | None = None


FrameObserver = Callable[[FrameEvent], None]
PushHandler = Callable[[DecodedFrame], None]


class _Stale(enum.Enum):
    STALE = "stale"


STALE: Final = _Stale.STALE


@dataclass(slots=True)
class _Waiter:
    reply_tag: int
    sequence: int
    future: asyncio.Future[DecodedFrame]


class _Listener:
    """What the transport reports to: bytes in, the end of the stream."""

    __slots__ = ("_owner",)

    def __init__(self, owner: Connection) -> None:
        self._owner = owner

    def data_received(self, data: bytes) -> None:
        self._owner._data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._connection_lost(exc)


class Connection:
    """A single session to a DTU over one transport."""

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        cipher: PayloadCipher | None = None,
        next_sequence: Callable[[], int] | None = None,
        retired_sequences: Iterable[int] = (),
        on_frame: FrameObserver | None = None,
        on_push: PushHandler | None = None,
        transport_factory: TransportFactory = TcpTransport,
    ) -> None:
        self.host = host
        self.port = port
        self._connect_timeout = connect_timeout
        self._transport_factory = transport_factory
        self._cipher = cipher
        self._counter = 0
        self._next_sequence = next_sequence or self._own_sequence
        self._splitter = FrameSplitter(encrypted=self._encrypted_tag)
        self._waiters: dict[int, deque[_Waiter]] = {}
        self._retired: deque[int] = deque(retired_sequences, maxlen=_RETIRED_MEMORY)
        self._sent: deque[int] = deque(maxlen=_RETIRED_MEMORY)
        self._transport: Transport | None = None
        self._state = ConnectionState.IDLE
        self._closing = False
        self._aborted = False
        self._errors_in_a_row = 0
        self._close_error: DtuConnectionError | None = None
        self._closed = asyncio.Event()
        self.on_frame = on_frame
        self.on_push = on_push
        self.frames_in = 0
        self.frames_out = 0
        self.frame_errors = 0
        self.stale_replies = 0

    def __repr__(self) -> str:
        return f"Connection({self.host}:{self.port}, {self._state.value})"

    # --- state ------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def connected(self) -> bool:
        return self._state is ConnectionState.CONNECTED

    @property
    def close_error(self) -> DtuConnectionError | None:
        """Why the session ended, when the DTU (not we) ended it."""
        return self._close_error

    @property
    def sent_sequences(self) -> tuple[int, ...]:
        """Sequences sent on this session; hand them to the next one as retired."""
        return tuple(self._sent)

    @property
    def cipher(self) -> PayloadCipher | None:
        return self._cipher

    @cipher.setter
    def cipher(self, value: PayloadCipher | None) -> None:
        self._cipher = value

    def _encrypted_tag(self, tag: int) -> bool:
        return self._cipher is not None and is_encrypted_tag(tag)

    def _own_sequence(self) -> int:
        self._counter = (self._counter % 0xFFFF) + 1
        return self._counter

    async def wait_closed(self) -> None:
        await self._closed.wait()

    # --- open / close -----------------------------------------------------

    async def open(self) -> None:
        if self._state is not ConnectionState.IDLE:
            raise InvalidStateError(f"connection is {self._state.value}, not idle")
        self._state = ConnectionState.CONNECTING
        transport = self._transport_factory(self.host, self.port)
        try:
            await transport.open(_Listener(self), timeout=self._connect_timeout)
        except (DtuTimeoutError, DtuConnectionError):
            self._mark_closed()
            raise
        if self._state is not ConnectionState.CONNECTING:
            # Closed by us, or lost, before the transport was handed over.
            transport.close()
            raise self._close_error or DtuConnectionError(
                f"the connection to {self.host}:{self.port} closed while opening"
            )
        self._transport = transport
        self._state = ConnectionState.CONNECTED
        _LOGGER.debug("connected to %s:%s", self.host, self.port)

    def close(self) -> None:
        """Close the socket; pending requests fail with DtuConnectionError."""
        self._closing = True
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()
        elif self._state is not ConnectionState.CLOSED:
            self._mark_closed()

    def _mark_closed(self) -> None:
        self._state = ConnectionState.CLOSED
        self._closed.set()

    def _connection_lost(self, exc: Exception | None) -> None:
        self._drop_partial()
        if self._closing:
            error = DtuConnectionError("connection closed")
        elif exc is None:
            # A clean close by the DTU while we were connected: a DTU closes the
            # old session when a new client connects (protocol.md section 5.1).
            error = DtuDisplacedError(
                f"{self.host} closed the session; another client (for example the "
                "S-Miles app) has probably connected"
            )
            self._close_error = error
        else:
            error = DtuConnectionError(f"connection to {self.host} lost: {exc}")
            self._close_error = error
        self._fail_all(error)
        self._mark_closed()
        self._transport = None
        _LOGGER.debug("connection to %s closed: %s", self.host, error)

    def _fail_all(self, error: HoymilesError) -> None:
        for queue in self._waiters.values():
            for waiter in queue:
                if not waiter.future.done():
                    waiter.future.set_exception(error)
        self._waiters.clear()

    # --- sending ----------------------------------------------------------

    def _write(self, message: Message, tag: int, extended: ExtendedHeader | None) -> int:
        if self._transport is None or self._state is not ConnectionState.CONNECTED or self._aborted:
            raise self._close_error or DtuConnectionError(
                f"not connected to {self.host}:{self.port}"
            )
        sequence = self._next_sequence()
        raw = encode_message(message, sequence, tag=tag, cipher=self._cipher, extended=extended)
        self._transport.write(raw)
        self._sent.append(sequence)
        self.frames_out += 1
        if self.on_frame is not None:
            self._observe_out(raw, message, tag, sequence)
        return sequence

    def _observe_out(self, raw: bytes, message: Message, tag: int, sequence: int) -> None:
        assert self.on_frame is not None
        frame = parse_frame(raw)
        decoded = DecodedFrame(frame, None, message, message.SerializeToString())
        with contextlib.suppress(ProtocolError):
            decoded = decode_frame(frame, self._cipher)
        self._emit(FrameEvent(time.time(), Direction.TO_DTU, raw, frame, decoded))

    def send(
        self, message: Message, *, tag: int | None = None, extended: ExtendedHeader | None = None
    ) -> int:
        """Send without waiting for a reply; returns the sequence number used."""
        return self._write(message, tag if tag is not None else request_tag_for(message), extended)

    async def request(
        self,
        message: Message,
        *,
        tag: int | None = None,
        expect_tag: int | None = None,
        timeout: float = REQUEST_TIMEOUT,
        extended: ExtendedHeader | None = None,
    ) -> DecodedFrame:
        """Send ``message`` and wait for its reply.

        Raises DtuTimeoutError, DtuConnectionError (DtuDisplacedError when
        another client took the DTU), or the ProtocolError that spoiled the
        reply (bad CRC, failed decryption, undecodable payload).
        """
        tag = tag if tag is not None else request_tag_for(message)
        expect = expect_tag if expect_tag is not None else reply_tag(tag)
        future: asyncio.Future[DecodedFrame] = asyncio.get_running_loop().create_future()
        waiter = _Waiter(expect, -1, future)
        queue = self._waiters.setdefault(expect, deque())
        queue.append(waiter)  # registered before sending, removed in finally
        try:
            waiter.sequence = self._write(message, tag, extended)
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            self._retired.append(waiter.sequence)
            self._drop_partial()
            raise DtuTimeoutError(
                f"{self.host} did not answer {tag:04X} within {timeout:g} s"
            ) from None
        finally:
            with contextlib.suppress(ValueError):
                queue.remove(waiter)
            if not future.done():
                future.cancel()

    def _drop_partial(self) -> None:
        """Forget half a frame that will never be completed (its reply timed out)."""
        leftover = self._splitter.clear()
        if leftover:
            excerpt = error_excerpt(leftover)
            self._report_error(
                TruncatedFrameError(
                    f"dropped an incomplete frame of {len(leftover)} bytes", excerpt
                ),
                excerpt,
            )

    # --- receiving --------------------------------------------------------

    def _data_received(self, data: bytes) -> None:
        if self._aborted:
            return  # closed for sending garbage; the rest is not read
        for item in self._splitter.feed(data):
            if isinstance(item, FrameError):
                self._frame_error(item)
                self._errors_in_a_row += 1
                if self._errors_in_a_row >= MAX_FRAME_ERRORS:
                    self._abort(
                        f"closed the connection to {self.host}: "
                        f"{self._errors_in_a_row} malformed frames in a row"
                    )
                    return
            else:
                self._errors_in_a_row = 0
                self._frame_received(item)
        unframed = self._splitter.unframed
        if unframed >= MAX_UNFRAMED_BYTES:
            self._abort(
                f"closed the connection to {self.host}: {unframed} bytes without a valid frame"
            )

    def _abort(self, reason: str) -> None:
        """Stop reading a peer that sends garbage: fail every request and close."""
        _LOGGER.warning("%s", reason)
        error = DtuConnectionError(reason)
        self._aborted = True
        self._close_error = error
        self._fail_all(error)
        self._splitter.clear()
        self.close()

    def _take_waiter(self, tag: int, sequence: int) -> _Waiter | None | _Stale:
        """The waiter a reply belongs to, ``STALE`` for a late reply, None for a push."""
        queue = self._waiters.get(tag)
        if queue:
            for waiter in queue:
                if waiter.sequence == sequence:
                    queue.remove(waiter)
                    return waiter
        if sequence in self._sent or sequence in self._retired:
            # We sent this sequence before and its request is over (answered,
            # timed out, or from an earlier session): a late duplicate.
            return STALE
        if queue:
            return queue.popleft()  # the DTU did not echo our sequence
        return None

    def _frame_error(self, error: FrameError) -> None:
        self.frame_errors += 1
        self._report_error(error, error.raw)
        head = peek_header(error.raw)
        if head is None:
            return
        waiter = self._take_waiter(*head)
        if isinstance(waiter, _Waiter) and not waiter.future.done():
            waiter.future.set_exception(error)

    def _report_error(self, error: HoymilesError, raw: bytes) -> None:
        _LOGGER.debug("frame error from %s: %s", self.host, error)
        if self.on_frame is not None:
            self._emit(FrameEvent(time.time(), Direction.FROM_DTU, raw, None, None, error))

    def _frame_received(self, frame: Frame) -> None:
        self.frames_in += 1
        decoded: DecodedFrame | None = None
        error: ProtocolError | None = None
        try:
            decoded = decode_frame(frame, self._cipher)
        except ProtocolError as err:
            error = err
            self.frame_errors += 1
        if self.on_frame is not None:
            self._emit(
                FrameEvent(time.time(), Direction.FROM_DTU, frame.to_bytes(), frame, decoded, error)
            )
        waiter = self._take_waiter(frame.tag, frame.sequence)
        if waiter is STALE:
            self.stale_replies += 1
            _LOGGER.debug("discarding stale %04X seq %d", frame.tag, frame.sequence)
            return
        if waiter is None:
            if decoded is not None and self.on_push is not None:
                self._dispatch_push(decoded)
            return
        if waiter.future.done():
            return
        if decoded is not None:
            waiter.future.set_result(decoded)
        else:
            assert error is not None
            waiter.future.set_exception(error)

    def _dispatch_push(self, decoded: DecodedFrame) -> None:
        assert self.on_push is not None
        try:
            self.on_push(decoded)
        except HoymilesError:
            _LOGGER.exception("push handler failed on %s", decoded.name)

    def _emit(self, event: FrameEvent) -> None:
        assert self.on_frame is not None
        try:
            self.on_frame(event)
        except HoymilesError:
            _LOGGER.exception("frame observer failed")


__all__ = [
    "CONNECT_TIMEOUT",
    "DEFAULT_PORT",
    "REQUEST_TIMEOUT",
    "Connection",
    "ConnectionState",
    "FrameEvent",
    "FrameObserver",
    "PushHandler",
]
