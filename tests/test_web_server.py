"""The web server: /health, the ingress peer check, basic auth, errors without tracebacks."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import re
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from hoymiles_bridge import __version__
from hoymiles_bridge.addon.runner import (
    SUPERVISOR_INGRESS_PEER,
    Service,
    addon_web_config,
    bridge_status,
    fixed_broker,
    standalone_web_config,
)
from hoymiles_bridge.config.options import validate
from hoymiles_bridge.errors import InvalidArgumentError
from hoymiles_bridge.mqtt.link import MqttSettings
from hoymiles_bridge.web import WebServer
from hoymiles_bridge.web.hub import WebHub

INGRESS = "127.0.0.2"  # stands in for the Supervisor, 172.30.32.2
LOCAL = "127.0.0.1"
STRANGER = "127.0.0.3"


def _status() -> dict[str, Any]:
    return {"mqtt": True, "dtus": [{"host": "192.0.2.1", "serial": "4143", "state": "connected"}]}


async def _start(**kwargs: Any) -> WebServer:
    kwargs.setdefault("status", _status)
    kwargs.setdefault("allowed_peers", None)
    server = WebServer(LOCAL, 0, **kwargs)
    await server.start()
    return server


@pytest.fixture
async def open_server() -> AsyncIterator[WebServer]:
    server = await _start()
    yield server
    await server.stop()


@pytest.fixture
async def ingress_server() -> AsyncIterator[WebServer]:
    server = await _start(allowed_peers=frozenset({INGRESS}))
    yield server
    await server.stop()


async def _get(
    server: WebServer, path: str, *, source: str = LOCAL, method: str = "GET", **kwargs: Any
) -> tuple[int, str, Any]:
    connector = aiohttp.TCPConnector(local_addr=(source, 0), force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.request(method, f"http://{LOCAL}:{server.port}{path}", **kwargs) as response,
    ):
        return response.status, await response.text(), response.headers


async def test_health_reports_the_bridge(open_server: WebServer) -> None:
    status, text, headers = await _get(open_server, "/health")
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    body = json.loads(text)
    assert body == {"status": "ok", "version": __version__, **_status()}


async def test_index_is_the_ui_shell_with_relative_links(open_server: WebServer) -> None:
    status, text, headers = await _get(open_server, "/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert "Hoymiles DTU Bridge" in text and "{{" not in text
    links = re.findall(r'(?:href|src|action)="([^"]*)"', text)
    assert links
    assert all(not link.startswith(("/", "http:", "https:")) for link in links)
    assert "X-Frame-Options" not in headers  # ingress shows the UI in an iframe
    # assets are cache-busted by a hash of their content, and cached for good
    assets = re.findall(r'"(static/[a-z]+\.(?:js|css)\?v=[0-9a-f]{12})"', text)
    assert {"core.js", "app.css"} <= {a.split("/")[1].split("?")[0] for a in assets}
    for asset in assets:
        status, _, headers = await _get(open_server, "/" + asset)
        assert status == 200 and "immutable" in headers["Cache-Control"]
    for missing in ("/static/index.html", "/static/nope.js", "/static/..%2Fserver.py"):
        assert (await _get(open_server, missing))[0] == 404


async def test_ingress_peer_check_uses_the_tcp_peer(ingress_server: WebServer) -> None:
    assert (await _get(ingress_server, "/", source=INGRESS))[0] == 200
    assert (await _get(ingress_server, "/health", source=INGRESS))[0] == 200
    status, text, _ = await _get(ingress_server, "/", source=LOCAL)
    assert status == 403
    assert "ingress" in text
    # Headers do not count: only the TCP peer does.
    spoofed = {"X-Forwarded-For": INGRESS, "X-Real-IP": INGRESS, "X-Hass-Source": "core.ingress"}
    assert (await _get(ingress_server, "/", source=LOCAL, headers=spoofed))[0] == 403
    # The container's own HEALTHCHECK (127.0.0.1) may ask /health, nothing else.
    assert (await _get(ingress_server, "/health", source=LOCAL))[0] == 200
    assert (await _get(ingress_server, "/health/", source=LOCAL))[0] == 403
    assert (await _get(ingress_server, "/health", source=STRANGER))[0] == 403
    # Unknown paths: 403 for strangers (nothing leaks), 404 for the ingress peer.
    assert (await _get(ingress_server, "/nope", source=STRANGER))[0] == 403
    assert (await _get(ingress_server, "/nope", source=INGRESS))[0] == 404


def _basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def test_basic_auth() -> None:
    server = await _start(credentials=("admin", "s3cret:with:colons"))
    try:
        status, _, headers = await _get(server, "/")
        assert status == 401
        assert headers["WWW-Authenticate"].startswith("Basic ")
        for headers_ in (
            _basic("admin", "wrong"),
            _basic("root", "s3cret:with:colons"),
            _basic("admin", ""),
            {"Authorization": "Basic !!!not-base64"},
            {"Authorization": "Bearer s3cret:with:colons"},
            {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
        ):
            assert (await _get(server, "/", headers=headers_))[0] == 401, headers_
        good = _basic("admin", "s3cret:with:colons")
        assert (await _get(server, "/", headers=good))[0] == 200
        # the local health probe (Docker's HEALTHCHECK) works with and without a login
        assert (await _get(server, "/health", headers=good))[0] == 200
        assert (await _get(server, "/health"))[0] == 200
    finally:
        await server.stop()


async def test_unknown_paths_and_methods(open_server: WebServer) -> None:
    assert (await _get(open_server, "/missing"))[0] == 404
    assert (await _get(open_server, "/health", method="POST"))[0] == 405


async def test_a_failing_status_is_a_500_without_traceback() -> None:
    calls = 0

    def broken() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("secret internals")
        return _status()

    server = await _start(status=broken)
    try:
        status, text, _ = await _get(server, "/health")
        assert status == 500
        assert "Traceback" not in text
        assert "secret internals" not in text
        assert (await _get(server, "/health"))[0] == 200  # still serving
    finally:
        await server.stop()


async def test_garbage_requests_do_not_crash_the_server(
    open_server: WebServer, caplog: pytest.LogCaptureFixture
) -> None:
    for junk in (b"\x00\xff garbage\r\n\r\n", b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", b"GET\r\n\r\n"):
        reader, writer = await asyncio.open_connection(LOCAL, open_server.port)
        writer.write(junk)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(4096), 5)
        writer.close()
        await writer.wait_closed()
        assert b"Traceback" not in answer
        if answer:  # a 4xx answer, or just a closed connection
            status_line = answer.split(b"\r\n")[0]
            assert re.match(rb"HTTP/1\.[01] 4\d\d ", status_line), status_line
    assert (await _get(open_server, "/health"))[0] == 200
    assert not [r for r in caplog.records if r.exc_info]  # no tracebacks in the log either


async def test_port_in_use_raises_oserror(open_server: WebServer) -> None:
    clash = WebServer(LOCAL, open_server.port, status=_status, allowed_peers=None)
    with pytest.raises(OSError, match="(?i)address already in use"):
        await clash.start()
    assert not clash.running


def test_peer_lists_must_be_addresses() -> None:
    with pytest.raises(InvalidArgumentError):
        WebServer(LOCAL, 0, status=_status, allowed_peers=frozenset({"supervisor"}))
    server = WebServer(LOCAL, 0, status=_status, allowed_peers=frozenset({"::ffff:172.30.32.2"}))
    assert server.allowed_peers == frozenset({"172.30.32.2"})


def test_addon_web_config() -> None:
    default = addon_web_config({})
    assert (default.host, default.port) == ("0.0.0.0", 8099)
    assert default.allowed_peers == frozenset({SUPERVISOR_INGRESS_PEER})
    assert default.credentials is None
    harness = addon_web_config(
        {
            "HOYMILES_BRIDGE_INGRESS_PEER": "127.0.0.2, 127.0.0.4",
            "HOYMILES_BRIDGE_INGRESS_PORT": "18099",
        }
    )
    assert harness.allowed_peers == frozenset({"127.0.0.2", "127.0.0.4"})
    assert harness.port == 18099
    for bad in (
        {"HOYMILES_BRIDGE_INGRESS_PEER": "supervisor"},
        {"HOYMILES_BRIDGE_INGRESS_PORT": "x"},
    ):
        with pytest.raises(InvalidArgumentError):
            addon_web_config(bad)


def test_standalone_web_config(caplog: pytest.LogCaptureFixture) -> None:
    dtus = [{"host": "192.0.2.1"}]
    local = standalone_web_config(validate({"dtus": dtus}))
    assert (local.host, local.port, local.allowed_peers, local.credentials) == (
        "127.0.0.1",
        8099,
        None,
        None,
    )
    # Credentials that are configured are always asked for, on loopback too: other local
    # users and programs reach 127.0.0.1 as well.
    loop_creds = validate({"dtus": dtus, "web": {"username": "u", "password": "p"}})
    assert standalone_web_config(loop_creds).credentials == ("u", "p")
    # Half of them is still asked for (the other one empty), with a warning.
    user_only = validate({"dtus": dtus, "web": {"username": "u"}})
    assert standalone_web_config(user_only).credentials == ("u", "")
    assert "web.username is set without web.password" in caplog.text
    password_only = validate({"dtus": dtus, "web": {"password": "p"}})
    assert standalone_web_config(password_only).credentials == ("", "p")
    assert "web.password is set without web.username" in caplog.text
    wide = validate(
        {"dtus": dtus, "web": {"host": "0.0.0.0", "port": 8100, "username": "u", "password": "p"}}
    )
    assert standalone_web_config(wide).credentials == ("u", "p")
    open_wide = validate({"dtus": dtus, "web": {"host": "0.0.0.0"}})
    assert standalone_web_config(open_wide).credentials is None
    assert "without web.username/web.password" in caplog.text


async def test_configured_credentials_guard_a_loopback_service() -> None:
    options = validate({"dtus": [{"host": "192.0.2.1"}], "web": {"username": "u", "password": "p"}})
    web = dataclasses.replace(standalone_web_config(options), port=0)  # any free port
    service = Service(options, fixed_broker(MqttSettings()), web)
    await service.web.start()
    try:
        assert (await _get(service.web, "/api/status"))[0] == 401
        assert (await _get(service.web, "/api/status", headers=_basic("u", "p")))[0] == 200
        # the container's own health probe (from 127.0.0.1) needs no login; pages do
        assert (await _get(service.web, "/health"))[0] == 200
        assert (await _get(service.web, "/"))[0] == 401
    finally:
        await service.web.stop()


def test_extra_host_names_come_from_the_environment() -> None:
    options = validate({"dtus": [{"host": "192.0.2.1"}], "web": {"host": "0.0.0.0"}})
    assert standalone_web_config(options, {}).hosts == ()
    web = standalone_web_config(options, {"HOYMILES_BRIDGE_WEB_HOSTS": " solar.lan, ,Pi.Example "})
    assert web.hosts == ("solar.lan", "Pi.Example")
    assert "also as solar.lan, Pi.Example" in web.describe()
    service = Service(options, fixed_broker(MqttSettings()), web)
    assert service.web.host_allowed("solar.lan:8099") and service.web.host_allowed("pi.example")
    assert not service.web.host_allowed("evil.example")


def test_bridge_status_before_the_bridge_exists() -> None:
    options = validate({"dtus": [{"host": "192.0.2.1"}, {"host": "192.0.2.2"}]})
    status = bridge_status(options, None)
    assert status == {
        "mqtt": False,
        "dtus": [
            {"host": "192.0.2.1", "serial": None, "state": "starting"},
            {"host": "192.0.2.2", "serial": None, "state": "starting"},
        ],
    }


# --- hardening: Host allow-list, websocket Origin ---------------------------------


async def _api_server(**kwargs: Any) -> WebServer:
    """A server with the JSON API whose bridge is still starting (enough for the guards)."""
    kwargs.setdefault("hub", WebHub())
    kwargs.setdefault("fleet", lambda: None)
    return await _start(**kwargs)


async def _ws_status(server: WebServer, headers: dict[str, str], *, source: str = LOCAL) -> int:
    """The websocket handshake's answer: 101 when it opened, else the refusal's status."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0), force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        try:
            socket = await session.ws_connect(
                f"http://{LOCAL}:{server.port}/api/ws", headers=headers
            )
        except aiohttp.WSServerHandshakeError as err:
            return err.status
        first = await socket.receive_str(timeout=5)
        assert json.loads(first)["type"] == "state"
        await socket.close()
        return 101


async def test_a_foreign_host_is_refused_standalone() -> None:
    """DNS rebinding: a page of evil.example that resolves to the bridge sends its own Host."""
    server = await _api_server()
    try:
        evil = {"Host": "evil.example", "X-Requested-With": "hoymiles-bridge"}
        for method, path in (("POST", "/api/config"), ("GET", "/"), ("GET", "/api/status")):
            status, text, _ = await _get(server, path, method=method, headers=evil, json={})
            assert status == 421, (method, path)
            assert text.count(".") == 1 and "Traceback" not in text  # one plain sentence
        assert await _ws_status(server, {"Host": f"evil.example:{server.port}"}) == 421
        # The names of this machine's loopback, with or without the port, are this bridge.
        for host in ("localhost", "LOCALHOST:{port}", "127.0.0.1:{port}", "[::1]:{port}"):
            good = {"Host": host.format(port=server.port)}
            assert (await _get(server, "/", headers=good))[0] == 200, host
            assert await _ws_status(server, good) == 101, host
    finally:
        await server.stop()


async def _raw_status(server: WebServer, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(LOCAL, server.port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(4096), 5)
    writer.close()
    await writer.wait_closed()
    return answer.split(b"\r\n")[0]


async def test_a_missing_host_is_served_but_two_are_not(open_server: WebServer) -> None:
    # Browsers always send one Host; a request without any (HTTP/1.0) is no rebinding.
    assert b" 200 " in await _raw_status(open_server, b"GET /health HTTP/1.0\r\n\r\n")
    two = b"GET /health HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n\r\n"
    assert re.search(rb" (400|421) ", await _raw_status(open_server, two))


async def test_behind_ingress_any_host_is_served() -> None:
    """Add-on: only the Supervisor reaches the port, and it forwards the browser's Host."""
    server = await _api_server(allowed_peers=frozenset({INGRESS}))
    try:
        ha = {"Host": "homeassistant.example:8123"}
        assert (await _get(server, "/", source=INGRESS, headers=ha))[0] == 200
        assert await _ws_status(server, ha, source=INGRESS) == 101
    finally:
        await server.stop()


async def test_pages_carry_a_content_security_policy() -> None:
    for peers, ancestors in ((None, "'none'"), (frozenset({LOCAL}), "'self'")):
        server = await _api_server(allowed_peers=peers)
        try:
            status, page, headers = await _get(server, "/")
            assert status == 200
            policy = dict(
                part.strip().split(" ", 1) for part in headers["Content-Security-Policy"].split(";")
            )
            assert policy["default-src"] == "'self'"
            # Standalone no page may frame the UI; behind ingress only Home Assistant's own
            # frontend, which is the same origin as the ingress URL.
            assert policy["frame-ancestors"] == ancestors
            assert "unsafe" not in headers["Content-Security-Policy"]
            assert headers["X-Content-Type-Options"] == "nosniff"
            assert headers["Referrer-Policy"] == "no-referrer"
            for path in ("/api/status", "/health", "/missing"):
                assert "Content-Security-Policy" in (await _get(server, path))[2], path
        finally:
            await server.stop()
    # Nothing inline that the policy would block: scripts and styles are files.
    assert re.findall(r"<script\b[^>]*>", page)
    assert all(" src=" in tag for tag in re.findall(r"<script\b[^>]*>", page))
    assert not re.search(r"<style\b|\sstyle=|\son[a-z]+=|javascript:", page, re.IGNORECASE)


_HUGE = "9" * 5000
_COMMAND = '{"command": "limit_persistent_relative", "serial": "116412345678", "value": %s}'


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("api/command", _COMMAND % _HUGE, "'value'"),
        ("api/command", _COMMAND % "NaN", "'value'"),
        ("api/command", _COMMAND % "Infinity", "'value'"),
        ("api/command", _COMMAND % "-Infinity", "'value'"),
        ("api/command", _COMMAND % "1e999", "'value'"),
        ("api/command", _COMMAND % "true", "'value'"),
        ("api/read", '{"request": "AppInfoToDtu", "dtu": NaN}', "'dtu'"),
        ("api/read", '{"request": ' + _HUGE + "}", "'request'"),
        ("api/decode", '{"hex": 1e999}', "'hex'"),
        ("api/config/validate", '{"options": {"poll_interval": ' + _HUGE + "}}", "poll_interval"),
        ("api/config/validate", '{"options": {"poll_interval": Infinity}}', "poll_interval"),
        ("api/config/validate", '{"options": {"dtus": [{"port": NaN}]}}', "'options.dtus[0].port'"),
        ("api/config", '{"options": {"mqtt": {"port": -1e999}}}', "'options.mqtt.port'"),
        ("api/config", '{"options": %s}' % ("[" * 20000 + "]" * 20000), "nested"),
    ],
    ids=lambda v: v if len(v) < 60 else f"{v[:30]}...({len(v)} characters)",
)
async def test_unusable_numbers_in_a_body_are_a_400_naming_the_field(
    path: str, body: str, field: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = await _api_server()
    try:
        headers = {"X-Requested-With": "hoymiles-bridge", "Content-Type": "application/json"}
        status, text, _ = await _get(server, "/" + path, method="POST", data=body, headers=headers)
    finally:
        await server.stop()
    assert status in {400, 422}, text[:300]
    error = json.loads(text)["error"]
    assert field in error and "Traceback" not in error and len(error) < 200, error
    assert not [r for r in caplog.records if r.exc_info]


class _RefusingStore:
    """A file store whose save refuses the options with a plain HoymilesError."""

    mode = "file"
    source = "bridge.yaml"
    can_save = True
    can_restart = False
    process_web = None

    async def load(self) -> dict[str, Any]:
        return {"dtus": [{"host": "192.0.2.1"}]}

    async def save(self, submitted: dict[str, Any]) -> Any:
        raise InvalidArgumentError("the option 'poll_interval' cannot be stored that way")

    async def restart(self) -> None:  # pragma: no cover - not asked
        raise AssertionError

    async def close(self) -> None:
        return None


async def test_a_refusal_from_the_options_is_a_400() -> None:
    server = await _api_server(config_store=_RefusingStore())
    try:
        headers = {"X-Requested-With": "hoymiles-bridge"}
        options = {"options": {"dtus": [{"host": "192.0.2.1"}], "poll_interval": 40}}
        status, text, _ = await _get(
            server, "/api/config", method="POST", json=options, headers=headers
        )
    finally:
        await server.stop()
    assert status == 400 and "'poll_interval'" in json.loads(text)["error"]


async def test_unusable_numbers_in_a_query_are_a_400() -> None:
    server = await _api_server()
    try:
        for query in (f"limit={_HUGE}", "limit=%C2%B2", "since=" + _HUGE):
            status, text, _ = await _get(server, "/api/frames?" + query)
            assert status == 400, (query, text[:200])
        for query in ("since=1e999", "since=nan", f"since={_HUGE}"):
            status, text, _ = await _get(server, "/api/history?" + query)
            assert status in {400, 503}, (query, text[:200])  # 503: the bridge is starting
    finally:
        await server.stop()


def test_allowed_host_names() -> None:
    loopback = WebServer(LOCAL, 8099, status=_status, allowed_peers=None)
    wide = WebServer("0.0.0.0", 8099, status=_status, allowed_peers=None)
    named = WebServer(
        "bridge.lan", 8099, status=_status, allowed_peers=None, allowed_hosts=["Solar.Example"]
    )
    own = socket.gethostname().lower()
    for server in (loopback, wide, named):
        for host in ("localhost", "127.0.0.1", "[::1]:8099", "192.168.1.5:8099", "[fd00::5]"):
            assert server.host_allowed(host), (server, host)
        for host in ("evil.example", "evil.example:8099", "localhost.evil.example", "[evil]", ""):
            assert not server.host_allowed(host), (server, host)
        assert server.host_allowed(own) and server.host_allowed(f"{own}.local:8099")
    assert named.host_allowed("bridge.lan:8099") and named.host_allowed("solar.example.")
    assert not loopback.host_allowed("bridge.lan")
    assert not wide.host_allowed("0.0.0.0.example")


async def test_the_websocket_checks_the_origin() -> None:
    """Any web page may open a websocket to any address: only this bridge's pages may read it."""
    server = await _api_server()
    try:
        here = f"127.0.0.1:{server.port}"
        assert await _ws_status(server, {"Origin": "http://evil.example"}) == 403
        assert await _ws_status(server, {"Origin": "null"}) == 403
        assert await _ws_status(server, {"Origin": f"http://{here}"}) == 101
        assert await _ws_status(server, {}) == 101  # not a browser: nothing to protect from
        # A POST needs the same Origin (and its custom header).
        csrf = {"X-Requested-With": "hoymiles-bridge"}
        status, _, _ = await _get(
            server, "/api/decode", method="POST", json={"hex": ""}, headers=csrf
        )
        assert status == 400  # past the guards: the body is checked
        foreign = {**csrf, "Origin": "http://evil.example"}
        assert (await _get(server, "/api/decode", method="POST", json={}, headers=foreign))[
            0
        ] == 403
    finally:
        await server.stop()
    ingress = await _api_server(allowed_peers=frozenset({INGRESS}))
    try:
        forwarded = {"Origin": "https://ha.example", "X-Forwarded-Host": "ha.example"}
        assert await _ws_status(ingress, forwarded, source=INGRESS) == 101
        foreign = {"Origin": "https://evil.example", "X-Forwarded-Host": "ha.example"}
        assert await _ws_status(ingress, foreign, source=INGRESS) == 403
    finally:
        await ingress.stop()
