"""Keeps the cloud's station data flowing: the polling loop and its fault handling.

:class:`CloudPoller` finds the account's stations (all of them, or the ones
configured; the list is read again every hour), then polls each station's live
flow at the pace the cloud asks (``dly``, never faster than
:data:`~hoymiles_bridge.cloud.facts.MIN_POLL_S`, never faster than the
configured interval), and its energy counters and batteries every
:data:`ENERGY_INTERVAL_S`. It reports to a listener.

Faults, each said once in plain words:

* a refused login (wrong password, unknown account, ...): one error line and
  no more polling until the bridge restarts with other credentials;
* the daily login cap: polling waits until the next UTC day, and says so;
* a token refused again right after one new login: back off and try later;
* a 5xx, a timeout, bad JSON, an empty or all-zero live answer: the station
  keeps its last good values, marked stale after :data:`STALE_AFTER` missed
  polls. Nothing of it ends the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol

from hoymiles_bridge.cloud import facts
from hoymiles_bridge.cloud.client import CloudClient
from hoymiles_bridge.cloud.models import BatteryInfo, Flow, Station, StationData
from hoymiles_bridge.errors import (
    CloudLoginCapError,
    CloudLoginError,
    CloudRejectedError,
    CloudResponseError,
    CloudTokenError,
    CloudUnavailableError,
    InvalidArgumentError,
)

_LOGGER = logging.getLogger(__name__)

#: A station's values are stale after this many missed polls in a row.
STALE_AFTER: Final = 3
#: Energy counters and batteries are read this often (the cloud refreshes them
#: every 5 to 15 minutes).
ENERGY_INTERVAL_S: Final = 300.0
#: After a failed read of the energy counters, the next try waits this long.
ENERGY_RETRY_S: Final = 60.0
#: The default seconds between two live polls (``cloud.poll_interval``).
DEFAULT_POLL_INTERVAL: Final = 10
#: The first wait after a token refused right after a new login, doubled at
#: each repeat up to :data:`MAX_BACKOFF_S`; the same after a failed discovery.
TOKEN_BACKOFF_S: Final = 900.0
DISCOVERY_BACKOFF_S: Final = 60.0
MAX_BACKOFF_S: Final = 6 * 3600.0
#: The station list is read again this often: a station added in the app is
#: polled within the hour, without a restart.
STATIONS_INTERVAL_S: Final = 3600.0


def station_ids(value: str | None) -> tuple[int, ...]:
    """The station ids of ``cloud.stations`` ("101, 202"); empty: every station."""
    if value is None or not value.strip():
        return ()
    found: list[int] = []
    for part in value.replace(";", ",").split(","):
        item = part.strip()
        if not item:
            continue
        if not item.isdigit() or len(item) > 15 or int(item) == 0:
            raise InvalidArgumentError(
                f"cloud.stations: {item[:20]!r} is not a station id (a whole number)"
            )
        if int(item) not in found:
            found.append(int(item))
    return tuple(found)


@dataclass(frozen=True, slots=True)
class StationSnapshot:
    """What the bridge knows of one station now: its last good values.

    ``updated_at`` is when the live values were last good; ``stale`` says
    that :data:`STALE_AFTER` polls in a row brought nothing usable.
    """

    sid: int
    name: str
    flow: Flow | None = None
    energy: StationData | None = None
    batteries: tuple[BatteryInfo, ...] = ()
    updated_at: datetime | None = None
    missed: int = 0
    stale: bool = False


@dataclass(frozen=True, slots=True)
class CloudStatus:
    """The poller's state in plain words, for a status card."""

    login: str
    last_update: datetime | None
    next_poll: datetime | None
    last_error: str
    stations: tuple[int, ...]
    running: bool


class CloudListener(Protocol):
    """What the poller reports to."""

    def station_updated(self, snapshot: StationSnapshot) -> None: ...

    def status_changed(self, status: CloudStatus) -> None: ...


class _Quiet:
    def station_updated(self, snapshot: StationSnapshot) -> None:
        return None

    def status_changed(self, status: CloudStatus) -> None:
        return None


def _utcnow() -> datetime:
    return datetime.now(UTC)


class CloudPoller:
    """Polls the cloud for the stations of one account (see the module docstring).

    ``clock`` (UTC time), ``monotonic`` and ``sleep`` are for tests.
    """

    def __init__(
        self,
        client: CloudClient,
        *,
        stations: tuple[int, ...] = (),
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        listener: CloudListener | None = None,
        clock: Callable[[], datetime] = _utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._client = client
        self._wanted = stations
        self._poll_interval = max(facts.MIN_POLL_S, float(poll_interval))
        self._listener: CloudListener = listener or _Quiet()
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._stations: tuple[Station, ...] | None = None
        self._stations_due = 0.0
        self._snapshots: dict[int, StationSnapshot] = {}
        self._energy_due: dict[int, float] = {}
        self._backoff = 0.0
        self._halted = False
        self._last_error = ""
        self._last_update: datetime | None = None
        self._next_poll: datetime | None = None
        self._said_cap: datetime | None = None
        self._said_zero: set[int] = set()

    # --- what it knows ----------------------------------------------------------------

    @property
    def snapshots(self) -> tuple[StationSnapshot, ...]:
        return tuple(self._snapshots.values())

    @property
    def halted(self) -> bool:
        """Whether polling stopped for good (a login the cloud refused)."""
        return self._halted

    @property
    def status(self) -> CloudStatus:
        return CloudStatus(
            login=self._client.state.value,
            last_update=self._last_update,
            next_poll=self._next_poll,
            last_error=self._last_error,
            stations=tuple(self._snapshots),
            running=not self._halted,
        )

    # --- the loop ----------------------------------------------------------------------

    async def run(self) -> None:
        """Poll until cancelled, or until the cloud refuses the login for good."""
        while True:
            delay = await self.poll_once()
            if delay is None:
                return
            await self._sleep(delay)

    async def poll_once(self) -> float | None:
        """One round over the stations; the seconds until the next, ``None`` when halted."""
        if self._halted:
            return None
        try:
            delay = await self._round()
        except CloudLoginCapError as err:
            delay = max(0.0, (err.retry_at - self._clock()).total_seconds())
            self._error(str(err))
            if self._said_cap != err.retry_at:
                self._said_cap = err.retry_at
                _LOGGER.warning("cloud: %s; polling waits until then", err)
            self._missed_all()
        except CloudLoginError as err:
            self._halted = True
            self._error(str(err))
            _LOGGER.error(  # noqa: TRY400 - one sentence for the user, no traceback
                "cloud: %s. Polling of the cloud stops until the bridge restarts", err
            )
            self._missed_all()
            self._next_poll = None
            self._listener.status_changed(self.status)
            return None
        except CloudTokenError as err:
            self._backoff = min(MAX_BACKOFF_S, self._backoff * 2 or TOKEN_BACKOFF_S)
            delay = self._backoff
            self._error(str(err))
            _LOGGER.warning("cloud: %s; trying again in %d min", err, delay // 60)
            self._missed_all()
        except (CloudUnavailableError, CloudResponseError, CloudRejectedError) as err:
            # Only the station list gets here: the stations' own faults are kept per station.
            self._backoff = min(MAX_BACKOFF_S, self._backoff * 2 or DISCOVERY_BACKOFF_S)
            delay = self._backoff
            self._error(str(err))
            _LOGGER.warning("cloud: cannot read the station list (%s); again in %d s", err, delay)
        else:
            self._backoff = 0.0
        self._next_poll = self._clock() + timedelta(seconds=delay)
        self._listener.status_changed(self.status)
        return delay

    async def _round(self) -> float:
        if self._stations is None:
            self._stations = await self._discover()
            self._stations_due = self._monotonic() + STATIONS_INTERVAL_S
        elif self._monotonic() >= self._stations_due:
            self._stations_due = self._monotonic() + STATIONS_INTERVAL_S
            try:
                self._stations = await self._discover()
            except (CloudUnavailableError, CloudResponseError, CloudRejectedError) as err:
                # The stations known keep being polled; the list is read again later.
                _LOGGER.debug("cloud: the station list was not read again (%s)", err)
        if not self._stations:
            raise CloudRejectedError("none of the configured stations is in the account")
        delays = [await self._poll_station(station) for station in self._stations]
        return max(delays)

    async def _discover(self) -> tuple[Station, ...]:
        found = await self._client.stations()
        known = {s.sid: s for s in found}
        if not self._wanted:
            chosen = found
        else:
            for sid in self._wanted:
                if sid not in known:
                    _LOGGER.warning(
                        "cloud: station %d is not in the account (it has %s)",
                        sid,
                        ", ".join(str(s) for s in known) or "none",
                    )
            chosen = tuple(known[sid] for sid in self._wanted if sid in known)
        before = None if self._stations is None else [s.sid for s in self._stations]
        for station in chosen:
            self._snapshots.setdefault(station.sid, StationSnapshot(station.sid, station.name))
        if before == [s.sid for s in chosen]:
            return chosen
        _LOGGER.info(
            "cloud: %d station(s): %s",
            len(chosen),
            ", ".join(f"{s.name} ({s.sid})" for s in chosen) or "none",
        )
        return chosen

    async def _poll_station(self, station: Station) -> float:
        sid = station.sid
        try:
            flow = await self._client.flow(sid)
        except (CloudLoginError, CloudTokenError):
            raise
        except (CloudUnavailableError, CloudResponseError, CloudRejectedError) as err:
            self._missed(sid, str(err))
            return self._poll_interval
        delay = self._delay(flow)
        if flow.all_zero:
            if sid not in self._said_zero:
                self._said_zero.add(sid)
                _LOGGER.warning(
                    "cloud: station %d sends 0 W for PV, battery, grid and load (a known fault "
                    "of the cloud); its last values are kept",
                    sid,
                )
            self._missed(sid, "the cloud sent 0 W for every power")
        elif not flow.usable:
            self._missed(sid, "the cloud sent no live values")
        else:
            self._said_zero.discard(sid)
            self._good(sid, flow)
        if self._monotonic() >= self._energy_due.get(sid, 0.0):
            await self._read_energy(station)
        return delay

    def _delay(self, flow: Flow) -> float:
        asked = (flow.delay_ms or 0) / 1000
        return max(facts.MIN_POLL_S, self._poll_interval, asked)

    async def _read_energy(self, station: Station) -> None:
        """The energy counters and the batteries; a failure keeps the last ones."""
        sid = station.sid
        snapshot = self._snapshots[sid]
        try:
            energy = await self._client.station_data(sid)
            ids = [d.id for d in station.battery_inverters() if d.id is not None]
            batteries = [await self._client.battery(sid, device_id) for device_id in ids]
        except (CloudLoginError, CloudTokenError):
            raise
        except (CloudUnavailableError, CloudResponseError, CloudRejectedError) as err:
            _LOGGER.debug("cloud: station %d energy not read (%s)", sid, err)
            self._energy_due[sid] = self._monotonic() + ENERGY_RETRY_S
            return
        self._energy_due[sid] = self._monotonic() + ENERGY_INTERVAL_S
        self._set(replace(snapshot, energy=energy, batteries=tuple(batteries)))

    # --- bookkeeping -----------------------------------------------------------------------

    def _good(self, sid: int, flow: Flow) -> None:
        snapshot = self._snapshots[sid]
        if snapshot.stale:
            _LOGGER.info("cloud: station %d has live values again", sid)
        now = self._clock()
        self._last_update = now
        self._set(replace(snapshot, flow=flow, updated_at=now, missed=0, stale=False))

    def _missed(self, sid: int, why: str) -> None:
        snapshot = self._snapshots[sid]
        missed = snapshot.missed + 1
        stale = missed >= STALE_AFTER
        if missed == 1:
            _LOGGER.warning("cloud: station %d: %s; keeping its last values", sid, why)
        else:
            _LOGGER.debug("cloud: station %d: %s (%d in a row)", sid, why, missed)
        if stale and not snapshot.stale:
            _LOGGER.warning("cloud: station %d: %d polls missed, its values are stale", sid, missed)
        self._error(why)
        self._set(replace(snapshot, missed=missed, stale=stale))

    def _missed_all(self) -> None:
        """A round that reached no station (no login): every station missed a poll."""
        for sid in list(self._snapshots):
            snapshot = self._snapshots[sid]
            missed = snapshot.missed + 1
            self._set(replace(snapshot, missed=missed, stale=missed >= STALE_AFTER))

    def _set(self, snapshot: StationSnapshot) -> None:
        self._snapshots[snapshot.sid] = snapshot
        self._listener.station_updated(snapshot)

    def _error(self, text: str) -> None:
        self._last_error = text


__all__ = [
    "DEFAULT_POLL_INTERVAL",
    "ENERGY_INTERVAL_S",
    "STALE_AFTER",
    "TOKEN_BACKOFF_S",
    "CloudListener",
    "CloudPoller",
    "CloudStatus",
    "StationSnapshot",
    "station_ids",
]
