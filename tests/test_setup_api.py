"""The configuration page's setup helpers: Test connection and Find DTUs (api/setup/...).

Against the simulator over real TCP on loopback only (127.0.0.x): no test
scans or contacts anything else.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hoymiles_bridge.addon.config_store import SupervisorConfigStore, network_addresses
from hoymiles_bridge.addon.runner import Service, SetupApplyingStore, WebConfig
from hoymiles_bridge.addon.supervisor import SupervisorClient
from hoymiles_bridge.config.options import validate
from hoymiles_bridge.errors import DtuConnectionError
from hoymiles_bridge.mqtt.link import MqttSettings
from hoymiles_bridge.mqtt.local_broker import free_port
from hoymiles_bridge.simulator import DtuSimulator
from hoymiles_bridge.web import setup_api
from hoymiles_bridge.web.common import BadRequest
from hoymiles_bridge.web.hub import WebHub
from hoymiles_bridge.web.server import WebServer

from .bridge_env import running_bridge
from .conftest_mqtt import mosquitto_fixture  # noqa: F401
from .mosquitto import Mosquitto
from .waiting import until as _until
from .web_client import WebClient

ADDON_DIR = Path(__file__).resolve().parents[1] / "addon"
if str(ADDON_DIR) not in sys.path:
    sys.path.insert(0, str(ADDON_DIR))

from supervisor_standin import SupervisorStandin  # noqa: E402

TOKEN = "5e7a" * 28


async def _client() -> AsyncIterator[WebClient]:
    """The web server in setup mode (no bridge yet) and a client for it."""
    server = WebServer(
        "127.0.0.1", 0, status=dict, allowed_peers=None, hub=WebHub(), fleet=lambda: None
    )
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            yield WebClient(session, f"http://127.0.0.1:{server.port}/")
    finally:
        await server.stop()


@pytest.fixture(name="client")
async def client_fixture() -> AsyncIterator[WebClient]:
    async for client in _client():
        yield client


# --- input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.168.1.50", "192.168.1.50"),
        (" dtu.fritz.box ", "dtu.fritz.box"),
        ("dtu-roof.", "dtu-roof"),
        ("::1", "::1"),
    ],
)
def test_check_host_takes_addresses_and_host_names(text: str, expected: str) -> None:
    assert setup_api.check_host(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "  ", "192.168.1.300", "dtu box", "-dtu", "dtu_<b>", "a/b", "http://dtu", "a" * 64, 5],
)
def test_check_host_refuses_what_is_not_a_host(text: Any) -> None:
    with pytest.raises(BadRequest, match="'host'"):
        setup_api.check_host(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("192.168.0.0/16", "larger than a /24"),
        ("10.0.0.0/23", "larger than a /24"),
        ("8.8.8.0/24", "not a private network"),
        ("169.254.1.0/24", "not a private network"),
        ("100.64.0.0/24", "not a private network"),
        ("fd00::/120", "IPv4"),
        ("192.168.1", "not an IPv4 range"),
        ("", "required"),
    ],
)
def test_check_network_refuses_large_and_public_ranges(text: str, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        setup_api.check_network(text)


def test_check_network_takes_private_and_loopback_ranges() -> None:
    assert str(setup_api.check_network("192.168.1.77/24")) == "192.168.1.0/24"
    assert str(setup_api.check_network("10.10.100.254")) == "10.10.100.254/32"
    loopback = setup_api.check_network("127.0.0.0/29")
    assert setup_api.scan_addresses(loopback) == [f"127.0.0.{n}" for n in range(1, 7)]
    assert len(setup_api.scan_addresses(setup_api.check_network("172.16.5.0/24"))) == 254


def test_failure_sentences() -> None:
    refused = DtuConnectionError("x")
    refused.__context__ = ConnectionRefusedError(111, "Connection refused")
    assert setup_api.failure(refused, "h", 1, 1.0).reason == "refused"
    unresolved = DtuConnectionError("x")
    unresolved.__context__ = socket.gaierror(-2, "Name or service not known")
    assert setup_api.failure(unresolved, "h", 1, 1.0).reason == "unresolvable"
    unreachable = DtuConnectionError("x")
    unreachable.__context__ = OSError(113, "No route to host")
    failed = setup_api.failure(unreachable, "h", 1, 1.0)
    assert failed.reason == "unreachable"
    assert failed.message == "Cannot reach h:1: No route to host."


def test_network_hints() -> None:
    today = {
        "interfaces": [
            {"interface": "wlan0", "primary": False, "ipv4": {"address": ["10.1.2.3/16"]}},
            {"interface": "eth0", "primary": True, "ipv4": {"address": ["192.168.1.100/24"]}},
            "junk",
        ]
    }
    assert network_addresses(today) == ["192.168.1.100/24", "10.1.2.3/16"]
    older = {"interfaces": {"eth0": {"ip_address": "192.168.7.2/24", "primary": True}}}
    assert network_addresses(older) == ["192.168.7.2/24"]
    assert network_addresses(None) == [] and network_addresses({"interfaces": 3}) == []
    found = setup_api.usable_networks(
        ["192.168.1.100/24", "10.1.2.3/16", "172.30.33.5/23", "8.8.8.8/24", "x", "fe80::1/64"],
        addon=True,
    )
    assert found == ["192.168.1.0/24", "10.1.2.0/24"]


async def test_the_addon_store_asks_the_supervisor_for_the_host_network() -> None:
    async with SupervisorStandin(TOKEN, None, options={"dtus": []}) as standin:
        client = SupervisorClient(standin.url, TOKEN, deadline=2.0, backoff_initial=0.01)
        options = validate({"dtus": []})
        service = Service(
            options,
            lambda: _never(),
            WebConfig("127.0.0.1", 0),
            config_store=SupervisorConfigStore(client),
        )
        store = service.config_store
        assert isinstance(store, SetupApplyingStore)
        try:
            assert await store.local_networks() == []  # no hassio_api: 403
            standin.network_info = {
                "interfaces": [{"primary": True, "ipv4": {"address": ["192.168.3.9/24"]}}]
            }
            assert await store.local_networks() == ["192.168.3.9/24"]
        finally:
            await store.close()


async def _never() -> MqttSettings:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


# --- Test connection ------------------------------------------------------------------------


async def test_test_connection_shows_the_dtu(client: WebClient) -> None:
    async with DtuSimulator(host="127.0.0.2", port=0) as sim:
        code, body = await client.post("api/setup/test", {"host": "127.0.0.2", "port": sim.port})
    assert code == 200, body
    assert body["ok"] is True and body["source"] == "dtu"
    assert body["serial"] == sim.dtu.serial
    assert body["model"] and body["firmware"]
    assert isinstance(body["encrypted"], bool)
    assert body["inverters"] and {"serial", "model", "firmware"} <= set(body["inverters"][0])
    assert "enc_rand" not in str(body)


async def test_test_connection_refused_is_one_sentence(client: WebClient) -> None:
    port = free_port()
    code, body = await client.post("api/setup/test", {"host": "127.0.0.1", "port": port})
    assert code == 502 and body["ok"] is False and body["reason"] == "refused"
    assert body["error"].startswith(f"127.0.0.1:{port} refused the connection")
    assert "Traceback" not in body["error"] and body["error"].endswith(".")


async def test_test_connection_to_a_silent_host_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(setup_api.ProbeFailed) as caught:
            await setup_api.ask_app_info("127.0.0.1", port, 0.3)
    finally:
        server.close()
        await server.wait_closed()
    assert caught.value.reason == "timeout"
    assert caught.value.message.startswith(f"No answer from 127.0.0.1:{port} within 0.3 s")


async def test_test_connection_displaced_when_the_dtu_closes() -> None:
    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(10)  # the request arrived: another client took the DTU
        writer.close()

    server = await asyncio.start_server(closing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(setup_api.ProbeFailed) as caught:
            await setup_api.ask_app_info("127.0.0.1", port, 2.0)
    finally:
        server.close()
        await server.wait_closed()
    assert caught.value.reason == "displaced"
    assert "another client" in caught.value.message


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"host": "not a host"}, "'host'"),
        ({"host": "<script>"}, "'host'"),
        ({}, "'host'"),
        ({"host": "127.0.0.1", "port": 0}, "'port'"),
        ({"host": "127.0.0.1", "port": "http"}, "'port'"),
        ({"host": "127.0.0.1", "port": True}, "'port'"),
    ],
)
async def test_test_connection_refuses_bad_input(
    client: WebClient, body: dict[str, Any], field: str
) -> None:
    code, answer = await client.post("api/setup/test", body)
    assert code == 400 and field in answer["error"]


# --- Find DTUs ------------------------------------------------------------------------------


async def test_scan_finds_the_simulator_on_loopback(client: WebClient) -> None:
    port = free_port()
    async with DtuSimulator(host="127.0.0.3", port=port) as sim:
        code, started = await client.post(
            "api/setup/scan", {"network": "127.0.0.0/29", "port": port}
        )
        assert code == 202 and started["total"] == 6 and started["state"] == "running"

        async def finished() -> bool:
            _, scan = await client.get("api/setup/scan")
            return bool(scan["state"] == "done")

        await _until(finished, "the scan")
    _, scan = await client.get("api/setup/scan")
    assert scan["done"] == scan["total"] == 6
    assert [(d["host"], d["serial"]) for d in scan["found"]] == [("127.0.0.3", sim.dtu.serial)]
    assert scan["found"][0]["inverters"]
    _, events = await client.get("api/events")
    assert any("scan of 127.0.0.0/29 done" in e["text"] for e in events["events"])


async def test_scan_can_be_cancelled(client: WebClient) -> None:
    port = free_port()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    servers = [await asyncio.start_server(silent, f"127.0.0.{n}", port) for n in range(2, 40)]
    try:
        code, started = await client.post(
            "api/setup/scan", {"network": "127.0.0.0/26", "port": port}
        )
        assert code == 202
        code, scan = await client.post("api/setup/scan/cancel", {})
        assert code == 200 and scan["state"] == "cancelled" and scan["done"] < scan["total"]
        _, again = await client.get("api/setup/scan")
        assert again["state"] == "cancelled"
    finally:
        for server in servers:
            server.close()
            await server.wait_closed()


@pytest.mark.parametrize(
    ("network", "message"),
    [("192.168.0.0/16", "larger than a /24"), ("1.1.1.0/24", "not a private network")],
)
async def test_scan_refuses_large_or_public_ranges(
    client: WebClient, network: str, message: str
) -> None:
    code, body = await client.post("api/setup/scan", {"network": network})
    assert code == 400 and message in body["error"]
    _, scan = await client.get("api/setup/scan")
    assert scan["state"] == "idle"


async def test_network_suggestion_answers(client: WebClient) -> None:
    code, body = await client.get("api/setup/network")
    assert code == 200 and body["port"] == 10081 and body["max_prefix"] == 24
    assert body["suggested"] is None or body["suggested"] in body["networks"]


async def test_something_else_on_the_port_is_not_a_dtu(client: WebClient) -> None:
    async def chatty(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(10)
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n" + b"x" * 64)
        await writer.drain()
        await reader.read()  # then silence until the client gives up
        writer.close()

    port = free_port()
    server = await asyncio.start_server(chatty, "127.0.0.2", port)
    try:
        with pytest.raises(setup_api.ProbeFailed) as caught:
            await setup_api.ask_app_info("127.0.0.2", port, 0.5)
        assert caught.value.reason in {"not_a_dtu", "timeout"}
        code, _ = await client.post("api/setup/scan", {"network": "127.0.0.2/31", "port": port})
        assert code == 202

        async def finished() -> bool:
            _, scan = await client.get("api/setup/scan")
            return bool(scan["state"] != "running")

        await _until(finished, "the scan")
        _, scan = await client.get("api/setup/scan")
        assert scan["state"] == "done" and scan["found"] == [] and scan["done"] == 2
    finally:
        server.close()
        await server.wait_closed()


async def test_a_dtu_the_bridge_polls_is_never_connected_twice(mosquitto: Mosquitto) -> None:
    port = free_port()
    async with (
        DtuSimulator(host="127.0.0.2", port=port) as sim,
        running_bridge(mosquitto, [sim]) as env,
    ):
        server = WebServer(
            "127.0.0.1", 0, status=dict, allowed_peers=None, hub=WebHub(), fleet=env.bridge.fleet
        )
        await server.start()
        try:
            async with aiohttp.ClientSession() as session:
                client = WebClient(session, f"http://127.0.0.1:{server.port}/")

                async def known() -> bool:
                    return env.bridge.fleet.dtus[0].session.app_info is not None

                await _until(known, "the bridge's first app info")
                connections = sim.connections_total
                code, body = await client.post(
                    "api/setup/test", {"host": "127.0.0.2", "port": port}
                )
                assert code == 200 and body["source"] == "bridge"
                assert body["serial"] == sim.dtu.serial
                code, _ = await client.post(
                    "api/setup/scan", {"network": "127.0.0.2/32", "port": port}
                )

                async def finished() -> bool:
                    _, scan = await client.get("api/setup/scan")
                    return bool(scan["state"] == "done")

                await _until(finished, "the scan")
                _, scan = await client.get("api/setup/scan")
                assert [d["source"] for d in scan["found"]] == ["bridge"]
                assert sim.connections_total == connections  # the bridge's session was left alone
        finally:
            await server.stop()
