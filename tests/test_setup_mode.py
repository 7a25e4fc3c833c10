"""Setup mode: no DTU configured keeps the service up, and the first saved DTU is polled.

Standalone (the options file, the in-process restart), against a real Mosquitto
and a simulated DTU, in the API and in Chromium through the ingress stand-in
(Find DTUs scans loopback only). The add-on's path runs in the s6 harness
(tests/test_addon_harness.py, "setup mode").
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from playwright.async_api import Page, expect

from hoymiles_bridge.addon.runner import Service
from hoymiles_bridge.mqtt.local_broker import free_port
from hoymiles_bridge.mqtt.topics import TopicLayout
from hoymiles_bridge.protocol.devices import format_serial
from hoymiles_bridge.simulator import DtuSimulator, SimClock, default_fleet
from tests.browser.helpers import ConsoleErrors, IngressProxies

from .conftest_mqtt import mosquitto_fixture  # noqa: F401
from .interop_helpers import noon_today
from .mosquitto import Mosquitto, Subscriber
from .service_env import running_service, standalone_service
from .waiting import until as _until
from .web_client import WebClient

pytest_plugins = ["tests.browser.fixtures"]
#: A DTU name with topic and HTML characters: the pages must show it as text.
ODD_NAME = '<img src=x onerror="window.pwned=1"> Roof #1/+'


async def test_standalone_setup_mode_then_the_first_dtu_is_polled_without_a_restart(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(
        yaml.safe_dump(
            {"dtus": [], "poll_interval": 2, "mqtt": {"host": "127.0.0.1", "port": mosquitto.port}}
        )
    )
    service = standalone_service(path, keep_state=False)
    assert service.options.dtus == ()
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


@contextlib.asynccontextmanager
async def _setup_service(
    path: Path, mosquitto: Mosquitto, *, fresh: bool = True
) -> AsyncIterator[Service]:
    """A standalone service started from ``path`` (no DTU when ``fresh``), stopped on exit."""
    if fresh:
        path.write_text(
            yaml.safe_dump(
                {
                    "dtus": [],
                    "poll_interval": 2,
                    "min_poll_interval": 1,
                    "mqtt": {"host": "127.0.0.1", "port": mosquitto.port},
                }
            )
        )
    async with running_service(path) as service:
        yield service


async def test_the_users_path_find_test_save_live_rename_restart_history_kept(
    mosquitto: Mosquitto,
    tmp_path: Path,
    browser_page: Page,
    console_errors: ConsoleErrors,
    screenshot: Any,
    ingress_proxy: IngressProxies,
) -> None:
    page = browser_page
    port = free_port()
    clock = SimClock(start=noon_today())
    spec = default_fleet().dtus[0]
    async with (
        DtuSimulator(spec, host="127.0.0.3", port=port, clock=clock) as sim,  # type: ignore[arg-type]
        _setup_service(tmp_path / "bridge.yaml", mosquitto) as service,
    ):
        proxy = await ingress_proxy(f"http://127.0.0.1:{service.web.port}")
        await page.goto(proxy.url)
        first = page.locator("#first-dtu")
        await expect(first.locator("h3")).to_have_text("Add your first DTU")
        await screenshot(page, "setup-overview")
        await page.click("#first-dtu-link")
        await expect(page.locator("#view-config")).to_be_visible()
        await expect(page.locator("#setup-card")).to_be_visible()

        # Find DTUs: a large or public range is refused with a sentence
        await page.fill("#setup-network", "192.168.0.0/16")
        await page.click("#setup-find")
        await expect(page.locator("#setup-error")).to_contain_text("larger than a /24")
        console_errors.allow(r"status of 400")
        await page.fill("#setup-network", "127.0.0.0/29")
        await page.fill("#setup-port", str(port))
        await page.click("#setup-find")
        found = page.locator('.setup-found-dtu[data-host="127.0.0.3"]')
        await expect(found).to_contain_text(sim.dtu.serial)
        await expect(page.locator("#setup-state")).to_contain_text("1 DTU found")
        assert await page.locator("#setup-progress").get_attribute("max") == "6"
        await found.locator(".setup-use").click()

        row = page.locator('.dtu-row[data-index="0"]')
        await expect(row.locator('[data-key="dtus[0].host"] input')).to_have_value("127.0.0.3")
        await expect(row.locator('[data-key="dtus[0].port"] input')).to_have_value(str(port))
        await row.locator('[data-key="dtus[0].name"] input').fill(ODD_NAME)
        await row.locator(".setup-test").click()
        result = row.locator(".setup-result")
        await expect(result).to_contain_text("Connected:")
        await expect(result.locator(".setup-serial")).to_have_text(sim.dtu.serial)
        await expect(result.locator(".setup-inverters li").first).to_be_visible()
        await screenshot(page, "setup-config")

        await page.click("#config-save")
        await expect(page.locator("#config-status")).to_contain_text("already runs")
        await page.click('.tabs a[data-view="overview"]')
        card = page.locator(".card.dtu")
        await expect(card.locator("h3")).to_have_text(ODD_NAME)
        power = card.locator(".inverter .fact.power .value").first
        await expect(power).to_have_text(re.compile(r"^\d[\d,.]* W$"), timeout=15_000)
        await screenshot(page, "setup-first-dtu")
        assert await page.evaluate("window.pwned") is None
        assert await page.locator("#view-overview img").count() == 0
        saved = yaml.safe_load((tmp_path / "bridge.yaml").read_text())
        assert saved["dtus"] == [{"host": "127.0.0.3", "port": port, "name": ODD_NAME}]

        # rename the inverter, restart from the page: the overview shows the new name
        serial = format_serial(sim.dtu.inverters[0].serial)
        await page.click('.tabs a[data-view="config"]')
        await page.click("#config-add-inverter")
        await page.fill("#cfg-inverters-0-serial", serial)
        await page.fill("#cfg-inverters-0-name", "Garage")
        await page.click("#config-save")
        await expect(page.locator("#config-status")).to_contain_text("Saved")
        await page.click("#config-restart")
        await page.click("#config-restart-confirm")
        await page.click('.tabs a[data-view="overview"]')
        await expect(card.locator(".inverter-title").first).to_have_text("Garage", timeout=15_000)

        async def charted() -> bool:
            async with aiohttp.ClientSession() as session:
                async with session.get(proxy.url + "api/history") as answer:
                    body = await answer.json()
            return len(body["series"].get(serial, [])) >= 2

        await _until(charted, "two points of power history")
        # leave the page before its bridge stops: its reconnect attempts would meet the
        # stopped backend's 502 at the proxy, which the console check counts as an error
        await page.goto("about:blank")

    # the whole service stops and starts again on the same files: the name, today's
    # curve and the event log are still there
    async with (
        DtuSimulator(spec, host="127.0.0.3", port=port, clock=clock) as sim,  # type: ignore[arg-type]
        _setup_service(tmp_path / "bridge.yaml", mosquitto, fresh=False) as service,
    ):
        proxy = await ingress_proxy(f"http://127.0.0.1:{service.web.port}")
        async with aiohttp.ClientSession() as session:
            async with session.get(proxy.url + "api/history") as answer:
                history = await answer.json()
            async with session.get(proxy.url + "api/events") as answer:
                events = await answer.json()
        assert len(history["series"].get(serial, [])) >= 2
        assert any(e["kind"] == "config" for e in events["events"])
        await page.goto(proxy.url)
        title = page.locator(".card.dtu .inverter-title").first
        await expect(title).to_have_text("Garage", timeout=15_000)
    console_errors.assert_none()
