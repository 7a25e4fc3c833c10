"""The configuration page's setup helpers: Test connection and Find DTUs.

Registered by :meth:`hoymiles_bridge.web.api.WebApi.register`; like every
page module it sees the API only through :class:`~.common.ApiContext`.

* ``POST api/setup/test`` ``{"host", "port"}`` asks one address for its app
  info with a throwaway :class:`~hoymiles_bridge.dtu.client.DtuClient` and a
  short timeout, and answers what the DTU is (model, serial, firmware,
  inverters, encryption) or one sentence saying why it could not tell.
* ``GET api/setup/network`` suggests the range to scan: the add-on's host
  network from the Supervisor (when the add-on may ask), else this machine's
  own address (standard library only; no packet is sent).
* ``POST api/setup/scan`` ``{"network", "port"}`` starts a scan of at most a
  /24 of private (RFC 1918) or loopback addresses: every address gets a TCP
  connection to ``port`` and an app-info request, 32 at a time, 1.5 s each.
  ``GET api/setup/scan`` gives its progress and findings, ``POST
  api/setup/scan/cancel`` stops it. One scan runs at a time, as one named
  task; a new scan replaces the old one.

A DTU serves one client at a time, so an address the bridge already polls is
never connected to: its answer comes from the bridge's own session.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, runtime_checkable

from aiohttp import web

from hoymiles_bridge.dtu.client import DtuClient
from hoymiles_bridge.dtu.connection import DEFAULT_PORT
from hoymiles_bridge.errors import (
    DtuConnectionError,
    DtuDisplacedError,
    DtuRejectedError,
    DtuTimeoutError,
    HoymilesError,
    ProtocolError,
)
from hoymiles_bridge.protocol.models import AppInfo
from hoymiles_bridge.web.common import ApiContext, BadRequest, json_data, read_body

_LOGGER = logging.getLogger(__name__)

#: How long Test connection waits for the DTU (connect and answer).
TEST_TIMEOUT: Final = 5.0
#: How long a scan waits for one address (connect and answer).
PROBE_TIMEOUT: Final = 1.5
#: Probes a scan keeps in flight.
SCAN_PARALLEL: Final = 32
#: The largest range a scan takes (a /24: 254 addresses).
MIN_PREFIX: Final = 24
#: Ranges a scan may cover: the private ranges of RFC 1918 and loopback.
#: Link-local (169.254/16) is left out: DTUs get their address by DHCP, or
#: have 10.10.100.254 in their own access point.
PRIVATE: Final = tuple(
    ipaddress.IPv4Network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
)
SCANNABLE: Final = (*PRIVATE, ipaddress.IPv4Network("127.0.0.0/8"))
#: The add-on's own Docker network (the Supervisor's ``hassio``): never a DTU's.
HASSIO_NETWORK: Final = ipaddress.IPv4Network("172.30.32.0/23")
#: Where a UDP socket is "connected" to learn this machine's outgoing address
#: (TEST-NET-1, RFC 5737: connecting a UDP socket sends nothing).
_ROUTE_PROBE: Final = ("192.0.2.1", 9)
_HOST_LABEL: Final = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")

Reason = Literal["refused", "timeout", "displaced", "unresolvable", "unreachable", "not_a_dtu"]


class ProbeFailed(Exception):  # noqa: N818 - reads better at the raise sites
    """The address gave no app info: ``reason`` and one sentence for the user."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@runtime_checkable
class NetworkHints(Protocol):
    """A config store that knows the networks of the add-on's host (the Supervisor's)."""

    async def local_networks(self) -> list[str]:
        """The host's IPv4 networks (``192.168.1.0/24``), best first; ``[]`` when unknown."""
        ...


# --- input --------------------------------------------------------------------------


def check_host(value: Any) -> str:
    """``value`` as an IP literal or a plausible host name; raises :class:`BadRequest`."""
    if not isinstance(value, str) or not value.strip():
        raise BadRequest("the field 'host' is required (the DTU's IP address or host name)")
    text = value.strip()
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(text))
    name = text[:-1] if text.endswith(".") else text
    labels = name.split(".")
    if (
        len(name) > 253
        or not all(_HOST_LABEL.fullmatch(label) for label in labels)
        or labels[-1].isdigit()  # 192.168.1.300 is a bad address, not a name
    ):
        raise BadRequest(f"the field 'host' is not an IP address or a host name ({text[:80]!r})")
    return name


def check_port(value: Any) -> int:
    if value is None or value == "":
        return DEFAULT_PORT
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise BadRequest("the field 'port' must be a port number from 1 to 65535")
    text = str(value).strip()
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise BadRequest("the field 'port' must be a port number from 1 to 65535")
    return int(text)


def check_network(value: Any) -> ipaddress.IPv4Network:
    """A range a scan may cover; raises :class:`BadRequest` saying why not."""
    if not isinstance(value, str) or not value.strip():
        raise BadRequest("the field 'network' is required, for example 192.168.1.0/24")
    text = value.strip()
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise BadRequest(
            f"the field 'network' is not an IPv4 range such as 192.168.1.0/24 ({text[:80]!r})"
        ) from None
    if not isinstance(network, ipaddress.IPv4Network):
        raise BadRequest("the field 'network' must be an IPv4 range; DTUs have IPv4 addresses")
    if network.prefixlen < MIN_PREFIX:
        raise BadRequest(
            f"the range {network} is larger than a /{MIN_PREFIX} (254 addresses); "
            f"scan one /{MIN_PREFIX} at a time"
        )
    if not any(network.subnet_of(allowed) for allowed in SCANNABLE):
        raise BadRequest(
            f"the range {network} is not a private network: only 10.0.0.0/8, 172.16.0.0/12, "
            "192.168.0.0/16 and loopback (127.0.0.0/8) are scanned"
        )
    return network


def scan_addresses(network: ipaddress.IPv4Network) -> list[str]:
    """The addresses to probe: the hosts of the range (all of a /31 or /32)."""
    hosts = list(network.hosts()) if network.prefixlen < 31 else list(network)
    return [str(address) for address in hosts]


# --- asking one address -----------------------------------------------------------------


def _connection_os_error(err: BaseException) -> OSError | None:
    """The socket error behind a DtuConnectionError (kept as its context)."""
    seen: BaseException | None = err
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, OSError) and not isinstance(seen, TimeoutError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def failure(err: BaseException, host: str, port: int, timeout: float) -> ProbeFailed:
    """One sentence for why ``host:port`` gave no app info."""
    where = f"{host}:{port}"
    if isinstance(err, DtuDisplacedError):
        return ProbeFailed(
            "displaced",
            f"{where} closed the connection: another client (for example the S-Miles app) "
            "is connected to the DTU; close it and try again in a minute.",
        )
    if isinstance(err, DtuTimeoutError | TimeoutError):
        return ProbeFailed(
            "timeout",
            f"No answer from {where} within {timeout:g} s: check that the DTU is on and "
            "that this is its address.",
        )
    if isinstance(err, DtuConnectionError):
        cause = _connection_os_error(err)
        if isinstance(cause, ConnectionRefusedError) or "refused" in str(err):
            return ProbeFailed(
                "refused",
                f"{where} refused the connection: nothing listens there; check the address "
                f"and the port (DTUs use {DEFAULT_PORT}).",
            )
        if isinstance(cause, socket.gaierror):
            return ProbeFailed("unresolvable", f"The host name {host!r} cannot be resolved.")
        reason = cause.strerror if cause is not None and cause.strerror else "no connection"
        return ProbeFailed("unreachable", f"Cannot reach {where}: {reason}.")
    if isinstance(err, ProtocolError | DtuRejectedError):
        return ProbeFailed(
            "not_a_dtu", f"{where} answered, but not like a Hoymiles DTU: {str(err)[:120]}."
        )
    return ProbeFailed("unreachable", f"Asking {where} failed: {str(err)[:120]}.")


async def _resolve(host: str, port: int, timeout: float) -> None:
    """Raise :class:`ProbeFailed` when ``host`` is a name that does not resolve."""
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise ProbeFailed(
            "unresolvable", f"The host name {host!r} could not be resolved in time."
        ) from None
    except (socket.gaierror, UnicodeError):
        raise ProbeFailed(
            "unresolvable",
            f"The host name {host!r} cannot be resolved: check its spelling, or use the "
            "DTU's IP address.",
        ) from None


async def ask_app_info(host: str, port: int, timeout: float) -> AppInfo:
    """App info from ``host:port`` within ``timeout`` s; raises :class:`ProbeFailed`."""
    await _resolve(host, port, timeout)
    client = DtuClient(
        host,
        port,
        request_timeout=timeout,
        connect_timeout=timeout,
        min_spacing=0.0,
        retries=0,
    )
    try:
        async with asyncio.timeout(timeout):
            return await client.app_info()
    except (HoymilesError, TimeoutError) as err:
        raise failure(err, host, port, timeout) from None
    finally:
        with contextlib.suppress(HoymilesError, OSError):
            await client.close()


def describe(info: AppInfo, host: str, port: int, *, source: str) -> dict[str, Any]:
    """What the page shows of a DTU (no secret: ``enc_rand`` is never included)."""
    return {
        "host": host,
        "port": port,
        "serial": info.dtu_serial,
        "model": info.dtu_model,
        "firmware": info.dtu_firmware,
        "hardware": info.dtu_hardware,
        "encrypted": info.encrypted,
        "signal_strength": info.signal_strength,
        "inverters": [
            {"serial": inv.serial, "model": inv.model, "firmware": inv.firmware}
            for inv in info.inverters
        ],
        "source": source,
    }


# --- the networks around us -----------------------------------------------------------------


def own_networks() -> list[str]:
    """The /24 around this machine's outgoing IPv4 address (standard library, nothing sent)."""
    with (
        contextlib.suppress(OSError),
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe,
    ):
        probe.connect(_ROUTE_PROBE)
        address = ipaddress.IPv4Address(probe.getsockname()[0])
        if any(address in allowed for allowed in PRIVATE):
            return [str(ipaddress.IPv4Network(f"{address}/{MIN_PREFIX}", strict=False))]
    return []


def usable_networks(candidates: list[str], *, addon: bool) -> list[str]:
    """The candidates a scan takes, narrowed to a /24 (the add-on's own network left out)."""
    found: list[str] = []
    for text in candidates:
        try:
            iface = ipaddress.ip_interface(text)
        except ValueError:
            continue
        if not isinstance(iface, ipaddress.IPv4Interface) or iface.is_loopback:
            continue
        if addon and iface.ip in HASSIO_NETWORK:
            continue
        prefix = max(iface.network.prefixlen, MIN_PREFIX)
        network = ipaddress.IPv4Network(f"{iface.ip}/{prefix}", strict=False)
        if any(network.subnet_of(a) for a in PRIVATE) and str(network) not in found:
            found.append(str(network))
    return found


# --- a scan ---------------------------------------------------------------------------------


@dataclass
class Scan:
    """One scan of a range: its progress and findings, run by one named task."""

    number: int
    network: str
    port: int
    addresses: list[str]
    started: float
    done: int = 0
    found: list[dict[str, Any]] = field(default_factory=list)
    state: Literal["running", "done", "cancelled", "failed"] = "running"
    task: asyncio.Task[None] | None = None

    def view(self) -> dict[str, Any]:
        return {
            "id": self.number,
            "network": self.network,
            "port": self.port,
            "state": self.state,
            "total": len(self.addresses),
            "done": self.done,
            "found": sorted(self.found, key=lambda d: ipaddress.ip_address(d["host"])),
            "started": self.started,
        }


class SetupRoutes:
    """The handlers, bound to one API."""

    def __init__(
        self,
        api: ApiContext,
        *,
        test_timeout: float = TEST_TIMEOUT,
        probe_timeout: float = PROBE_TIMEOUT,
        parallel: int = SCAN_PARALLEL,
    ) -> None:
        self.api = api
        self.test_timeout = test_timeout
        self.probe_timeout = probe_timeout
        self.parallel = parallel
        self.scan: Scan | None = None
        self._numbers = itertools.count(1)

    def _polled(self) -> dict[tuple[str, int], AppInfo | None]:
        """``(host, port)`` of every DTU the bridge has a session with, and its app info."""
        try:
            fleet = self.api.fleet
        except BadRequest:
            return {}
        return {
            (dtu.session.target.host, dtu.session.target.port): dtu.session.app_info
            for dtu in fleet.dtus
        }

    # --- Test connection ---

    async def test(self, request: web.Request) -> web.Response:
        body = await read_body(request)
        host = check_host(body.get("host"))
        port = check_port(body.get("port"))
        polled = self._polled()
        if (host, port) in polled:
            info = polled[(host, port)]
            if info is None:
                raise BadRequest(
                    f"The bridge polls {host}:{port} already and has not heard from it yet; "
                    "see its state on the overview.",
                    status=409,
                )
            return json_data({"ok": True, **describe(info, host, port, source="bridge")})
        try:
            info = await ask_app_info(host, port, self.test_timeout)
        except ProbeFailed as err:
            _LOGGER.info("Test connection to %s:%d: %s", host, port, err.reason)
            return json_data({"ok": False, "reason": err.reason, "error": err.message}, 502)
        _LOGGER.info("Test connection to %s:%d: DTU %s", host, port, info.dtu_serial)
        return json_data({"ok": True, **describe(info, host, port, source="dtu")})

    # --- Find DTUs ---

    async def network(self, request: web.Request) -> web.Response:
        addon = self.api.config_store is not None and self.api.config_store.mode == "addon"
        candidates: list[str] = []
        source = None
        store: object = self.api.config_store  # the add-on's store also gives hints
        if isinstance(store, NetworkHints):
            with contextlib.suppress(TimeoutError, HoymilesError):
                async with asyncio.timeout(3.0):
                    candidates = usable_networks(await store.local_networks(), addon=addon)
            source = "supervisor" if candidates else None
        if not candidates:
            candidates = usable_networks(own_networks(), addon=addon)
            source = "interfaces" if candidates else None
        return json_data(
            {
                "suggested": candidates[0] if candidates else None,
                "networks": candidates,
                "source": source,
                "port": DEFAULT_PORT,
                "max_prefix": MIN_PREFIX,
            }
        )

    async def start_scan(self, request: web.Request) -> web.Response:
        body = await read_body(request)
        network = check_network(body.get("network"))
        port = check_port(body.get("port"))
        await self._cancel()
        scan = Scan(next(self._numbers), str(network), port, scan_addresses(network), time.time())
        scan.task = asyncio.create_task(self._run(scan), name=f"setup-scan-{scan.number}")
        scan.task.add_done_callback(_report_failure)
        self.scan = scan
        self.api.hub.log("config", f"scanning {network} for DTUs on port {port}")
        return json_data(scan.view(), 202)

    async def get_scan(self, request: web.Request) -> web.Response:
        if self.scan is None:
            return json_data({"state": "idle"})
        return json_data(self.scan.view())

    async def cancel_scan(self, request: web.Request) -> web.Response:
        await self._cancel()
        return json_data(self.scan.view() if self.scan is not None else {"state": "idle"})

    async def _cancel(self) -> None:
        scan = self.scan
        if scan is None or scan.task is None or scan.task.done():
            return
        scan.task.cancel()
        await asyncio.wait({scan.task})
        scan.state = "cancelled"

    async def close(self, _app: web.Application) -> None:
        await self._cancel()

    async def _run(self, scan: Scan) -> None:
        polled = self._polled()
        queue: Iterator[str] = iter(scan.addresses)

        async def worker() -> None:
            for address in queue:
                await self._probe(scan, address, polled)
                scan.done += 1

        try:
            async with asyncio.TaskGroup() as group:
                for index in range(min(self.parallel, len(scan.addresses))):
                    group.create_task(worker(), name=f"setup-scan-{scan.number}-probe-{index}")
            scan.state = "done"
        finally:
            _settle(scan)
        found = ", ".join(f"{d['serial']} at {d['host']}" for d in scan.found) or "no DTU"
        self.api.hub.log("config", f"scan of {scan.network} done: {found}")

    async def _probe(
        self, scan: Scan, address: str, polled: dict[tuple[str, int], AppInfo | None]
    ) -> None:
        if (address, scan.port) in polled:
            info = polled[(address, scan.port)]
            if info is not None:  # never connect to a DTU the bridge holds
                scan.found.append(describe(info, address, scan.port, source="bridge"))
            return
        try:
            info = await ask_app_info(address, scan.port, self.probe_timeout)
        except (ProbeFailed, HoymilesError, OSError, ValueError):
            return  # not a DTU (whatever it is)
        scan.found.append(describe(info, address, scan.port, source="dtu"))


def _settle(scan: Scan) -> None:
    """A scan that ends without finishing is cancelled or failed, never running forever."""
    if scan.state == "running":
        task = asyncio.current_task()
        cancelled = task is not None and task.cancelling() > 0
        scan.state = "cancelled" if cancelled else "failed"


def _report_failure(task: asyncio.Task[None]) -> None:
    """Log what broke a scan (its state already says "failed")."""
    if not task.cancelled() and task.exception() is not None:
        _LOGGER.warning("The scan %s failed: %s", task.get_name(), task.exception())


def register(app: web.Application, api: ApiContext) -> None:
    """Add this module's routes to ``app``."""
    routes = SetupRoutes(api)
    router = app.router
    router.add_post("/api/setup/test", routes.test)
    router.add_get("/api/setup/network", routes.network)
    router.add_post("/api/setup/scan", routes.start_scan)
    router.add_get("/api/setup/scan", routes.get_scan)
    router.add_post("/api/setup/scan/cancel", routes.cancel_scan)
    app.on_shutdown.append(routes.close)


__all__ = [
    "MIN_PREFIX",
    "PROBE_TIMEOUT",
    "SCAN_PARALLEL",
    "TEST_TIMEOUT",
    "NetworkHints",
    "ProbeFailed",
    "Scan",
    "SetupRoutes",
    "ask_app_info",
    "check_host",
    "check_network",
    "check_port",
    "describe",
    "failure",
    "own_networks",
    "register",
    "scan_addresses",
    "usable_networks",
]
