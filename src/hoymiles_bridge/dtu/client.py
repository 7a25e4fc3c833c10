"""High-level DTU client: every local command, typed results, one session.

``DtuClient`` keeps one session open and reopens it when the DTU dropped
it. Requests are serialised and paced (``min_spacing`` seconds between two
requests, measured on the event loop's monotonic clock) so a DTU is never
flooded.
Sessions run over TCP unless ``transport_factory`` builds another
:class:`~hoymiles_bridge.dtu.transport.Transport`.

Encryption is handled by itself: before the first request that newer
firmware encrypts, the client reads app info (which is never encrypted); if
the DTU sets the encryption flag it uses the ``enc_rand`` it got. When a
reply fails authentication or an encrypted DTU stops answering (it changes
``enc_rand`` at every reboot), the client reads app info again and retries.

Reads retry once on a timeout, a spoiled frame or a lost session; commands
are not repeated unless the request certainly did not reach the DTU.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from typing import Final, TypeVar

from google.protobuf.message import Message

from hoymiles_bridge.dtu.connection import (
    CONNECT_TIMEOUT,
    DEFAULT_PORT,
    REQUEST_TIMEOUT,
    Connection,
    FrameObserver,
    PushHandler,
)
from hoymiles_bridge.dtu.transport import TcpTransport, TransportFactory
from hoymiles_bridge.errors import (
    DtuConnectionError,
    DtuRejectedError,
    DtuTimeoutError,
    EncryptionError,
    FrameError,
    InvalidArgumentError,
    PayloadDecodeError,
)
from hoymiles_bridge.protocol import requests as build
from hoymiles_bridge.protocol.actions import (
    MIN_LIMIT_PERCENT,
    Action,
    limit_data,
    temporary_limit_data,
)
from hoymiles_bridge.protocol.codec import DecodedFrame
from hoymiles_bridge.protocol.crypto import PayloadCipher, is_encrypted_tag
from hoymiles_bridge.protocol.devices import inverter_type, parse_serial
from hoymiles_bridge.protocol.frame import ExtendedHeader
from hoymiles_bridge.protocol.models import (
    AppInfo,
    CommandAck,
    CommandStatus,
    DtuConfig,
    Heartbeat,
    HistoryPower,
    NetworkInfo,
    RealData,
    Warnings,
)
from hoymiles_bridge.protocol.pb import (
    appinfo_pb2,
    autosearch_pb2,
    command_pb2,
    config_pb2,
    devconfig_pb2,
    energy_storage_pb2,
    gateway_pb2,
    gridselftest_pb2,
    heartbeat_pb2,
    history_pb2,
    network_pb2,
    realdata_pb2,
    warn_pb2,
)
from hoymiles_bridge.protocol.registry import request_tag_for
from hoymiles_bridge.protocol.requests import APP_OFFSET  # re-export for library users

_LOGGER = logging.getLogger(__name__)

#: Default pause between two requests. hoymiles-wifi uses 2 s "so as not to
#: overload the DTU"; persistent clients go down to 0.5 s.
DEFAULT_MIN_SPACING: Final = 1.0
#: After the app-info handshake that opens an encrypted-or-not session, the
#: first real request waits only this long (persistent clients keep 0.5 s
#: between any two requests, protocol.md section 5.3), so the first data
#: comes sooner; later requests keep ``min_spacing``.
HANDSHAKE_SPACING: Final = 0.5
#: The DTU does not validate page loops; stop a runaway ``ap`` here.
MAX_PAGES: Final = 32


#: Tag for DTU reboot and inverter on/off/restart: every working client sends
#: these with the cloud-family tag (protocol.md section 3.2).
CLOUD_COMMAND_TAG: Final = 0x2305
LOCAL_COMMAND_TAG: Final = 0xA305
#: Range hoymiles-wifi accepts for the temporary watt limit (0.1 W steps in 16 bits).
TEMPORARY_LIMIT_RANGE: Final = (0.1, 3276.7)
#: Lowest limit clients send; lower values are refused (dtuGateway raises
#: them to 2 %, and 0 % is "off", which has its own command).

_M = TypeVar("_M", bound=Message)


class DtuClient:
    """Talks to one DTU. Use as ``async with DtuClient(host) as dtu: ...``."""

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        enc_rand: bytes | None = None,
        detect_encryption: bool = True,
        request_timeout: float = REQUEST_TIMEOUT,
        connect_timeout: float = CONNECT_TIMEOUT,
        min_spacing: float = DEFAULT_MIN_SPACING,
        retries: int = 1,
        on_frame: FrameObserver | None = None,
        on_push: PushHandler | None = None,
        clock: Callable[[], float] = time.time,
        transport_factory: TransportFactory = TcpTransport,
    ) -> None:
        self.host = host
        self.port = port
        #: Builds the transport of every new session (TCP sockets by default).
        self.transport_factory = transport_factory
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.min_spacing = min_spacing
        self.retries = retries
        self.on_frame = on_frame
        self.on_push = on_push
        self._clock = clock
        self._cipher = PayloadCipher(enc_rand) if enc_rand else None
        # None = not known yet; detection reads app info once.
        self._encrypted: bool | None = True if enc_rand else (None if detect_encryption else False)
        self._connection: Connection | None = None
        self._lock = asyncio.Lock()
        self._last_request = -float("inf")
        self._sequence = 0
        self._retired: tuple[int, ...] = ()
        self.app_info_cache: AppInfo | None = None
        self.reconnects = 0
        #: Seconds between sending the last request and its reply (pacing excluded).
        self.last_rtt: float | None = None

    def __repr__(self) -> str:
        return f"DtuClient({self.host}:{self.port})"

    async def __aenter__(self) -> DtuClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    # --- session ----------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connection is not None and self._connection.connected

    @property
    def encrypted(self) -> bool | None:
        """True/False once known; None before the first app info."""
        return self._encrypted

    @property
    def connection(self) -> Connection | None:
        return self._connection

    def _next_sequence(self) -> int:
        # One counter across sessions, so a late reply from an earlier session
        # can never carry the sequence of a request of this one.
        self._sequence = (self._sequence % 0xFFFF) + 1
        return self._sequence

    async def connect(self) -> None:
        """Open the session now (requests also open it on demand)."""
        async with self._lock:
            await self._ensure_connection()

    async def _ensure_connection(self) -> Connection:
        conn = self._connection
        if conn is not None and conn.connected:
            return conn
        if conn is not None:
            self._retired = conn.sent_sequences
            self.reconnects += 1
        conn = Connection(
            self.host,
            self.port,
            connect_timeout=self.connect_timeout,
            cipher=self._cipher,
            next_sequence=self._next_sequence,
            retired_sequences=self._retired,
            on_frame=self.on_frame,
            on_push=self.on_push,
            transport_factory=self.transport_factory,
        )
        self._connection = conn
        await conn.open()
        return conn

    async def close(self) -> None:
        conn, self._connection = self._connection, None
        if conn is not None:
            conn.close()
            await conn.wait_closed()

    def disconnect_soon(self) -> None:
        """Drop the socket without waiting (for releasing the DTU between polls)."""
        if self._connection is not None:
            self._connection.close()

    async def _pace(self) -> None:
        wait = self._last_request + self.min_spacing - asyncio.get_running_loop().time()
        if wait > 0:
            await asyncio.sleep(wait)

    def _set_cipher(self, cipher: PayloadCipher | None) -> None:
        self._cipher = cipher
        if self._connection is not None:
            self._connection.cipher = cipher

    # --- the request engine -----------------------------------------------

    async def _exchange(
        self,
        message: Message,
        *,
        tag: int | None,
        extended: ExtendedHeader | None,
        timeout: float,
    ) -> DecodedFrame:
        conn = await self._ensure_connection()
        await self._pace()
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            decoded = await conn.request(message, tag=tag, timeout=timeout, extended=extended)
        finally:
            self._last_request = loop.time()
        self.last_rtt = self._last_request - started
        return decoded

    async def _request(
        self,
        message: Message,
        reply_type: type[_M],
        *,
        tag: int | None = None,
        idempotent: bool = True,
        extended: ExtendedHeader | None = None,
        timeout: float | None = None,
    ) -> _M:
        tag = tag if tag is not None else request_tag_for(message)
        timeout = timeout if timeout is not None else self.request_timeout
        async with self._lock:
            attempt = 0
            while True:
                try:
                    if self._encrypted is None and is_encrypted_tag(tag):
                        # The handshake, retried like the request it is for.
                        await self._refresh_app_info()
                    decoded = await self._exchange(
                        message, tag=tag, extended=extended, timeout=timeout
                    )
                    break
                except (EncryptionError, DtuTimeoutError) as err:
                    retryable = idempotent or isinstance(err, EncryptionError)
                    if attempt >= self.retries or not retryable:
                        raise
                    if self._encrypted and is_encrypted_tag(tag):
                        # An encrypted DTU that rebooted has a new enc_rand; it
                        # ignores or garbles requests under the old one.
                        await self._refresh_app_info()
                except (FrameError, PayloadDecodeError):
                    if attempt >= self.retries or not idempotent:
                        raise
                except DtuConnectionError:
                    if attempt >= self.retries or not idempotent:
                        raise
                attempt += 1
                _LOGGER.debug("retrying %04X to %s (attempt %d)", tag, self.host, attempt + 1)
        reply = decoded.message
        if not isinstance(reply, reply_type):
            raise PayloadDecodeError(
                f"expected {reply_type.__name__} from {self.host}, got {decoded.name}"
            )
        return reply

    async def _refresh_app_info(self) -> AppInfo:
        """Read app info (never encrypted) and adopt the DTU's encryption settings."""
        decoded = await self._exchange(
            self._app_info_request(), tag=None, extended=None, timeout=self.request_timeout
        )
        if not isinstance(decoded.message, appinfo_pb2.AppInfoFromDtu):
            raise PayloadDecodeError(f"expected app info from {self.host}, got {decoded.name}")
        info = AppInfo.from_pb(decoded.message)
        self._adopt(info)
        # The request this handshake was made for follows after HANDSHAKE_SPACING.
        self._last_request -= max(0.0, self.min_spacing - HANDSHAKE_SPACING)
        return info

    def _adopt(self, info: AppInfo) -> None:
        self.app_info_cache = info
        if info.encrypted and info.enc_rand:
            if self._cipher is None or not self._cipher.same_key(info.enc_rand):
                if self._cipher is not None:
                    _LOGGER.info("%s changed its encryption key (it rebooted)", self.host)
                self._set_cipher(PayloadCipher(info.enc_rand))
            self._encrypted = True
        else:
            self._set_cipher(None)
            self._encrypted = False

    # --- request builders ---------------------------------------------------

    def _now(self) -> int:
        return int(self._clock())

    def _app_info_request(self) -> appinfo_pb2.AppInfoToDtu:
        return build.app_info(self._now())

    # --- reads ----------------------------------------------------------------

    async def app_info(self) -> AppInfo:
        """DTU and inverter identity and versions; also detects encryption."""
        reply = await self._request(self._app_info_request(), appinfo_pb2.AppInfoFromDtu)
        info = AppInfo.from_pb(reply)
        async with self._lock:
            self._adopt(info)
        return info

    async def real_data(self) -> RealData:
        """Live values of every inverter; fetches every page (``ap``/``cp``)."""
        pages = await self._real_data_pages(0xA311)
        return RealData.from_pb(*pages)

    async def real_data_legacy(self) -> RealData:
        """The same through the legacy tag 0xA303 (for DTU firmware before V00.02.00)."""
        pages = await self._real_data_pages(0xA303)
        return RealData.from_pb(*pages)

    async def _real_data_pages(self, tag: int) -> list[realdata_pb2.RealDataNewFromDtu]:
        pages: list[realdata_pb2.RealDataNewFromDtu] = []
        page = 0
        while True:
            # The legacy request has the same fields under another message name.
            builder = build.real_data_legacy if tag == 0xA303 else build.real_data_new
            request = builder(self._now(), page)
            reply = await self._request(request, realdata_pb2.RealDataNewFromDtu, tag=tag)
            pages.append(reply)
            page += 1
            if page >= min(reply.ap, MAX_PAGES):
                return pages

    async def heartbeat(self) -> Heartbeat:
        request = build.heartbeat(self._now())
        return Heartbeat.from_pb(await self._request(request, heartbeat_pb2.HeartbeatFromDtu))

    async def get_config_raw(self) -> config_pb2.GetConfigFromDtu:
        request = build.get_config(self._now())
        return await self._request(request, config_pb2.GetConfigFromDtu)

    async def get_config(self) -> DtuConfig:
        return DtuConfig.from_pb(await self.get_config_raw())

    async def set_config(self, **changes: int | str) -> None:
        """Write DTU configuration: reads the current config, applies ``changes``, writes it.

        Field names are those of ``SetConfigToDtu`` (``server_send_time=5``,
        ``wifi_ssid="..."``). Unknown names are refused before anything is sent.
        """
        fields = config_pb2.SetConfigToDtu.DESCRIPTOR.fields_by_name
        unknown = sorted(set(changes) - set(fields))
        if unknown:
            raise InvalidArgumentError(f"unknown config field {unknown[0]!r}")
        current = await self.get_config_raw()
        request = config_pb2.SetConfigToDtu()
        for field, value in current.ListFields():
            if field.name in fields:
                setattr(request, field.name, value)
        for name, value in changes.items():
            try:
                setattr(request, name, value)
            except (TypeError, ValueError):
                raise InvalidArgumentError(
                    f"config field {name!r} cannot take the value {value!r}"
                ) from None
        request.time = self._now()
        request.app_page = 1
        reply = await self._request(request, config_pb2.SetConfigFromDtu, idempotent=False)
        if reply.err_code:
            raise DtuRejectedError(
                f"{self.host} refused the configuration (error {reply.err_code})",
                code=reply.err_code,
            )

    async def network_info(self) -> NetworkInfo:
        request = build.network_info(self._now())
        return NetworkInfo.from_pb(await self._request(request, network_pb2.NetworkInfoFromDtu))

    async def warnings(self) -> Warnings:
        """The warning list the DTU holds (read after :meth:`alarms` triggered a refresh)."""
        pages: list[warn_pb2.WarnFromDtu] = []
        page = 0
        while True:
            request = build.warnings(self._now(), page)
            reply = await self._request(request, warn_pb2.WarnFromDtu)
            pages.append(reply)
            page += 1
            if page >= min(reply.package_nub, MAX_PAGES):
                return Warnings.from_pb(*pages)

    async def alarms(self) -> Warnings:
        """Ask the DTU to collect alarms (action 50), then read them."""
        await self._command(Action.ALARM_LIST, dev_kind=0)
        return await self.warnings()

    async def command_status(self, action: int, tid: int) -> CommandStatus:
        request = build.command_status(self._now(), action, tid)
        return CommandStatus.from_pb(await self._request(request, command_pb2.CommandStatusFromDtu))

    async def wait_command(
        self, ack: CommandAck, *, timeout: float = 30.0, interval: float = 1.0
    ) -> CommandStatus:
        """Poll command status until no inverter is still working on ``ack``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            status = await self.command_status(ack.action, ack.tid)
            if status.done or loop.time() >= deadline:
                return status
            await asyncio.sleep(interval)

    async def history_power(self) -> HistoryPower:
        """Today's power curve (all pages)."""
        pages: list[history_pb2.HistPowerFromDtu] = []
        page = 0
        while True:
            request = build.history_power(self._now(), page)
            reply = await self._request(request, history_pb2.HistPowerFromDtu)
            pages.append(reply)
            page += 1
            if page >= min(reply.ap, MAX_PAGES):
                return HistoryPower.from_pb(*pages)

    async def history_energy(self) -> history_pb2.HistEnergyFromDtu:
        request = build.history_energy(self._now())
        return await self._request(request, history_pb2.HistEnergyFromDtu)

    async def auto_search(self) -> autosearch_pb2.AutoSearchFromDtu:
        request = build.auto_search(self._now())
        return await self._request(request, autosearch_pb2.AutoSearchFromDtu)

    async def grid_self_test(self) -> gridselftest_pb2.GridSelfTestFromDtu:
        request = build.grid_self_test(self._now())
        return await self._request(request, gridselftest_pb2.GridSelfTestFromDtu)

    async def dev_config_fetch(
        self, serial: str, rule_type: int = 1
    ) -> devconfig_pb2.DevConfigFetchFromDtu:
        """Read a device configuration (``rule_type`` 1 = grid profile, 0 = inverter data)."""
        request = build.dev_config_fetch(
            self._now(),
            dtu_serial=self.app_info_cache.dtu_serial if self.app_info_cache else "",
            device_serial=parse_serial(serial),
            rule_type=rule_type,
        )
        return await self._request(request, devconfig_pb2.DevConfigFetchFromDtu)

    async def grid_profile(self, serial: str) -> devconfig_pb2.DevConfigFetchFromDtu:
        """Ask the DTU to read an inverter's grid profile (action 41), then fetch it."""
        await self._command(Action.GRID_FILE_READ, targets=(serial,))
        return await self.dev_config_fetch(serial, rule_type=1)

    async def dev_config_put(
        self, serial: str, data: bytes, *, rule_type: int = 1, rule_id: int = 0
    ) -> devconfig_pb2.DevConfigPutFromDtu:
        """Write a device configuration (a grid profile). Library only, on purpose:
        a wrong grid profile can take an inverter off the grid or make it unsafe."""
        now = self._now()
        sn = parse_serial(serial)
        request = devconfig_pb2.DevConfigPutToDtu(
            time=now,
            tid=now,
            rule_id=rule_id,
            data=data,
            dev_sn=f"{sn:012X}",
            package_nub=1,
            mi_to_sn=[sn],
            rule_type=rule_type,
        )
        reply = await self._request(request, devconfig_pb2.DevConfigPutFromDtu, idempotent=False)
        if reply.status:
            raise DtuRejectedError(
                f"{self.host} refused the device configuration (status {reply.status})",
                code=reply.status,
            )
        return reply

    # --- gateway / energy storage (24-byte header) -----------------------------

    async def gateway_info(self) -> gateway_pb2.GatewayInfoFromDtu:
        request = build.gateway_info(self._now())
        return await self._request(
            request, gateway_pb2.GatewayInfoFromDtu, extended=ExtendedHeader(serial=0, number=0xFF)
        )

    async def gateway_net_info(self, gateway_serial: str) -> gateway_pb2.GatewayNetInfoFromDtu:
        request = build.gateway_net_info(self._now())
        header = ExtendedHeader(serial=parse_serial(gateway_serial), number=0xFF)
        return await self._request(request, gateway_pb2.GatewayNetInfoFromDtu, extended=header)

    async def es_registry(self, gateway_serial: str) -> energy_storage_pb2.EsRegistryFromDtu:
        request = build.es_registry(self._now())
        header = ExtendedHeader(serial=parse_serial(gateway_serial), number=1)
        return await self._request(request, energy_storage_pb2.EsRegistryFromDtu, extended=header)

    async def es_data(
        self, gateway_serial: str, inverter_serial: str
    ) -> energy_storage_pb2.EsDataFromDtu:
        request = build.es_data(self._now(), parse_serial(inverter_serial))
        header = ExtendedHeader(serial=parse_serial(gateway_serial), number=1)
        return await self._request(request, energy_storage_pb2.EsDataFromDtu, extended=header)

    # --- commands -------------------------------------------------------------

    async def _command(
        self,
        action: int,
        *,
        data: str = "",
        dev_kind: int = 0,
        targets: Sequence[str] = (),
        tag: int = LOCAL_COMMAND_TAG,
        timeout: float | None = None,
    ) -> CommandAck:
        now = self._now()
        request = command_pb2.CommandToDtu(
            time=now,
            action=action,
            dev_kind=dev_kind,
            package_nub=1,
            tid=now,
            data=data,
            mi_to_sn=[parse_serial(s) for s in targets],
        )
        reply = await self._request(
            request, command_pb2.CommandFromDtu, tag=tag, idempotent=False, timeout=timeout
        )
        ack = CommandAck.from_pb(reply)
        if ack.err_code:
            raise DtuRejectedError(
                f"{self.host} refused command {action} (error {ack.err_code})", code=ack.err_code
            )
        return ack

    async def performance_mode(self) -> CommandAck:
        """Ask for fresh data on every poll (POLL_ALL, action 33). Lost at every DTU reboot."""
        return await self._command(Action.POLL_ALL)

    async def set_power_limit(self, percent: float, serial: str | None = None) -> CommandAck:
        """Set the active power limit in percent of rated power (persistent in the inverter).

        The protocol has only this persistent form: the inverter stores it in
        EEPROM, so do not use it for fast zero-export loops.
        """
        if not MIN_LIMIT_PERCENT <= percent <= 100:
            raise InvalidArgumentError(
                f"power limit {percent:g} % is outside {MIN_LIMIT_PERCENT:g}..100 %"
            )
        permille = round(percent * 10)
        return await self._command(
            Action.LIMIT_POWER,
            data=limit_data(permille),
            targets=(serial,) if serial else (),
        )

    async def set_power_limit_watts(self, watts: float, serial: str) -> CommandAck:
        """Set the limit in W, converted to percent of the inverter's rated power.

        The DTU protocol has no absolute-watt limit; this converts with the
        rated power from the serial's model table and sends the % command.
        """
        rated = inverter_type(parse_serial(serial)).rated_power
        if rated <= 0:
            raise InvalidArgumentError(
                f"the rated power of inverter {serial} is not known; set the limit in percent"
            )
        if watts <= 0 or watts > rated:
            raise InvalidArgumentError(
                f"power limit {watts:g} W is outside 1..{rated} W for inverter {serial}"
            )
        return await self.set_power_limit(max(MIN_LIMIT_PERCENT, watts * 100 / rated), serial)

    async def set_power_limit_temporary(self, watts: float) -> CommandAck:
        """Set a non-persistent limit in W (action 211; HMS-W, DTU firmware V01.01.01+).

        It is not written to EEPROM, so it suits frequent changes; it is lost
        when the inverter or DTU restarts. Older firmware refuses the action.
        """
        low, high = TEMPORARY_LIMIT_RANGE
        if not low <= watts <= high:
            raise InvalidArgumentError(
                f"temporary power limit {watts:g} W is outside {low:g}..{high:g} W"
            )
        return await self._command(
            Action.LIMIT_POWER_TEMPORARY, data=temporary_limit_data(round(watts * 10))
        )

    async def inverter_on(self, serial: str | None = None) -> CommandAck:
        return await self._command(
            Action.MI_START, dev_kind=1, targets=(serial,) if serial else (), tag=CLOUD_COMMAND_TAG
        )

    async def inverter_off(self, serial: str | None = None) -> CommandAck:
        return await self._command(
            Action.MI_SHUTDOWN,
            dev_kind=1,
            targets=(serial,) if serial else (),
            tag=CLOUD_COMMAND_TAG,
        )

    async def inverter_restart(self, serial: str | None = None) -> CommandAck:
        return await self._command(
            Action.MI_REBOOT, dev_kind=1, targets=(serial,) if serial else (), tag=CLOUD_COMMAND_TAG
        )

    async def reboot_dtu(self) -> CommandAck | None:
        """Reboot the DTU. Returns None when it dropped the session before acknowledging."""
        try:
            ack = await self._command(Action.DTU_REBOOT, tag=CLOUD_COMMAND_TAG)
        except (DtuConnectionError, DtuTimeoutError):
            ack = None
        # The DTU forgets performance mode and (when encrypting) its enc_rand.
        if self._encrypted:
            self._encrypted = None
        await self.close()
        return ack

    async def clear_alarms(self) -> CommandAck:
        return await self._command(Action.CLEAR_ALARM)

    async def raw_request(
        self, message: Message, *, tag: int | None = None, idempotent: bool = True
    ) -> DecodedFrame:
        """Send any registered message and return the decoded reply frame."""
        async with self._lock:
            if self._encrypted is None and is_encrypted_tag(
                tag if tag is not None else request_tag_for(message)
            ):
                await self._refresh_app_info()
            return await self._exchange(
                message, tag=tag, extended=None, timeout=self.request_timeout
            )


__all__ = [
    "APP_OFFSET",
    "CLOUD_COMMAND_TAG",
    "DEFAULT_MIN_SPACING",
    "Action",
    "DtuClient",
]
