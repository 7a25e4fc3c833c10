"""The configuration page and its API: add-on mode against the stand-in Supervisor,
standalone mode with the options file and the in-process restart, in the API and in Chromium.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from playwright.async_api import Page, Route, expect

from hoymiles_bridge.addon.bridge import Bridge
from hoymiles_bridge.addon.config_store import SupervisorConfigStore
from hoymiles_bridge.addon.supervisor import SupervisorClient
from hoymiles_bridge.config.options import normalize, storable
from hoymiles_bridge.config.store import options_document
from hoymiles_bridge.protocol.secrets import MASK
from hoymiles_bridge.simulator import DtuSimulator, default_fleet
from hoymiles_bridge.web.hub import WebHub
from hoymiles_bridge.web.server import WebServer
from tests.browser.helpers import ConsoleErrors, IngressProxies

from .bridge_env import running_bridge
from .conftest_mqtt import mosquitto_fixture  # noqa: F401
from .mosquitto import Mosquitto
from .service_env import standalone_service

ADDON_DIR = Path(__file__).resolve().parents[1] / "addon"
if str(ADDON_DIR) not in sys.path:
    sys.path.insert(0, str(ADDON_DIR))

from supervisor_standin import MqttService, SupervisorStandin  # noqa: E402

from .waiting import until as _until  # noqa: E402
from .web_client import WebClient  # noqa: E402

pytest_plugins = ["tests.browser.fixtures"]

TOKEN = "c0ffee" * 18
MQTT_SECRET = "mqtt-config-secret"
WEB_SECRET = "web-config-secret"


# --- add-on mode -----------------------------------------------------------------------


@dataclass
class Addon:
    server: WebServer
    standin: SupervisorStandin
    bridge: Bridge
    stored: dict[str, Any]


@contextlib.asynccontextmanager
async def _addon(mosquitto: Mosquitto) -> AsyncIterator[Addon]:
    """A real bridge and web server whose options the stand-in Supervisor keeps."""
    spec = default_fleet().dtus[0]
    async with DtuSimulator(spec, port=0) as sim:  # type: ignore[arg-type]
        mqtt = {"host": "127.0.0.1", "port": mosquitto.port, "password": MQTT_SECRET}
        async with running_bridge(mosquitto, [sim], mqtt=mqtt) as env:
            stored = storable(normalize(options_document(env.bridge.options)), addon=True)
            service = MqttService("127.0.0.1", mosquitto.port)
            async with SupervisorStandin(TOKEN, service, options=stored) as standin:
                store = SupervisorConfigStore(SupervisorClient(standin.url, TOKEN))
                hub = WebHub()
                hub.attach(env.bridge.fleet)
                server = WebServer(
                    "127.0.0.1",
                    0,
                    status=dict,
                    allowed_peers=frozenset({"127.0.0.1"}),  # the ingress proxy's address
                    hub=hub,
                    fleet=env.bridge.fleet,
                    config_store=store,
                )
                await server.start()
                # (stopping a bridge whose MQTT link is still connecting can hang)
                await env.bridge.link.wait_connected(10)
                try:
                    yield Addon(server, standin, env.bridge, stored)
                finally:
                    await server.stop()
                    await store.close()


async def test_addon_api_validates_saves_and_restarts(mosquitto: Mosquitto) -> None:
    async with _addon(mosquitto) as addon, aiohttp.ClientSession() as session:
        client = WebClient(session, f"http://127.0.0.1:{addon.server.port}/")
        code, config = await client.get("api/config")
        assert code == 200
        assert config["mode"] == "addon" and "Supervisor" in config["source"]
        assert config["can_save"] and config["can_restart"]
        assert config["restart_pending"] is False and config["bridge_running"] is True
        assert config["errors"] == {}
        assert config["options"]["mqtt"]["password"] == MASK
        assert "web" not in config["options"]
        keys = {f["key"] for f in config["fields"]}
        assert "poll_interval" in keys and not any(k.startswith("web.") for k in keys)
        options = config["options"]

        code, ok = await client.post("api/config/validate", {"options": options})
        assert (code, ok) == (200, {"ok": True})
        bad = {**options, "poll_interval": 0, "mqtt": {**options["mqtt"], "port": "x"}}
        code, body = await client.post("api/config/validate", {"options": bad})
        assert code == 422
        assert body["fields"] == {
            "mqtt.port": "expected a whole number",
            "poll_interval": "value must be at least 1",
        }
        assert body["error"] == "2 options are invalid: mqtt.port, poll_interval."
        code, body = await client.post("api/config", {"options": bad})
        assert code == 422 and set(body["fields"]) == {"mqtt.port", "poll_interval"}
        assert addon.standin.saved == []
        code, body = await client.post("api/config", {"options": "nope"})
        assert code == 400 and "'options'" in body["error"]
        code, body = await client.post("api/config", {"options": options}, headers={})
        assert code == 403 and addon.standin.saved == []

        good = {**options, "poll_interval": 60}
        code, body = await client.post("api/config", {"options": good})
        assert code == 200 and body["ok"] and body["restart_pending"] is True
        assert addon.standin.options["poll_interval"] == 60
        assert addon.standin.options["mqtt"]["password"] == MQTT_SECRET  # kept, never shown
        _, config = await client.get("api/config")
        assert config["restart_pending"] is True and config["options"]["poll_interval"] == 60

        addon.standin.refuse_options = "Supervisor is busy"
        code, body = await client.post("api/config", {"options": {**good, "poll_interval": 61}})
        assert code == 502
        assert body["error"] == "The Supervisor refused the options: Supervisor is busy."
        addon.standin.refuse_options = None

        code, body = await client.post("api/restart", {})
        assert code == 202 and "Supervisor" in body["message"]
        assert addon.standin.restarts == 1
        _, events = await client.get("api/events")
        texts = [e["text"] for e in events["events"] if e["kind"] == "config"]
        assert any(t.startswith("config saved") and "poll_interval" in t for t in texts)
        assert "restart requested" in texts
        client.assert_no_secret(MQTT_SECRET)


async def test_without_a_store_the_page_is_read_only(mosquitto: Mosquitto) -> None:
    spec = default_fleet().dtus[0]
    async with DtuSimulator(spec, port=0) as sim:  # type: ignore[arg-type]
        mqtt = {"host": "127.0.0.1", "port": mosquitto.port, "password": MQTT_SECRET}
        async with running_bridge(mosquitto, [sim], mqtt=mqtt) as env:
            hub = WebHub()
            server = WebServer(
                "127.0.0.1", 0, status=dict, allowed_peers=None, hub=hub, fleet=env.bridge.fleet
            )
            await server.start()
            await env.bridge.link.wait_connected(10)
            try:
                async with aiohttp.ClientSession() as session:
                    client = WebClient(session, f"http://127.0.0.1:{server.port}/")
                    code, config = await client.get("api/config")
                    assert code == 200 and config["mode"] == "readonly"
                    assert config["can_save"] is False and config["can_restart"] is False
                    assert config["options"]["mqtt"]["password"] == MASK
                    assert config["options"]["web"]["port"] == 8099
                    code, body = await client.post("api/config", {"options": config["options"]})
                    assert code == 409 and "--config" in body["error"]
                    code, body = await client.post("api/restart", {})
                    assert code == 409
                    client.assert_no_secret(MQTT_SECRET)
            finally:
                await server.stop()


# --- standalone: the options file and the in-process restart ------------------------


async def test_standalone_save_and_restart_applies_the_poll_interval(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    async with DtuSimulator(port=0) as sim:
        path = tmp_path / "bridge.yaml"
        path.write_text(
            yaml.safe_dump(
                {
                    "dtus": [{"host": sim.host, "port": sim.port, "name": "Sim"}],
                    "poll_interval": 2,
                    "min_poll_interval": 1,
                    "mqtt": {"host": "127.0.0.1", "port": mosquitto.port, "password": MQTT_SECRET},
                    "web": {"username": "me", "password": WEB_SECRET},
                }
            )
        )
        service = standalone_service(path, keep_state=False)
        task = asyncio.create_task(service.run(), name="test-standalone-service")
        try:
            await _until(lambda: _true(service.web.running), "the web server")
            async with aiohttp.ClientSession() as session:
                client = WebClient(session, f"http://127.0.0.1:{service.web.port}/")

                async def interval_is(seconds: int) -> bool:
                    _, status = await client.get("api/status")
                    dtus = status.get("dtus") or []
                    return bool(dtus) and dtus[0]["interval"] == seconds

                async def polled() -> bool:
                    _, frames = await client.get("api/frames")
                    return bool(frames["frames"])

                await _until(lambda: interval_is(2), "the first bridge")
                await _until(polled, "the first frames")
                _, config = await client.get("api/config")
                assert config["mode"] == "file" and config["source"] == str(path)
                assert config["can_restart"] and config["restart_pending"] is False
                assert config["options"]["web"]["password"] == MASK
                _, frames = await client.get("api/frames")
                first_frame = frames["frames"][0]["id"]

                changed = {**config["options"], "poll_interval": 3}
                code, body = await client.post("api/config", {"options": changed})
                assert code == 200 and body["restart_pending"] is True
                saved = yaml.safe_load(path.read_text())
                assert saved["poll_interval"] == 3
                assert saved["mqtt"]["password"] == MQTT_SECRET
                assert saved["web"]["password"] == WEB_SECRET
                assert path.with_name("bridge.yaml.bak").exists()
                assert await interval_is(2)  # nothing applied before the restart

                code, body = await client.post("api/restart", {})
                assert code == 202 and "restarting" in body["message"]
                await _until(lambda: interval_is(3), "the restarted bridge")
                assert service.restarts == 1
                _, config = await client.get("api/config")
                assert config["restart_pending"] is False and config["bridge_running"] is True
                # the hub survived: the old frames are still there
                _, frames = await client.get("api/frames")
                assert frames["frames"][0]["id"] == first_frame
                _, events = await client.get("api/events")
                texts = [e["text"] for e in events["events"] if e["kind"] == "config"]
                assert "restart requested" in texts
                assert "bridge restarted with the saved options" in texts

                # web.* needs a process restart, and says so
                moved = {**config["options"], "web": {**config["options"]["web"], "port": 18099}}
                code, body = await client.post("api/config", {"options": moved})
                assert code == 200 and body["process_restart_pending"] is True
                assert "process restarts" in body["message"]

                # a file broken by hand: the restart is refused, the bridge carries on
                path.write_text("dtus: [{port: 1}]\n")
                code, body = await client.post("api/restart", {})
                assert code == 422 and "dtus[0].host" in body["error"]
                assert await interval_is(3)
                client.assert_no_secret(MQTT_SECRET, WEB_SECRET)
        finally:
            service.request_stop()
            assert await asyncio.wait_for(task, 20) == 0


async def _true(value: bool) -> bool:
    return value


# --- the page in Chromium (add-on mode, through the ingress stand-in) -------------------


async def test_config_page_in_addon_mode(
    mosquitto: Mosquitto,
    browser_page: Page,
    console_errors: ConsoleErrors,
    screenshot: Any,
    ingress_proxy: IngressProxies,
) -> None:
    # Chromium logs every HTTP error a fetch gets; the refused save is answered 422.
    console_errors.allow(r"status of 422")
    page = browser_page
    async with _addon(mosquitto) as addon:
        proxy = await ingress_proxy(f"http://127.0.0.1:{addon.server.port}")
        await page.goto(proxy.url_for("#config"))
        view = page.locator("#view-config")
        await expect(view).to_be_visible()
        await expect(page.locator("#config-source")).to_contain_text("Supervisor")
        interval = page.locator("#cfg-poll_interval")
        await expect(interval).to_have_value("1")
        await expect(page.locator("#cfg-mqtt-password")).to_have_value(MASK)
        await expect(page.locator('[data-section="web"]')).to_have_count(0)
        await expect(page.locator("#config-banner")).to_be_hidden()

        # a bad value: the field says why while typing, and saving is refused
        message = page.locator('[data-key="poll_interval"] .field-error')
        await interval.fill("0")
        await expect(message).to_have_text("value must be at least 1")
        await expect(interval).to_have_attribute("aria-invalid", "true")
        await page.click("#config-save")
        await expect(page.locator("#config-status")).to_contain_text(
            "Not saved: The option poll_interval is invalid"
        )
        assert addon.standin.saved == []

        # DTU rows: an added empty row is flagged, removing it clears the message
        await page.click("#config-add-dtu")
        await expect(page.locator(".dtu-row")).to_have_count(2)
        host_error = page.locator('[data-key="dtus[1].host"] .field-error')
        await expect(host_error).to_have_text("expected a host name or IP address")
        await page.click('.dtu-row[data-index="1"] .remove-dtu')
        await expect(page.locator(".dtu-row")).to_have_count(1)

        # a good value: the message goes, saving reaches the stand-in Supervisor
        await interval.fill("60")
        await expect(message).to_be_empty()
        await page.click("#config-save")
        await expect(page.locator("#config-status")).to_contain_text("Saved")
        assert addon.standin.options["poll_interval"] == 60
        assert addon.standin.options["mqtt"]["password"] == MQTT_SECRET
        assert addon.standin.restarts == 0

        # the banner offers the restart, which needs a confirmation
        banner = page.locator("#config-banner")
        await expect(banner).to_be_visible()
        await expect(banner).to_contain_text("wait for a restart")
        await screenshot(page, "config")
        await page.emulate_media(color_scheme="dark")
        await screenshot(page, "config")
        await page.emulate_media(color_scheme="light")
        await page.click("#config-restart")
        await expect(page.locator("#config-confirm")).to_be_visible()
        assert addon.standin.restarts == 0
        await page.click("#config-restart-confirm")
        await expect(page.locator("#config-status")).to_contain_text(
            "The Supervisor is restarting the add-on"
        )
        assert addon.standin.restarts == 1
        assert MQTT_SECRET not in await page.content()
        assert proxy.absolute_redirects == [] and proxy.stray_requests == []


async def test_a_password_error_shows_under_the_password_field(
    mosquitto: Mosquitto,
    browser_page: Page,
    console_errors: ConsoleErrors,
    ingress_proxy: IngressProxies,
) -> None:
    """A 422 naming ``mqtt.password`` (a new broker needs the password again) is shown there."""
    console_errors.allow(r"status of 422")
    page = browser_page
    refusal = {
        "error": "The option mqtt.password is invalid.",
        "fields": {"mqtt.password": "enter the password again to change the broker"},
    }

    async def refuse_saves(route: Route) -> None:
        if route.request.method == "POST":
            await route.fulfill(status=422, json=refusal)
        else:
            await route.continue_()

    async with _addon(mosquitto) as addon:
        proxy = await ingress_proxy(f"http://127.0.0.1:{addon.server.port}")
        await page.route(re.compile(r".*/api/config$"), refuse_saves)
        await page.goto(proxy.url_for("#config"))
        password = page.locator("#cfg-mqtt-password")
        await expect(password).to_have_value(MASK)
        await page.locator("#cfg-mqtt-host").fill("192.0.2.99")
        await page.click("#config-save")
        message = page.locator('[data-key="mqtt.password"] .field-error')
        await expect(message).to_have_text("enter the password again to change the broker")
        await expect(password).to_have_attribute("aria-invalid", "true")
        await expect(password).to_be_focused()
        await expect(page.locator("#config-status")).to_contain_text("Not saved")
        assert addon.standin.saved == []


async def test_config_page_names_inverters_and_ports(
    mosquitto: Mosquitto,
    browser_page: Page,
    console_errors: ConsoleErrors,
    ingress_proxy: IngressProxies,
) -> None:
    """The inverters list: rows of serial, name and PV port names, checked while typing."""
    console_errors.allow(r"status of 422")
    page = browser_page
    name = "Garage <b>roof</b> /#"
    async with _addon(mosquitto) as addon:
        proxy = await ingress_proxy(f"http://127.0.0.1:{addon.server.port}")
        await page.goto(proxy.url_for("#config"))
        section = page.locator('[data-section="inverters"]')
        await expect(section).to_be_visible()
        await expect(section).to_contain_text("No inverter yet.")
        await page.click("#config-add-inverter")
        await expect(page.locator(".inverter-row")).to_have_count(1)
        serial = page.locator("#cfg-inverters-0-serial")
        serial_error = page.locator('[data-key="inverters[0].serial"] .field-error')
        await expect(serial_error).to_have_text("expected a serial number of 12 hex digits")
        await serial.fill("1161/2345")
        await expect(serial_error).to_contain_text("is not a serial number")
        await serial.fill("116112345678")
        await expect(serial_error).to_be_empty()
        await page.fill("#cfg-inverters-0-name", name)
        # a gap between port names is refused at the empty port
        await page.fill("#cfg-inverters-0-ports-0", "East")
        await page.fill("#cfg-inverters-0-ports-2", "South")
        gap = page.locator('[data-key="inverters[0].ports[1]"] .field-error')
        await expect(gap).to_have_text("length of value must be at least 1")
        await page.fill("#cfg-inverters-0-ports-1", "West")
        await expect(gap).to_be_empty()
        await page.click("#config-save")
        await expect(page.locator("#config-status")).to_contain_text("Saved")
        assert addon.standin.options["inverters"] == [
            {"serial": "116112345678", "name": name, "ports": ["East", "West", "South"]}
        ]
        # shown again after a reload, as text
        await page.reload()
        await expect(page.locator("#cfg-inverters-0-name")).to_have_value(name)
        await expect(page.locator("#cfg-inverters-0-ports-2")).to_have_value("South")
        assert await section.locator("b").count() == 0
        await page.click('.inverter-row[data-index="0"] .remove-inverter')
        await expect(page.locator(".inverter-row")).to_have_count(0)
