"""MqttLink against a real Mosquitto: will, queueing, reconnects, handlers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiomqtt
import pytest

from hoymiles_bridge.errors import InvalidArgumentError
from hoymiles_bridge.mqtt.link import MqttLink, MqttMessage, MqttSettings

from .conftest_mqtt import mosquitto_fixture  # noqa: F401 - provides `mosquitto`
from .mosquitto import HOST, Mosquitto, Subscriber, TcpProxy

pytestmark = pytest.mark.timeout(30)

STATUS = "hmtest/status"
BACKOFF_INITIAL = 0.1
BACKOFF_MAX = 0.5


def make_link(port: int, client_id: str = "link-under-test", **kwargs: object) -> MqttLink:
    options: dict[str, object] = {
        "will_topic": STATUS,
        "backoff_initial": BACKOFF_INITIAL,
        "backoff_max": BACKOFF_MAX,
        **kwargs,
    }
    settings = MqttSettings(port=port, client_id=client_id, keepalive=5)
    return MqttLink(settings, **options)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running(link: MqttLink, *, connect: bool = True) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(link.run(), name="test-mqtt-link")
    try:
        if connect:
            await link.wait_connected(5)
        yield task
    finally:
        if not task.done():
            await link.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - polls plain attributes
            await asyncio.sleep(0.02)


async def send(port: int, topic: str, payload: str, *, qos: int = 1) -> None:
    async with aiomqtt.Client(HOST, port) as client:
        await client.publish(topic, payload, qos=qos)


def recorder() -> tuple[list[MqttMessage], Callable[[MqttMessage], Awaitable[None]]]:
    seen: list[MqttMessage] = []

    async def on_message(message: MqttMessage) -> None:
        seen.append(message)

    return seen, on_message


async def test_round_trip(mosquitto: Mosquitto) -> None:
    seen, on_message = recorder()
    link = make_link(mosquitto.port, subscriptions=["hmtest/cmd/#"], on_message=on_message)
    async with Subscriber(mosquitto.port, "hmtest/state/#") as sub, running(link):
        await link.publish("hmtest/state/power", "42.5", qos=1)
        assert await sub.wait_for("hmtest/state/power") == b"42.5"
        await link.publish("hmtest/state/raw", b"\x00\x01", retain=True)
        assert await sub.wait_for("hmtest/state/raw") == b"\x00\x01"

        await send(mosquitto.port, "hmtest/cmd/limit", "80")
        await wait_until(lambda: len(seen) == 1)
        assert seen[0] == MqttMessage("hmtest/cmd/limit", b"80", retain=False, qos=1)
        assert link.published == 2
        assert link.received == 1
        assert link.connects == 1
        assert link.last_error is None


async def test_topics_the_rule_picks_go_at_qos_1_whatever_was_asked(mosquitto: Mosquitto) -> None:
    link = make_link(mosquitto.port, reliable=lambda topic: topic.endswith("/available"))
    async with Subscriber(mosquitto.port, "hmtest/state/#") as sub, running(link):
        await link.publish_many(
            [("hmtest/state/a/available", "online"), ("hmtest/state/a/power", "1")], retain=True
        )
        await link.publish("hmtest/state/b/available", "offline", retain=True)
        await link.publish("hmtest/state/b/power", "2")
        await sub.wait_for("hmtest/state/b/power")
        await sub.wait_for("hmtest/state/b/available")
    qos = {m.topic: m.qos for m in sub.messages}
    assert qos == {
        "hmtest/state/a/available": 1,
        "hmtest/state/b/available": 1,
        "hmtest/state/a/power": 0,
        "hmtest/state/b/power": 0,
    }


async def test_online_retained_after_connect_and_offline_after_stop(
    mosquitto: Mosquitto,
) -> None:
    link = make_link(mosquitto.port)
    async with running(link) as task:
        # A client that arrives later still sees the retained "online".
        async with Subscriber(mosquitto.port, STATUS) as sub:
            assert await sub.wait_for(STATUS) == b"online"
            assert sub.messages[-1].retain
        await link.stop()
        assert task.done()
        assert not link.connected
    async with Subscriber(mosquitto.port, STATUS) as sub:
        assert await sub.wait_for(STATUS) == b"offline"
        assert sub.messages[-1].retain


async def test_will_fires_when_the_connection_dies(mosquitto: Mosquitto) -> None:
    async with TcpProxy(mosquitto.port) as proxy, Subscriber(mosquitto.port, STATUS) as sub:
        link = make_link(proxy.port)
        async with running(link):
            await sub.wait_for(STATUS, lambda p: p == b"online")
            proxy.refuse()
            proxy.cut()  # no DISCONNECT packet: the broker publishes the will
            await sub.wait_for(STATUS, lambda p: p == b"offline")
            await wait_until(lambda: not link.connected)
            await proxy.listen()
            await sub.wait_for(STATUS, lambda p: p == b"online")
            assert link.connects == 2
            assert link.disconnects == 1
            assert link.last_error


async def test_alias_follows_the_will_on_a_clean_stop_but_not_on_a_crash(
    mosquitto: Mosquitto,
) -> None:
    alias = "hmtest/alias"
    async with (
        TcpProxy(mosquitto.port) as proxy,
        Subscriber(mosquitto.port, "hmtest/#") as sub,
    ):
        link = make_link(proxy.port, alias_topics=[alias])
        async with running(link):
            await sub.wait_for(STATUS, lambda p: p == b"online")
            await sub.wait_for(alias, lambda p: p == b"online")
            proxy.refuse()
            proxy.cut()  # a crash, as the broker sees it: only the will fires
            await sub.wait_for(STATUS, lambda p: p == b"offline")
            await wait_until(lambda: not link.connected)
            assert sub.last[alias] == b"online"
            await proxy.listen()
            await link.wait_connected(5)
            await sub.wait_for(STATUS, lambda p: p == b"online")
        # a clean stop says goodbye on both
        await sub.wait_for(STATUS, lambda p: p == b"offline")
        await sub.wait_for(alias, lambda p: p == b"offline")


async def test_cancelled_run_leaves_offline_behind(mosquitto: Mosquitto) -> None:
    link = make_link(mosquitto.port)
    async with Subscriber(mosquitto.port, STATUS) as sub:
        task = asyncio.create_task(link.run(), name="test-mqtt-link-cancelled")
        await sub.wait_for(STATUS, lambda p: p == b"online")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await sub.wait_for(STATUS, lambda p: p == b"offline")


async def test_reconnects_after_broker_restart(mosquitto: Mosquitto) -> None:
    connected = 0

    async def on_connect() -> None:
        nonlocal connected
        connected += 1

    seen, on_message = recorder()
    link = make_link(
        mosquitto.port, on_connect=on_connect, subscriptions=["hmtest/cmd"], on_message=on_message
    )
    async with running(link):
        assert connected == 1
        await mosquitto.stop()
        await wait_until(lambda: not link.connected)
        await link.publish("hmtest/state", "while down", retain=True)
        assert link.queued == 1
        await mosquitto.start()
        await link.wait_connected(5)
        assert connected == 2
        assert link.queued == 0
        async with Subscriber(mosquitto.port, "hmtest/state") as sub:
            assert await sub.wait_for("hmtest/state") == b"while down"
        # The new session is subscribed again (the broker forgot everything).
        await send(mosquitto.port, "hmtest/cmd", "on")
        await wait_until(lambda: [m.payload for m in seen] == [b"on"])


async def test_queue_is_flushed_in_order_after_reconnect(mosquitto: Mosquitto) -> None:
    order: list[str] = []

    async def on_connect() -> None:
        order.append(f"on_connect, {link.queued} queued")

    async with TcpProxy(mosquitto.port) as proxy:
        link = make_link(proxy.port, on_connect=on_connect)
        async with running(link):
            proxy.refuse()  # keeps the link away until the subscriber is back
            await mosquitto.stop()
            await wait_until(lambda: not link.connected)
            for i in range(5):
                await link.publish("hmtest/q", f"m{i}", qos=i % 2)
            assert link.queued == 5
            await mosquitto.start()
            async with Subscriber(mosquitto.port, "hmtest/q") as sub:
                await proxy.listen()
                await link.wait_connected(5)
                await sub.wait_for("hmtest/q", lambda p: p == b"m4")
                assert sub.payloads("hmtest/q") == [f"m{i}".encode() for i in range(5)]
        assert order == ["on_connect, 0 queued"] * 2
        assert link.published == 5


async def test_what_is_published_while_the_queue_flushes_is_sent_before_ready(
    mosquitto: Mosquitto,
) -> None:
    """A publish while the flush awaited its last PUBACK stayed queued until the next
    connect (found by tests/test_opendtu.py: a command sent then got no answer)."""
    link = make_link(mosquitto.port)
    await link.publish("hmtest/flush/first", "1", qos=1)  # offline: queued
    original = link._await_puback
    late: list[str] = []

    async def publish_then_wait(wait: tuple[asyncio.Future[bool], object]) -> None:
        if not late:
            late.append("hmtest/flush/late")
            await link.publish(late[0], "2", qos=1)  # not ready yet: queued
        await original(wait)  # type: ignore[arg-type]

    link._await_puback = publish_then_wait  # type: ignore[method-assign]
    async with Subscriber(mosquitto.port, "hmtest/flush/#") as sub, running(link):
        assert late and link.queued == 0
        assert await sub.wait_for("hmtest/flush/late") == b"2"
        assert link.published == 2


async def test_bounded_queue_drops_the_oldest(mosquitto: Mosquitto) -> None:
    link = make_link(mosquitto.port, max_queue=3)
    for i in range(5):
        await link.publish("hmtest/q", f"m{i}")
    assert (link.queued, link.dropped) == (3, 2)
    async with Subscriber(mosquitto.port, "hmtest/q") as sub, running(link):
        await sub.wait_for("hmtest/q", lambda p: p == b"m4")
        assert sub.payloads("hmtest/q") == [b"m2", b"m3", b"m4"]
        assert link.published == 3


async def test_qos1_command_sent_while_away_arrives_after_reconnect(
    mosquitto: Mosquitto,
) -> None:
    seen, on_message = recorder()
    async with TcpProxy(mosquitto.port) as proxy:
        link = make_link(proxy.port, subscriptions=["hmtest/cmd"], on_message=on_message)
        async with running(link):
            proxy.refuse()
            proxy.cut()
            await wait_until(lambda: not link.connected)
            await send(mosquitto.port, "hmtest/cmd", "while away", qos=1)
            await proxy.listen()
            await wait_until(lambda: [m.payload for m in seen] == [b"while away"])


async def test_handler_value_error_does_not_stop_the_loop(
    mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[bytes] = []

    async def on_message(message: MqttMessage) -> None:
        if message.payload == b"bad":
            raise ValueError("not a number")
        seen.append(message.payload)

    link = make_link(mosquitto.port, subscriptions=["hmtest/cmd"], on_message=on_message)
    async with running(link) as task:
        await send(mosquitto.port, "hmtest/cmd", "bad")
        await send(mosquitto.port, "hmtest/cmd", "good")
        await wait_until(lambda: seen == [b"good"])
        assert not task.done()
        assert link.connected
    assert "not a number" in caplog.text


async def test_handler_bug_propagates(mosquitto: Mosquitto) -> None:
    async def on_message(message: MqttMessage) -> None:
        raise RuntimeError("bug")

    link = make_link(mosquitto.port, subscriptions=["hmtest/cmd"], on_message=on_message)
    async with Subscriber(mosquitto.port, STATUS) as sub:
        task = asyncio.create_task(link.run(), name="test-mqtt-link-bug")
        await link.wait_connected(5)
        await send(mosquitto.port, "hmtest/cmd", "x")
        with pytest.raises(RuntimeError, match="bug"):
            await asyncio.wait_for(task, 5)
        await sub.wait_for(STATUS, lambda p: p == b"offline")


async def test_unreachable_broker_keeps_retrying_and_queueing() -> None:
    from hoymiles_bridge.mqtt.local_broker import free_port

    link = make_link(free_port())
    async with running(link, connect=False):
        await wait_until(lambda: link.last_error is not None)
        await link.publish("hmtest/q", "kept")
        assert (link.queued, link.connected, link.connects) == (1, False, 0)


async def test_invalid_arguments_raise() -> None:
    link = make_link(1883)
    with pytest.raises(InvalidArgumentError):
        await link.publish("hmtest/+", "x")
    with pytest.raises(InvalidArgumentError):
        await link.publish("hmtest/q", "x", qos=3)
    with pytest.raises(InvalidArgumentError):
        make_link(1883, backoff_initial=0)
    assert link.queued == 0


def test_settings_repr_hides_the_password() -> None:
    settings = MqttSettings(username="u", password="s3cret")
    assert "s3cret" not in repr(settings)


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="needs mosquitto_passwd")
async def test_password_authentication(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path, username="bridge", password="pw-123")
    await broker.start()
    try:
        good = MqttLink(
            MqttSettings(port=broker.port, username="bridge", password="pw-123", client_id="a"),
            will_topic=STATUS,
            backoff_initial=BACKOFF_INITIAL,
        )
        async with running(good):
            assert good.connected
        bad = MqttLink(
            MqttSettings(port=broker.port, username="bridge", password="wrong", client_id="b"),
            will_topic=STATUS,
            backoff_initial=BACKOFF_INITIAL,
        )
        async with running(bad, connect=False):
            await wait_until(lambda: bad.last_error is not None)
            assert not bad.connected
            assert "pw-123" not in (bad.last_error or "")
    finally:
        await broker.stop()


async def test_publish_many_larger_than_the_window_and_concurrent(mosquitto: Mosquitto) -> None:
    # A small window, so that batches several times its size must recycle it
    # (Mosquitto would drop a slow subscriber's backlog beyond 1000 messages).
    link = make_link(mosquitto.port, max_outstanding=40)
    async with Subscriber(mosquitto.port, "hmtest/bulk/#") as sub, running(link):
        first = [(f"hmtest/bulk/a/{n}", str(n)) for n in range(250)]
        second = [(f"hmtest/bulk/b/{n}", str(n)) for n in range(150)]
        await asyncio.wait_for(
            asyncio.gather(
                link.publish_many(first, retain=True, qos=1),
                link.publish_many(second, qos=1),
                link.publish_many([("hmtest/bulk/c", "x")], qos=0),
            ),
            20,
        )
        await sub.wait_for("hmtest/bulk/a/249")
        await sub.wait_for("hmtest/bulk/b/149")
        await wait_until(lambda: len(sub.messages) == 401)
        assert link.published >= 401
        # every credit of the window came back
        assert not link._outstanding.locked()
    offline = make_link(mosquitto.port, client_id="offline-link")
    await offline.publish_many([("hmtest/bulk/d", "1")], qos=1)  # not connected: queued
    assert offline.queued == 1


async def test_stop_while_the_broker_has_not_answered_the_connect() -> None:
    """A broker that accepts TCP but never sends CONNACK: stop() still ends run()."""
    accepted = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        accepted.set()
        await reader.read(1 << 16)  # the CONNECT, never answered

    server = await asyncio.start_server(silent, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    link = make_link(port, operation_timeout=30.0)
    task = asyncio.create_task(link.run(), name="test-link-silent-broker")
    try:
        await asyncio.wait_for(accepted.wait(), 10)
        await asyncio.wait_for(link.stop(), 20)
        await asyncio.wait_for(asyncio.shield(task), 5)
        assert not link.connected
    finally:
        task.cancel()
        await asyncio.wait({task})
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_lost_session_ends_the_wait_for_pubacks_and_nothing_is_lost(
    mosquitto: Mosquitto,
) -> None:
    """Found by the soak benchmark: each missing PUBACK used to cost a whole timeout."""
    async with (
        TcpProxy(mosquitto.port) as proxy,
        Subscriber(mosquitto.port, "hmtest/lost/#") as sub,
    ):
        # an hour per PUBACK: without the fix the batch below would hang
        link = make_link(proxy.port, operation_timeout=3600)
        async with running(link):
            proxy.hold()  # the broker gets nothing, so no PUBACK can come
            items = [(f"hmtest/lost/{i}", f"m{i}") for i in range(5)]
            batch = asyncio.create_task(
                link.publish_many(items, retain=True, qos=1), name="test-lost-batch"
            )
            await wait_until(lambda: link.published >= 5)
            proxy.cut()  # the session ends without a PUBACK
            proxy.release()
            await asyncio.wait_for(batch, 20)  # a hang guard, not a timing check
            await link.wait_connected(10)
            for topic, payload in items:  # queued again and sent on the new session
                await sub.wait_for(topic, lambda p, want=payload: p == want.encode())


def test_gmqtt_lines_about_handled_problems_are_debug_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A broker restart must not put WARNING or ERROR lines in the add-on log for
    what the link handles (its own WARNING says so, with the retry)."""
    client = logging.getLogger("hoymiles_bridge.mqtt.link.gmqtt")
    protocol = logging.getLogger("gmqtt.mqtt.protocol")
    with (
        caplog.at_level(logging.DEBUG, logger="hoymiles_bridge.mqtt.link"),
        caplog.at_level(logging.DEBUG, logger="gmqtt"),
    ):
        protocol.warning("[EXC: CONN LOST]")
        client.info("[MqttPackageHandler] SUBACK mid: %s, QoS: %s", 1, (1,))
        client.error("[Client] max number of failed connection attempts achieved")
        client.error("[MqttPackageHandler] error handling package")
    levels = {r.getMessage(): r.levelno for r in caplog.records}
    assert levels["[EXC: CONN LOST]"] == logging.DEBUG
    assert levels["[MqttPackageHandler] SUBACK mid: 1, QoS: (1,)"] == logging.DEBUG
    assert levels["[Client] max number of failed connection attempts achieved"] == logging.DEBUG
    assert levels["[MqttPackageHandler] error handling package"] == logging.ERROR


def test_gmqtt_lines_made_debug_are_hidden_at_info(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO), caplog.at_level(logging.INFO, logger="gmqtt"):
        logging.getLogger("gmqtt.mqtt.protocol").warning("[EXC: CONN LOST]")
    assert "[EXC: CONN LOST]" not in caplog.text
