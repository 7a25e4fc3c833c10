"""The add-on mode: ``run --addon`` in process, and the s6 harness of addon/ end to end."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from hoymiles_bridge.addon.config_store import SupervisorConfigStore
from hoymiles_bridge.addon.runner import Service, WebConfig, addon_broker
from hoymiles_bridge.addon.supervisor import SupervisorClient
from hoymiles_bridge.cli.main import main
from hoymiles_bridge.cli.run import summary
from hoymiles_bridge.config.options import validate
from hoymiles_bridge.simulator import DtuSimulator

from .conftest_mqtt import mosquitto_fixture  # noqa: F401
from .mosquitto import Mosquitto, Subscriber

ADDON_DIR = Path(__file__).resolve().parents[1] / "addon"
if str(ADDON_DIR) not in sys.path:
    sys.path.insert(0, str(ADDON_DIR))

import run_harness  # noqa: E402
from supervisor_standin import MqttService, SupervisorStandin  # noqa: E402

TOKEN = "abcd" * 28
LOG_LINE = re.compile(r"^\[\d\d:\d\d:\d\d\] (DEBUG|INFO|WARNING|ERROR|CRITICAL): ")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """``run --addon`` configures the root logger; put it back for the next tests."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


@pytest.mark.usefixtures("restore_logging")
def test_run_addon_rejects_invalid_options_with_one_line_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    options = tmp_path / "options.json"
    options.write_text(
        json.dumps({"dtus": [{"port": 1}], "log_level": "loud", "mqtt": {"password": "pw1"}})
    )
    monkeypatch.setenv("HOYMILES_BRIDGE_OPTIONS", str(options))
    monkeypatch.setenv("SUPERVISOR_TOKEN", TOKEN)
    assert main(["run", "--addon"]) == 2
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert all(LOG_LINE.match(line) for line in lines), lines
    assert any(
        line.endswith("ERROR: Invalid option dtus[0].host: required option is missing")
        for line in lines
    )
    assert any("Invalid option log_level:" in line for line in lines)
    assert "Traceback" not in out + err
    assert TOKEN not in out + err
    assert "pw1" not in out + err


@pytest.mark.usefixtures("restore_logging")
def test_run_addon_missing_options_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOYMILES_BRIDGE_OPTIONS", str(tmp_path / "absent.json"))
    assert main(["run", "--addon"]) == 2
    assert "no such file" in capsys.readouterr().out


def test_run_takes_either_config_or_addon(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["run"], ["run", "--addon", "--config", "x.yaml"]):
        with pytest.raises(SystemExit) as caught:
            main(argv)
        assert caught.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


async def _health(port: int, source: str = "127.0.0.1") -> tuple[int, dict[str, Any]]:
    connector = aiohttp.TCPConnector(local_addr=(source, 0), force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(f"http://127.0.0.1:{port}/health") as response,
    ):
        body = await response.json() if response.status == 200 else {}
        return response.status, body


async def _wait_for(predicate: Any, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while True:
            if await predicate():
                return
            await asyncio.sleep(0.1)


async def test_service_gets_the_broker_from_the_supervisor_and_stops_on_sigterm(
    mosquitto: Mosquitto, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with (
        DtuSimulator() as sim,
        SupervisorStandin(TOKEN, MqttService("127.0.0.1", mosquitto.port), not_ready=1) as sup,
    ):
        monkeypatch.setenv("SUPERVISOR_TOKEN", TOKEN)
        monkeypatch.setenv("HOYMILES_BRIDGE_SUPERVISOR_URL", sup.url)
        options = validate(
            {
                "dtus": [{"host": sim.host, "port": sim.port}],
                "poll_interval": 1,
                "min_poll_interval": 1,
            }
        )
        web = WebConfig("127.0.0.1", 0, allowed_peers=frozenset({"127.0.0.2"}), ingress=True)
        service = Service(options, addon_broker(options), web, summary=summary)
        discovery = Subscriber(mosquitto.port, "homeassistant/+/+/+/config")
        await discovery.__aenter__()
        task = asyncio.create_task(service.run(), name="test-service")

        async def ready() -> bool:
            if not service.web.running:
                return False
            status, body = await _health(service.web.port)
            return status == 200 and body["mqtt"] and body["dtus"][0]["serial"] is not None

        await _wait_for(ready)
        assert sup.service_answers[:2] == [400, 200]
        # the devices link to the add-on's ingress panel, by the slug from /addons/self/info
        serial = (await _health(service.web.port))[1]["dtus"][0]["serial"]
        await discovery.wait_for(f"homeassistant/sensor/hoymiles_dtu_{serial}/connection/config")
        panel = "homeassistant://hassio/ingress/local_hoymiles_bridge"
        for payload in discovery.last.values():
            assert json.loads(payload)["dev"]["cu"] == panel
        await discovery.__aexit__(None, None, None)
        assert (await _health(service.web.port))[0] == 200
        # SIGTERM, as s6 sends it; the service handles it (handlers are set before listening).
        os.kill(os.getpid(), signal.SIGTERM)
        assert await asyncio.wait_for(task, 15) == 0
        assert not service.web.running
    assert "Received SIGTERM, stopping" in caplog.text
    assert "Hoymiles DTU Bridge stopped" in caplog.text
    assert TOKEN not in caplog.text


async def test_service_stops_while_waiting_for_the_supervisor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with SupervisorStandin(TOKEN, None) as sup:
        monkeypatch.setenv("SUPERVISOR_TOKEN", TOKEN)
        monkeypatch.setenv("HOYMILES_BRIDGE_SUPERVISOR_URL", sup.url)
        options = validate({"dtus": [{"host": "192.0.2.1"}]})
        service = Service(
            options,
            addon_broker(options),
            WebConfig("127.0.0.1", 0, allowed_peers=frozenset({"127.0.0.2"})),
            summary=summary,
        )
        task = asyncio.create_task(service.run(), name="test-service-waiting")

        async def asked() -> bool:
            return sup.requests["/services/mqtt"] >= 1 and service.web.running

        await _wait_for(asked)
        status, body = await _health(service.web.port)
        assert status == 200
        assert body["mqtt"] is False
        assert body["dtus"] == [{"host": "192.0.2.1", "serial": None, "state": "starting"}]
        service.request_stop()
        assert await asyncio.wait_for(task, 5) == 0


async def test_external_broker_does_not_need_the_supervisor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SUPERVISOR_TOKEN", raising=False)
    options = validate(
        {"dtus": [{"host": "192.0.2.1"}], "mqtt": {"host": "broker.lan", "password": "pw"}}
    )
    settings = await addon_broker(options)()
    assert (settings.host, settings.port, settings.password) == ("broker.lan", 1883, "pw")


class HookFailedError(RuntimeError):
    """What the failing restart hook below raises."""


async def test_standin_restart_writes_the_options_file_before_the_hook(tmp_path: Path) -> None:
    options_file = tmp_path / "options.json"
    options_file.write_text(json.dumps({"dtus": [{"host": "192.0.2.1"}]}))
    seen: list[Any] = []

    async def restart_addon() -> None:  # the add-on starts again: it reads the file
        seen.append(json.loads(options_file.read_text()))

    async with SupervisorStandin(
        TOKEN,
        None,
        options={"dtus": [{"host": "192.0.2.1"}]},
        options_file=options_file,
        on_restart=restart_addon,
    ) as sup:
        store = SupervisorConfigStore(SupervisorClient(sup.url, TOKEN), restart_wait=20)
        try:
            form = await store.load()
            await store.save({**form, "poll_interval": 7})
            assert json.loads(options_file.read_text()) == {"dtus": [{"host": "192.0.2.1"}]}
            await store.restart()  # answered after the hook: no error
        finally:
            await store.close()
        await sup.wait_restarts(10)
    assert sup.restarts == 1
    assert len(seen) == 1
    assert seen[0] == sup.options
    assert seen[0]["poll_interval"] == 7
    assert json.loads(options_file.read_text()) == sup.options
    assert not list(tmp_path.glob(".options.json.*")), "a temporary file was left behind"


async def test_standin_restart_goes_on_when_the_caller_goes_away(tmp_path: Path) -> None:
    release = asyncio.Event()
    done: list[bool] = []

    async def restart_addon() -> None:
        await release.wait()  # "the add-on is being stopped and started"
        done.append(True)

    options_file = tmp_path / "options.json"
    async with SupervisorStandin(
        TOKEN,
        None,
        options={"dtus": [{"host": "192.0.2.1"}]},
        options_file=options_file,
        on_restart=restart_addon,
    ) as sup:
        store = SupervisorConfigStore(SupervisorClient(sup.url, TOKEN), restart_wait=0.2)
        await store.restart()  # no answer yet: counts as under way
        await store.close()  # the add-on is stopped: its request goes away
        assert not done
        release.set()
        await sup.wait_restarts(10)
    assert done == [True]
    assert sup.restarts == 1
    assert json.loads(options_file.read_text()) == {"dtus": [{"host": "192.0.2.1"}]}


async def test_standin_restart_reports_a_failed_hook(tmp_path: Path) -> None:
    async def restart_addon() -> None:
        raise HookFailedError("the service did not come up")

    async with SupervisorStandin(TOKEN, None, on_restart=restart_addon) as sup:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{sup.url}/addons/self/restart", headers=headers) as response,
        ):
            assert response.status == 500
            assert (await response.json())["result"] == "error"
        with pytest.raises(HookFailedError):
            await sup.wait_restarts(10)
    assert sup.restarts == 1


async def test_standin_restart_without_a_hook_only_counts() -> None:
    async with SupervisorStandin(TOKEN, None) as sup:
        async with SupervisorClient(sup.url, TOKEN) as client:
            await client.restart()
            await client.restart()
        assert sup.restarts == 2
        assert sup.restart_tasks == []


@pytest.mark.timeout(240)
async def test_addon_harness_runs_the_real_s6_scripts(tmp_path: Path) -> None:
    missing = run_harness.missing_tools()
    if missing or shutil.which("bash") is None:
        pytest.fail(
            f"the add-on harness needs {', '.join(missing) or 'bash'}: run scripts/test.sh, "
            "which installs the apt package 's6' (or: apt-get install s6)"
        )
    lines: list[str] = []
    report = await run_harness.run_harness(tmp_path, say=lines.append)
    assert len(report.passed) >= 15, lines
    passed = "\n".join(report.passed)
    # the Configuration page's add-on path: save, refuse a bad value, restart, new interval
    for wanted in (
        "GET api/config from 127.0.0.2",
        "POST api/config with poll_interval 'abc': 422",
        f"POST api/config with poll_interval {run_harness.NEW_POLL_INTERVAL}: 200",
        "the stand-in wrote options.json and s6 restarted the service",
        f"api/status shows dtus[0].interval {run_harness.NEW_POLL_INTERVAL}",
        # setup mode: no DTU keeps the service up; the first saved DTU is polled at once
        "setup mode (dtus: []): the service stays up",
        "setup mode: saving the first DTU polls it at once, without an add-on restart",
    ):
        assert wanted in passed, lines
