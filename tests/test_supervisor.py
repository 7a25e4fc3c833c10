"""SupervisorClient against the stand-in Supervisor of the add-on harness (addon/)."""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time
from pathlib import Path

import pytest

from hoymiles_bridge.addon.supervisor import (
    SupervisorApiError,
    SupervisorClient,
    SupervisorError,
    parse_mqtt_service,
)
from hoymiles_bridge.errors import HoymilesError

ADDON_DIR = Path(__file__).resolve().parents[1] / "addon"
if str(ADDON_DIR) not in sys.path:
    sys.path.insert(0, str(ADDON_DIR))

from supervisor_standin import MqttService, SupervisorStandin  # noqa: E402

TOKEN = "f00d" * 28  # as long as a real one (token_hex(56))
PASSWORD = "broker-secret-" + "9" * 50


def _service() -> MqttService:
    return MqttService("core-mosquitto", 1883, username="addons", password=PASSWORD)


def _client(url: str, token: str = TOKEN, deadline: float = 5.0) -> SupervisorClient:
    return SupervisorClient(url, token, deadline=deadline, backoff_initial=0.01, backoff_max=0.05)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_mqtt_service_waits_through_the_boot_race(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with (
        SupervisorStandin(TOKEN, _service(), not_ready=3) as standin,
        _client(standin.url) as client,
    ):
        settings = await client.mqtt_service()
    assert standin.service_answers == [400, 400, 400, 200]
    assert standin.bad_tokens == 0
    assert (settings.host, settings.port, settings.username) == ("core-mosquitto", 1883, "addons")
    assert settings.password == PASSWORD
    assert settings.tls is False
    # INFO once when waiting starts, DEBUG for the later tries.
    waiting = [r for r in caplog.records if "Waiting for the MQTT service" in r.getMessage()]
    assert [r.levelno for r in waiting] == [logging.INFO]
    assert "Service not enabled" in waiting[0].getMessage()
    later = [r for r in caplog.records if "still unavailable" in r.getMessage()]
    assert later
    assert all(r.levelno == logging.DEBUG for r in later)
    # The token and the password never reach a log line or a repr.
    assert TOKEN not in caplog.text
    assert PASSWORD not in caplog.text
    assert PASSWORD not in repr(settings)
    assert TOKEN not in repr(client)


async def test_token_is_sent_and_a_wrong_one_is_not_retried() -> None:
    async with SupervisorStandin(TOKEN, _service()) as standin:
        async with _client(standin.url, token="wrong") as client:
            with pytest.raises(SupervisorApiError) as caught:
                await client.mqtt_service()
        assert caught.value.status == 401
        assert standin.requests["/services/mqtt"] == 1
        assert "wrong" not in str(caught.value)
        async with _client(standin.url) as client:
            await client.mqtt_service()
        assert standin.bad_tokens == 1


async def test_gives_up_after_the_deadline() -> None:
    async with SupervisorStandin(TOKEN, None) as standin, _client(standin.url, deadline=0.3) as c:
        started = time.monotonic()
        with pytest.raises(SupervisorError) as caught:
            await c.mqtt_service()
    assert time.monotonic() - started < 2.0
    message = str(caught.value)
    assert "gave up" in message
    assert "Service not enabled" in message
    assert "Mosquitto" in message
    assert isinstance(caught.value, HoymilesError)
    assert standin.requests["/services/mqtt"] >= 2


async def test_connection_refused_is_retried_until_the_supervisor_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    port = _free_port()
    async with _client(f"http://127.0.0.1:{port}") as client:
        task = asyncio.create_task(client.mqtt_service(), name="test-mqtt-service")
        await asyncio.sleep(0.3)
        assert not task.done()
        async with SupervisorStandin(TOKEN, _service(), port=port):
            settings = await asyncio.wait_for(task, 5)
    assert settings.host == "core-mosquitto"
    assert "did not answer" in caplog.text
    assert TOKEN not in caplog.text


async def test_unreachable_supervisor_gives_a_clear_error() -> None:
    async with _client(f"http://127.0.0.1:{_free_port()}", deadline=0.2) as client:
        with pytest.raises(SupervisorError, match="did not answer"):
            await client.mqtt_service()


async def test_no_access_to_the_service_names_the_fix() -> None:
    from aiohttp import web

    async def forbidden(request: web.Request) -> web.Response:
        return web.json_response(
            {"result": "error", "message": "No access to mqtt service!"}, status=403
        )

    app = web.Application()
    app.router.add_get("/services/mqtt", forbidden)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        async with _client(f"http://127.0.0.1:{port}") as client:
            with pytest.raises(SupervisorError, match="mqtt:want"):
                await client.mqtt_service()
    finally:
        await runner.cleanup()


async def test_addon_info_and_set_options() -> None:
    options = {"dtus": [{"host": "192.0.2.10"}]}
    async with SupervisorStandin(TOKEN, _service(), options=options) as standin:
        async with _client(standin.url) as client:
            info = await client.addon_info()
            assert info["ingress_port"] == 8099
            assert info["ingress_entry"].startswith("/api/hassio_ingress/")
            assert info["options"] == options
            new = {"dtus": [{"host": "192.0.2.11", "port": 10081}], "poll_interval": 60}
            await client.set_options(new)
            assert standin.options == new
            with pytest.raises(SupervisorApiError) as caught:
                await client.set_options({"dtus": [{"port": 10081}]})
            assert caught.value.status == 400
            assert "dtus[0].host" in str(caught.value)
            assert standin.options == new


async def test_ingress_panel_url_from_the_slug() -> None:
    async with SupervisorStandin(TOKEN, _service()) as standin:
        async with _client(standin.url) as client:
            url = await client.ingress_panel_url()
    assert url == "homeassistant://hassio/ingress/local_hoymiles_bridge"
    # no Supervisor: no link, and no error either (the link is not worth a failed start)
    async with _client(f"http://127.0.0.1:{_free_port()}") as client:
        assert await client.ingress_panel_url() is None


@pytest.mark.parametrize("slug", [None, 42, "", "a/b", "../x", "x" * 200, "bad slug"])
async def test_ingress_panel_url_needs_a_plain_slug(
    slug: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def info(self: SupervisorClient) -> dict[str, object]:
        return {"slug": slug}

    monkeypatch.setattr(SupervisorClient, "addon_info", info)
    async with _client("http://127.0.0.1:9") as client:
        assert await client.ingress_panel_url() is None


def test_token_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUPERVISOR_TOKEN", raising=False)
    monkeypatch.delenv("HASSIO_TOKEN", raising=False)
    with pytest.raises(SupervisorError, match="SUPERVISOR_TOKEN"):
        SupervisorClient()
    monkeypatch.setenv("SUPERVISOR_TOKEN", TOKEN)
    monkeypatch.setenv("HOYMILES_BRIDGE_SUPERVISOR_URL", "http://127.0.0.1:1/")
    client = SupervisorClient()
    assert client.base_url == "http://127.0.0.1:1"
    assert TOKEN not in repr(client)
    monkeypatch.delenv("HOYMILES_BRIDGE_SUPERVISOR_URL")
    assert SupervisorClient().base_url == "http://supervisor"


def test_parse_mqtt_service_accepts_the_documented_variants() -> None:
    settings = parse_mqtt_service(
        {"host": "broker", "port": "8883", "ssl": True, "protocol": "3.1.1", "addon": "x"}
    )
    assert (settings.host, settings.port, settings.tls) == ("broker", 8883, True)
    assert settings.username is None
    assert settings.password is None
    for bad in ({}, {"host": ""}, {"host": "b", "port": "x"}, {"host": "b", "port": 0}, None):
        with pytest.raises(SupervisorError):
            parse_mqtt_service(bad)
