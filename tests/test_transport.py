"""The transport seam: MemoryTransport's contract, and DtuClient on it (no sockets, no waiting)."""

from __future__ import annotations

import asyncio

import pytest

from hoymiles_bridge.dtu.connection import (
    MAX_FRAME_ERRORS,
    MAX_UNFRAMED_BYTES,
    Connection,
    ConnectionState,
)
from hoymiles_bridge.dtu.memory import MemoryEndpoint, MemoryTransport
from hoymiles_bridge.dtu.transport import TcpTransport, TransportListener
from hoymiles_bridge.errors import DtuConnectionError, DtuDisplacedError, DtuTimeoutError
from hoymiles_bridge.protocol.codec import encode_message
from hoymiles_bridge.protocol.frame import encode_frame
from hoymiles_bridge.simulator.handlers import heartbeat

from .fake_dtu import FakeDtu, local_time, run_virtual

NOON = local_time(12)


class _Recorder:
    """A transport listener that writes down what it hears."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def data_received(self, data: bytes) -> None:
        self.events.append(("data", data))

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append(("lost", exc))


# --- MemoryTransport's contract -------------------------------------------------------------


def test_replies_arrive_through_the_loop_in_order() -> None:
    async def main() -> None:
        endpoint = MemoryEndpoint(lambda data: b"re:" + data)
        transport = endpoint.transport("dtu", 1)
        listener = _Recorder()
        await transport.open(listener, timeout=5)
        assert endpoint.connected and transport.number == 1 and not transport.is_closing()
        transport.write(b"one")
        transport.write(b"two")
        assert listener.events == []  # never from inside write
        await asyncio.sleep(0)
        assert listener.events == [("data", b"re:one"), ("data", b"re:two")]
        assert list(endpoint.received) == [b"one", b"two"]

    run_virtual(main)


def test_close_is_graceful_idempotent_and_drops_late_bytes() -> None:
    async def main() -> None:
        endpoint = MemoryEndpoint(lambda data: data)
        endpoint.reply_delay = 1.0
        transport = endpoint.transport("dtu", 1)
        listener = _Recorder()
        await transport.open(listener, timeout=5)
        transport.write(b"late")
        transport.close()
        transport.close()
        assert transport.is_closing()
        transport.write(b"after close")
        await asyncio.sleep(2)
        assert listener.events == [("lost", None)]
        assert list(endpoint.received) == [b"late"] and endpoint.current is None

    run_virtual(main)


def test_bytes_sent_before_the_dtu_closes_are_read_first() -> None:
    async def main() -> None:
        endpoint = MemoryEndpoint()
        transport = endpoint.transport("dtu", 1)
        listener = _Recorder()
        await transport.open(listener, timeout=5)
        assert endpoint.send(b"last words")
        assert endpoint.displace()
        assert not endpoint.send(b"too late") and not endpoint.displace()
        await asyncio.sleep(0)
        assert listener.events == [("data", b"last words"), ("lost", None)]
        assert endpoint.displaced == 1

    run_virtual(main)


def test_a_new_client_displaces_the_previous_one() -> None:
    async def main() -> None:
        endpoint = MemoryEndpoint()
        first, second = _Recorder(), _Recorder()
        await endpoint.transport("dtu", 1).open(first, timeout=5)
        await endpoint.transport("dtu", 1).open(second, timeout=5)
        await asyncio.sleep(0)
        assert first.events == [("lost", None)] and second.events == []
        assert endpoint.connections == 2 and endpoint.displaced == 1
        assert endpoint.current is not None and endpoint.current.number == 2

    run_virtual(main)


def test_refused_and_unreachable() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        endpoint = MemoryEndpoint()
        endpoint.refuse = True
        with pytest.raises(DtuConnectionError, match="refused"):
            await endpoint.transport("dtu", 1).open(_Recorder(), timeout=5)
        assert loop.time() == 0
        endpoint.refuse, endpoint.unreachable = False, True
        with pytest.raises(DtuTimeoutError, match="within 5 s"):
            await endpoint.transport("dtu", 1).open(_Recorder(), timeout=5)
        assert loop.time() == pytest.approx(5)
        assert endpoint.attempts == 2 and endpoint.connections == 0

    run_virtual(main)


def test_tcp_transport_is_closed_until_opened() -> None:
    transport = TcpTransport("127.0.0.1", 10081)
    assert transport.is_closing()
    transport.write(b"nowhere")  # dropped, as after a close
    transport.close()


class _SlowTransport(MemoryTransport):
    """Takes a virtual second to connect, like a socket whose SYN is answered late."""

    async def open(self, listener: TransportListener, *, timeout: float) -> None:
        await asyncio.sleep(1)
        await super().open(listener, timeout=timeout)


def test_a_connection_closed_while_opening_stays_closed() -> None:
    async def main() -> None:
        endpoint = MemoryEndpoint()
        connection = Connection(
            "dtu", 1, transport_factory=lambda host, port: _SlowTransport(endpoint, host, port)
        )
        opening = asyncio.create_task(connection.open(), name="open-slowly")
        await asyncio.sleep(0.5)
        connection.close()
        with pytest.raises(DtuConnectionError, match="closed while opening"):
            await opening
        await asyncio.sleep(0)
        assert connection.state is ConnectionState.CLOSED
        assert endpoint.connections == 1 and not endpoint.connected  # opened, then let go

    run_virtual(main)


# --- DtuClient on the fake ------------------------------------------------------------------


def test_client_reads_over_memory() -> None:
    async def main() -> None:
        fake = FakeDtu(start=NOON)
        async with fake.client(min_spacing=0) as client:
            info = await client.app_info()
            data = await client.real_data()
            beat = await client.heartbeat()
            history = await client.history_power()
        assert info.dtu_serial == data.dtu_serial == beat.dtu_serial == fake.dtu.serial
        assert data.inverters and data.inverters[0].power > 0
        assert history.samples
        assert fake.endpoint.connections == 1 and client.reconnects == 0
        assert asyncio.get_running_loop().time() == 0  # no timer was needed

    run_virtual(main)


def test_pacing_runs_on_virtual_time() -> None:
    async def main() -> None:
        fake = FakeDtu(start=NOON)
        async with fake.client(min_spacing=2.0) as client:
            for _ in range(4):
                await client.heartbeat()
        assert asyncio.get_running_loop().time() == pytest.approx(6.0)

    run_virtual(main)


def test_refused_connection_is_typed_and_retried_once() -> None:
    async def main() -> None:
        fake = FakeDtu(start=NOON)
        fake.endpoint.refuse = True
        async with fake.client(min_spacing=0) as client:
            with pytest.raises(DtuConnectionError, match="refused"):
                await client.heartbeat()
        assert fake.endpoint.attempts == 2

    run_virtual(main)


def test_silence_times_out_on_virtual_time() -> None:
    async def main() -> None:
        fake = FakeDtu(start=NOON)
        fake.endpoint.silent = True
        async with fake.client(min_spacing=0, request_timeout=10.0) as client:
            with pytest.raises(DtuTimeoutError):
                await client.heartbeat()
        # the first try and one retry, each waiting the whole timeout
        assert asyncio.get_running_loop().time() == pytest.approx(20.0)
        assert fake.answered == []

    run_virtual(main)


def test_displacement_during_a_request_is_typed() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        fake = FakeDtu(start=NOON)
        async with fake.client(min_spacing=0, retries=0) as client:
            await client.heartbeat()
            fake.endpoint.silent = True
            loop.call_later(1.0, fake.endpoint.displace)
            with pytest.raises(DtuDisplacedError):
                await client.heartbeat()
            assert client.connection is not None
            assert isinstance(client.connection.close_error, DtuDisplacedError)
        assert loop.time() == pytest.approx(1.0)

    run_virtual(main)


def test_another_client_displaces_and_the_first_takes_the_socket_back() -> None:
    async def main() -> None:
        fake = FakeDtu(start=NOON)
        async with fake.client(min_spacing=0) as ours, fake.client(min_spacing=0) as app:
            await ours.heartbeat()
            await app.heartbeat()
            await asyncio.sleep(0)
            assert ours.connection is not None
            assert isinstance(ours.connection.close_error, DtuDisplacedError)
            await ours.heartbeat()  # reopens: now the app is displaced
            await asyncio.sleep(0)
            assert ours.reconnects == 1 and fake.endpoint.displaced == 2
            assert app.connection is not None and not app.connected

    run_virtual(main)


def test_dropped_session_is_a_lost_connection_not_displacement() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        fake = FakeDtu(start=NOON)
        async with fake.client(min_spacing=0, retries=0) as client:
            await client.heartbeat()
            fake.endpoint.silent = True
            loop.call_later(1.0, fake.endpoint.drop)
            with pytest.raises(DtuConnectionError, match="reset") as caught:
                await client.heartbeat()
            assert not isinstance(caught.value, DtuDisplacedError)

    run_virtual(main)


def test_garbage_before_a_reply_is_skipped_and_counted() -> None:
    async def main() -> None:
        fake = FakeDtu(start=NOON)

        def noisy(data: bytes) -> bytes | None:
            reply = fake.answer(data)
            return b"\x00garbage\xff" + reply if reply else reply

        fake.endpoint.responder = noisy
        async with fake.client(min_spacing=0) as client:
            beat = await client.heartbeat()
            assert beat.dtu_serial == fake.dtu.serial
            assert client.connection is not None and client.connection.frame_errors == 1

    run_virtual(main)


def test_garbage_instead_of_a_reply_times_out() -> None:
    async def main() -> None:
        fake = FakeDtu(start=NOON)
        fake.endpoint.responder = lambda data: b"\x01\x02 not a frame"
        async with fake.client(min_spacing=0, retries=0, request_timeout=3.0) as client:
            with pytest.raises(DtuTimeoutError):
                await client.heartbeat()
            assert client.connection is not None and client.connection.frame_errors == 1

    run_virtual(main)


def test_a_reply_after_its_timeout_is_stale_and_never_delivered() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        fake = FakeDtu(start=NOON)
        fake.endpoint.reply_delay = 12.0  # the first reply comes after its 10 s timeout
        loop.call_later(5.0, setattr, fake.endpoint, "reply_delay", 0.0)
        async with fake.client(min_spacing=0, request_timeout=10.0) as client:
            first = await client.heartbeat()  # answered by the retry, at 10 s
            assert loop.time() == pytest.approx(10.0)
            await asyncio.sleep(5)
            assert client.connection is not None and client.connection.stale_replies == 1
            second = await client.heartbeat()
        assert first.dtu_serial == second.dtu_serial == fake.dtu.serial

    run_virtual(main)


def test_unsolicited_frames_go_to_the_push_handler() -> None:
    async def main() -> None:
        fake = FakeDtu(start=NOON)
        pushed: list[str] = []
        async with fake.client(min_spacing=0, on_push=lambda d: pushed.append(d.name)) as client:
            await client.heartbeat()
            frame = encode_message(heartbeat(fake.dtu), 4321, tag=0x2202)
            assert fake.endpoint.send(frame)
            await asyncio.sleep(0)
        assert len(pushed) == 1 and "Heartbeat" in pushed[0]

    run_virtual(main)


def test_encrypted_dtu_reboot_rekeys_the_client() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        fake = FakeDtu(start=NOON, encrypt=True)
        async with fake.client(min_spacing=0, request_timeout=10.0) as client:
            await client.real_data()
            assert client.encrypted is True
            old_key = fake.dtu.enc_rand
            fake.reboot(dark=0)
            assert fake.dtu.enc_rand != old_key
            await asyncio.sleep(1)  # the client notices the dropped session
            began = loop.time()
            data = await client.real_data()  # old key: ignored, timeout, app info, retry
            assert data.dtu_serial == fake.dtu.serial
            assert loop.time() - began == pytest.approx(10.0)
            assert fake.ignored == 1 and client.reconnects == 1
            assert client.app_info_cache is not None
            assert client.app_info_cache.enc_rand == fake.dtu.enc_rand

    run_virtual(main)


def test_a_stuck_test_fails_instead_of_hanging() -> None:
    async def main() -> None:
        await asyncio.Event().wait()

    with pytest.raises(RuntimeError, match="idle for good"):
        run_virtual(main)


# --- a peer that sends garbage is not read for long ------------------------------------------


def _malformed(count: int) -> bytes:
    """``count`` frames with a wrong CRC: each one CrcMismatchError.

    Their tag is one no request waits for, so none of them fails a request by itself.
    """
    frames = []
    for number in range(count):
        frame = bytearray(encode_frame(0x1234, number, b"\x08\x01"))
        frame[6] ^= 0xFF
        frames.append(bytes(frame))
    return b"".join(frames)


def test_malformed_frames_in_a_row_close_the_connection() -> None:
    async def main() -> None:
        fake = FakeDtu(start=NOON)
        fake.endpoint.responder = lambda data: _malformed(MAX_FRAME_ERRORS + 40)
        async with fake.client(min_spacing=0, retries=0) as client:
            with pytest.raises(DtuConnectionError, match=f"{MAX_FRAME_ERRORS} malformed frames"):
                await client.heartbeat()
            connection = client.connection
            assert connection is not None and connection.frame_errors == MAX_FRAME_ERRORS
            assert connection.close_error is not None
            await asyncio.sleep(0)
            assert connection.state is ConnectionState.CLOSED
        assert asyncio.get_running_loop().time() == 0  # refused at once, no timeout

    run_virtual(main)


def test_64_kib_without_a_frame_close_the_connection() -> None:
    async def main() -> None:
        fake = FakeDtu(start=NOON)
        fake.endpoint.responder = lambda data: None
        async with fake.client(min_spacing=0, retries=0) as client:
            request = asyncio.create_task(client.heartbeat(), name="heartbeat-into-garbage")
            await asyncio.sleep(0.1)
            for _ in range(7):  # seven garbage errors, well below MAX_FRAME_ERRORS
                assert fake.endpoint.send(bytes(MAX_UNFRAMED_BYTES // 7 + 1))
            with pytest.raises(DtuConnectionError, match="bytes without a valid frame"):
                await request
            assert client.connection is not None
            assert client.connection.frame_errors == 7

    run_virtual(main)


def test_a_few_errors_between_good_frames_are_tolerated() -> None:
    async def main() -> None:
        fake = FakeDtu(start=NOON)

        def noisy(data: bytes) -> bytes | None:
            reply = fake.answer(data)
            return _malformed(MAX_FRAME_ERRORS - 1) + reply if reply else reply

        fake.endpoint.responder = noisy
        async with fake.client(min_spacing=0, retries=0) as client:
            for _ in range(5):  # each good reply starts the count again
                beat = await client.heartbeat()
                assert beat.dtu_serial == fake.dtu.serial
            assert client.connection is not None
            assert client.connection.frame_errors == 5 * (MAX_FRAME_ERRORS - 1)
            assert client.reconnects == 0

    run_virtual(main)
