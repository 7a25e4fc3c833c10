"""The connection to the MQTT broker, kept up for the whole life of the bridge.

:class:`MqttLink` holds one broker session at a time and replaces it when it
breaks. It knows nothing about Home Assistant: it publishes what it is given,
announces its availability with a will, and hands incoming messages to one
callback.

One session, in order:

1. connect, with the will ``will_payload`` (retained, QoS 1) on ``will_topic``;
2. publish ``online_payload`` retained on ``will_topic`` and on each of
   ``alias_topics``;
3. subscribe to ``subscriptions`` (QoS 1);
4. flush the messages queued while offline, oldest first;
5. :attr:`MqttLink.connected` becomes true and ``on_connect()`` runs - the
   place where the bridge (re-)announces itself;
6. incoming messages go to ``on_message``, one at a time, in arrival order.

A connection has one will, so the ``alias_topics`` follow ``will_topic`` only
while the link is in charge: ``online`` at every connect, ``will_payload`` when
:meth:`MqttLink.stop` (or a cancellation) says goodbye. If the process dies
or the network drops, the broker publishes the will on ``will_topic`` alone
and the aliases keep their last (``online``) payload until the next start.

When the session breaks the link waits a capped exponential backoff with full
jitter and starts again; a successful connect resets the backoff.

Persistent session: the link connects with ``clean_session=False`` (MQTT
3.1.1) under its fixed ``client_id``. The broker keeps the subscriptions and
queues QoS 1 messages for them while the link is away, and delivers them right
after the reconnect, so a command sent during a short outage is not lost. The
price: ``client_id`` must be unique per bridge (a second client with the same
id takes the session over), a broker may deliver commands that are old after
a long outage (handlers should be idempotent and check what they are asked),
and subscriptions of an earlier run stay active until the broker expires the
session.

Delivery is at least once: a QoS 1 publish whose PUBACK is lost with the
connection is queued and sent again after the reconnect. Topics that
``reliable`` picks (availability and discovery in the bridge) always go at
QoS 1 or more, whatever QoS their publisher asked for: the one place of that
rule.

The MQTT client is gmqtt (asyncio-native, MQTT 3.1.1 here). Each session uses
a fresh :class:`gmqtt.Client` on one connection, and the link keeps gmqtt
from doing what the link does itself: gmqtt's own reconnects are off (the
link reconnects, with its backoff and a new client), and gmqtt's store of
unacknowledged messages, which it would send again on a reconnect, is
replaced by one that keeps nothing and only tells the link which PUBACK came
(gmqtt has no callback for a PUBACK). A link is single-use: after
:meth:`MqttLink.stop`, :meth:`MqttLink.run` returns at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar, cast

import gmqtt
from gmqtt.mqtt.constants import MQTTv311

from hoymiles_bridge.errors import HoymilesError, InvalidArgumentError, InvalidStateError

_LOGGER = logging.getLogger(__name__)
#: gmqtt's client logs here, under the package's logger tree.
_GMQTT_LOGGER = _LOGGER.getChild("gmqtt")
#: gmqtt's modules log to their own loggers too (a lost connection, a write
#: to a closed socket, each SUBSCRIBE).
_GMQTT_MODULE_LOGGERS: Final = ("gmqtt.mqtt.protocol", "gmqtt.mqtt.package", "gmqtt.mqtt.utils")
#: gmqtt's ERROR lines about what the link does itself: its reconnects are off
#: on purpose, and the link reports a refused connect with its retry.
_HANDLED_ERRORS: Final = (
    "[Client] max number of failed connection attempts",
    "[MqttPackageHandler] not reconnecting",
    "[MqttPackageHandler] CONNACK",
)


class _GmqttLinesAreDebug(logging.Filter):
    """gmqtt logs each connect, subscription and lost connection at INFO or
    WARNING (a lost one with its traceback); the link says what matters on its
    own lines, with its retry. Keep gmqtt's lines for debugging: they become
    DEBUG lines, shown only where DEBUG is on. An ERROR the link does not
    handle stays an ERROR."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.DEBUG:
            return True
        if record.levelno < logging.ERROR or str(record.msg).startswith(_HANDLED_ERRORS):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


for _name in (_GMQTT_LOGGER.name, *_GMQTT_MODULE_LOGGERS):
    logging.getLogger(_name).addFilter(_GmqttLinesAreDebug())

_T = TypeVar("_T")

#: Each broker round trip (CONNACK, SUBACK, PUBACK) must finish within this.
DEFAULT_OPERATION_TIMEOUT: Final = 10.0
#: How long a cancelled run() tries to publish the will payload before leaving.
_GOODBYE_TIMEOUT: Final = 2.0
#: The largest payload MQTT can carry (the remaining-length limit).
_MAX_PAYLOAD: Final = 268_435_455
#: gmqtt's reconnect_retries: it reconnects while its failed attempts are at
#: most this, so any number below 0 other than -1 (unlimited) turns its
#: reconnects off (its stop_reconnect() sets 0, which still allows one).
_NO_RECONNECTS: Final = -2
#: QoS-1 messages of publish_many() that may await their PUBACK at once.
_MAX_OUTSTANDING: Final = 1000
#: publish_many() at QoS 0 lets the event loop run after this many messages,
#: so one big batch (a DTU-Pro's poll, a reconnect) never holds it for long.
_BATCH_SLICE: Final = 64
#: Caps the backoff exponent so ``2**n`` stays a small float.
_MAX_BACKOFF_EXPONENT: Final = 30
#: SUBACK return codes from 0x80 up refuse the subscription.
_SUBACK_FAILURE: Final = 0x80


class _SessionLostError(ConnectionError):
    """The session's connection is gone or closing: nothing more can be sent on it."""


#: A broker problem, which ends a session (never run()).
_BROKER_ERRORS: Final = (gmqtt.MQTTConnectError, OSError)


@dataclass(frozen=True)
class MqttSettings:
    """Where and how to reach the broker. ``password`` never shows in a repr."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    client_id: str = "hoymiles-bridge"
    keepalive: int = 30

    def __post_init__(self) -> None:
        if not self.host:
            raise InvalidArgumentError("MQTT host must not be empty")
        if not 0 < self.port < 65536:
            raise InvalidArgumentError(f"MQTT port must be 1..65535, got {self.port}")
        if not self.client_id:
            raise InvalidArgumentError("MQTT client_id must not be empty")
        if self.keepalive < 1:
            raise InvalidArgumentError(f"MQTT keepalive must be >= 1 s, got {self.keepalive}")


@dataclass(frozen=True)
class MqttMessage:
    """One message received from the broker."""

    topic: str
    payload: bytes
    retain: bool
    qos: int


@dataclass(frozen=True)
class _Outgoing:
    """A publish waiting in the offline queue."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


class _Acknowledgements:
    """Stands in for gmqtt's store of unacknowledged messages (``persistent_storage``).

    gmqtt keeps every QoS 1/2 message until its PUBACK (PUBCOMP), sends the
    stored messages again when a reconnect finds the session present, and has
    no callback for a PUBACK: it only removes the message from this store. The
    link reconnects itself with a new client and queues again what a lost
    session did not acknowledge, so this store keeps no message (gmqtt has
    nothing to send again or to wait for at connect) and only wakes whoever
    waits for a PUBACK: with True when it came, with False when the session
    ended first.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waits: dict[int, asyncio.Future[bool]] = {}
        #: The packet id of the last QoS 1/2 message gmqtt sent: gmqtt's
        #: publish() returns nothing and stores the message right before it returns.
        self.last_mid = 0

    # --- what gmqtt calls ---

    def push_message(self, mid: int, raw_package: object) -> None:
        self.last_mid = mid

    def remove_message_by_mid(self, mid: int) -> None:
        wait = self._waits.pop(mid, None)
        if wait is not None and not wait.done():
            wait.set_result(True)

    @property
    def is_empty(self) -> bool:
        return True

    async def wait_empty(self) -> None:
        return

    def clear(self) -> None:
        return

    def get_all(self) -> list[tuple[int, bytes]]:
        return []

    # --- what the link calls ---

    def expect(self, mid: int) -> asyncio.Future[bool]:
        """The wait for the PUBACK of message ``mid``: True when it came.

        A wait given up (a late PUBACK) stays here until its PUBACK or the end
        of the session; gmqtt keeps its packet id that long too.
        """
        wait = self._loop.create_future()
        self._waits[mid] = wait
        return wait

    def abandon(self) -> None:
        """The session ended: no PUBACK will come, wake every wait with False."""
        waits, self._waits = self._waits, {}
        for wait in waits.values():
            if not wait.done():
                wait.set_result(False)


class _Session:
    """One broker connection: its gmqtt client, its PUBACK waits, what it received."""

    def __init__(self, settings: MqttSettings, will: Any) -> None:
        loop = asyncio.get_running_loop()
        self.acks = _Acknowledgements(loop)
        #: Received messages in arrival order; None once the connection is gone.
        self.inbox: asyncio.Queue[MqttMessage | None] = asyncio.Queue()
        #: Done when the connection is gone (or never came up).
        self.lost: asyncio.Future[None] = loop.create_future()
        self._subacks: dict[int, asyncio.Future[tuple[int, ...]]] = {}
        self._settings = settings
        client = gmqtt.Client(
            settings.client_id,
            # See the module docstring: the broker keeps our subscriptions and
            # queues QoS 1 commands while we are briefly away.
            clean_session=False,
            will_message=will,
            persistent_storage=self.acks,
            logger=_GMQTT_LOGGER,
        )
        client.set_config({"reconnect_retries": _NO_RECONNECTS})
        if settings.username is not None:
            client.set_auth_credentials(settings.username, settings.password)
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        self.client: Any = client
        self._transport: asyncio.WriteTransport | None = None
        self._drain: Callable[[], Awaitable[None]] | None = None

    @property
    def alive(self) -> bool:
        """True from the CONNACK until the connection closes."""
        transport = self._transport
        return transport is not None and not transport.is_closing() and not self.lost.done()

    async def connect(self, timeout: float) -> None:
        """Open the connection and wait for the broker's CONNACK (bounded).

        Raises :class:`gmqtt.MQTTConnectError` when the broker refuses,
        :class:`OSError` when it cannot be reached or closes the connection
        first, :class:`TimeoutError` when no CONNACK comes in time.
        """
        settings = self._settings
        connecting = asyncio.create_task(
            self.client.connect(
                settings.host,
                settings.port,
                ssl=ssl.create_default_context() if settings.tls else False,
                keepalive=settings.keepalive,
                version=MQTTv311,
            ),
            name=f"mqtt-link[{settings.client_id}].connect",
        )
        try:
            await asyncio.wait(
                {connecting, self.lost}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if not connecting.done():
                connecting.cancel()
                await asyncio.wait({connecting})
            if not connecting.cancelled():
                connecting.exception()  # read here too: it may fail as it is cancelled
        if connecting.cancelled():
            if self.lost.done():
                raise _SessionLostError("the broker closed the connection before its CONNACK")
            raise TimeoutError(f"no CONNACK within {timeout} s")
        connecting.result()  # a refusal or a connection error raises here
        connection = getattr(self.client, "_connection", None)
        transport = getattr(connection, "_transport", None)
        if isinstance(transport, asyncio.WriteTransport):
            self._transport = transport
            drain = getattr(getattr(connection, "_protocol", None), "_drain_helper", None)
            if callable(drain):
                self._drain = cast(Callable[[], Awaitable[None]], drain)

    def send(self, item: _Outgoing) -> asyncio.Future[bool] | None:
        """Hand one message to gmqtt, which writes it at once; for QoS 1/2
        return the wait for its PUBACK.

        Raises :class:`_SessionLostError` when the connection is gone or
        closing (gmqtt would drop the message with a warning) or when every
        packet id awaits its PUBACK.
        """
        if not self.alive:
            if self._transport is not None:
                # A connection that closes gracefully (gmqtt's keepalive does
                # that) waits until its buffer is written, for ever if the
                # broker stopped reading: end it, so the session ends too.
                self._transport.abort()
            raise _SessionLostError("the connection to the broker is gone")
        try:
            self.client.publish(item.topic, item.payload, item.qos, item.retain)
        except OverflowError as exc:  # gmqtt: all 65535 packet ids await their PUBACK
            raise _SessionLostError(str(exc)) from exc
        if item.qos == 0:
            return None
        return self.acks.expect(self.acks.last_mid)

    async def publish_acked(self, items: Sequence[_Outgoing], timeout: float) -> None:
        """Send all of ``items`` at once and wait until the broker acknowledged all."""
        waits = [wait for item in items if (wait := self.send(item)) is not None]
        if not waits:
            return
        done, pending = await asyncio.wait(waits, timeout=timeout)
        if pending:
            raise TimeoutError(f"no PUBACK within {timeout} s")
        if not all(wait.result() for wait in done):
            raise _SessionLostError("the connection to the broker was lost")

    async def subscribe(self, topics: Sequence[str], timeout: float) -> None:
        """Subscribe to ``topics`` at QoS 1 in one SUBSCRIBE; wait for its SUBACK."""
        if not topics:
            return
        if not self.alive:
            raise _SessionLostError("the connection to the broker is gone")
        mid = self.client.subscribe([gmqtt.Subscription(topic, qos=1) for topic in topics])
        wait: asyncio.Future[tuple[int, ...]] = asyncio.get_running_loop().create_future()
        self._subacks[mid] = wait
        granted = await self._reply(wait, timeout, "SUBACK")
        for topic, code in zip(topics, granted, strict=False):
            if code >= _SUBACK_FAILURE:
                _LOGGER.warning("The MQTT broker refused the subscription to %s", topic)

    async def written(self, timeout: float) -> None:
        """Wait (bounded) while the connection's write buffer is over its
        high-water mark (asyncio's 64 KiB), as :meth:`asyncio.StreamWriter.drain` does.

        gmqtt hands each message to the transport at once, which sends what
        the socket takes and buffers the rest.
        """
        transport, drain = self._transport, self._drain
        if transport is None or drain is None or transport.get_write_buffer_size() == 0:
            return
        try:
            async with asyncio.timeout(timeout):
                await drain()
        except TimeoutError:
            _LOGGER.debug("MQTT messages are not written yet; the connection keeps them")
        except ConnectionError:
            pass  # lost: QoS 0 lost with its session stays lost

    async def close(self) -> None:
        """Disconnect cleanly (bounded) if the connection is up; drop it in any case."""
        try:
            if self.alive:
                async with asyncio.timeout(_GOODBYE_TIMEOUT):
                    await self.client.disconnect()
        except _BROKER_ERRORS as exc:
            _LOGGER.debug("MQTT disconnect failed: %r", exc)
        finally:
            connection = getattr(self.client, "_connection", None)
            transport = getattr(connection, "_transport", None)
            if isinstance(transport, asyncio.WriteTransport):
                transport.abort()  # a no-op once closed
            self.acks.abandon()

    async def _reply(self, wait: asyncio.Future[_T], timeout: float, what: str) -> _T:
        either: set[asyncio.Future[Any]] = {wait, self.lost}
        done, _ = await asyncio.wait(either, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if wait in done:
            return wait.result()
        if self.lost.done():
            raise _SessionLostError("the connection to the broker was lost")
        raise TimeoutError(f"no {what} within {timeout} s")

    # --- gmqtt's callbacks (synchronous: gmqtt calls them as it reads) ---

    def _on_message(
        self, _client: object, topic: str | bytes, payload: bytes, qos: int, properties: Any
    ) -> None:
        if isinstance(topic, bytes):  # gmqtt passes a topic that is not UTF-8 as bytes
            topic = topic.decode(errors="replace")
        retain = bool(properties.get("retain")) if isinstance(properties, dict) else False
        self.inbox.put_nowait(MqttMessage(topic, bytes(payload), retain, qos))

    def _on_subscribe(self, _client: object, mid: int, granted: Any, _properties: Any) -> None:
        wait = self._subacks.pop(mid, None)
        if wait is not None and not wait.done():
            wait.set_result(tuple(granted))

    def _on_disconnect(self, _client: object, _packet: object, _exc: object = None) -> None:
        if self.lost.done():
            return
        self.lost.set_result(None)
        self.acks.abandon()
        self.inbox.put_nowait(None)


class MqttLink:
    """A self-healing connection to one MQTT broker.

    Start it with ``await link.run()`` in a named task; end it with
    ``await link.stop()``. :meth:`publish` can be called at any time: while the
    link is offline, messages wait in a bounded queue (the oldest is dropped
    when it is full) and are sent in order after the next connect.

    Exceptions from ``on_message`` and ``on_connect`` that are a
    :class:`~hoymiles_bridge.errors.HoymilesError` or a :class:`ValueError`
    (a bad payload) are logged on one line and the link goes on; any other
    exception is a bug and ends :meth:`run`.
    """

    def __init__(
        self,
        settings: MqttSettings,
        *,
        will_topic: str,
        will_payload: str = "offline",
        online_payload: str = "online",
        alias_topics: Sequence[str] = (),
        subscriptions: Sequence[str] = (),
        on_connect: Callable[[], Awaitable[None]] | None = None,
        on_message: Callable[[MqttMessage], Awaitable[None]] | None = None,
        on_disconnect: Callable[[], None] | None = None,
        max_queue: int = 10000,
        max_outstanding: int = _MAX_OUTSTANDING,
        backoff_initial: float = 1.0,
        backoff_max: float = 60.0,
        operation_timeout: float = DEFAULT_OPERATION_TIMEOUT,
        reliable: Callable[[str], bool] | None = None,
    ) -> None:
        _check_topic(will_topic)
        for alias in alias_topics:
            _check_topic(alias)
        if max_queue < 0:
            raise InvalidArgumentError(f"max_queue must be >= 0, got {max_queue}")
        if backoff_initial <= 0 or backoff_max < backoff_initial:
            raise InvalidArgumentError(
                f"need 0 < backoff_initial <= backoff_max, got {backoff_initial}, {backoff_max}"
            )
        if operation_timeout <= 0:
            raise InvalidArgumentError(f"operation_timeout must be > 0, got {operation_timeout}")
        if any(not topic for topic in subscriptions):
            raise InvalidArgumentError("subscription topics must not be empty")
        self._settings = settings
        self._will_topic = will_topic
        self._will_payload = will_payload
        self._online_payload = online_payload
        self._alias_topics = tuple(alias_topics)
        self._subscriptions = tuple(subscriptions)
        self._on_connect = on_connect
        #: Called (synchronously, must not block) each time a broker session ends.
        self._on_disconnect = on_disconnect
        self._on_message = on_message
        self._max_queue = max_queue
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._operation_timeout = operation_timeout
        #: Picks the topics that always go at QoS 1 or more (None: none).
        self._reliable = reliable

        self._queue: deque[_Outgoing] = deque()
        self._current: _Session | None = None  # set while a session is open
        self._ready = asyncio.Event()  # set once a session has flushed the queue
        self._stop_requested = asyncio.Event()  # set by stop(); also ends the backoff sleep
        self._run_task: asyncio.Task[None] | None = None
        self._session_task: asyncio.Task[None] | None = None
        self._finished = asyncio.Event()
        self._failures = 0  # failed attempts since the last successful connect
        self._drop_warned = False

        self._connects = 0
        self._disconnects = 0
        self._published = 0
        self._outstanding = asyncio.Semaphore(max_outstanding)
        self._dropped = 0
        self._received = 0
        self._last_error: str | None = None

    # --- state and counters --------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while a session is up and the offline queue has been flushed."""
        return self._ready.is_set()

    @property
    def connects(self) -> int:
        """Successful connects so far."""
        return self._connects

    @property
    def disconnects(self) -> int:
        """Sessions that ended, for any reason."""
        return self._disconnects

    @property
    def published(self) -> int:
        """Messages from :meth:`publish` that reached the broker (status payloads excluded)."""
        return self._published

    @property
    def dropped(self) -> int:
        """Messages dropped because the offline queue was full."""
        return self._dropped

    @property
    def received(self) -> int:
        """Messages received from the broker."""
        return self._received

    @property
    def queued(self) -> int:
        """Messages waiting for the next connect."""
        return len(self._queue)

    @property
    def last_error(self) -> str | None:
        """The last connection problem, or None if there was none yet."""
        return self._last_error

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until :attr:`connected` is true; raise :class:`TimeoutError` after ``timeout``."""
        async with asyncio.timeout(timeout):
            await self._ready.wait()

    # --- public API -----------------------------------------------------------

    async def run(self) -> None:
        """Keep a session to the broker until :meth:`stop` is called or the task is cancelled."""
        run_task = asyncio.current_task()
        if run_task is None:
            raise InvalidStateError("MqttLink.run() must run in a task")
        if self._run_task is not None:
            raise InvalidStateError("MqttLink.run() is already running")
        self._run_task = run_task
        self._finished.clear()
        try:
            while not self._stop_requested.is_set():
                session = asyncio.create_task(
                    self._session(), name=f"mqtt-link[{self._settings.client_id}].session"
                )
                self._session_task = session
                try:
                    # Shielded: a cancellation of run() must not depend on the
                    # session passing it on; _end() makes sure it is over.
                    await asyncio.shield(session)
                except asyncio.CancelledError:
                    if run_task.cancelling() or not self._stop_requested.is_set():
                        await self._end(session)
                        raise
                    break  # stop() ended the session
                except _BROKER_ERRORS as exc:
                    if run_task.cancelling():
                        raise asyncio.CancelledError from exc
                    delay = self._note_failure(exc)
                else:
                    if run_task.cancelling():
                        raise asyncio.CancelledError
                    delay = self._note_failure(None)
                if not self._stop_requested.is_set():
                    await self._sleep_unless_stopped(delay)
        finally:
            self._session_task = None
            self._run_task = None
            self._finished.set()

    async def _end(self, session: asyncio.Task[None]) -> None:
        """Cancel the session and wait (bounded) until it is really over."""
        for _ in range(3):
            if session.done():
                break
            session.cancel()
            await asyncio.wait({session}, timeout=2 * _GOODBYE_TIMEOUT + 1)
        if session.done() and not session.cancelled() and session.exception() is not None:
            _LOGGER.debug("MQTT session ended with %r", session.exception())

    async def publish(
        self, topic: str, payload: str | bytes, *, retain: bool = False, qos: int = 0
    ) -> None:
        """Publish now when connected, else queue the message for the next connect.

        For ``qos >= 1`` this waits for the broker's PUBACK. A broker problem
        never raises: the message is queued instead. Raises
        :class:`~hoymiles_bridge.errors.InvalidArgumentError` for an invalid
        topic, QoS or payload size.
        """
        _check_topic(topic)
        if qos not in (0, 1, 2):
            raise InvalidArgumentError(f"qos must be 0, 1 or 2, got {qos}")
        if qos == 0 and self._reliable is not None and self._reliable(topic):
            qos = 1
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        if len(data) > _MAX_PAYLOAD:
            raise InvalidArgumentError(f"payload of {len(data)} bytes is too large for MQTT")
        item = _Outgoing(topic, data, qos, retain)
        session = self._current
        if session is None or not self._ready.is_set():
            self._enqueue(item)
            return
        try:
            wait = session.send(item)
        except _SessionLostError as exc:
            _LOGGER.debug("Publish to %s failed (%s), queued for the next connect", topic, exc)
            self._enqueue(item)
            return
        if wait is not None:
            try:
                async with asyncio.timeout(self._operation_timeout):
                    acknowledged = await wait
            except TimeoutError:
                # Still connected: only the PUBACK is late. The message is
                # written; queueing it too would send it twice and fill the
                # queue under load.
                _LOGGER.debug("PUBACK for %s is late", topic)
                return
            if not acknowledged:
                # The session ended before the PUBACK: send it with the next one.
                self._enqueue(item)
                return
        self._published += 1

    async def publish_many(
        self, items: Sequence[tuple[str, str]], *, retain: bool = False, qos: int = 0
    ) -> None:
        """Publish a batch; wait until the broker acknowledged all of it (QoS 1)
        or until it is on its way (QoS 0: written, or buffered below the
        connection's high-water mark).

        The same contract as :meth:`publish` (queued while offline, never
        raises on a broker problem), but much cheaper per message: a poll's
        few dozen topics go to gmqtt in one go instead of one awaited call
        each, which is what limits the bridge with hundreds of DTUs
        (benchmarks/bench_publishing.py). At most ``max_outstanding`` QoS 1
        messages of all batches await their PUBACK at once. The topics
        ``reliable`` picks go first, at QoS 1, when ``qos`` is 0.
        """
        if qos not in (0, 1, 2):
            raise InvalidArgumentError(f"qos must be 0, 1 or 2, got {qos}")
        reliable = self._reliable
        if qos == 0 and reliable is not None:
            upgraded = [item for item in items if reliable(item[0])]
            if upgraded:
                await self.publish_many(upgraded, retain=retain, qos=1)
                items = [item for item in items if not reliable(item[0])]
        batch = []
        for topic, payload in items:
            _check_topic(topic)
            batch.append(_Outgoing(topic, payload.encode(), qos, retain))
        session = self._current
        if session is None or not self._ready.is_set():
            for item in batch:
                self._enqueue(item)
            return
        if qos == 0:
            await self._publish_unacknowledged(session, batch)
            return
        waits: deque[tuple[asyncio.Future[bool], _Outgoing]] = deque()
        try:
            for index, item in enumerate(batch):
                await self._take_window(waits)
                try:
                    wait = session.send(item)
                except _SessionLostError:
                    self._outstanding.release()
                    # The connection just went away: keep the rest for the next one.
                    for rest in batch[index:]:
                        self._enqueue(rest)
                    break
                self._published += 1
                if wait is None:  # not reached: qos > 0
                    self._outstanding.release()
                    continue
                waits.append((wait, item))
            while waits:
                await self._await_puback(waits.popleft())
        finally:
            for _ in waits:  # cancelled: give the window back
                self._outstanding.release()

    async def _publish_unacknowledged(self, session: _Session, batch: list[_Outgoing]) -> None:
        """QoS 0: hand the batch to gmqtt, then wait while the connection's
        write buffer is full.

        gmqtt writes each message to the connection at once, in order, so one
        wait covers the batch: a poll's latency ends when its data is on its
        way, and a slow broker holds the next poll back.
        """
        for index, item in enumerate(batch):
            try:
                session.send(item)
            except _SessionLostError:
                # The connection just went away: keep the rest for the next one.
                for rest in batch[index:]:
                    self._enqueue(rest)
                return
            self._published += 1
            if index % _BATCH_SLICE == _BATCH_SLICE - 1 and index + 1 < len(batch):
                await asyncio.sleep(0)
        await session.written(self._operation_timeout)

    async def _take_window(self, waits: deque[tuple[asyncio.Future[bool], _Outgoing]]) -> None:
        """One place in the window of unacknowledged QoS 1 messages.

        Room is made from ``waits`` (the caller's own oldest messages) first, so
        a batch larger than the window never waits on itself.
        """
        while self._outstanding.locked() and waits:
            await self._await_puback(waits.popleft())
        await self._outstanding.acquire()

    async def _await_puback(self, wait: tuple[asyncio.Future[bool], _Outgoing]) -> None:
        """Wait (bounded) for one PUBACK, give its window credit back; queue the
        message again if its session ended first."""
        future, item = wait
        try:
            if future.done():
                acknowledged = future.result()
            else:
                async with asyncio.timeout(self._operation_timeout):
                    acknowledged = await future
        except TimeoutError:
            _LOGGER.debug("PUBACK for %s is late", item.topic)
            return
        finally:
            self._outstanding.release()
        if not acknowledged:  # its session ended first
            self._enqueue(item)

    async def stop(self) -> None:
        """Publish the will payload (if connected), disconnect cleanly and end :meth:`run`."""
        self._stop_requested.set()
        session = self._current
        if session is not None:
            await self._say_goodbye(session)  # bounded: a busy link must not hold up a stop
        current = asyncio.current_task()
        session_task = self._session_task
        if session_task is not None and session_task is not current:
            await self._end(session_task)
        if self._run_task is not None and current not in (self._run_task, session_task):
            await self._finished.wait()

    # --- one session -----------------------------------------------------------

    async def _session(self) -> None:
        settings = self._settings
        will = gmqtt.Message(self._will_topic, self._will_payload, qos=1, retain=True)
        session = _Session(settings, will)
        try:
            await session.connect(self._operation_timeout)
            self._current = session
            self._connects += 1
            self._failures = 0
            self._drop_warned = False
            _LOGGER.info(
                "Connected to MQTT broker %s:%d as %s",
                settings.host,
                settings.port,
                settings.client_id,
            )
            try:
                await self._serve(session)
            finally:
                if session.alive and not self._stop_requested.is_set():
                    # Cancelled without stop(), or a bug in a handler: the
                    # clean DISCONNECT that follows would discard the will,
                    # so say it ourselves.
                    await self._say_goodbye(session)
                self._current = None
                self._ready.clear()
                self._disconnects += 1
                # Wake every wait for a PUBACK of this session: none will come.
                # Without this each waiting publish would sit out its whole
                # operation timeout, one after the other, and the DTU session
                # publishing a poll would stall that long (found by
                # benchmarks/bench_soak.py). The woken waits queue their
                # message again for the next session (QoS 1 allows the duplicate).
                session.acks.abandon()
                if self._on_disconnect is not None:
                    self._on_disconnect()
        finally:
            await session.close()

    async def _serve(self, session: _Session) -> None:
        if self._stop_requested.is_set():
            # stop() came while we were connecting: our clean DISCONNECT will
            # discard the will, so say it ourselves.
            await self._say_goodbye(session)
            return
        online = self._online_payload.encode()
        await session.publish_acked(
            [
                _Outgoing(topic, online, 1, True)
                for topic in (self._will_topic, *self._alias_topics)
            ],
            self._operation_timeout,
        )
        await session.subscribe(self._subscriptions, self._operation_timeout)
        await self._flush(session)
        if not session.alive:
            raise _SessionLostError("the connection to the broker was lost")
        self._ready.set()
        if self._on_connect is not None:
            try:
                await self._on_connect()
            except (HoymilesError, ValueError) as exc:
                _LOGGER.warning("MQTT on_connect handler failed: %s", exc)
        await self._dispatch(session)

    async def _flush(self, session: _Session) -> None:
        """Send the offline queue, oldest first; wait for the PUBACKs of its QoS 1 part."""
        flushed = 0
        waits: deque[tuple[asyncio.Future[bool], _Outgoing]] = deque()
        try:
            # Until the queue is empty and nothing awaits its PUBACK: what is
            # published meanwhile is queued too (the link is not ready yet),
            # and ready follows without a pause in which more could come.
            while self._queue or waits:
                if not self._queue:
                    await self._await_puback(waits.popleft())
                    continue
                item = self._queue.popleft()
                if item.qos > 0:
                    await self._take_window(waits)
                try:
                    wait = session.send(item)
                except _SessionLostError:
                    if item.qos > 0:
                        self._outstanding.release()
                    self._requeue_front(item)
                    raise
                self._published += 1
                flushed += 1
                if wait is not None:
                    waits.append((wait, item))
                if flushed % _BATCH_SLICE == 0:
                    await asyncio.sleep(0)  # a long queue must not hold the loop
        finally:
            for _ in waits:
                self._outstanding.release()
        if flushed:
            _LOGGER.info("Sent %d MQTT messages queued while offline", flushed)

    async def _dispatch(self, session: _Session) -> None:
        handler = self._on_message
        while True:
            received = await session.inbox.get()
            if received is None:
                raise _SessionLostError("the connection to the broker was lost")
            self._received += 1
            if handler is None:
                continue
            try:
                await handler(received)
            except (HoymilesError, ValueError) as exc:
                _LOGGER.warning("MQTT message on %s rejected: %s", received.topic, exc)
                _LOGGER.debug("Details of the rejected message on %s", received.topic, exc_info=exc)

    async def _say_goodbye(self, session: _Session) -> None:
        """The will payload on the will topic and its aliases, all at once (bounded)."""
        goodbye = self._will_payload.encode()
        try:
            await session.publish_acked(
                [_Outgoing(t, goodbye, 1, True) for t in (self._will_topic, *self._alias_topics)],
                _GOODBYE_TIMEOUT,
            )
        except _BROKER_ERRORS as exc:
            _LOGGER.debug("Could not publish %r on leaving: %s", self._will_payload, exc)

    # --- helpers ---------------------------------------------------------------

    def _note_failure(self, exc: BaseException | None) -> float:
        """Record a failed or ended session; return the delay before the next attempt."""
        reason = "the session ended" if exc is None else (str(exc) or type(exc).__name__)
        self._last_error = reason
        exponent = min(self._failures, _MAX_BACKOFF_EXPONENT)
        delay = min(self._backoff_max, self._backoff_initial * 2.0**exponent) * random.random()
        level = logging.WARNING if self._failures == 0 else logging.DEBUG
        _LOGGER.log(
            level,
            "MQTT broker %s:%d unavailable (%s); retrying in %.1f s",
            self._settings.host,
            self._settings.port,
            reason,
            delay,
        )
        self._failures += 1
        return delay

    async def _sleep_unless_stopped(self, delay: float) -> None:
        try:
            async with asyncio.timeout(delay):
                await self._stop_requested.wait()
        except TimeoutError:
            pass

    def _enqueue(self, item: _Outgoing) -> None:
        if len(self._queue) >= self._max_queue:
            if not self._queue:  # max_queue == 0: queueing is disabled
                self._count_drop(item)
                return
            self._count_drop(self._queue.popleft())
        self._queue.append(item)

    def _requeue_front(self, item: _Outgoing) -> None:
        if len(self._queue) >= self._max_queue:
            self._count_drop(item)  # it is the oldest message
        else:
            self._queue.appendleft(item)

    def _count_drop(self, item: _Outgoing) -> None:
        self._dropped += 1
        level = logging.DEBUG if self._drop_warned else logging.WARNING
        self._drop_warned = True
        _LOGGER.log(
            level,
            "MQTT offline queue full (%d messages): dropped the oldest, for %s",
            self._max_queue,
            item.topic,
        )


def _check_topic(topic: str) -> None:
    if not topic or "+" in topic or "#" in topic or "\0" in topic:
        raise InvalidArgumentError(f"invalid MQTT topic for publishing: {topic!r}")


def _payload_bytes(payload: object) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    if payload is None:
        return b""
    return str(payload).encode()
