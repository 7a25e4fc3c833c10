"""The web API against a real bridge, a simulated DTU and a real Mosquitto."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from hoymiles_bridge.cli.main import main as cli_main
from hoymiles_bridge.protocol.devices import format_serial
from hoymiles_bridge.simulator import DtuSimulator, default_fleet
from hoymiles_bridge.web.api import CSRF_HEADER
from hoymiles_bridge.web.hub import WebHub
from hoymiles_bridge.web.server import WebServer

from .bridge_env import Env, running_bridge
from .conftest_mqtt import mosquitto_fixture  # noqa: F401
from .mosquitto import Mosquitto
from .web_client import HEADERS, WebClient

MQTT_PASSWORD = "mqtt-very-secret"
WIFI_PASSWORD = "sim-secret-password"


@dataclass(kw_only=True)
class Api(WebClient):
    """The web client with the bridge, the simulator and the hub behind the server."""

    env: Env
    sim: DtuSimulator
    hub: WebHub

    async def until(
        self, check: Callable[[], Any], timeout: float = 10.0, what: str = "condition"
    ) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}")
            await asyncio.sleep(0.05)

    def secrets(self) -> list[str]:
        found = [WIFI_PASSWORD, MQTT_PASSWORD]
        if self.sim.dtu.enc_rand:
            found.append(self.sim.dtu.enc_rand.hex())
        return found

    def assert_no_secrets(self) -> None:
        self.assert_no_secret(*self.secrets())


@contextlib.asynccontextmanager
async def _api(mosquitto: Mosquitto, *, encrypt: bool = False) -> AsyncIterator[Api]:
    spec = default_fleet().dtus[0]
    async with DtuSimulator(spec, port=0, encrypt=encrypt) as sim:  # type: ignore[arg-type]
        mqtt = {"host": "127.0.0.1", "port": mosquitto.port, "password": MQTT_PASSWORD}
        async with running_bridge(mosquitto, [sim], mqtt=mqtt) as env:
            hub = WebHub(queue_size=50)
            hub.attach(env.bridge.fleet)
            web = WebServer(
                "127.0.0.1", 0, status=dict, allowed_peers=None, hub=hub, fleet=env.bridge.fleet
            )
            await web.start()
            await env.bridge.link.wait_connected(10)
            try:
                async with aiohttp.ClientSession() as session:
                    api = Api(
                        session=session,
                        base=f"http://127.0.0.1:{web.port}/",
                        env=env,
                        sim=sim,
                        hub=hub,
                    )
                    yield api
                    api.assert_no_secrets()
            finally:
                await web.stop()


async def _polled(api: Api) -> dict[str, Any]:
    status: dict[str, Any] = {}

    async def ready() -> bool:
        nonlocal status
        _, status = await api.get("api/status")
        dtus = status.get("dtus") or []
        return bool(dtus and dtus[0]["inverters"] and dtus[0]["inverters"][0]["values"])

    deadline = time.monotonic() + 15
    while not await ready():
        assert time.monotonic() < deadline, "the bridge never polled"
        await asyncio.sleep(0.1)
    return status


async def test_status_frames_export_and_decode(mosquitto: Mosquitto) -> None:
    async with _api(mosquitto) as api:
        status = await _polled(api)
        inverter_serial = format_serial(api.sim.dtu.inverters[0].serial)
        dtu = status["dtus"][0]
        assert dtu["state"] == "connected" and dtu["stale"] is False
        assert dtu["encrypted"] is False and dtu["rtt_ms"] is not None
        assert [i["serial"] for i in dtu["inverters"]] == [inverter_serial]
        assert "power" in dtu["inverters"][0]["values"]
        assert dtu["inverters"][0]["ports"]
        assert status["totals"]["ac_power"] is not None

        code, frames = await api.get("api/frames")
        assert code == 200
        records = frames["frames"]
        assert {r["direction"] for r in records} == {"to_dtu", "from_dtu"}
        first = records[0]
        for key in ("id", "time", "dtu", "tag", "message", "sequence", "length", "crc_ok"):
            assert key in first
        config = [r for r in records if r["message"] == "GetConfigFromDtu"]
        assert config and config[0]["redacted"] is True
        assert config[0]["payload"]["wifi_passward"] == "********"

        _, only_in = await api.get("api/frames", params={"direction": "from_dtu"})
        assert only_in["frames"] and all(r["direction"] == "from_dtu" for r in only_in["frames"])
        _, real = await api.get("api/frames", params={"message": "RealDataNew", "limit": "3"})
        assert 0 < len(real["frames"]) <= 3
        assert all("RealDataNew" in r["message"] for r in real["frames"])
        _, none = await api.get("api/frames", params={"dtu": "nowhere"})
        assert none["frames"] == []
        code, bad = await api.get("api/frames", params={"limit": "lots"})
        assert code == 400 and "limit" in bad["error"]

        code, export = await api.get("api/frames.jsonl")
        assert code == 200
        lines = [line for line in export.splitlines() if line]
        assert len(lines) >= len(records) and all("hex" in json.loads(x) for x in lines)
        out, stdin = io.StringIO(), io.StringIO(export)
        with contextlib.redirect_stdout(out):
            old, sys.stdin = sys.stdin, stdin
            try:
                assert cli_main(["decode"]) == 0
            finally:
                sys.stdin = old
        decoded = [json.loads(x) for x in out.getvalue().splitlines()]
        assert len(decoded) == len(lines)
        assert {d["message"] for d in decoded} >= {"RealDataNewFromDtu", "GetConfigFromDtu"}
        assert WIFI_PASSWORD not in out.getvalue()

        code, one = await api.post("api/decode", {"hex": json.loads(lines[-1])["hex"]})
        assert code == 200 and one["message"] == json.loads(lines[-1])["message"]
        code, bad = await api.post("api/decode", {"hex": "zz-not-hex"})
        assert code == 400 and "hex" in bad["error"] and bad["error"].endswith("is not hexadecimal")
        code, bad = await api.post("api/decode", {})
        assert code == 400 and "'hex'" in bad["error"]

        code, config_body = await api.get("api/config")
        assert code == 200 and config_body["options"]["mqtt"]["password"] == "********"
        code, diag = await api.get("api/diagnostics")
        assert code == 200 and diag["counters"]["frames"] > 0
        assert diag["poll_latency"]["count"] > 0 and diag["process"]["rss_bytes"] > 0
        async with api.session.get(api.base + "api/diagnostics/download") as response:
            assert "attachment" in response.headers["Content-Disposition"]
            api.seen.append(await response.text())
        _, events = await api.get("api/events")
        kinds = {e["kind"] for e in events["events"]}
        assert {"start", "state", "dtu_info", "mqtt"} <= kinds
        _, history = await api.get("api/history")
        assert history["series"]["total"] and history["series"][inverter_serial]


async def test_posts_need_the_header_and_same_origin(mosquitto: Mosquitto) -> None:
    async with _api(mosquitto) as api:
        code, body = await api.post("api/decode", {"hex": "00"}, headers={})
        assert code == 403 and CSRF_HEADER in body["error"]
        code, body = await api.post(
            "api/decode", {"hex": "00"}, headers={**HEADERS, "Origin": "http://evil.example"}
        )
        assert code == 403 and "Origin" in body["error"]
        host = api.base.removeprefix("http://").rstrip("/")
        code, body = await api.post(
            "api/decode", {"hex": "00"}, headers={**HEADERS, "Origin": f"http://{host}"}
        )
        assert code == 400  # through the guard; the frame itself is bad
        code, body = await api.post(
            "api/command", {"command": "limit_persistent_relative", "value": 50}, headers={}
        )
        assert code == 403


async def test_command_and_read(mosquitto: Mosquitto) -> None:
    async with _api(mosquitto) as api:
        await _polled(api)
        inverter = api.sim.dtu.inverters[0]
        serial = format_serial(inverter.serial)
        code, body = await api.post(
            "api/command",
            {"serial": serial, "command": "limit_persistent_relative", "value": 50},
        )
        assert code == 200, body
        assert body["status"] == "ok"
        assert inverter.limit_permille == 500
        code, body = await api.post(
            "api/command",
            {"serial": serial, "command": "limit_persistent_relative", "value": "lots"},
        )
        assert code == 400 and "'lots' is not a number" in body["error"]
        code, body = await api.post(
            "api/command",
            {"serial": serial, "command": "limit_persistent_relative", "value": 500},
        )
        assert code == 400 and "outside" in body["error"]
        code, body = await api.post("api/command", {"command": "explode", "value": 1})
        assert code == 400 and "'command'" in body["error"]
        assert "limit_persistent_relative" in body["error"]  # it names what is known
        assert api.env.bridge.fleet.commands_done >= 1

        code, body = await api.post("api/read", {"request": "GetConfigToDtu"})
        assert code == 200 and body["message"] == "GetConfigFromDtu"
        assert body["payload"]["wifi_passward"] == "********"
        code, body = await api.post("api/read", {"request": "RealDataNewToDtu"})
        assert code == 200 and body["message"] == "RealDataNewFromDtu"
        code, body = await api.post("api/read", {"request": "SetConfigToDtu"})
        assert code == 400 and "'request'" in body["error"]
        code, body = await api.post("api/read", {"request": "GetConfigToDtu", "dtu": "x"})
        assert code == 404 and "'dtu'" in body["error"]
        _, events = await api.get("api/events")
        assert any(e["kind"] == "command" for e in events["events"])


async def test_websocket_streams_and_slow_clients_drop(mosquitto: Mosquitto) -> None:
    async with _api(mosquitto, encrypt=True) as api:
        async with api.session.ws_connect(api.base + "api/ws") as socket:
            types: set[str] = set()
            deadline = time.monotonic() + 15
            while not {"frame", "state"} <= types:
                assert time.monotonic() < deadline, f"only {types} arrived"
                message = await socket.receive(timeout=10)
                api.seen.append(message.data)
                types.add(json.loads(message.data)["type"])
        status = await _polled(api)
        assert status["dtus"][0]["encrypted"] is True
        code, frames = await api.get("api/frames", params={"message": "AppInfoFromDtu"})
        assert code == 200 and frames["frames"]
        assert all(r["redacted"] for r in frames["frames"])

        # A client that never reads: its queue stays bounded, the oldest go.
        slow = api.hub.subscribe()
        before = api.hub.frame_count
        for _ in range(api.hub.queue_size * 3):
            api.hub.log("test", "filler")
        assert slow.queued == api.hub.queue_size
        assert slow.dropped >= api.hub.queue_size * 2
        assert api.hub.dropped >= slow.dropped
        await api.until(lambda: api.hub.frame_count > before, what="more frames")
        while (message := slow.get_nowait()) is not None:
            api.seen.append(message)
        slow.close()


async def test_no_secret_in_any_route_or_websocket_message(mosquitto: Mosquitto) -> None:
    """Every GET route, every console read and the websocket, with an encrypting DTU.

    The secrets are the MQTT password of the options, the DTU's WiFi password
    (in the config reply) and its ``enc_rand`` (in the app-info reply);
    ``Api.assert_no_secret`` checks every body this test saw when it ends.
    """
    async with _api(mosquitto, encrypt=True) as api:
        async with api.session.ws_connect(api.base + "api/ws") as socket:

            async def drain() -> None:
                while True:
                    message = await socket.receive()
                    if message.type != aiohttp.WSMsgType.TEXT:
                        return
                    api.seen.append(message.data)

            reader = asyncio.create_task(drain(), name="test-ws-drain")
            try:
                await _polled(api)
                _, catalogue = await api.get("api/commands")
                for read in catalogue["reads"]:
                    code, _ = await api.post("api/read", {"request": read["name"]})
                    assert code in {200, 502}, read["name"]
                for path in (
                    "",
                    "health",
                    "api/status",
                    "api/frames?limit=2000",
                    "api/frames.jsonl",
                    "api/events",
                    "api/history",
                    "api/history/dtu",
                    "api/diagnostics",
                    "api/diagnostics/download",
                    "api/config",
                    "api/commands",
                ):
                    code, _ = await api.get(path)
                    assert code in {200, 502}, path
                _, frames = await api.get("api/frames", params={"message": "GetConfigFromDtu"})
                assert frames["frames"], "the config reply (with the WiFi password) was read"
            finally:
                reader.cancel()
                await asyncio.wait({reader})
        assert api.sim.dtu.enc_rand, "the simulated DTU encrypts"
        assert any("api/ws" not in text and "********" in text for text in api.seen)


async def test_status_shows_batteries_and_the_api_commands_them(mosquitto: Mosquitto) -> None:
    from hoymiles_bridge.simulator.battery import BatterySimulator

    battery = BatterySimulator("127.0.0.1", mosquitto.port, quick_interval=0.1, slow_interval=1)
    runner = asyncio.create_task(battery.run(), name="web-api-battery-sim")
    try:
        async with _api(mosquitto) as api:
            dev_id = battery.master.dev_id
            status: dict[str, Any] = {}

            async def found() -> bool:
                nonlocal status
                _, status = await api.get("api/status")
                return any(b["dev_id"] == dev_id and b["values"] for b in status["batteries"])

            deadline = time.monotonic() + 15
            while not await found():
                assert time.monotonic() < deadline, "no battery in api/status"
                await asyncio.sleep(0.1)
            entry = next(b for b in status["batteries"] if b["dev_id"] == dev_id)
            assert entry["available"] is True and entry["master"] is True
            assert "soc" in entry["values"] and entry["setpoint_range"] == [-1000.0, 1000.0]
            # the one registry: the web API's command endpoint runs battery commands too
            code, answer = await api.post(
                "api/command", {"command": "setpoint", "serial": dev_id, "value": 1500}
            )
            assert answer["status"] == "refused" and "outside -1000..1000 W" in answer["message"]
            code, answer = await api.post(
                "api/command", {"command": "ems_mode", "serial": dev_id, "value": "tou_plan"}
            )
            assert (code, answer["status"]) == (200, "ok")
            await api.until(lambda: battery.master.mode == "tou_plan", what="the mode")
            # the inspector's battery messages: the firmware's, read, and the bridge's command
            _, seen = await api.get("api/battery-messages", params={"dev_id": dev_id})
            quick = [m for m in seen["messages"] if m["kind"] == "quick"]
            assert quick and quick[-1]["direction"] == "in" and "soc" in quick[-1]["text"]
            assert "soc" in quick[-1]["decoded"]["values"]
            _, sent = await api.get("api/battery-messages", params={"direction": "out"})
            assert [(m["kind"], m["text"]) for m in sent["messages"]] == [("ems_mode", "tou_plan")]
            # the charts' history: the battery's power and SOC, named
            _, history = await api.get("api/history")
            assert history["series"][f"battery:{dev_id}"] and history["series"][f"soc:{dev_id}"]
            assert history["names"][f"soc:{dev_id}"] == f"{dev_id} SOC"
            code, _ = await api.get("api/battery-messages", params={"dev_id": "bad/../id"})
            assert code == 400
            code, _ = await api.get("api/battery-messages", params={"direction": "sideways"})
            assert code == 400
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
