"""The overview's Hoymiles cloud card in Chromium: a bridge with a cloud account and no DTU."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.browser.helpers import IngressProxies

from .bridge_env import running_bridge
from .cloud_standin import PASSWORD, USERNAME, Running, start
from .conftest_mqtt import mosquitto_fixture  # noqa: F401
from .mosquitto import Mosquitto
from .web_client import HEADERS
from .web_env import serving

pytest_plugins = ["tests.browser.fixtures"]


@pytest.fixture
async def cloud() -> AsyncIterator[Running]:
    running = await start()
    yield running
    await running.close()


async def _open(
    mosquitto: Mosquitto,
    cloud: Running,
    ingress_proxy: IngressProxies,
    page: Page,
    password: str,
    check: Any,
    **cloud_options: Any,
) -> None:
    options = {"username": USERNAME, "password": password, "base_url": cloud.url, **cloud_options}
    async with running_bridge(mosquitto, [], cloud=options) as env:
        assert env.bridge.cloud is not None
        async with serving(env.bridge, cloud=lambda: env.bridge.cloud) as server:
            proxy = await ingress_proxy(f"http://127.0.0.1:{server.port}")
            response = await page.goto(proxy.url)
            assert response is not None and response.ok
            await check(page.locator("#cloud-card"))
            content = await page.content()
            assert password not in content and USERNAME not in content


async def test_the_cloud_card_shows_the_stations(
    mosquitto: Mosquitto,
    cloud: Running,
    ingress_proxy: IngressProxies,
    browser_page: Page,
    screenshot: Any,
) -> None:
    async def check(card: Any) -> None:
        await expect(card).to_contain_text("Hoymiles cloud")
        await expect(card.locator(".badge").first).to_have_text("logged in")
        station = card.locator('[data-sid="101"]')
        await expect(station).to_contain_text("Balcony")
        await expect(station).to_contain_text("53 %")
        await expect(station).to_contain_text("246 W")  # battery power, rounded
        await expect(card.locator('[data-sid="202"]')).to_contain_text("Garage")
        page = card.page
        await screenshot(page, "cloud")
        # The inspector lists the cloud's requests, masked.
        await page.goto(page.url.split("#")[0] + "#inspector")
        requests = page.locator("#cloud-requests")
        await expect(requests).to_be_visible()
        await expect(requests).to_contain_text("/iam/pub/0/c/region_c")
        text = await page.locator("#cloud-exchanges").text_content() or ""
        assert "********" in text and PASSWORD not in text and USERNAME not in text

    await _open(mosquitto, cloud, ingress_proxy, browser_page, PASSWORD, check)


async def test_the_cloud_card_shows_the_settings_the_bridge_wrote(
    mosquitto: Mosquitto, cloud: Running, ingress_proxy: IngressProxies, browser_page: Page
) -> None:
    async def check(card: Any) -> None:
        station = card.locator('[data-sid="101"]')
        await expect(station).to_contain_text("Balcony")
        await expect(station).not_to_contain_text("Grid charge")  # not written yet
        page = card.page
        for command, value in (("grid_charge", 1), ("on_grid_power", 650)):
            answer = await page.request.post(
                page.url.split("#")[0] + "api/command",
                data={"command": command, "serial": "101", "value": value},
                headers=HEADERS,
            )
            assert answer.status == 200, await answer.text()
        charge = station.locator(".fact", has_text="Grid charge (set here)").locator(".value")
        await expect(charge).to_have_text("on")
        power = station.locator(".fact", has_text="On-grid input power").locator(".value")
        await expect(power).to_have_text("650 W")

    await _open(mosquitto, cloud, ingress_proxy, browser_page, PASSWORD, check, allow_writes=True)


async def test_the_cloud_card_says_why_the_login_failed(
    mosquitto: Mosquitto, cloud: Running, ingress_proxy: IngressProxies, browser_page: Page
) -> None:
    async def check(card: Any) -> None:
        await expect(card.locator(".badge").first).to_have_text("login refused")
        await expect(card.locator(".cloud-error")).to_contain_text(
            "check cloud.username and cloud.password"
        )
        await expect(card).to_contain_text("stopped")

    await _open(mosquitto, cloud, ingress_proxy, browser_page, "wrong password", check)
