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
connection is queued and sent again after the reconnect.

Each session uses a fresh :class:`aiomqtt.Client`; aiomqtt's client is
reusable, but it keeps per-connection futures that are simplest to discard.
A link is single-use: after :meth:`MqttLink.stop`, :meth:`MqttLink.run`
returns at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import aiomqtt
import paho.mqtt.client as mqtt

from hoymiles_bridge.errors import HoymilesError, InvalidArgumentError, InvalidStateError

_LOGGER = logging.getLogger(__name__)
#: paho-mqtt's own log lines (mostly DEBUG), under the package's logger tree.
_PAHO_LOGGER = _LOGGER.getChild("paho")


class _SocketErrorsAreDebug(logging.Filter):
    """paho logs a dropped broker connection at ERROR ("failed to receive on socket");
    the link already says so, with its retry, at WARNING: keep paho's line for debugging."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and str(record.msg).startswith("failed to "):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


_PAHO_LOGGER.addFilter(_SocketErrorsAreDebug())

#: Each broker round trip (CONNACK, SUBACK, PUBACK) must finish within this.
DEFAULT_OPERATION_TIMEOUT: Final = 10.0
#: How long a cancelled run() tries to publish the will payload before leaving.
_GOODBYE_TIMEOUT: Final = 2.0
#: The largest payload MQTT can carry (the remaining-length limit).
_MAX_PAYLOAD: Final = 268_435_455
#: Concurrent publish calls handed to aiomqtt at once (more wait their turn).
_MAX_CONCURRENT_CALLS: Final = 256
#: paho's own in-flight limit: 0 = none. With a limit paho walks every
#: outstanding message on each PUBACK (quadratic under load); the link bounds
#: what is outstanding itself (_MAX_OUTSTANDING) instead.
_MAX_INFLIGHT: Final = 0
#: QoS-1 messages of publish_many() that may await their PUBACK at once.
_MAX_OUTSTANDING: Final = 1000
#: publish_many() at QoS 0 lets the event loop run after this many messages,
#: so one big batch (a DTU-Pro's poll, a reconnect) never holds it for long.
_BATCH_SLICE: Final = 64
#: Caps the backoff exponent so ``2**n`` stays a small float.
_MAX_BACKOFF_EXPONENT: Final = 30


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
        #: publish_many's PUBACK waits, and those woken because their session
        #: ended (see _abandon_pubacks); both are emptied as the waits end.
        self._own_waits: set[asyncio.Event] = set()
        self._abandoned: set[asyncio.Event] = set()
        #: Called (synchronously, must not block) each time a broker session ends.
        self._on_disconnect = on_disconnect
        self._on_message = on_message
        self._max_queue = max_queue
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._operation_timeout = operation_timeout

        self._queue: deque[_Outgoing] = deque()
        self._client: aiomqtt.Client | None = None  # set while a session is open
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
                    # session passing it on (inside aiomqtt a cancellation can be
                    # taken for a disconnect and swallowed); _end() makes sure.
                    await asyncio.shield(session)
                except asyncio.CancelledError:
                    if run_task.cancelling() or not self._stop_requested.is_set():
                        await self._end(session)
                        raise
                    break  # stop() ended the session
                except (aiomqtt.MqttError, OSError) as exc:
                    if run_task.cancelling():
                        # Our cancellation reached the session, which ended as a
                        # "disconnect" instead of passing it on: honour it here.
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
            await asyncio.wait({session}, timeout=_GOODBYE_TIMEOUT + 1)
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
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        if len(data) > _MAX_PAYLOAD:
            raise InvalidArgumentError(f"payload of {len(data)} bytes is too large for MQTT")
        item = _Outgoing(topic, data, qos, retain)
        while True:
            client = self._client
            if client is None or not self._ready.is_set():
                self._enqueue(item)
                return
            try:
                await client.publish(topic, data, qos=qos, retain=retain)
                if qos > 0 and self._client is not client:
                    # The session ended before the PUBACK: send it with the next one.
                    self._enqueue(item)
                    return
            except aiomqtt.MqttError as exc:
                if self._client is not client:
                    continue  # a new session came up while we waited: send it there
                if self._ready.is_set():
                    # Still connected: only the wait for the PUBACK ran out. paho
                    # keeps the message and delivers it; queueing it too would
                    # send it twice and fill the queue under load.
                    _LOGGER.debug("PUBACK for %s is late (%s); paho keeps the message", topic, exc)
                    return
                _LOGGER.debug("Publish to %s failed (%s), queued for the next connect", topic, exc)
                self._enqueue(item)
                return
            self._published += 1
            return

    async def publish_many(
        self, items: Sequence[tuple[str, str]], *, retain: bool = False, qos: int = 0
    ) -> None:
        """Publish a batch; wait until the broker acknowledged all of it (QoS 1)
        or until its last message was written to the socket (QoS 0).

        The same contract as :meth:`publish` (queued while offline, never
        raises on a broker problem), but much cheaper per message: a poll's
        few dozen topics go to paho in one go instead of one awaited call each,
        which is what limits the bridge with hundreds of DTUs
        (benchmarks/bench_publishing.py). Falls back to :meth:`publish` when the
        aiomqtt client does not expose what this needs.
        """
        if qos not in (0, 1, 2):
            raise InvalidArgumentError(f"qos must be 0, 1 or 2, got {qos}")
        batch = []
        for topic, payload in items:
            _check_topic(topic)
            batch.append(_Outgoing(topic, payload.encode(), qos, retain))
        client = self._client
        paho = getattr(client, "_client", None)
        pending = getattr(client, "_pending_publishes", None)
        if client is None or not self._ready.is_set():
            for item in batch:
                self._enqueue(item)
            return
        if paho is None or not isinstance(pending, dict):
            await asyncio.gather(
                *(self.publish(i.topic, i.payload, retain=retain, qos=qos) for i in batch)
            )
            return
        if qos == 0:
            await self._publish_unacknowledged(paho, pending, batch)
            return
        waits: deque[tuple[int, asyncio.Event, _Outgoing]] = deque()
        try:
            for index, item in enumerate(batch):
                if qos > 0:
                    # Make room from this batch's own oldest messages first, so a
                    # batch larger than the window never waits on itself.
                    while self._outstanding.locked() and waits:
                        await self._await_puback(pending, waits.popleft())
                    await self._outstanding.acquire()
                info = paho.publish(item.topic, item.payload, item.qos, item.retain)
                if info.rc != mqtt.MQTT_ERR_SUCCESS:
                    if qos > 0:
                        self._outstanding.release()
                    # The connection just went away: keep the rest for the next one.
                    for rest in batch[index:]:
                        self._enqueue(rest)
                    break
                self._published += 1
                if qos == 0:
                    continue
                if info.is_published():
                    self._outstanding.release()
                    continue
                event = asyncio.Event()
                pending[info.mid] = event  # aiomqtt's on_publish sets it on PUBACK
                self._own_waits.add(event)
                waits.append((info.mid, event, item))
            while waits:
                await self._await_puback(pending, waits.popleft())
        finally:
            for wait in waits:  # cancelled: give the window back
                self._forget(pending, wait)

    async def _publish_unacknowledged(
        self, paho: mqtt.Client, pending: dict[int, asyncio.Event], batch: list[_Outgoing]
    ) -> None:
        """QoS 0: hand the batch to paho, then wait until its last message is written.

        paho writes in order and tells aiomqtt (``on_publish``) when a QoS 0
        message left, so one wait covers the batch: a poll's latency ends when
        its data is on its way, and a slow broker holds the next poll back.
        """
        last: mqtt.MQTTMessageInfo | None = None
        for index, item in enumerate(batch):
            info = paho.publish(item.topic, item.payload, 0, item.retain)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                # The connection just went away: keep the rest for the next one.
                for rest in batch[index:]:
                    self._enqueue(rest)
                break
            self._published += 1
            last = info
            if index % _BATCH_SLICE == _BATCH_SLICE - 1 and index + 1 < len(batch):
                await asyncio.sleep(0)  # paho writes what it has meanwhile
                if paho is not getattr(self._client, "_client", None):
                    # The session ended: queue the rest for the next one.
                    for rest in batch[index + 1 :]:
                        self._enqueue(rest)
                    return
        if last is None or last.is_published():
            return
        written = asyncio.Event()
        pending[last.mid] = written  # aiomqtt's on_publish sets it once written
        self._own_waits.add(written)
        try:
            async with asyncio.timeout(self._operation_timeout):
                await written.wait()
        except TimeoutError:
            _LOGGER.debug("Message %d is not written yet; paho keeps it", last.mid)
        finally:
            self._own_waits.discard(written)
            self._abandoned.discard(written)  # QoS 0 lost with its session stays lost
            if pending.get(last.mid) is written:
                del pending[last.mid]

    async def _await_puback(
        self, pending: dict[int, asyncio.Event], wait: tuple[int, asyncio.Event, _Outgoing]
    ) -> None:
        try:
            async with asyncio.timeout(self._operation_timeout):
                await wait[1].wait()
        except TimeoutError:
            # A late PUBACK: paho still holds the message and delivers it.
            _LOGGER.debug("PUBACK for message %d is late", wait[0])
        finally:
            self._forget(pending, wait)
        if wait[1] in self._abandoned:  # its session ended first
            self._abandoned.discard(wait[1])
            self._enqueue(wait[2])

    def _forget(
        self, pending: dict[int, asyncio.Event], wait: tuple[int, asyncio.Event, _Outgoing]
    ) -> None:
        mid, event, _item = wait
        self._own_waits.discard(event)
        if pending.get(mid) is event:
            del pending[mid]
        self._outstanding.release()

    async def stop(self) -> None:
        """Publish the will payload (if connected), disconnect cleanly and end :meth:`run`."""
        self._stop_requested.set()
        client = self._client
        if client is not None:
            await self._say_goodbye(client)  # bounded: a busy link must not hold up a stop
        current = asyncio.current_task()
        session = self._session_task
        if session is not None and session is not current:
            # Cancel until it is really over: a cancellation that lands while
            # aiomqtt is still connecting can be swallowed (bounded, see _end).
            await self._end(session)
        if self._run_task is not None and current not in (self._run_task, session):
            await self._finished.wait()

    # --- one session -----------------------------------------------------------

    async def _session(self) -> None:
        settings = self._settings
        client = aiomqtt.Client(
            hostname=settings.host,
            port=settings.port,
            username=settings.username,
            password=settings.password,
            identifier=settings.client_id,
            # See the module docstring: the broker keeps our subscriptions and
            # queues QoS 1 commands while we are briefly away.
            clean_session=False,
            keepalive=settings.keepalive,
            will=aiomqtt.Will(self._will_topic, self._will_payload, qos=1, retain=True),
            tls_params=aiomqtt.TLSParameters() if settings.tls else None,
            timeout=self._operation_timeout,
            logger=_PAHO_LOGGER,
            max_queued_outgoing_messages=self._max_queue,
            # A poll publishes a few dozen topics at once and many DTUs may
            # poll together. aiomqtt's bookkeeping of pending calls grows with
            # the square of their number, so cap them; and let paho keep more
            # than its default 20 QoS-1 messages in flight (the benchmark in
            # benchmarks/bench_bridge.py measured both).
            max_concurrent_outgoing_calls=_MAX_CONCURRENT_CALLS,
            max_inflight_messages=_MAX_INFLIGHT,
        )
        # A poll publishes dozens of topics at once; aiomqtt warns above 10
        # concurrent publishes, which is normal here.
        client.pending_calls_threshold = self._max_queue
        try:
            async with client:
                self._client = client
                self._connects += 1
                self._failures = 0
                self._drop_warned = False
                _LOGGER.info(
                    "Connected to MQTT broker %s:%d as %s",
                    settings.host,
                    settings.port,
                    settings.client_id,
                )
                lost = False
                try:
                    await self._serve(client)
                except aiomqtt.MqttError:
                    lost = True
                    raise
                finally:
                    if not lost and not self._stop_requested.is_set():
                        # Cancelled without stop(), or a bug in a handler: the
                        # clean DISCONNECT that follows would discard the will,
                        # so say it ourselves.
                        await self._say_goodbye(client)
                    self._client = None
                    self._ready.clear()
                    self._disconnects += 1
                    self._abandon_pubacks(client)
                    if self._on_disconnect is not None:
                        self._on_disconnect()
        finally:
            _read_disconnect_error(client)

    def _abandon_pubacks(self, client: aiomqtt.Client) -> None:
        """Wake every wait for a PUBACK of the session that ended: none will come.

        Without this each waiting publish would sit out its whole operation
        timeout, one after the other, and the DTU session publishing a poll
        would stall that long (found by benchmarks/bench_soak.py). The woken
        waiters see their event in :attr:`_abandoned` and queue the message
        again for the next session (QoS 1 allows the duplicate).
        """
        pending = getattr(client, "_pending_publishes", None)
        if not isinstance(pending, dict):
            return
        for event in list(pending.values()):
            if isinstance(event, asyncio.Event) and not event.is_set():
                if event in self._own_waits:
                    self._abandoned.add(event)
                event.set()  # aiomqtt's own waits: publish() sees the session gone

    async def _serve(self, client: aiomqtt.Client) -> None:
        if self._stop_requested.is_set():
            # stop() came while we were connecting: our clean DISCONNECT will
            # discard the will, so say it ourselves.
            await self._say_goodbye(client)
            return
        for topic in (self._will_topic, *self._alias_topics):
            await client.publish(topic, self._online_payload, qos=1, retain=True)
        for topic in self._subscriptions:
            await client.subscribe(topic, qos=1)
        await self._flush(client)
        self._ready.set()
        if self._on_connect is not None:
            try:
                await self._on_connect()
            except (HoymilesError, ValueError) as exc:
                _LOGGER.warning("MQTT on_connect handler failed: %s", exc)
        await self._dispatch(client)

    async def _flush(self, client: aiomqtt.Client) -> None:
        flushed = 0
        while self._queue:
            item = self._queue.popleft()
            try:
                await client.publish(item.topic, item.payload, qos=item.qos, retain=item.retain)
            except aiomqtt.MqttError:
                self._requeue_front(item)
                raise
            self._published += 1
            flushed += 1
        if flushed:
            _LOGGER.info("Sent %d MQTT messages queued while offline", flushed)

    async def _dispatch(self, client: aiomqtt.Client) -> None:
        handler = self._on_message
        async for message in client.messages:
            self._received += 1
            if handler is None:
                continue
            received = MqttMessage(
                topic=message.topic.value,
                payload=_payload_bytes(message.payload),
                retain=message.retain,
                qos=message.qos,
            )
            try:
                await handler(received)
            except (HoymilesError, ValueError) as exc:
                _LOGGER.warning("MQTT message on %s rejected: %s", received.topic, exc)
                _LOGGER.debug("Details of the rejected message on %s", received.topic, exc_info=exc)

    async def _say_goodbye(self, client: aiomqtt.Client) -> None:
        """The will payload on the will topic and its aliases, all at once (bounded)."""
        goodbyes = [
            asyncio.create_task(
                client.publish(
                    topic, self._will_payload, qos=1, retain=True, timeout=_GOODBYE_TIMEOUT
                ),
                name=f"mqtt-link[{self._settings.client_id}].goodbye[{topic}]",
            )
            for topic in (self._will_topic, *self._alias_topics)
        ]
        results = await asyncio.gather(*goodbyes, return_exceptions=True)
        for result in results:
            if isinstance(result, aiomqtt.MqttError):
                _LOGGER.debug(
                    "Could not publish %r on cancellation: %s", self._will_payload, result
                )
            elif isinstance(result, BaseException):
                raise result  # not a broker problem: as before, it is not hidden

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


def _read_disconnect_error(client: aiomqtt.Client) -> None:
    """Mark an ended session's disconnect error as seen.

    When the connection drops, aiomqtt stores the error in a future that only
    a later ``__aexit__`` or message wait would read; once the session is over
    nobody does, and asyncio logs "Future exception was never retrieved" at
    exit. The link has already handled the disconnect, so read it here.
    """
    future = getattr(client, "_disconnected", None)
    if isinstance(future, asyncio.Future) and future.done() and not future.cancelled():
        future.exception()


def _check_topic(topic: str) -> None:
    if not topic or "+" in topic or "#" in topic or "\0" in topic:
        raise InvalidArgumentError(f"invalid MQTT topic for publishing: {topic!r}")


def _payload_bytes(payload: object) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    if payload is None:
        return b""
    return str(payload).encode()
