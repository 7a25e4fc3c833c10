"""The browser-test setup itself: Chromium through the ingress stand-in, and the proxy alone.

The web UI's own tests build on these fixtures (tests/browser/fixtures.py).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import WSMsgType, web
from playwright.async_api import Page, expect
from yarl import URL

from hoymiles_bridge import __version__
from hoymiles_bridge.web.server import WebServer
from tests.browser.helpers import ConsoleErrors, IngressProxies
from tests.browser.ingress_proxy import PREFIX_ROOT, IngressProxy

pytest_plugins = ["tests.browser.fixtures"]

STATUS = {"bridge": "running", "dtus": 1}


@pytest_asyncio.fixture
async def web_server() -> AsyncIterator[WebServer]:
    server = WebServer("127.0.0.1", 0, status=lambda: dict(STATUS), allowed_peers=None)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.mark.parametrize("color_scheme", ["light", "dark"])
async def test_placeholder_page_through_ingress(
    web_server: WebServer,
    ingress_proxy: IngressProxies,
    browser_page: Page,
    screenshot: Any,
    color_scheme: str,
) -> None:
    proxy = await ingress_proxy(f"http://127.0.0.1:{web_server.port}")
    page = browser_page
    assert await page.evaluate(f"matchMedia('(prefers-color-scheme: {color_scheme})').matches")

    response = await page.goto(proxy.url)
    assert response is not None and response.ok
    await expect(page).to_have_title("Hoymiles DTU Bridge")
    await expect(page.locator("h1")).to_contain_text("Hoymiles DTU Bridge")
    await screenshot(page)

    await page.get_by_role("link", name="health").click()
    await page.wait_for_url(proxy.url_for("health"))
    health = json.loads(await page.locator("body").inner_text())
    assert health == {"status": "ok", "version": __version__, **STATUS}
    # what the server saw: the prefix stripped
    assert ("GET", "/health") in proxy.forwarded
    assert proxy.absolute_redirects == []
    assert proxy.stray_requests == []


async def test_console_errors_are_caught(
    ingress_proxy: IngressProxies, browser_page: Page, console_errors: ConsoleErrors
) -> None:
    """The watcher sees script errors and console.error; allow() accepts the expected ones."""

    async def page(request: web.Request) -> web.Response:
        html = (
            "<!doctype html><title>t</title><script>console.error('boom');"
            "setTimeout(() => { throw new Error('kaput'); }, 0);</script>"
        )
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    async with Served(app) as upstream:
        proxy = await ingress_proxy(upstream)
        await browser_page.goto(proxy.url)
        await browser_page.wait_for_timeout(200)
    assert any("boom" in e for e in console_errors.entries)
    assert any("kaput" in e for e in console_errors.entries)
    console_errors.allow("boom")
    console_errors.allow("kaput")
    assert console_errors.unexpected == []


# --- the proxy alone ---------------------------------------------------------------


async def _echo_ws(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(protocols=("echo.v1",))
    await ws.prepare(request)
    await ws.send_str(json.dumps({"ingress_path": request.headers.get("X-Ingress-Path")}))
    async for message in ws:
        if message.type is WSMsgType.TEXT:
            if message.data == "close":
                await ws.close(code=4001, message=b"bye")
                break
            await ws.send_str("echo:" + message.data)
        elif message.type is WSMsgType.BINARY:
            await ws.send_bytes(message.data[::-1])
    return ws


async def _echo_http(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "method": request.method,
            "path": request.path,
            "query": request.rel_url.raw_query_string,
            "body": (await request.read()).decode(),
            "ingress_path": request.headers.get("X-Ingress-Path"),
            "forwarded_for": request.headers.get("X-Forwarded-For"),
            "custom": request.headers.get("X-Custom"),
        }
    )


async def _redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound(request.query.get("to", "/"))


def _echo_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/ws", _echo_ws)
    app.router.add_get("/redirect", _redirect)
    app.router.add_route("*", "/{tail:.*}", _echo_http)
    return app


class Served:
    """``async with Served(app) as url``: ``app`` on 127.0.0.1 at a free port."""

    def __init__(self, app: web.Application) -> None:
        self._runner = web.AppRunner(app, access_log=None)

    async def __aenter__(self) -> str:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = next(a[1] for a in self._runner.addresses if isinstance(a, tuple))
        return f"http://127.0.0.1:{port}"

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()


@pytest_asyncio.fixture
async def echo_proxy() -> AsyncIterator[IngressProxy]:
    async with Served(_echo_app()) as upstream, IngressProxy(upstream) as proxy:
        yield proxy


async def test_proxy_websocket_round_trip(echo_proxy: IngressProxy) -> None:
    proxy = echo_proxy
    assert proxy.url.startswith(f"http://127.0.0.1:{proxy.port}{PREFIX_ROOT}")
    ws_url = proxy.url_for("ws").replace("http://", "ws://", 1)
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(ws_url, protocols=("echo.v1",)) as ws,
    ):
        assert ws.protocol == "echo.v1"
        hello = await ws.receive_json(timeout=5)
        assert hello == {"ingress_path": proxy.ingress_path}
        await ws.send_str("ping ü")
        assert await ws.receive_str(timeout=5) == "echo:ping ü"
        payload = bytes(range(256)) * 300  # bigger than one read
        await ws.send_bytes(payload)
        assert await ws.receive_bytes(timeout=5) == payload[::-1]
        await ws.send_str("close")
        message = await ws.receive(timeout=5)
        assert message.type is WSMsgType.CLOSE
        assert ws.close_code == 4001 or message.data == 4001


async def test_proxy_forwards_http_and_strips_prefix(echo_proxy: IngressProxy) -> None:
    proxy = echo_proxy
    async with aiohttp.ClientSession() as session:
        async with session.post(
            URL(proxy.url_for("api/thing?a=1&b=%2F"), encoded=True),  # as sent
            data=b"payload",
            headers={"X-Custom": "yes", "X-Forwarded-For": "10.0.0.9"},
        ) as response:
            assert response.status == 200
            echoed = await response.json()
        assert echoed == {
            "method": "POST",
            "path": "/api/thing",
            "query": "a=1&b=%2F",
            "body": "payload",
            "ingress_path": proxy.ingress_path,
            "forwarded_for": "10.0.0.9, 127.0.0.1",
            "custom": "yes",
        }
        # outside the prefix: 404, recorded as a stray request (favicon aside)
        for path in ("/api/thing", f"{PREFIX_ROOT}other-token/x", "/favicon.ico"):
            async with session.get(proxy.origin + path) as response:
                assert response.status == 404
        assert [s.path for s in proxy.stray_requests] == [
            "/api/thing",
            f"{PREFIX_ROOT}other-token/x",
        ]


async def test_proxy_records_absolute_redirects(echo_proxy: IngressProxy) -> None:
    proxy = echo_proxy
    async with aiohttp.ClientSession() as session:
        async with session.get(
            proxy.url_for("redirect?to=elsewhere"), allow_redirects=False
        ) as response:
            assert response.status == 302
            assert response.headers["Location"] == "elsewhere"
        assert proxy.absolute_redirects == []
        async with session.get(
            proxy.url_for("redirect?to=/health"), allow_redirects=False
        ) as response:
            assert response.status == 302
    assert [(r.path, r.location) for r in proxy.absolute_redirects] == [
        ("/redirect?to=/health", "/health")
    ]
    with pytest.raises(AssertionError, match="absolute redirect: GET"):
        proxy.assert_ingress_clean()
