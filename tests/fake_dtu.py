"""Socket-free DTU tests: an event loop on virtual time, and a simulated DTU in memory.

:class:`VirtualTimeLoop` never waits: whenever it has nothing to run it moves
its clock to the next timer. Sleeps, request timeouts, pacing and back-off
then cost no real time, and the order of events depends only on the code,
never on how fast the machine is. :func:`run_virtual` runs a coroutine on it.

:class:`FakeDtu` puts the simulator's state and reply handlers (its sans-I/O
parts) behind a :class:`~hoymiles_bridge.dtu.memory.MemoryEndpoint`, with the
behaviour of the TCP simulator: AppInfo answered with the DTU's own sequence,
encrypted-tag requests in plaintext or under a wrong key ignored, a reboot
that drops the session, refuses connections for a while and changes
``enc_rand``.
"""

from __future__ import annotations

import asyncio
import selectors
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from hoymiles_bridge.dtu.client import DtuClient
from hoymiles_bridge.dtu.memory import MemoryEndpoint, MemoryTransport
from hoymiles_bridge.dtu.session import DtuTarget
from hoymiles_bridge.errors import EncryptionError, FrameError, PayloadDecodeError
from hoymiles_bridge.protocol.codec import decode_frame, encode_message
from hoymiles_bridge.protocol.crypto import is_encrypted_tag
from hoymiles_bridge.protocol.frame import ExtendedHeader, FrameSplitter
from hoymiles_bridge.protocol.registry import reply_tag
from hoymiles_bridge.simulator import SimClock, default_fleet
from hoymiles_bridge.simulator.fleet import DtuSpec
from hoymiles_bridge.simulator.handlers import HANDLERS
from hoymiles_bridge.simulator.state import SimulatedDtu

_T = TypeVar("_T")

APP_INFO_TAG: Final = 0xA301
#: A rebooting DTU drops the session this long after its answer, then refuses
#: connections for REBOOT_DARK seconds (as the TCP simulator, in virtual time).
REBOOT_ABORT_DELAY: Final = 0.2
REBOOT_DARK: Final = 10.0
#: The day the fake DTUs live on, so that sun and clouds are the same every run.
DAY: Final = (2025, 6, 16)


def local_time(hours: float) -> float:
    """Unix time ``hours`` after local midnight of :data:`DAY` (the simulated sun is local)."""
    midnight = time.mktime((*DAY, 0, 0, 0, 0, 0, -1))
    return midnight + hours * 3600


class _VirtualSelector(selectors.SelectSelector):
    """Polls the real descriptors without waiting and advances the virtual clock instead."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            # Nothing ready and no timer: only another thread could still wake
            # the loop, and these tests start none. Fail instead of hanging.
            ready = super().select(0)
            if not ready:
                raise RuntimeError("the virtual loop is idle for good: the test would wait forever")
            return ready
        if timeout > 0:
            self.now += timeout
        return super().select(0)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock starts at 0 and jumps to the next timer when idle."""

    def __init__(self) -> None:
        self._virtual = _VirtualSelector()
        super().__init__(self._virtual)

    def time(self) -> float:
        return self._virtual.now


def run_virtual(main: Callable[[], Awaitable[_T]]) -> _T:
    """Run ``main()`` to completion on a fresh :class:`VirtualTimeLoop`."""

    async def wrapper() -> _T:
        return await main()

    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(wrapper())


class LoopClock(SimClock):
    """Simulated Unix time that follows the running loop's (virtual) clock."""

    __slots__ = ("_loop",)

    def __init__(self, loop: asyncio.AbstractEventLoop, start: float) -> None:
        super().__init__(start=start)
        self._loop = loop

    def now(self) -> float:
        return self._start + self._loop.time() + self._offset


class FakeDtu:
    """A simulated DTU served through a memory endpoint. Create it inside the running loop."""

    def __init__(
        self,
        spec: DtuSpec | None = None,
        *,
        start: float,
        encrypt: bool = False,
        countdown_reset: bool = False,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.start = start
        self.clock = LoopClock(self.loop, start)
        self.spec = spec if spec is not None else default_fleet().dtus[0]
        self.dtu = SimulatedDtu(
            self.spec, self.clock, encrypt=encrypt, countdown_reset=countdown_reset
        )
        self.endpoint = MemoryEndpoint(self.answer)
        #: Virtual times at which a client tried to connect.
        self.attempt_times: list[float] = []
        #: Names of the requests answered, in order, and the Unix times they came.
        self.answered: list[str] = []
        self.answered_at: list[float] = []
        self.ignored = 0
        self.reboots = 0
        self._reboot: asyncio.Handle | None = None

    # --- wiring -------------------------------------------------------------------

    def wall(self) -> float:
        """The Unix time for clients and sessions: the DTU's clock without time travel."""
        return self.start + self.loop.time()

    def transport(self, host: str, port: int) -> MemoryTransport:
        self.attempt_times.append(self.loop.time())
        return self.endpoint.transport(host, port)

    def client(self, target: DtuTarget | None = None, **options: Any) -> DtuClient:
        """A client on this DTU (a session's ``client_factory`` when partially applied)."""
        host, port = (target.host, target.port) if target else ("fake-dtu", 10081)
        options.setdefault("clock", self.wall)
        return DtuClient(host, port, transport_factory=self.transport, **options)

    # --- the DTU ----------------------------------------------------------------

    def answer(self, data: bytes) -> bytes | None:
        """What the simulator's TCP server would send back for ``data``."""
        dtu = self.dtu
        splitter = FrameSplitter(encrypted=is_encrypted_tag if dtu.encrypt else None)
        out = bytearray()
        # A plaintext request to an encrypting DTU waits for a GCM tag that never
        # comes: the splitter holds it back and it is dropped with the splitter.
        for frame in splitter.feed(data):
            if isinstance(frame, FrameError):
                continue
            handler = HANDLERS.get(frame.tag)
            if handler is None or (
                dtu.encrypt and is_encrypted_tag(frame.tag) and not frame.encrypted
            ):
                self.ignored += 1
                continue
            try:
                decoded = decode_frame(frame, dtu.cipher)
            except (EncryptionError, PayloadDecodeError):
                self.ignored += 1  # a stale key: real DTUs stay silent
                continue
            if decoded.message is None:
                continue
            reply = handler(dtu, decoded.message)
            self.answered.append(decoded.name)
            self.answered_at.append(self.wall())
            sequence = dtu.next_app_info_sequence() if frame.tag == APP_INFO_TAG else frame.sequence
            extended = None
            if frame.extended is not None:
                extended = ExtendedHeader(serial=self.spec.serial_int, number=frame.extended.number)
            out += encode_message(
                reply, sequence, tag=reply_tag(frame.tag), cipher=dtu.cipher, extended=extended
            )
            if dtu.reboot_requested and self._reboot is None:
                self._reboot = self.loop.call_later(REBOOT_ABORT_DELAY, self.reboot)
        return bytes(out)

    def reboot(self, dark: float = REBOOT_DARK) -> None:
        """Restart now: drop the session, new ``enc_rand``, refuse connections ``dark`` s."""
        self._reboot = None
        self.reboots += 1
        self.endpoint.drop("the DTU rebooted")
        self.dtu.reboot()
        if dark > 0:
            self.endpoint.refuse = True
            self.loop.call_later(dark, self._wake_up)

    def _wake_up(self) -> None:
        self.endpoint.refuse = False


__all__ = ["DAY", "FakeDtu", "LoopClock", "VirtualTimeLoop", "local_time", "run_virtual"]
