"""A stand-in for Home Assistant's ingress proxy, for the browser tests.

Home Assistant serves an add-on's panel under ``/api/hassio_ingress/<token>/``
and forwards each request to the add-on with that prefix stripped and the
prefix itself in ``X-Ingress-Path``. A page that uses an absolute URL
(``/api/...``, ``/static/...``) or answers with an absolute redirect leaves the
prefix and breaks there; this proxy makes such mistakes visible:

- requests outside the prefix get 404 and are recorded in ``stray_requests``
  (except ``/favicon.ico``, which Chromium asks for by itself);
- a 3xx answer from the upstream whose ``Location`` starts with ``/`` is
  recorded in ``absolute_redirects`` (and still forwarded, as ingress would).

Like Home Assistant's proxy it forwards the method, the path (prefix stripped),
the query string, the body and the headers (``Host`` included, so same-origin
checks see what they see behind real ingress), adds ``X-Ingress-Path``,
``X-Forwarded-For``, ``X-Forwarded-Host`` and ``X-Forwarded-Proto``, does not
follow redirects, streams response bodies, and proxies websockets both ways
(text and binary messages, close codes).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from dataclasses import dataclass
from types import TracebackType
from typing import Final, Self

import aiohttp
from aiohttp import WSMsgType, hdrs, web
from multidict import CIMultiDict

PREFIX_ROOT: Final = "/api/hassio_ingress/"

#: Request headers not forwarded upstream (hop-by-hop, recomputed, or the websocket handshake's).
_DROP_REQUEST: Final = frozenset(
    h.lower()
    for h in (
        hdrs.CONNECTION,
        hdrs.KEEP_ALIVE,
        hdrs.PROXY_AUTHENTICATE,
        hdrs.PROXY_AUTHORIZATION,
        hdrs.TE,
        hdrs.TRAILER,
        hdrs.TRANSFER_ENCODING,
        hdrs.UPGRADE,
        hdrs.CONTENT_LENGTH,
        hdrs.ACCEPT_ENCODING,  # as in Home Assistant: no compression behind the proxy
        hdrs.SEC_WEBSOCKET_EXTENSIONS,
        hdrs.SEC_WEBSOCKET_PROTOCOL,
        hdrs.SEC_WEBSOCKET_VERSION,
        hdrs.SEC_WEBSOCKET_KEY,
    )
)
#: Response headers not copied back (hop-by-hop or recomputed by aiohttp).
_DROP_RESPONSE: Final = frozenset(
    h.lower()
    for h in (
        hdrs.CONNECTION,
        hdrs.KEEP_ALIVE,
        hdrs.TRANSFER_ENCODING,
        hdrs.CONTENT_LENGTH,
        hdrs.UPGRADE,
        hdrs.SERVER,
        hdrs.DATE,
    )
)
#: Paths a browser asks for on its own, outside any page's control.
_BROWSER_OWN_PATHS: Final = frozenset({"/favicon.ico"})


@dataclass(frozen=True)
class Redirect:
    """An absolute redirect the upstream answered with."""

    method: str
    path: str  # the upstream path that was asked for (prefix stripped)
    status: int
    location: str


@dataclass(frozen=True)
class StrayRequest:
    """A request the browser sent outside the ingress prefix."""

    method: str
    path: str


class IngressProxy:
    """Serves ``upstream`` (``http://host:port``) under ``/api/hassio_ingress/<token>/``.

    Use as ``async with IngressProxy(upstream) as proxy:`` and open ``proxy.url``.
    """

    def __init__(self, upstream: str, *, token: str | None = None, host: str = "127.0.0.1"):
        self.upstream = upstream.rstrip("/")
        self.token = token if token is not None else secrets.token_urlsafe(32)
        #: The value of ``X-Ingress-Path``: no trailing slash, as Home Assistant sends it.
        self.ingress_path = f"{PREFIX_ROOT}{self.token}"
        self.host = host
        self.absolute_redirects: list[Redirect] = []
        self.stray_requests: list[StrayRequest] = []
        #: Every forwarded request as (method, upstream path with query).
        self.forwarded: list[tuple[str, str]] = []
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._port = 0
        self._websockets: set[web.WebSocketResponse] = set()

    @property
    def port(self) -> int:
        return self._port

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def url(self) -> str:
        """The panel's address: the prefix with its trailing slash."""
        return f"{self.origin}{self.ingress_path}/"

    def url_for(self, relative: str) -> str:
        """``relative`` (no leading slash) resolved under the prefix."""
        return self.url + relative.lstrip("/")

    def problems(self) -> list[str]:
        """What broke ingress so far: absolute redirects and requests outside the prefix."""
        found = [
            f"absolute redirect: {r.method} {r.path} -> {r.status} Location: {r.location}"
            for r in self.absolute_redirects
        ]
        found += [
            f"request outside the ingress prefix: {r.method} {r.path}" for r in self.stray_requests
        ]
        return found

    def assert_ingress_clean(self) -> None:
        """Fails when the upstream redirected absolutely or a page left the prefix."""
        found = self.problems()
        assert not found, "\n".join(found)

    # --- lifecycle ------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._session = aiohttp.ClientSession(
            auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None, connect=10)
        )
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, 0)
        await site.start()
        self._runner = runner
        for address in runner.addresses:
            if isinstance(address, tuple) and len(address) >= 2:
                self._port = int(address[1])
                break

    async def stop(self) -> None:
        for ws in list(self._websockets):
            await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY)
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- forwarding -----------------------------------------------------------

    def _upstream_path(self, request: web.Request) -> str | None:
        """The path to ask upstream (raw, still percent-encoded), or ``None`` when outside."""
        raw = request.rel_url.raw_path
        if not raw.startswith(self.ingress_path + "/"):
            return None
        return raw[len(self.ingress_path) :]

    def _headers(self, request: web.Request) -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict()
        for name, value in request.headers.items():
            if name.lower() not in _DROP_REQUEST:
                headers.add(name, value)
        headers["X-Ingress-Path"] = self.ingress_path
        peer = request.transport.get_extra_info("peername") if request.transport else None
        client = str(peer[0]) if isinstance(peer, tuple) and peer else "127.0.0.1"
        previous = request.headers.get(hdrs.X_FORWARDED_FOR)
        headers[hdrs.X_FORWARDED_FOR] = f"{previous}, {client}" if previous else client
        headers.setdefault(hdrs.X_FORWARDED_HOST, request.host)
        headers.setdefault(hdrs.X_FORWARDED_PROTO, request.scheme)
        return headers

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = self._upstream_path(request)
        if path is None:
            if request.path not in _BROWSER_OWN_PATHS:
                self.stray_requests.append(StrayRequest(request.method, request.raw_path))
            return web.Response(status=404, text="404: not under the ingress prefix\n")
        query = request.rel_url.raw_query_string
        target = f"{path}?{query}" if query else path
        self.forwarded.append((request.method, target))
        url = self.upstream + target
        headers = self._headers(request)
        upgrade = request.headers.get(hdrs.UPGRADE, "").lower()
        if upgrade == "websocket" and request.method == "GET":
            return await self._websocket(request, url, headers)
        return await self._http(request, url, target, headers)

    async def _http(
        self, request: web.Request, url: str, target: str, headers: CIMultiDict[str]
    ) -> web.StreamResponse:
        assert self._session is not None
        body = await request.read() if request.body_exists else None
        try:
            upstream = await self._session.request(
                request.method,
                aiohttp.client.URL(url, encoded=True),
                headers=headers,
                data=body,
                allow_redirects=False,
            )
        except aiohttp.ClientError as err:
            return web.Response(status=502, text=f"502: upstream failed: {err}\n")
        async with upstream:
            location = upstream.headers.get(hdrs.LOCATION, "")
            if 300 <= upstream.status < 400 and location.startswith("/"):
                self.absolute_redirects.append(
                    Redirect(request.method, target, upstream.status, location)
                )
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in _DROP_RESPONSE:
                    response.headers.add(name, value)
            response.headers[hdrs.SERVER] = "ingress-proxy (tests)"
            if upstream.content_length is not None and not upstream.headers.get(
                hdrs.TRANSFER_ENCODING
            ):
                response.content_length = upstream.content_length
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response

    async def _websocket(
        self, request: web.Request, url: str, headers: CIMultiDict[str]
    ) -> web.StreamResponse:
        assert self._session is not None
        protocols = tuple(
            p.strip()
            for p in request.headers.get(hdrs.SEC_WEBSOCKET_PROTOCOL, "").split(",")
            if p.strip()
        )
        try:
            client = await self._session.ws_connect(
                aiohttp.client.URL(url, encoded=True),
                headers=headers,
                protocols=protocols,
                autoping=True,
                max_msg_size=0,
            )
        except aiohttp.WSServerHandshakeError as err:
            return web.Response(status=err.status or 502, text="websocket refused upstream\n")
        except aiohttp.ClientError as err:
            return web.Response(status=502, text=f"502: upstream failed: {err}\n")
        server = web.WebSocketResponse(
            protocols=(client.protocol,) if client.protocol else (), max_msg_size=0
        )
        await server.prepare(request)
        self._websockets.add(server)
        try:
            await _pump_both(server, client)
        finally:
            self._websockets.discard(server)
            await client.close()
            await server.close()
        return server


async def _forward(
    source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
    sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
) -> None:
    async for message in source:
        if message.type is WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type is WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif message.type is WSMsgType.ERROR:
            break
    code = source.close_code
    if code is not None and not sink.closed:
        await sink.close(code=code)


async def _pump_both(
    server: web.WebSocketResponse, client: aiohttp.ClientWebSocketResponse
) -> None:
    tasks = {
        asyncio.create_task(_forward(server, client)),
        asyncio.create_task(_forward(client, server)),
    }
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            # One side going away mid-send is how a websocket ends; anything else is a bug.
            with contextlib.suppress(asyncio.CancelledError, ConnectionError, aiohttp.ClientError):
                await task


__all__ = ["PREFIX_ROOT", "IngressProxy", "Redirect", "StrayRequest"]
