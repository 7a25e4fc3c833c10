"""The Hoymiles cloud as a source of the core: one device per S-Miles station.

:class:`CloudSource` runs a :class:`~hoymiles_bridge.cloud.poller.CloudPoller`
for the account of the ``cloud`` options and turns its snapshots into typed
:class:`CloudStation` states, which it announces to its subscribers (the MQTT
adapter, the web UI). It keeps the last cloud requests and answers, masked,
for the inspector.

Signs are the local battery's: battery power is positive while the battery
discharges and negative while it charges; grid power is negative while the
station feeds in. A station whose battery is also reachable locally is a
*fallback*: the local source wins, and the adapters do not show it twice.

It is kept apart from :class:`~hoymiles_bridge.core.fleet.Fleet` (the DTUs):
the two share nothing but the options and the command registry. The
registry's cloud commands (``grid_charge``, ``on_grid_power``) reach
:meth:`CloudSource.execute` through the fleet; they write a station's setting
through the cloud, only when ``cloud.allow_writes`` is on. The cloud has no
cheap way to read these settings back, so a station shows the value the
bridge last wrote (``None`` until then).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from hoymiles_bridge.cloud.client import CloudClient, Credentials, Endpoints, Exchange
from hoymiles_bridge.cloud.poller import CloudPoller, CloudStatus, StationSnapshot, station_ids
from hoymiles_bridge.cloud.tokens import TOKEN_FILE_NAME, TokenFile, account_key
from hoymiles_bridge.config.options import CloudOptions
from hoymiles_bridge.core.commands import Command, CommandOutcome
from hoymiles_bridge.errors import CloudError, CloudWriteRefusedError, InvalidArgumentError

_LOGGER = logging.getLogger(__name__)

#: Cloud requests kept for the inspector.
MAX_EXCHANGES: Final = 200


@dataclass(frozen=True, slots=True)
class CloudStation:
    """One station as the bridge shows it (W, Wh, %, °C; ``None``: unknown)."""

    sid: int
    name: str
    soc: float | None = None
    pv_power: float | None = None
    battery_power: float | None = None
    grid_power: float | None = None
    load_power: float | None = None
    energy_today: float | None = None
    energy_month: float | None = None
    energy_year: float | None = None
    energy_total: float | None = None
    battery_charged_today: float | None = None
    battery_discharged_today: float | None = None
    battery_temperature: float | None = None
    battery_serials: tuple[str, ...] = ()
    updated_at: datetime | None = None
    available: bool = False
    fallback: bool = False
    #: The settings as the bridge last wrote them (``None``: not written since the start).
    grid_charge: bool | None = None
    on_grid_power: float | None = None


def station_from(snapshot: StationSnapshot, local: frozenset[str]) -> CloudStation:
    """The station of a poller snapshot; ``local``: serials the bridge reaches locally."""
    flow, energy = snapshot.flow, snapshot.energy
    serials = tuple(b.serial for b in snapshot.batteries if b.serial)
    soc = flow.soc if flow is not None and flow.soc is not None else None
    if soc is None:
        soc = next((b.soc for b in snapshot.batteries if b.soc is not None), None)
    return CloudStation(
        sid=snapshot.sid,
        name=snapshot.name,
        soc=soc,
        pv_power=flow.pv if flow else None,
        battery_power=flow.battery if flow else None,
        grid_power=flow.grid if flow else None,
        load_power=flow.load if flow else None,
        energy_today=energy.today if energy else None,
        energy_month=energy.month if energy else None,
        energy_year=energy.year if energy else None,
        energy_total=energy.total if energy else None,
        battery_charged_today=energy.battery_in if energy else None,
        battery_discharged_today=energy.battery_out if energy else None,
        battery_temperature=next(
            (b.temperature for b in snapshot.batteries if b.temperature is not None), None
        ),
        battery_serials=serials,
        updated_at=snapshot.updated_at,
        available=flow is not None and not snapshot.stale,
        fallback=any(s.upper() in local for s in serials),
    )


StationCallback = Callable[[CloudStation], None]


class CloudSource:
    """The cloud stations of one account, kept up to date (see the module docstring)."""

    def __init__(
        self,
        options: CloudOptions,
        *,
        client: CloudClient | None = None,
        poll_interval: float | None = None,
    ) -> None:
        if not options.username or not options.password:
            raise InvalidArgumentError("the cloud needs cloud.username and cloud.password")
        wanted = station_ids(options.stations)
        self.exchanges: deque[Exchange] = deque(maxlen=MAX_EXCHANGES)
        credentials = Credentials(options.username, options.password)
        endpoints = Endpoints.at(options.base_url) if options.base_url else Endpoints()
        self._token_key = account_key(credentials, endpoints)
        self._token_file: TokenFile | None = None
        self._kept_token: str | None = None
        self.client = client or CloudClient(
            credentials,
            endpoints=endpoints,
            allow_writes=options.allow_writes,
            observer=self.exchanges.append,
        )
        self.poller = CloudPoller(
            self.client,
            stations=wanted,
            poll_interval=poll_interval if poll_interval is not None else options.poll_interval,
            listener=self,
        )
        self._stations: dict[int, CloudStation] = {}
        self._snapshots: dict[int, StationSnapshot] = {}
        self._subscribers: list[StationCallback] = []
        self._watchers: list[Callable[[], None]] = []
        self._local: frozenset[str] = frozenset()
        #: Per station: the settings the bridge wrote (``grid_charge``, ``on_grid_power``).
        self._written: dict[int, dict[str, Any]] = {}

    def __repr__(self) -> str:
        return f"<CloudSource {len(self._stations)} station(s), {self.client.state.value}>"

    @property
    def stations(self) -> tuple[CloudStation, ...]:
        return tuple(self._stations.values())

    @property
    def status(self) -> CloudStatus:
        """The poller's state now (the login's too)."""
        return self.poller.status

    def subscribe(self, callback: StationCallback) -> None:
        """Call ``callback`` (synchronously; it must not block) with every changed station."""
        self._subscribers.append(callback)

    def keep_token_in(self, directory: Path) -> None:
        """Keep the session token in ``directory`` across restarts (call before :meth:`run`).

        Each start of the bridge would otherwise cost one of the account's daily logins.
        """
        self._token_file = TokenFile(directory / TOKEN_FILE_NAME)
        self._kept_token = self._token_file.load(self._token_key)
        self.client.use_token(self._kept_token)

    def watch(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (synchronously) after every change, of a station or of the status."""
        self._watchers.append(callback)

    def set_local_serials(self, serials: Iterable[str]) -> None:
        """The battery serials the bridge reaches locally: their stations become fallbacks."""
        self._local = frozenset(s.upper() for s in serials)
        for snapshot in self._snapshots.values():
            self.station_updated(snapshot)

    async def run(self) -> None:
        """Poll until cancelled (or until the cloud refuses the login for good)."""
        try:
            await self.poller.run()
        finally:
            await self.client.close()

    # --- the poller's listener -----------------------------------------------------------

    def station_updated(self, snapshot: StationSnapshot) -> None:
        self._snapshots[snapshot.sid] = snapshot
        station = replace(
            station_from(snapshot, self._local), **self._written.get(snapshot.sid, {})
        )
        if self._stations.get(snapshot.sid) == station:
            return
        self._stations[snapshot.sid] = station
        for callback in list(self._subscribers):
            callback(station)
        self._changed()

    def status_changed(self, status: CloudStatus) -> None:
        token = self.client.token
        if self._token_file is not None and token and token != self._kept_token:
            self._kept_token = token
            self._token_file.save(self._token_key, token)
        self._changed()  # the status itself is read live through :attr:`status`

    def _changed(self) -> None:
        for callback in list(self._watchers):
            callback()

    # --- the registry's cloud commands -----------------------------------------------------

    async def execute(self, command: Command) -> CommandOutcome:
        """Write a station's setting through the cloud: ``grid_charge`` or ``on_grid_power``.

        ``command.serial`` is the station id. Refused while ``cloud.allow_writes``
        is off or for a station the account does not have; ``failed`` when the
        cloud did not take it (the poller and the login carry on either way).
        """
        serial = command.serial
        sid = int(serial) if serial.isascii() and serial.isdigit() and len(serial) <= 12 else None
        if sid is None or sid not in self._snapshots:
            return CommandOutcome("refused", f"no cloud station {command.serial[:24]!r}")
        value: bool | float
        try:
            if command.name == "grid_charge":
                value = bool(command.value)
                await self.client.set_grid_charge(sid, value)
            elif command.name == "on_grid_power":
                value = float(round(command.value))
                await self.client.set_on_grid_power(sid, int(value))
            else:
                return CommandOutcome("refused", f"{command.name} is not a cloud setting")
        except CloudWriteRefusedError as err:
            return CommandOutcome("refused", str(err))
        except CloudError as err:
            _LOGGER.warning("cloud: station %d: %s was not written: %s", sid, command.name, err)
            return CommandOutcome("failed", f"the cloud did not take it ({err})")
        self._written.setdefault(sid, {})[command.name] = value
        self.station_updated(self._snapshots[sid])
        return CommandOutcome("ok")

    # --- for the web UI ----------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """The cloud card's JSON: login state, last update and next poll (Unix time), the
        last error in words, the stations' values (no secrets)."""
        status = self.poller.status
        return {
            "login": status.login,
            "running": status.running,
            "last_update": status.last_update.timestamp() if status.last_update else None,
            "next_poll": status.next_poll.timestamp() if status.next_poll else None,
            "last_error": status.last_error,
            "allow_writes": self.client.allow_writes,
            "stations": [
                {
                    "sid": s.sid,
                    "name": s.name,
                    "available": s.available,
                    "fallback": s.fallback,
                    "soc": s.soc,
                    "pv_power": s.pv_power,
                    "battery_power": s.battery_power,
                    "grid_power": s.grid_power,
                    "load_power": s.load_power,
                    "energy_today": s.energy_today,
                    "grid_charge": s.grid_charge,
                    "on_grid_power": s.on_grid_power,
                }
                for s in self._stations.values()
            ],
        }

    def inspector(self) -> list[dict[str, Any]]:
        """The last cloud requests and answers (masked by the client), oldest first."""
        return [
            {
                "at": e.at,
                "url": e.url,
                "request": e.request,
                "status": e.status,
                "response": e.response,
                "error": e.error,
            }
            for e in self.exchanges
        ]


__all__ = ["MAX_EXCHANGES", "CloudSource", "CloudStation", "StationCallback", "station_from"]
