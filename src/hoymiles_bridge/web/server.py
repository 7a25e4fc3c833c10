"""The bridge's small HTTP server: ``/health``, the JSON API ``api/...``, the web UI at ``/``.

In the add-on the server listens on the ingress port and serves only the
Supervisor's ingress proxy (``172.30.32.2``), judged by the TCP peer address
and never by headers such as ``X-Forwarded-For``, which any client can send.
Home Assistant authenticates the user before the proxy forwards anything.
``/health`` is also open to ``127.0.0.1``, where the container's own Docker
``HEALTHCHECK`` asks.

With a :class:`~hoymiles_bridge.web.hub.WebHub` and the bridge, the server
also answers the JSON API of :mod:`hoymiles_bridge.web.api` (the bridge may be
given as a callable while the service is still starting it).

Standalone, the server has no peer restriction; with ``credentials`` it asks
for HTTP basic auth (whenever the options configure them, loopback included).
It also answers only requests whose ``Host`` names this bridge (see
:meth:`WebServer.host_allowed`), so a web page of another site whose name was
made to resolve to the bridge's address ("DNS rebinding") is refused with 421
before it can read or change anything. Behind ingress the ``Host`` is the one
Home Assistant's proxy forwards, and only that proxy reaches the port, so it is
not checked there.

Pages use relative links only: behind ingress the UI lives under
``/api/hassio_ingress/<token>/``, and an absolute ``/...`` link would leave it.

Every response carries a ``Content-Security-Policy``: scripts, styles,
fetches and the websocket come from this origin only (``'self'``; the pages
have no inline script or style), images also from ``data:`` (the empty
favicon). ``frame-ancestors`` is ``'none'`` standalone, where no page has a
reason to frame the UI. Behind ingress it is ``'self'``: Home Assistant's
frontend shows the UI in an iframe whose URL is on the frontend's own origin
(``https://<home assistant>/api/hassio_ingress/<token>/``), so the frontend
is "self" and any other site's frame is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import ipaddress
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, Final

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from hoymiles_bridge import __version__
from hoymiles_bridge.config.store import ConfigStore
from hoymiles_bridge.core.cloud import CloudSource
from hoymiles_bridge.core.controller_service import ControllerService
from hoymiles_bridge.core.fleet import Fleet
from hoymiles_bridge.errors import HoymilesError, InvalidArgumentError
from hoymiles_bridge.web.api import WebApi
from hoymiles_bridge.web.hub import WebHub

_LOGGER = logging.getLogger(__name__)

StatusCallback = Callable[[], dict[str, Any]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: Who may ask ``/health`` even when the peers are restricted: the container itself.
DEFAULT_HEALTH_PEERS: Final = frozenset({"127.0.0.1"})
HEALTH_PATH: Final = "/health"
#: How long stop() lets open requests finish.
_SHUTDOWN_TIMEOUT: Final = 2.0
_REALM: Final = 'Basic realm="Hoymiles DTU Bridge", charset="UTF-8"'
#: Host names a standalone server always answers to (besides any IP address).
LOOPBACK_NAMES: Final = frozenset({"localhost"})
#: Listening on these addresses means every interface: they are never a Host.
_WILDCARD_HOSTS: Final = frozenset({"", "0.0.0.0", "::", "[::]"})  # noqa: S104
_MISDIRECTED: Final = (
    "Misdirected request: this bridge answers only to its IP addresses, localhost, "
    "the machine's name and the names in HOYMILES_BRIDGE_WEB_HOSTS.\n"
)
#: Handler errors answered with a plain 500 instead of a traceback.
_HANDLER_ERRORS: Final = (
    HoymilesError,
    ArithmeticError,
    AttributeError,
    LookupError,
    OSError,
    RuntimeError,
    TypeError,
    ValueError,
)

#: The UI's files (package data), served under the relative ``static/``.
STATIC_DIR: Final = Path(__file__).with_name("static")
_STATIC_TYPES: Final = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".svg": "image/svg+xml",
}
_IMMUTABLE: Final = "public, max-age=31536000, immutable"


def content_security_policy(*, ingress: bool) -> str:
    """The ``Content-Security-Policy`` of every response (see the module docs)."""
    ancestors = "'self'" if ingress else "'none'"
    return (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        f"form-action 'self'; frame-ancestors {ancestors}"
    )


def asset_versions(directory: Path = STATIC_DIR) -> dict[str, str]:
    """Each static file's name and a short hash of its content, for cache-busting URLs."""
    versions: dict[str, str] = {}
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.suffix in _STATIC_TYPES:
            versions[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return versions


def render_index(
    directory: Path = STATIC_DIR, versions: dict[str, str] | None = None, *, api: bool = True
) -> str:
    """The shell page with its asset URLs versioned (relative, so ingress keeps its prefix)."""
    versions = asset_versions(directory) if versions is None else versions
    template = (directory / "index.html").read_text(encoding="utf-8")
    page = template.replace("{{version}}", html.escape(__version__))
    page = page.replace("{{api}}", "1" if api else "0")
    for name, digest in versions.items():
        page = page.replace("{{" + name + "}}", f"static/{name}?v={digest}")
    return page


class _DropBadRequests(logging.Filter):
    """aiohttp answers an unparsable request with 400 and logs a traceback: drop the latter."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, HttpProcessingError)


#: aiohttp's per-connection logger for this server (request errors).
_SERVER_LOGGER: Final = _LOGGER.getChild("http")
_SERVER_LOGGER.addFilter(_DropBadRequests())


def normalize_address(text: str) -> str:
    """An IP address in canonical form (IPv4-mapped IPv6 becomes IPv4)."""
    ip = ipaddress.ip_address(text.strip().split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def _addresses(values: Iterable[str]) -> frozenset[str]:
    try:
        return frozenset(normalize_address(v) for v in values)
    except ValueError as err:
        raise InvalidArgumentError(f"not an IP address: {err}") from None


def host_name(value: str) -> str | None:
    """The name in a ``Host`` header: lower case, without port, brackets or final dot.

    ``None`` when the header is malformed (a bad port, an unclosed or
    non-IPv6 bracket).
    """
    text = value.strip().lower()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        name, rest = text[1:end], text[end + 1 :]
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            return None
    else:
        name, colon, port = text.partition(":")
        rest = colon + port
    if rest and not (
        rest.startswith(":") and len(rest) <= 6 and (rest[1:] == "" or _digits(rest[1:]))
    ):
        return None
    return name.removesuffix(".")


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _is_ipv4(name: str) -> bool:
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return True


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def peer_address(request: web.Request) -> str | None:
    """The TCP peer's IP address (never taken from a header), or ``None`` when unknown."""
    transport = request.transport
    if transport is None:
        return None
    peer = transport.get_extra_info("peername")
    if not isinstance(peer, tuple) or not peer or not isinstance(peer[0], str):
        return None
    try:
        return normalize_address(peer[0])
    except ValueError:
        return None


class WebServer:
    """``GET /health``, the UI (``/``, ``static/...``) and ``api/...`` on ``host:port``.

    See the module docs for who may ask.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        status: StatusCallback,
        allowed_peers: frozenset[str] | None,
        health_peers: frozenset[str] = DEFAULT_HEALTH_PEERS,
        credentials: tuple[str, str] | None = None,
        access_log: bool = False,
        hub: WebHub | None = None,
        fleet: Fleet | Callable[[], Fleet | None] | None = None,
        clock: Callable[[], float] = time.time,
        config_store: ConfigStore | None = None,
        allowed_hosts: Iterable[str] = (),
        cloud: Callable[[], CloudSource | None] | None = None,
        controller: Callable[[], ControllerService | None] | None = None,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._status = status
        self.allowed_peers = None if allowed_peers is None else _addresses(allowed_peers)
        self.health_peers = _addresses(health_peers)
        self._credentials = (
            None
            if credentials is None
            else (credentials[0].encode("utf-8"), credentials[1].encode("utf-8"))
        )
        #: The host names a standalone server answers to besides IP addresses.
        self.host_names = self._host_names(host, allowed_hosts)
        self._access_log = access_log
        self._policy = content_security_policy(ingress=self.allowed_peers is not None)
        self._runner: web.AppRunner | None = None
        self.hub = hub
        #: The JSON API (``api/...``), when a hub and a fleet were given.
        self.api = (
            None
            if hub is None or fleet is None
            else WebApi(
                hub,
                fleet,
                trust_forwarded_host=self.allowed_peers is not None,
                clock=clock,
                config_store=config_store,
                cloud=cloud,
                controller=controller,
            )
        )
        self._assets = asset_versions()
        self._index_html = render_index(versions=self._assets, api=self.api is not None)
        self.app = self._build_app()

    def __repr__(self) -> str:
        return f"WebServer(host={self.host!r}, port={self.port})"

    @property
    def port(self) -> int:
        """The bound port once started (useful with port 0), else the requested one."""
        if self._runner is not None:
            for address in self._runner.addresses:
                if isinstance(address, tuple) and len(address) >= 2:
                    return int(address[1])
        return self._requested_port

    @property
    def running(self) -> bool:
        return self._runner is not None

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self._index)
        app.router.add_get(HEALTH_PATH, self._health)
        app.router.add_get("/static/{name}", self._static)
        if self.api is not None:
            self.api.register(app)
        app.on_response_prepare.append(self._security_headers)
        return app

    async def start(self) -> None:
        """Listen; raises :class:`OSError` when the address is taken or not ours."""
        if self._runner is not None:
            return
        runner = web.AppRunner(
            self.app,
            handle_signals=False,
            access_log=_LOGGER.getChild("access") if self._access_log else None,
            logger=_SERVER_LOGGER,
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self._requested_port).start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        _LOGGER.debug("Web server listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self.hub is not None:
            self.hub.close()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # --- access control ---------------------------------------------------

    @staticmethod
    def _host_names(host: str, extra: Iterable[str]) -> frozenset[str]:
        machine = socket.gethostname().lower().removesuffix(".")
        names = set(LOOPBACK_NAMES) | {machine, f"{machine}.local"}
        for name in (host, *extra):
            cleaned = name.strip().lower().removesuffix(".").strip("[]")
            if cleaned not in _WILDCARD_HOSTS and not _is_ip_address(cleaned):
                names.add(cleaned)
        return frozenset(names)

    def host_allowed(self, value: str) -> bool:
        """Whether a request with ``Host: value`` is meant for this bridge.

        Standalone these are: any IP address (a browser sends an address when
        the page's URL holds it, and a page at the bridge's address is the
        bridge's own), ``localhost``, the machine's name (also with
        ``.local``), ``host`` when it is a name, and the ``allowed_hosts``;
        with any port, so port mappings and proxies work. A DNS rebinding
        attack always sends its own name, so it is refused. Behind ingress
        (``allowed_peers``) every ``Host`` is allowed.
        """
        if self.allowed_peers is not None:
            return True
        name = host_name(value)
        if not name:
            return False
        if value.lstrip().startswith("["):
            return True  # host_name() already checked it is an IPv6 address
        return name in self.host_names or _is_ipv4(name)

    def _host_ok(self, request: web.Request) -> bool:
        """Whether the request's one ``Host`` is allowed (none at all: not a browser)."""
        if self.allowed_peers is not None:
            return True
        hosts = request.headers.getall("Host", [])
        if len(hosts) <= 1 and all(self.host_allowed(h) for h in hosts):
            return True
        _LOGGER.debug("Refused a request for the host %r", hosts)
        return False

    def _peer_allowed(self, request: web.Request) -> bool:
        if self.allowed_peers is None:
            return True
        peer = peer_address(request)
        if peer is None:
            return False
        if peer in self.allowed_peers:
            return True
        return request.path == HEALTH_PATH and peer in self.health_peers

    def _health_probe(self, request: web.Request) -> bool:
        """The container's own health check (``/health`` from a health peer) needs no login."""
        return request.path == HEALTH_PATH and peer_address(request) in self.health_peers

    def _authorized(self, request: web.Request) -> bool:
        if self._credentials is None:
            return True
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user, separator, password = decoded.partition(b":")
        # Compare both, always, so the time taken does not tell which one was wrong.
        user_ok = hmac.compare_digest(user, self._credentials[0])
        password_ok = hmac.compare_digest(password, self._credentials[1])
        return bool(separator) and user_ok and password_ok

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self._host_ok(request):
            return web.Response(status=421, text=_MISDIRECTED)
        if not self._peer_allowed(request):
            return web.Response(
                status=403, text="Forbidden: this port only serves Home Assistant ingress.\n"
            )
        if not self._authorized(request) and not self._health_probe(request):
            return web.Response(
                status=401,
                text="Unauthorized: this bridge needs a user name and password.\n",
                headers={"WWW-Authenticate": _REALM},
            )
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except _HANDLER_ERRORS:
            _LOGGER.exception("Web request %s %s failed", request.method, request.path)
            return web.Response(status=500, text="Internal error; see the bridge's log.\n")

    async def _security_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers.setdefault("Content-Security-Policy", self._policy)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Cache-Control", "no-cache")
        response.headers["Server"] = "hoymiles-bridge"  # not aiohttp's and Python's versions

    # --- pages ------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(text=self._index_html, content_type="text/html", charset="utf-8")

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self._assets or name == "index.html":
            raise web.HTTPNotFound()
        path = STATIC_DIR / name
        headers = {"Cache-Control": _IMMUTABLE if request.query.get("v") else "no-cache"}
        return web.Response(
            body=path.read_bytes(),
            content_type=_STATIC_TYPES[path.suffix],
            charset="utf-8",
            headers=headers,
        )

    async def _health(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = {"status": "ok", "version": __version__}
        body.update(self._status())
        return web.json_response(body, headers={"Cache-Control": "no-store"})


__all__ = [
    "DEFAULT_HEALTH_PEERS",
    "LOOPBACK_NAMES",
    "StatusCallback",
    "WebServer",
    "content_security_policy",
    "host_name",
    "normalize_address",
    "peer_address",
]
