"""One supervised session per DTU: polling, slower reads, alarms, back-off.

:class:`DtuSession` owns a :class:`~hoymiles_bridge.dtu.client.DtuClient`
and runs until cancelled. It never raises for a DTU problem: every failure
becomes a state (``offline``, ``night``, ``displaced``...) and a back-off, and
the listener hears about it. Nor does it raise for any other error of the
package (:class:`~hoymiles_bridge.errors.HoymilesError`, a listener's
included) or an unexpected ``OSError``: the cycle is logged and backed off
like a failed poll. Only cancellation ends a session, so one DTU can never
end the task group the others run in. Sessions of different DTUs share
nothing, so one failing DTU never delays another.

Two clocks: ``clock`` (Unix time) decides what is due - cloud-upload pauses,
info re-reads, ``next_poll``; waiting and the poll timetable use the event
loop's clock and timers only. An event loop with a virtual clock therefore
runs hours of polling, back-off and timeouts in milliseconds.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar

from hoymiles_bridge.dtu.client import DtuClient
from hoymiles_bridge.dtu.policy import UNREACHABLE_AFTER, PollPolicy
from hoymiles_bridge.errors import (
    DtuConnectionError,
    DtuDisplacedError,
    DtuRejectedError,
    DtuTimeoutError,
    HoymilesError,
    ProtocolError,
)
from hoymiles_bridge.protocol.devices import inverter_type, parse_serial
from hoymiles_bridge.protocol.models import AppInfo, DtuConfig, NetworkInfo, RealData, Warnings

_LOGGER = logging.getLogger(__name__)
_T = TypeVar("_T")

#: Power (W, or share of the rated power) under which losing the DTU counts
#: as nightfall rather than a fault.
DUSK_POWER_MIN: Final = 5.0
DUSK_POWER_SHARE: Final = 0.02


class SessionState(enum.StrEnum):
    STARTING = "starting"
    CONNECTED = "connected"
    OFFLINE = "offline"  # not reachable (during the day: a problem)
    NIGHT = "night"  # not reachable after production ended: expected for HMS-W
    DISPLACED = "displaced"  # another client took the DTU; stepping back
    FROZEN = "frozen"  # the DTU keeps repeating the same snapshot
    STOPPED = "stopped"


class SessionListener(Protocol):
    """What a session reports to (the fleet, :class:`hoymiles_bridge.core.fleet.Fleet`)."""

    async def on_state(self, session: DtuSession) -> None: ...

    async def on_dtu_info(
        self,
        session: DtuSession,
        info: AppInfo,
        config: DtuConfig | None,
        network: NetworkInfo | None,
    ) -> None: ...

    async def on_real_data(self, session: DtuSession, data: RealData, fresh: bool) -> None: ...

    async def on_alarms(self, session: DtuSession, warnings: Warnings) -> None: ...


@dataclass(frozen=True, slots=True)
class DtuTarget:
    host: str
    port: int = 10081
    name: str | None = None

    @property
    def label(self) -> str:
        return self.name or f"{self.host}:{self.port}"


ClientFactory = Callable[[DtuTarget], DtuClient]


def default_client(target: DtuTarget) -> DtuClient:
    return DtuClient(target.host, target.port)


class DtuSession:
    """Keeps one DTU's data flowing, politely."""

    def __init__(
        self,
        target: DtuTarget,
        policy: PollPolicy,
        listener: SessionListener,
        *,
        client_factory: ClientFactory = default_client,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
        start_delay: float = 0.0,
    ) -> None:
        self.target = target
        #: Seconds to wait before the first poll (spreads many DTUs over the interval).
        self.start_delay = start_delay
        self.policy = policy
        self.listener = listener
        self.client = client_factory(target)
        self._clock = clock
        self._rng = random.Random(seed)
        self.state = SessionState.STARTING
        self.state_reason = ""
        self.app_info: AppInfo | None = None
        self.config: DtuConfig | None = None
        self.network: NetworkInfo | None = None
        self.last_data: RealData | None = None
        self.last_poll: float | None = None  # wall clock of the last successful poll
        self.next_poll: float | None = None
        self.rtt: float | None = None  # seconds, last real-data round trip
        self.failures = 0
        self.displacements = 0
        self.polls = 0
        self.frozen_polls = 0
        self.performance_mode = False
        self._info_due = 0.0
        self._warning_counts: dict[str, int] | None = None
        self._wake = asyncio.Event()
        self._policy_logged = False

    @property
    def dtu_serial(self) -> str | None:
        """The DTU's serial: from app info, or before it (the first poll reads real
        data first) from the real data or the client's encryption handshake."""
        if self.app_info is not None:
            return self.app_info.dtu_serial
        if self.last_data is not None and self.last_data.dtu_serial:
            return self.last_data.dtu_serial
        known = self.client.app_info_cache
        return known.dtu_serial if known is not None else None

    @property
    def interval(self) -> float:
        fw = self.app_info.dtu_firmware_raw if self.app_info else None
        return self.policy.effective_interval(fw)

    def poll_now(self) -> None:
        """Cut the current wait short (after a command, to show its effect)."""
        self._wake.set()

    async def _set_state(self, state: SessionState, reason: str = "") -> None:
        if state is self.state and reason == self.state_reason:
            return
        self.state, self.state_reason = state, reason
        level = (
            logging.INFO
            if state in {SessionState.CONNECTED, SessionState.NIGHT}
            else logging.WARNING
        )
        _LOGGER.log(
            level, "%s: %s%s", self.target.label, state.value, f" ({reason})" if reason else ""
        )
        await self.listener.on_state(self)

    # --- the loop -----------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self.start_delay > 0:
                await self._sleep(self.start_delay)
            while True:
                began = loop.time()
                try:
                    wait = await self._cycle()
                except (HoymilesError, OSError) as err:
                    wait = await self._survive(err)
                # Keep a timetable: the next poll is due ``wait`` after this one
                # began, however long the poll and its publishing took. The
                # timetable runs on the loop's clock, the one its timers use.
                await self._sleep(max(0.0, wait - (loop.time() - began)))
        finally:
            await self.client.close()
            self.state = SessionState.STOPPED

    async def _sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less when :meth:`poll_now` was called (even during the poll)."""
        self.next_poll = self._clock() + seconds
        try:
            async with asyncio.timeout(max(seconds, 0.0)):
                await self._wake.wait()
        except TimeoutError:
            pass
        self._wake.clear()

    async def _cycle(self) -> float:
        """One poll; returns how long to wait before the next."""
        if self._displaced():
            return await self._back_off_displaced()
        pause = self.policy.cloud_pause_left(self._clock())
        if pause > 0:
            _LOGGER.debug("%s: cloud-upload pause, %.0f s", self.target.label, pause)
            return pause
        try:
            await self._poll()
        except DtuDisplacedError:
            return await self._back_off_displaced()
        except (DtuConnectionError, DtuTimeoutError) as err:
            return await self._failed(str(err))
        except ProtocolError as err:
            return await self._failed(f"protocol error: {err}")
        except DtuRejectedError as err:
            return await self._failed(f"the DTU refused a request: {err}")
        self.failures = 0
        self.displacements = 0
        if self.policy.releases_socket(self.interval):
            await self.client.close()
        return self.interval

    async def _survive(self, err: HoymilesError | OSError) -> float:
        """A cycle ended with an error nothing expected: log it, back off, go on.

        A bad reply the client did not map, a listener that raised, a socket
        error: each is one failed poll, never the end of the session.
        """
        # Loud for the first failure of a streak; the state change reports the rest.
        _LOGGER.log(
            logging.WARNING if self.failures == 0 else logging.DEBUG,
            "%s: the poll failed unexpectedly (%s: %s); backing off",
            self.target.label,
            type(err).__name__,
            err,
        )
        _LOGGER.debug("%s: where it failed", self.target.label, exc_info=err)
        try:
            return await self._failed(f"unexpected error: {err}")
        except (HoymilesError, OSError) as again:
            # Reporting the failure failed too (the listener raised again):
            # the back-off still holds.
            _LOGGER.warning(
                "%s: reporting the failure failed as well (%s: %s)",
                self.target.label,
                type(again).__name__,
                again,
            )
            return self._retry_wait()

    def _displaced(self) -> bool:
        conn = self.client.connection
        return conn is not None and isinstance(conn.close_error, DtuDisplacedError)

    async def _back_off_displaced(self) -> float:
        self.displacements += 1
        await self.client.close()  # forget the closed session; reconnect after the pause
        wait = PollPolicy.backoff(
            self.displacements, self.policy.displaced_initial, self.policy.displaced_max, self._rng
        )
        await self._set_state(
            SessionState.DISPLACED,
            f"another client (the S-Miles app?) is using the DTU; retrying in {wait:.0f} s",
        )
        return wait

    def _retry_wait(self) -> float:
        """The back-off after ``self.failures`` failed polls, never above the poll interval."""
        wait = PollPolicy.backoff(
            self.failures, self.policy.retry_initial, self.policy.retry_max, self._rng
        )
        return min(wait, max(self.interval, self.policy.retry_initial))

    async def _failed(self, reason: str) -> float:
        self.failures += 1
        wait = self._retry_wait()
        await self.client.close()
        if self.failures >= UNREACHABLE_AFTER or self.state is SessionState.STARTING:
            if self._dusk():
                await self._set_state(
                    SessionState.NIGHT, "the DTU is off, as PV-powered DTUs are at night"
                )
            else:
                await self._set_state(SessionState.OFFLINE, reason)
        return wait

    def _dusk(self) -> bool:
        """Whether the last data looked like dusk: nearly no power left.

        A PV-powered DTU (HMS-W) switches off when its panels do, so losing it
        right after production faded is expected, not a fault.
        """
        if self.last_data is None:
            return False
        inverters = self.last_data.inverters
        power = sum(i.power for i in inverters)
        rated = sum(inverter_type(parse_serial(i.serial)).rated_power for i in inverters)
        return power <= max(DUSK_POWER_MIN, rated * DUSK_POWER_SHARE)

    async def _poll(self) -> None:
        """One poll: real data, then (first, or every ``info_interval``) app info and config.

        The first poll asks for real data before anything else (the client
        reads app info on its own when it must learn the encryption), so the
        first values come in about a second; app info, config and network
        info follow in the same poll.
        """
        now = self._clock()
        new_session = not self.client.connected
        first = self.app_info is None
        if not first and now >= self._info_due:
            await self._read_info()
            self._info_due = now + self.policy.info_interval
        wants_mode = self.policy.performance_mode and not self.performance_mode
        if wants_mode and new_session and not first:
            await self.client.performance_mode()
            self.performance_mode = True
        data = await self.client.real_data()
        self.rtt = self.client.last_rtt
        fresh = self.last_data is None or data.timestamp != self.last_data.timestamp
        self.frozen_polls = 0 if fresh else self.frozen_polls + 1
        self.last_data = data
        self.last_poll = self._clock()
        self.polls += 1
        if self.frozen_polls >= self.policy.frozen_after:
            await self._set_state(
                SessionState.FROZEN,
                f"the DTU repeated the same data {self.frozen_polls} times",
            )
            await self.client.close()  # a fresh session often unsticks it
            self.performance_mode = False
        else:
            await self._set_state(SessionState.CONNECTED)
        await self.listener.on_real_data(self, data, fresh)
        if first:
            await self._read_info(self.client.app_info_cache)
            self._info_due = now + self.policy.info_interval
            if self.policy.performance_mode and not self.performance_mode:
                await self.client.performance_mode()
                self.performance_mode = True
        if fresh:
            await self._check_alarms(data)

    async def _read_info(self, known: AppInfo | None = None) -> None:
        """App info (``known``: what the client just read for the encryption), config, network."""
        info = known if known is not None else await self.client.app_info()
        changed = self.app_info is None or info.dtu_serial != self.app_info.dtu_serial
        self.app_info = info
        config = await self._optional(self.client.get_config())
        network = await self._optional(self.client.network_info())
        self.config = config or self.config
        self.network = network or self.network
        if changed or not self._policy_logged:
            self._policy_logged = True
            _LOGGER.info(
                "%s: DTU %s (%s, firmware %s, %s); %s",
                self.target.label,
                info.dtu_serial,
                info.dtu_model,
                info.dtu_firmware,
                "encrypted" if info.encrypted else "not encrypted",
                self.policy.describe(info.dtu_firmware_raw),
            )
        await self.listener.on_dtu_info(self, info, self.config, self.network)

    async def _optional(self, call: Awaitable[_T]) -> _T | None:
        """Reads some firmware does not answer must not stop the data flow."""
        try:
            return await call
        except (DtuTimeoutError, DtuRejectedError, ProtocolError) as err:
            _LOGGER.debug("%s: optional read failed: %s", self.target.label, err)
            return None

    async def _check_alarms(self, data: RealData) -> None:
        counts = {i.serial: i.warning_count for i in data.inverters}
        if self._warning_counts is not None and counts == self._warning_counts:
            return
        warnings = await self._optional(self.client.alarms())
        if warnings is not None:
            self._warning_counts = counts
            await self.listener.on_alarms(self, warnings)

    async def run_command(self, call: Callable[[DtuClient], Awaitable[_T]]) -> _T:
        """Run a command through this session's client, then poll soon to show its effect."""
        result = await call(self.client)
        self._info_due = 0.0  # read the config (limit) back with the next poll
        self.poll_now()
        return result


__all__ = ["DtuSession", "DtuTarget", "SessionListener", "SessionState"]
