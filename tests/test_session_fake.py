"""DtuSession and PollPolicy on the in-memory transport, in virtual time.

Every test runs a session against :class:`~tests.fake_dtu.FakeDtu` (the
simulator's state and handlers behind a memory endpoint) on an event loop
whose clock jumps from timer to timer: hours of polling, back-off and
timeouts take milliseconds, and no assertion depends on the machine's speed.
Clients use their production defaults (1 s spacing, 10 s timeouts).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import random
import struct
from types import TracebackType

import pytest

from hoymiles_bridge.dtu.client import DEFAULT_MIN_SPACING, HANDSHAKE_SPACING, DtuClient
from hoymiles_bridge.dtu.connection import MAX_FRAME_ERRORS
from hoymiles_bridge.dtu.policy import (
    MIN_INTERVAL_DEFAULT,
    MIN_INTERVAL_NEW_FIRMWARE,
    UNREACHABLE_AFTER,
    PollPolicy,
    firmware_min_interval,
)
from hoymiles_bridge.dtu.session import DtuSession, DtuTarget, SessionState
from hoymiles_bridge.errors import DtuDisplacedError, InvalidArgumentError
from hoymiles_bridge.protocol.frame import MAX_FRAME_SIZE
from hoymiles_bridge.protocol.models import AppInfo, DtuConfig, NetworkInfo, RealData, Warnings
from hoymiles_bridge.simulator import default_fleet
from hoymiles_bridge.simulator.fleet import DtuSpec

from .fake_dtu import FakeDtu, local_time, run_virtual

#: Raw dtu_sw of V01.01.01: the encryption-era firmware that needs 120 s polls.
NEW_FIRMWARE = 0x1101
OLD_FIRMWARE = default_fleet().dtus[0].firmware  # V01.00.01


NOON = local_time(12)
#: Float rounding of sums of virtual seconds.
EPS = 1e-6
AFTER_SUNSET = local_time(20.5)


def _spec(firmware: int) -> DtuSpec:
    return dataclasses.replace(default_fleet().dtus[0], firmware=firmware)


class Recorder:
    """A session listener that notes what it hears, with the loop's (virtual) time."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        #: (time, state, failures at that moment)
        self.states: list[tuple[float, SessionState, int]] = []
        #: (time, fresh)
        self.data: list[tuple[float, bool]] = []
        self.infos: list[AppInfo] = []
        self.alarms: list[Warnings] = []

    async def on_state(self, session: DtuSession) -> None:
        self.states.append((self.loop.time(), session.state, session.failures))

    async def on_dtu_info(
        self,
        session: DtuSession,
        info: AppInfo,
        config: DtuConfig | None,
        network: NetworkInfo | None,
    ) -> None:
        self.infos.append(info)

    async def on_real_data(self, session: DtuSession, data: RealData, fresh: bool) -> None:
        self.data.append((self.loop.time(), fresh))

    async def on_alarms(self, session: DtuSession, warnings: Warnings) -> None:
        self.alarms.append(warnings)

    @property
    def state_sequence(self) -> list[SessionState]:
        return [state for _, state, _ in self.states]

    @property
    def data_times(self) -> list[float]:
        return [t for t, _ in self.data]


class Running:
    """Runs a session on a fake DTU as a named task; ``until`` moves virtual time on."""

    def __init__(
        self,
        fake: FakeDtu,
        policy: PollPolicy,
        *,
        seed: int = 7,
        recorder: Recorder | None = None,
    ) -> None:
        self.fake = fake
        self.loop = asyncio.get_running_loop()
        self.recorder = recorder if recorder is not None else Recorder()
        self.session = DtuSession(
            DtuTarget("fake-dtu"),
            policy,
            self.recorder,
            client_factory=fake.client,
            clock=fake.wall,
            seed=seed,
        )
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Running:
        self._task = asyncio.create_task(self.session.run(), name="session-under-test")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        assert self.session.state is SessionState.STOPPED

    async def until(self, moment: float) -> None:
        """Let the session run up to the virtual time ``moment``."""
        await asyncio.sleep(moment - self.loop.time())
        assert self._task is not None
        if self._task.done():
            self._task.result()  # raises what ended the session
            pytest.fail("the session stopped by itself")

    def poll_starts(self) -> list[float]:
        """Times of the connection attempts, one per poll cycle that opened a session."""
        return sorted(set(self.fake.attempt_times))


def vanish(fake: FakeDtu) -> None:
    """The DTU drops off the network: the open socket goes quiet, new ones time out."""
    fake.endpoint.silent = True
    fake.endpoint.unreachable = True


def come_back(fake: FakeDtu) -> None:
    fake.endpoint.silent = False
    fake.endpoint.unreachable = False


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


# --- the timetable and the firmware-aware interval --------------------------------------


@pytest.mark.parametrize(
    ("firmware", "policy", "interval", "releases"),
    [
        (OLD_FIRMWARE, PollPolicy(), MIN_INTERVAL_DEFAULT, False),
        (NEW_FIRMWARE, PollPolicy(), MIN_INTERVAL_NEW_FIRMWARE, True),
        (OLD_FIRMWARE, PollPolicy(interval=10), MIN_INTERVAL_DEFAULT, False),  # floor
        (NEW_FIRMWARE, PollPolicy(interval=35, min_interval=35), 35, False),  # user's floor
        (OLD_FIRMWARE, PollPolicy(interval=90), 90, True),
    ],
    ids=["old-fw", "new-fw", "old-fw-asked-10s", "new-fw-own-floor", "old-fw-90s"],
)
def test_polls_keep_the_firmware_aware_timetable(
    firmware: int, policy: PollPolicy, interval: float, releases: bool
) -> None:
    async def main() -> None:
        fake = FakeDtu(_spec(firmware), start=NOON)
        async with Running(fake, policy) as run:
            await run.until(interval * 4 + 1)
            session = run.session
            assert session.interval == interval
            assert session.state is SessionState.CONNECTED and session.polls == 5
            # The first poll also reads info, config, network and alarms (1 s
            # apart); the later ones start exactly on the timetable.
            assert run.recorder.data_times[1:] == pytest.approx([interval * k for k in range(1, 5)])
            assert all(fresh for _, fresh in run.recorder.data)
            assert fake.endpoint.connections == (5 if releases else 1)
            assert len(run.recorder.infos) == 1  # re-read only every info_interval

    run_virtual(main)


def test_info_is_read_again_after_the_info_interval() -> None:
    async def main() -> None:
        fake = FakeDtu(start=NOON)
        async with Running(fake, PollPolicy(info_interval=100)) as run:
            await run.until(35 * 6 + 5)
        # at 0, at 105 (the first poll past 100 s), at 210 (past 105 + 100); the
        # listener hears of it after config and network info, 2 s later
        assert len(run.recorder.infos) == 3
        assert fake.answered.count("AppInfoToDtu") == 3

    run_virtual(main)


def test_cloud_upload_pauses_are_never_polled_into() -> None:
    async def main() -> None:
        policy = PollPolicy(cloud_pause=True)
        start = (NOON // 300) * 300 + 295  # 25 s before this upload pause ends
        fake = FakeDtu(start=start)
        async with Running(fake, policy) as run:
            await run.until(1000)
        assert fake.answered_at[0] == pytest.approx(start + 25)  # after the pause
        assert len(fake.answered_at) > 30
        assert all(policy.cloud_pause_left(t) == 0 for t in fake.answered_at)
        polls = [
            t for t, name in zip(fake.answered_at, fake.answered, strict=True) if "RealData" in name
        ]
        # Polls that would fall into a later pause wait for its end.
        assert any(gap > MIN_INTERVAL_DEFAULT + 10 for gap in _gaps(polls))

    run_virtual(main)


# --- failures and back-off ---------------------------------------------------------------------


def test_back_off_doubles_up_to_the_cap_then_recovers() -> None:
    async def main() -> None:
        policy = PollPolicy(interval=600, retry_initial=5, retry_max=300)
        fake = FakeDtu(start=NOON)
        fake.endpoint.refuse = True
        async with Running(fake, policy) as run:
            await run.until(3000)
            starts = run.poll_starts()
            assert run.session.state is SessionState.OFFLINE
            assert run.session.failures == len(starts)
            for number, gap in enumerate(_gaps(starts), start=1):
                step = min(policy.retry_max, policy.retry_initial * 2 ** (number - 1))
                assert step / 2 - EPS <= gap <= step + EPS, (number, gap)
            assert len(starts) > 8  # the 7th back-off and later ones are capped
            # Every cycle tried twice (the client's one retry), at the same moment.
            assert fake.endpoint.attempts == 2 * len(starts)

            fake.endpoint.refuse = False
            await run.until(3000 + policy.retry_max + 1)
            assert run.session.state is SessionState.CONNECTED
            assert run.session.failures == 0
            recovered = run.recorder.states[-1][0]
            await run.until(recovered + 2 * 600 + 10)
            assert run.session.polls == 3  # back on the 600 s timetable
        assert run.recorder.state_sequence == [SessionState.OFFLINE, SessionState.CONNECTED]

    run_virtual(main)


def test_back_off_never_waits_longer_than_the_poll_interval() -> None:
    async def main() -> None:
        fake = FakeDtu(start=NOON)
        fake.endpoint.refuse = True
        async with Running(fake, PollPolicy()) as run:
            await run.until(1000)
            gaps = _gaps(run.poll_starts())
        assert len(gaps) > 20
        assert all(
            PollPolicy().retry_initial / 2 <= gap <= MIN_INTERVAL_DEFAULT + EPS for gap in gaps
        )

    run_virtual(main)


def test_poll_now_cuts_a_back_off_short() -> None:
    async def main() -> None:
        fake = FakeDtu(start=NOON)
        fake.endpoint.refuse = True
        policy = PollPolicy(interval=600, retry_initial=200, retry_max=300)
        async with Running(fake, policy) as run:
            await run.until(50)  # the first back-off waits at least 100 s
            assert run.poll_starts() == [0]
            fake.endpoint.refuse = False
            run.session.poll_now()
            await run.until(60)  # info, config, network, then data: 3 s
            assert run.poll_starts() == [0, 50]
            assert run.session.state is SessionState.CONNECTED

    run_virtual(main)


def test_one_failed_poll_is_not_offline_two_are() -> None:
    async def main() -> None:
        fake = FakeDtu(start=NOON)
        async with Running(fake, PollPolicy()) as run:
            await run.until(10)
            assert run.session.state is SessionState.CONNECTED
            vanish(fake)
            await run.until(200)
            offline = [entry for entry in run.recorder.states if entry[1] is SessionState.OFFLINE]
            assert len(offline) == 1
            _, _, failures = offline[0]
            assert failures == UNREACHABLE_AFTER
            assert "no answer" in run.session.state_reason  # the connect timeout
            come_back(fake)
            await run.until(300)
            assert run.session.state is SessionState.CONNECTED
        assert run.recorder.state_sequence == [
            SessionState.CONNECTED,
            SessionState.OFFLINE,
            SessionState.CONNECTED,
        ]

    run_virtual(main)


# --- night ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "expected"),
    [(AFTER_SUNSET, SessionState.NIGHT), (NOON, SessionState.OFFLINE)],
    ids=["after-sunset", "noon"],
)
def test_a_dtu_lost_after_production_ended_is_night_not_offline(
    start: float, expected: SessionState
) -> None:
    async def main() -> None:
        fake = FakeDtu(start=start)
        async with Running(fake, PollPolicy()) as run:
            await run.until(10)
            data = run.session.last_data
            assert data is not None
            power = sum(i.power for i in data.inverters)
            assert power == 0 if expected is SessionState.NIGHT else power > 100
            vanish(fake)
            await run.until(3600)
            assert run.session.state is expected
            # All the while it keeps looking: never more often than the connect
            # timeout and back-off allow, never less often than the poll interval.
            attempts = [t for t in run.poll_starts() if t > 10]
            assert len(attempts) > 100
            assert all(5 - EPS <= gap <= MIN_INTERVAL_DEFAULT + EPS for gap in _gaps(attempts))
            come_back(fake)
            await run.until(3600 + MIN_INTERVAL_DEFAULT + 1)
            assert run.session.state is SessionState.CONNECTED
        assert run.recorder.state_sequence == [
            SessionState.CONNECTED,
            expected,
            SessionState.CONNECTED,
        ]

    run_virtual(main)


def test_unreachable_from_the_start_is_offline_even_at_night() -> None:
    """Without data there is no telling dusk from a fault."""

    async def main() -> None:
        fake = FakeDtu(start=AFTER_SUNSET)
        vanish(fake)
        async with Running(fake, PollPolicy()) as run:
            await run.until(100)
            assert run.session.state is SessionState.OFFLINE

    run_virtual(main)


# --- displacement --------------------------------------------------------------------------------


def test_displaced_by_another_app_steps_back_then_returns() -> None:
    async def main() -> None:
        policy = PollPolicy()  # 35 s: the socket is kept between polls
        fake = FakeDtu(start=NOON)
        async with Running(fake, policy) as run:
            await run.until(40)
            # The S-Miles app connects and keeps the DTU's only socket for a while.
            # (Its connections are not in fake.attempt_times, which are the session's.)
            app = DtuClient("fake-dtu", min_spacing=0, transport_factory=fake.endpoint.transport)
            await app.app_info()
            await run.until(69)
            connection = run.session.client.connection
            assert connection is not None
            assert isinstance(connection.close_error, DtuDisplacedError)
            await run.until(71)  # the poll due at 70 backs off instead
            assert run.session.state is SessionState.DISPLACED
            assert run.session.displacements == 1
            assert "another client" in run.session.state_reason
            assert app.connected  # we did not take the socket back
            assert run.session.next_poll is not None
            wait = run.session.next_poll - (fake.start + 70)
            assert policy.displaced_initial / 2 <= wait <= policy.displaced_initial
            await app.close()
            await run.until(70 + policy.displaced_initial + 1)
            assert run.session.state is SessionState.CONNECTED
            assert run.session.displacements == 0
            assert run.poll_starts() == [0, pytest.approx(70 + wait)]
        assert run.recorder.state_sequence == [
            SessionState.CONNECTED,
            SessionState.DISPLACED,
            SessionState.CONNECTED,
        ]

    run_virtual(main)


# --- frozen data -------------------------------------------------------------------------------


def test_frozen_data_is_detected_and_a_new_session_tried() -> None:
    async def main() -> None:
        # The DTU restarts its 30 s refresh window at every request, so 10 s
        # polls see the same snapshot again and again.
        fake = FakeDtu(start=NOON, countdown_reset=True)
        policy = PollPolicy(interval=10, min_interval=10, frozen_after=3)
        async with Running(fake, policy) as run:
            await run.until(31)
            assert run.session.state is SessionState.FROZEN
            assert run.session.frozen_polls == 3
            assert "3 times" in run.session.state_reason
            assert [fresh for _, fresh in run.recorder.data] == [True, False, False, False]
            assert not run.session.client.connected  # dropped to unstick it
            await run.until(45)
            assert fake.endpoint.connections == 2
            fake.dtu.countdown_reset = False  # it refreshes again 30 s after the last one
            await run.until(75)
            assert run.session.state is SessionState.CONNECTED
            assert run.session.frozen_polls == 0
        fresh = [fresh for _, fresh in run.recorder.data]
        assert fresh[-1] and not any(fresh[1:-1])
        assert run.recorder.state_sequence[:2] == [SessionState.CONNECTED, SessionState.FROZEN]

    run_virtual(main)


def test_performance_mode_is_sent_again_after_a_reboot_froze_the_data() -> None:
    async def main() -> None:
        fake = FakeDtu(start=NOON, countdown_reset=True)
        policy = PollPolicy(interval=10, min_interval=10, frozen_after=3, performance_mode=True)
        async with Running(fake, policy) as run:
            await run.until(20)
            assert fake.dtu.performance_mode and run.session.performance_mode
            assert all(fresh for _, fresh in run.recorder.data)
            fake.loop.call_later(1, fake.reboot, 5.0)  # at 21: forgets performance mode
            await run.until(61)
            assert run.session.state is SessionState.FROZEN
            assert not run.session.performance_mode
            await run.until(75)  # a new session: performance mode first, then data
            assert run.session.state is SessionState.CONNECTED
            assert fake.dtu.performance_mode and run.session.performance_mode
        assert fake.reboots == 1
        assert run.recorder.state_sequence == [
            SessionState.CONNECTED,
            SessionState.FROZEN,
            SessionState.CONNECTED,
        ]

    run_virtual(main)


# --- encryption -----------------------------------------------------------------------------------


def test_encrypted_dtu_reboot_is_followed_by_a_new_key_without_a_failed_poll() -> None:
    async def main() -> None:
        fake = FakeDtu(_spec(NEW_FIRMWARE), start=NOON, encrypt=True)
        async with Running(fake, PollPolicy()) as run:
            await run.until(60)
            first_key = fake.dtu.enc_rand
            client = run.session.client
            assert client.encrypted is True
            fake.reboot()  # between two polls: the socket was released
            assert fake.dtu.enc_rand != first_key
            await run.until(2 * MIN_INTERVAL_NEW_FIRMWARE + 1)
            assert run.session.state is SessionState.CONNECTED
            assert run.session.failures == 0 and run.session.polls == 3
            assert fake.ignored == 1  # the one request under the old key
            info = client.app_info_cache
            assert info is not None and info.enc_rand == fake.dtu.enc_rand
        interval = MIN_INTERVAL_NEW_FIRMWARE
        # The poll at 120 waited 10 s for the old key's answer, re-read app info
        # (1 s spacing) and asked again after the handshake's 0.5 s; the next
        # poll is back on the timetable.
        handshake = DEFAULT_MIN_SPACING + HANDSHAKE_SPACING
        assert run.recorder.data_times[1:] == pytest.approx(
            [interval + 10 + handshake, 2 * interval]
        )
        assert run.recorder.state_sequence == [SessionState.CONNECTED]

    run_virtual(main)


# --- the policy itself ------------------------------------------------------------------------


def test_policy_floors_and_socket_release() -> None:
    assert firmware_min_interval(None) == MIN_INTERVAL_DEFAULT
    assert firmware_min_interval(0x10FF) == MIN_INTERVAL_DEFAULT
    assert firmware_min_interval(0x1100) == MIN_INTERVAL_NEW_FIRMWARE
    policy = PollPolicy(interval=60)
    assert policy.effective_interval(OLD_FIRMWARE) == 60
    assert policy.effective_interval(NEW_FIRMWARE) == MIN_INTERVAL_NEW_FIRMWARE
    assert PollPolicy(interval=5, min_interval=0).effective_interval(NEW_FIRMWARE) == 5
    assert policy.releases_socket(60) and not policy.releases_socket(59)
    assert not PollPolicy(release_socket_after=0).releases_socket(1000)
    text = PollPolicy(interval=35).describe(NEW_FIRMWARE)
    assert "poll every 120 s" in text and "firmware needs at least 120 s" in text


def test_policy_cloud_pause_window() -> None:
    policy = PollPolicy(cloud_pause=True)
    base = 1_700_000_100 - 1_700_000_100 % 300  # a multiple of the 300 s grid
    assert policy.cloud_pause_left(base + 289) == 0
    assert policy.cloud_pause_left(base + 290) == 30
    assert policy.cloud_pause_left(base + 300 + 19) == pytest.approx(1)
    assert policy.cloud_pause_left(base + 300 + 20) == 0
    assert PollPolicy().cloud_pause_left(base + 295) == 0


@pytest.mark.parametrize("seed", range(5))
def test_policy_backoff_is_jittered_between_half_and_the_full_step(seed: int) -> None:
    rng = random.Random(seed)
    for failures in range(1, 15):
        step = min(300.0, 5.0 * 2 ** (failures - 1))
        assert step / 2 <= PollPolicy.backoff(failures, 5.0, 300.0, rng) <= step


# --- hostile DTUs and failing listeners: a session only ends when cancelled ----------------

#: A DTU serial no topic may ever carry.
HOSTILE_SERIAL = "4143/cmd/#"


def _turn_hostile(fake: FakeDtu) -> str:
    """Make ``fake`` answer with :data:`HOSTILE_SERIAL`; returns its real serial."""
    good = fake.dtu.spec.serial
    fake.dtu.spec = dataclasses.replace(fake.dtu.spec, serial=HOSTILE_SERIAL)
    return good


def _behave(fake: FakeDtu, serial: str) -> None:
    fake.dtu.spec = dataclasses.replace(fake.dtu.spec, serial=serial)


class FailingRecorder(Recorder):
    """A listener that raises ``error`` from every real-data report while ``failing``."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error
        self.failing = True
        self.raised = 0

    async def on_real_data(self, session: DtuSession, data: RealData, fresh: bool) -> None:
        await super().on_real_data(session, data, fresh)
        if self.failing:
            self.raised += 1
            raise self.error


def test_a_dtu_answering_with_a_bad_serial_is_backed_off_then_recovers() -> None:
    async def main() -> None:
        fake = FakeDtu(start=NOON)
        good = _turn_hostile(fake)
        async with Running(fake, PollPolicy()) as run:
            await run.until(300)
            session = run.session
            assert session.state is SessionState.OFFLINE
            assert "serial number in AppInfoFromDtu.dtu_sn" in session.state_reason
            # nothing the DTU said reached the listener
            assert run.recorder.infos == [] and run.recorder.data == []
            # backed off: far fewer attempts than 300 s of retries without pause
            starts = run.poll_starts()
            assert 5 < len(starts) < 300 / PollPolicy().retry_initial
            assert all(gap >= PollPolicy().retry_initial / 2 - EPS for gap in _gaps(starts))
            _behave(fake, good)
            await run.until(300 + MIN_INTERVAL_DEFAULT + 5)
            assert session.state is SessionState.CONNECTED
            assert session.failures == 0
            assert [info.dtu_serial for info in run.recorder.infos] == [good]
            assert session.dtu_serial == good
        assert run.recorder.state_sequence == [SessionState.OFFLINE, SessionState.CONNECTED]

    run_virtual(main)


@pytest.mark.parametrize(
    "error",
    [InvalidArgumentError("a listener's bug"), ConnectionResetError("a socket broke")],
    ids=["project-error", "os-error"],
)
def test_a_listener_that_raises_does_not_end_the_session(error: Exception) -> None:
    async def main() -> None:
        fake = FakeDtu(start=NOON)
        recorder = FailingRecorder(error)
        policy = PollPolicy()
        async with Running(fake, policy, recorder=recorder) as run:
            await run.until(600)  # ``until`` fails if the session ended
            session = run.session
            assert recorder.raised > 5
            assert session.failures == recorder.raised
            assert session.state is SessionState.OFFLINE
            assert f"unexpected error: {error}" in session.state_reason
            # every failure closed the socket and backed off before the next try
            starts = run.poll_starts()
            assert len(starts) == recorder.raised
            assert all(gap >= policy.retry_initial / 2 - EPS for gap in _gaps(starts))
            recorder.failing = False
            await run.until(600 + 2 * MIN_INTERVAL_DEFAULT + 5)
            assert session.state is SessionState.CONNECTED
            assert session.failures == 0
            raised = recorder.raised
            await run.until(600 + 6 * MIN_INTERVAL_DEFAULT)
            assert recorder.raised == raised
            recent = [t for t, _ in recorder.data if t > 600 + 2 * MIN_INTERVAL_DEFAULT + 5]
            assert len(recent) >= 3  # back on the 35 s timetable

    run_virtual(main)


def test_a_hostile_dtu_does_not_stop_its_neighbour() -> None:
    """Two sessions in one task group, as the fleet runs them: one DTU sends a bad
    serial and then data its listener chokes on; the other one polls on as usual."""

    async def main() -> None:
        hostile = FakeDtu(start=NOON)
        good_serial = _turn_hostile(hostile)
        spec = dataclasses.replace(default_fleet().dtus[0], serial="10F872226797")
        calm = FakeDtu(spec, start=NOON)
        hostile_listener = FailingRecorder(InvalidArgumentError("no such inverter"))
        calm_listener = Recorder()
        policy = PollPolicy()
        sessions = [
            DtuSession(
                DtuTarget(name, name=name),
                policy,
                listener,
                client_factory=fake.client,
                clock=fake.wall,
                seed=3,
            )
            for name, fake, listener in (
                ("hostile", hostile, hostile_listener),
                ("calm", calm, calm_listener),
            )
        ]

        async def fleet() -> None:
            async with asyncio.TaskGroup() as group:
                for session in sessions:
                    group.create_task(session.run(), name=f"session-{session.target.label}")

        task = asyncio.create_task(fleet(), name="two-sessions")
        await asyncio.sleep(300)
        _behave(hostile, good_serial)  # from now on its listener is what fails
        await asyncio.sleep(300)
        assert not task.done()
        bad, good = sessions
        assert bad.state is SessionState.OFFLINE and bad.failures > 5
        assert hostile_listener.raised > 0
        assert all(info.dtu_serial == good_serial for info in hostile_listener.infos)
        assert good.state is SessionState.CONNECTED and good.failures == 0
        # the neighbour kept its timetable the whole time
        times = calm_listener.data_times
        assert len(times) == 600 // MIN_INTERVAL_DEFAULT + 1
        assert _gaps(times)[1:] == pytest.approx([MIN_INTERVAL_DEFAULT] * (len(times) - 2))
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert all(session.state is SessionState.STOPPED for session in sessions)

    run_virtual(main)


def test_a_dtu_that_sends_garbage_is_dropped_backed_off_and_found_again() -> None:
    """A stream of maximum-length headers: the connection closes itself after a few
    of them (the splitter's work stays linear), the session backs off and recovers."""

    async def main() -> None:
        fake = FakeDtu(start=NOON)
        header = struct.pack(">2sHHHH", b"HM", 0xA211, 1, 0, MAX_FRAME_SIZE)
        fake.endpoint.responder = lambda data: header * 6554  # 64 KiB
        async with Running(fake, PollPolicy()) as run:
            await run.until(300)
            session = run.session
            assert session.state is SessionState.OFFLINE
            assert f"{MAX_FRAME_ERRORS} malformed frames in a row" in session.state_reason
            starts = run.poll_starts()
            assert all(gap >= PollPolicy().retry_initial / 2 - EPS for gap in _gaps(starts))
            fake.endpoint.responder = fake.answer
            await run.until(300 + MIN_INTERVAL_DEFAULT + 5)
            assert session.state is SessionState.CONNECTED and session.failures == 0
        assert run.recorder.state_sequence == [SessionState.OFFLINE, SessionState.CONNECTED]

    run_virtual(main)


# --- the first poll ---------------------------------------------------------------------------


def test_the_first_poll_asks_for_real_data_before_config_and_network() -> None:
    async def main() -> None:
        fake = FakeDtu(start=NOON)
        async with Running(fake, PollPolicy()) as run:
            await run.until(30)
            assert run.session.app_info is not None and run.session.config is not None
        first = fake.answered[:4]
        # The client's handshake (app info, for the encryption), then real data at
        # once; app info is not asked twice, and config and network info follow.
        assert "AppInfo" in first[0] and "RealData" in first[1], first
        assert sum("AppInfo" in name for name in fake.answered) == 1
        assert any("Config" in name for name in first[2:]), first
        assert fake.answered_at[1] - fake.answered_at[0] == pytest.approx(HANDSHAKE_SPACING)
        assert run.recorder.data_times[0] == pytest.approx(fake.answered_at[1] - NOON, abs=0.1)

    run_virtual(main)
