"""Setup mode: no DTU configured keeps the service up, and the first saved DTU is polled.

Standalone (the options file, the in-process restart), against a real Mosquitto
and a simulated DTU. The add-on's path runs in the s6 harness
(tests/test_addon_harness.py, "setup mode").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
import yaml

from hoymiles_bridge.addon.runner import Service, WebConfig
from hoymiles_bridge.cli.run import standalone_broker, summary
from hoymiles_bridge.config.options import load_options
from hoymiles_bridge.mqtt.topics import TopicLayout
from hoymiles_bridge.simulator import DtuSimulator

from .conftest_mqtt import mosquitto_fixture  # noqa: F401
from .mosquitto import Mosquitto, Subscriber
from .web_client import WebClient


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 20.0) -> None:
    """Wait for a condition (the deadline only turns a hang into a failure)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_standalone_setup_mode_then_the_first_dtu_is_polled_without_a_restart(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(
        yaml.safe_dump(
            {"dtus": [], "poll_interval": 2, "mqtt": {"host": "127.0.0.1", "port": mosquitto.port}}
        )
    )
    options = load_options(path)
    assert options.dtus == ()
    service = Service(
        options,
        standalone_broker(options),
        WebConfig("127.0.0.1", 0),
        summary=summary,
        config_file=path,
        broker_for=standalone_broker,
    )
    layout = TopicLayout("solar")
    async with (
        DtuSimulator(port=0) as sim,
        Subscriber(mosquitto.port, "solar/#") as sub,
    ):
        task = asyncio.create_task(service.run(), name="test-setup-mode-service")
        try:

            async def web_up() -> bool:
                return service.web.running

            await _until(web_up, "the web server")
            async with aiohttp.ClientSession() as session:
                client = WebClient(session, f"http://127.0.0.1:{service.web.port}/")

                async def online() -> bool:
                    return sub.last.get(layout.bridge_status) == b"online"

                await _until(online, "the bridge's MQTT availability")
                code, page = await client.get("")
                assert code == 200 and "Hoymiles DTU Bridge" in page
                code, status = await client.get("api/status")
                assert code == 200 and status["dtus"] == [] and "starting" not in status
                assert service.setup_mode and not task.done()

                _, config = await client.get("api/config")
                first = {"host": sim.host, "port": sim.port, "name": "Roof <b>#1</b>"}
                code, body = await client.post(
                    "api/config", {"options": {**config["options"], "dtus": [first]}}
                )
                assert code == 200, body
                assert body["restart_pending"] is False
                assert "already runs" in body["message"]
                assert yaml.safe_load(path.read_text())["dtus"][0]["host"] == sim.host

                async def polled() -> bool:
                    _, status = await client.get("api/status")
                    dtus = status.get("dtus") or []
                    return bool(dtus) and bool(dtus[0]["last_poll"])

                await _until(polled, "the first DTU's first poll")
                assert service.restarts == 1 and not service.setup_mode
                _, events = await client.get("api/events")
                texts = [e["text"] for e in events["events"] if e["kind"] == "config"]
                assert "first DTU saved: the bridge starts polling" in texts
        finally:
            service.request_stop()
            assert await asyncio.wait_for(task, 20) == 0
