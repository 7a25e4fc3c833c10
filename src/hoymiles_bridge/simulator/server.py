"""The simulated DTU on TCP: one client at a time, real framing, optional faults.

:class:`DtuSimulator` serves one DTU; :class:`SimulatorGroup` serves a whole
fleet on consecutive ports; :func:`run_simulator` is what ``hoymiles-bridge
simulate`` runs.

Behaviour copied from real DTUs (protocol.md section 5):

* a new connection closes the previous one with a FIN ("displaced");
* replies echo the request sequence, except AppInfo (the DTU's own counter);
* when encrypting, encrypted-tag requests that are plaintext or use a wrong
  key get no answer at all; AppInfo and the heartbeat request stay plaintext;
* a DTU reboot answers, aborts every connection ~0.2 s later, refuses
  connections for a while and comes back with a new ``enc_rand``;
* with ``night_off`` the DTU refuses connections between sunset and sunrise.

When encrypting, the frame splitter expects a 16-byte GCM tag after every
encrypted-tag request, so a plaintext request waits for bytes that never
come; a partial frame idle for more than ``RX_IDLE_RESET`` real seconds is
dropped when the next bytes arrive (a receive timeout, as embedded DTUs have).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import Final

from google.protobuf.message import Message

from hoymiles_bridge.errors import EncryptionError, FrameError, PayloadDecodeError
from hoymiles_bridge.protocol.codec import decode_frame, encode_message
from hoymiles_bridge.protocol.crypto import is_encrypted_tag
from hoymiles_bridge.protocol.frame import ExtendedHeader, Frame, FrameSplitter
from hoymiles_bridge.protocol.registry import reply_tag
from hoymiles_bridge.simulator.clock import SimClock
from hoymiles_bridge.simulator.faults import Faults
from hoymiles_bridge.simulator.fleet import DtuSpec, Fleet, default_fleet
from hoymiles_bridge.simulator.handlers import HANDLERS, heartbeat
from hoymiles_bridge.simulator.physics import is_daylight
from hoymiles_bridge.simulator.state import SimulatedDtu

_LOG = logging.getLogger(__name__)

APP_INFO_TAG: Final = 0xA301
PUSH_HEARTBEAT_TAG: Final = 0x2202
#: Real seconds between the reboot reply and the connection abort.
REBOOT_ABORT_DELAY: Final = 0.2
#: A rebooting DTU refuses connections for the shorter of these.
REBOOT_REFUSE_REAL: Final = 3.0
REBOOT_REFUSE_SIM: Final = 10.0
#: Unsolicited heartbeat period (sim seconds) when the DTU pushes.
PUSH_INTERVAL: Final = 60.0
#: Housekeeping period (real seconds): night switch, pushes, re-listening.
TICK: Final = 0.1
#: A partial frame older than this (real seconds) is dropped when new bytes come.
RX_IDLE_RESET: Final = 1.0
READ_SIZE: Final = 4096


class _Session:
    """One accepted TCP connection."""

    __slots__ = ("last_rx", "number", "reader", "splitter", "writer")

    def __init__(
        self,
        number: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        encrypted: bool,
    ) -> None:
        self.number = number
        self.reader = reader
        self.writer = writer
        self.splitter = FrameSplitter(encrypted=is_encrypted_tag if encrypted else None)
        self.last_rx = 0.0

    @property
    def closing(self) -> bool:
        return self.writer.transport.is_closing()

    def write(self, data: bytes) -> None:
        """One ``transport.write`` per frame (some clients read once)."""
        if not self.closing:
            self.writer.transport.write(data)

    def close(self) -> None:
        """Graceful close: FIN after the pending bytes."""
        if not self.closing:
            self.writer.transport.close()

    def abort(self) -> None:
        self.writer.transport.abort()


class DtuSimulator:
    """A simulated DTU listening on TCP."""

    def __init__(
        self,
        spec: DtuSpec | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        encrypt: bool = False,
        speed: float = 1.0,
        night_off: bool = False,
        clock: SimClock | None = None,
        countdown_reset: bool = False,
        fault_seed: int = 0,
    ) -> None:
        self._spec = spec if spec is not None else default_fleet().dtus[0]
        self._host = host
        self._port = port
        self._clock = clock if clock is not None else SimClock(speed=speed)
        self._dtu = SimulatedDtu(
            self._spec, self._clock, encrypt=encrypt, countdown_reset=countdown_reset
        )
        self._faults = Faults(seed=fault_seed)
        self.night_off = night_off
        self._server: asyncio.Server | None = None
        self._started = False
        self._rebooting = False
        self._current: _Session | None = None
        self._sessions: set[_Session] = set()
        self._session_tasks: set[asyncio.Task[object]] = set()
        self._tick_task: asyncio.Task[None] | None = None
        self._reboot_task: asyncio.Task[None] | None = None
        self._last_reply: dict[int, bytes] = {}
        self._next_push = 0.0
        self.connections_total = 0
        self.requests_total = 0
        self.displaced_total = 0
        self.reboots_total = 0

    # -- properties ---------------------------------------------------------

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`; the requested one before)."""
        return self._port

    @property
    def dtu(self) -> SimulatedDtu:
        return self._dtu

    @property
    def spec(self) -> DtuSpec:
        return self._spec

    @property
    def faults(self) -> Faults:
        return self._faults

    @property
    def clock(self) -> SimClock:
        return self._clock

    @property
    def listening(self) -> bool:
        return self._server is not None

    @property
    def rebooting(self) -> bool:
        return self._rebooting

    @property
    def connected(self) -> bool:
        return self._current is not None and not self._current.closing

    def __repr__(self) -> str:
        return f"DtuSimulator({self._spec.serial} on {self._host}:{self._port})"

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        await self._listen()
        self._started = True
        if self.night_off and not is_daylight(self._clock.now()):
            await self._stop_listening()
        self._tick_task = asyncio.create_task(self._tick(), name=f"sim-{self._spec.serial}-tick")

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        tasks = [t for t in (self._tick_task, self._reboot_task) if t is not None]
        for task in tasks:
            task.cancel()
        self._abort_all()
        await self._stop_listening()
        pending = tasks + [t for t in self._session_tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=2.0)
        self._tick_task = None
        self._reboot_task = None
        self._rebooting = False

    async def __aenter__(self) -> DtuSimulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- listening -------------------------------------------------------------

    async def _listen(self) -> None:
        server = await asyncio.start_server(self._on_client, self._host, self._port)
        self._server = server
        if self._port == 0 and server.sockets:
            self._port = int(server.sockets[0].getsockname()[1])
        _LOG.debug("DTU %s listening on %s:%d", self._spec.serial, self._host, self._port)

    async def _stop_listening(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await server.wait_closed()

    async def _ensure_listening(self) -> None:
        if self._server is not None or not self._started:
            return
        try:
            await self._listen()
        except OSError as err:
            _LOG.warning("DTU %s cannot listen again yet: %s", self._spec.serial, err)

    def _should_listen(self) -> bool:
        if self._rebooting:
            return False
        return not (self.night_off and not is_daylight(self._clock.now()))

    def _abort_all(self) -> None:
        for session in list(self._sessions):
            session.abort()

    # -- connections -----------------------------------------------------------

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_total += 1
        number = self.connections_total
        task = asyncio.current_task()
        if task is not None:
            task.set_name(f"sim-{self._spec.serial}-conn-{number}")
            self._session_tasks.add(task)
            task.add_done_callback(self._session_tasks.discard)
        if self._faults.refuse_connections or not self._should_listen() or not self._started:
            writer.transport.abort()
            return
        previous = self._current
        if previous is not None and not previous.closing:
            _LOG.debug("DTU %s: connection %d displaced", self._spec.serial, previous.number)
            previous.close()
            self.displaced_total += 1
        session = _Session(number, reader, writer, self._dtu.encrypt)
        session.last_rx = asyncio.get_running_loop().time()
        self._current = session
        self._sessions.add(session)
        self._next_push = self._clock.now() + PUSH_INTERVAL
        try:
            await self._serve(session)
        except (ConnectionError, OSError) as err:
            _LOG.debug("DTU %s: connection %d failed: %s", self._spec.serial, number, err)
        finally:
            self._sessions.discard(session)
            if self._current is session:
                self._current = None
            session.close()

    async def _serve(self, session: _Session) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await session.reader.read(READ_SIZE)
            if not data:
                return
            now = loop.time()
            if session.splitter.pending and now - session.last_rx > RX_IDLE_RESET:
                dropped = session.splitter.clear()
                _LOG.debug("dropped %d bytes of an incomplete frame", len(dropped))
            session.last_rx = now
            for item in session.splitter.feed(data):
                if session.closing:
                    return
                if isinstance(item, FrameError):
                    _LOG.debug("DTU %s: ignored malformed input: %s", self._spec.serial, item)
                    continue
                await self._answer(session, item)

    async def _answer(self, session: _Session, frame: Frame) -> None:
        dtu = self._dtu
        if self._rebooting:
            return
        if self.night_off and not is_daylight(self._clock.now()):
            session.abort()
            return
        handler = HANDLERS.get(frame.tag)
        if handler is None:
            _LOG.debug("DTU %s: no answer to tag %04X", self._spec.serial, frame.tag)
            return
        if dtu.encrypt and is_encrypted_tag(frame.tag) and not frame.encrypted:
            _LOG.debug("DTU %s: plaintext %04X ignored", self._spec.serial, frame.tag)
            return
        try:
            decoded = decode_frame(frame, dtu.cipher)
        except (EncryptionError, PayloadDecodeError) as err:
            _LOG.debug("DTU %s: request not understood: %s", self._spec.serial, err)
            return
        if decoded.message is None:
            return
        self.requests_total += 1
        try:
            reply = handler(dtu, decoded.message)
        except (ValueError, TypeError, OverflowError) as err:
            _LOG.warning("DTU %s: cannot answer %s: %s", self._spec.serial, decoded.name, err)
            return
        sequence = dtu.next_app_info_sequence() if frame.tag == APP_INFO_TAG else frame.sequence
        extended = None
        if frame.extended is not None:
            extended = ExtendedHeader(serial=self._spec.serial_int, number=frame.extended.number)
        await self._send_reply(session, reply_tag(frame.tag), sequence, reply, extended)
        if dtu.reboot_requested and self._reboot_task is None:
            self._rebooting = True
            self._reboot_task = asyncio.create_task(
                self._reboot(), name=f"sim-{self._spec.serial}-reboot"
            )

    async def _send_reply(
        self,
        session: _Session,
        tag: int,
        sequence: int,
        message: Message,
        extended: ExtendedHeader | None,
    ) -> None:
        faults = self._faults
        if faults.delay > 0:
            await asyncio.sleep(faults.delay)
        if session.closing or faults.take("drop_replies"):
            return
        if faults.take("wrong_sequence"):
            sequence = (sequence + 1000) & 0xFFFF
        frame = encode_message(
            message, sequence, tag=tag, cipher=self._dtu.cipher, extended=extended
        )
        previous = self._last_reply.get(tag)
        self._last_reply[tag] = frame
        if previous is not None and faults.take("stale_reply"):
            session.write(previous)
        out = frame
        if faults.take("corrupt_crc"):
            out = out[:6] + bytes((out[6] ^ 0xFF, out[7] ^ 0x5A)) + out[8:]
        if faults.take("garbage_before"):
            out = faults.garbage() + out
        if faults.take("truncate_replies"):
            session.write(out[: len(out) // 2])
            return
        if faults.take("close_mid_frame"):
            session.write(out[: len(out) // 2])
            with contextlib.suppress(ConnectionError):
                await session.writer.drain()
            await asyncio.sleep(0.02)
            session.abort()
            return
        session.write(out)

    # -- background --------------------------------------------------------------

    async def _reboot(self) -> None:
        try:
            await asyncio.sleep(REBOOT_ABORT_DELAY)
            _LOG.info("DTU %s reboots", self._spec.serial)
            self._abort_all()
            self._dtu.reboot()
            self.reboots_total += 1
            self._last_reply.clear()
            await self._stop_listening()
            await asyncio.sleep(
                min(REBOOT_REFUSE_REAL, self._clock.real_seconds(REBOOT_REFUSE_SIM))
            )
        finally:
            self._rebooting = False
            self._reboot_task = None
        if self._should_listen():
            await self._ensure_listening()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            now = self._clock.now()
            night = self.night_off and not is_daylight(now)
            if night and not self._rebooting and self._server is not None:
                _LOG.info("DTU %s: night, going dark", self._spec.serial)
                self._abort_all()
                await self._stop_listening()
            if self._server is None and self._should_listen():
                await self._ensure_listening()
            session = self._current
            if self._spec.pushes and session is not None and now >= self._next_push:
                self._next_push = now + PUSH_INTERVAL
                self._push_heartbeat(session)

    def _push_heartbeat(self, session: _Session) -> None:
        frame = encode_message(
            heartbeat(self._dtu),
            self._dtu.next_push_sequence(),
            tag=PUSH_HEARTBEAT_TAG,
            cipher=self._dtu.cipher,
        )
        session.write(frame)


class SimulatorGroup:
    """Serve every DTU of a fleet: the first on ``port``, the next on ``port + 1``, ...

    A DTU whose spec names a port uses that port. With ``port=0`` every DTU
    without its own port gets a free port.
    """

    def __init__(
        self,
        fleet: Fleet,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        encrypt: bool = False,
        speed: float = 1.0,
        night_off: bool = False,
        countdown_reset: bool = False,
        clock: SimClock | None = None,
    ) -> None:
        self.clock = clock if clock is not None else SimClock(speed=speed)
        self.simulators = [
            DtuSimulator(
                spec,
                host=host,
                port=spec.port if spec.port is not None else (port + index if port else 0),
                encrypt=encrypt,
                night_off=night_off,
                clock=self.clock,
                countdown_reset=countdown_reset,
            )
            for index, spec in enumerate(fleet.dtus)
        ]

    async def start(self) -> None:
        try:
            for simulator in self.simulators:
                await simulator.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        for simulator in self.simulators:
            await simulator.stop()

    async def __aenter__(self) -> SimulatorGroup:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


def describe(simulator: DtuSimulator) -> str:
    """One line for people: address, serial, model, firmware, inverters."""
    spec = simulator.spec
    inverters = ", ".join(
        f"{inv.model} {inv.serial} ({inv.rated_power} W, {inv.ports} ports)"
        for inv in spec.inverters
    )
    line = (
        f"{simulator.host}:{simulator.port}  DTU {spec.serial} {spec.model} "
        f"{spec.firmware_version}  inverters: {inverters}"
    )
    if simulator.dtu.encrypt:
        line += (
            "  [encrypted; the --enc-rand key is shown by "
            f"`hoymiles-bridge dtu {simulator.host}:{simulator.port} app-info`]"
        )
    return line


async def run_simulator(
    fleet: Fleet,
    host: str,
    port: int,
    *,
    encrypt: bool = False,
    speed: float = 1.0,
    night_off: bool = False,
    countdown_reset: bool = False,
) -> None:
    """Serve ``fleet`` until cancelled, printing one line per DTU."""
    group = SimulatorGroup(
        fleet,
        host=host,
        port=port,
        encrypt=encrypt,
        speed=speed,
        night_off=night_off,
        countdown_reset=countdown_reset,
    )
    async with group:
        for simulator in group.simulators:
            print(describe(simulator), flush=True)
        await asyncio.Event().wait()


__all__ = ["DtuSimulator", "SimulatorGroup", "describe", "run_simulator"]
