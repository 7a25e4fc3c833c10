"""The overview's power-controller card in Chromium: switch the mode, watch the chart move.

A real bridge with a simulated DTU (firmware that takes non-persistent limits),
a meter published on a real Mosquitto by the test, the web server behind the
ingress proxy. Playwright's ``expect`` waits for each state; nothing is timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
from typing import Any

import aiomqtt
from playwright.async_api import Page, expect

from hoymiles_bridge.protocol.actions import TEMPORARY_LIMIT_FIRMWARE
from hoymiles_bridge.simulator import DtuSimulator, SimClock, default_fleet
from tests.browser.helpers import IngressProxies

from .bridge_env import running_bridge
from .conftest_mqtt import mosquitto_fixture  # noqa: F401
from .interop_helpers import noon_today
from .mosquitto import Mosquitto
from .web_client import HEADERS
from .web_env import serving

pytest_plugins = ["tests.browser.fixtures"]

METER = "meter/grid"


async def _meter(port: int, stop: asyncio.Event) -> None:
    """A meter exporting a little more each second, until stopped."""
    async with aiomqtt.Client("127.0.0.1", port) as client:
        watts = -300.0
        while not stop.is_set():
            await client.publish(METER, json.dumps({"power": watts}), qos=0)
            watts -= 5.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)


async def test_the_controller_card_switches_the_mode_and_the_chart_moves(
    mosquitto: Mosquitto, ingress_proxy: IngressProxies, browser_page: Page, screenshot: Any
) -> None:
    spec = dataclasses.replace(default_fleet().dtus[0], firmware=TEMPORARY_LIMIT_FIRMWARE)
    controller = {
        "meter_topic": METER,
        "meter_json_path": "power",
        "max_feed_in": 150,
    }
    stop = asyncio.Event()
    async with (
        DtuSimulator(spec, port=0, clock=SimClock(start=noon_today())) as sim,
        running_bridge(mosquitto, [sim], controller=controller) as env,
    ):
        meter = asyncio.create_task(_meter(mosquitto.port, stop), name="test-meter")
        try:
            async with serving(env.bridge, controller=lambda: env.bridge.controller) as server:
                proxy = await ingress_proxy(f"http://127.0.0.1:{server.port}")
                page = browser_page
                response = await page.goto(proxy.url)
                assert response is not None and response.ok
                card = page.locator("#controller-card")
                await expect(card).to_contain_text("Power controller")
                await expect(card).to_have_attribute("data-mode", "monitor")
                await expect(card.locator("#controller-state .badge")).to_have_text("regulating")
                chart = card.locator("#controller-chart")
                await expect(chart).to_have_attribute("data-points", _more_than(2))
                before = int(await chart.get_attribute("data-points") or "0")
                # the select switches the mode; the controller then limits the inverter
                await page.select_option("#controller-mode", "feed_in_cap")
                await expect(card).to_have_attribute("data-mode", "feed_in_cap")
                await expect(card.locator("#controller-message")).to_have_text("Mode feed_in_cap.")
                actuators = card.locator("#controller-actuators")
                await expect(actuators).to_contain_text("non-persistent")
                await expect(chart).to_have_attribute("data-points", _more_than(before))
                legend = chart.locator(".hbchart-key")
                await expect(legend).to_have_count(4)
                await screenshot(page, "controller")
                inverter = sim.dtu.inverters[0]
                assert inverter.temporary_limit_w is not None
                assert inverter.temporary_limit_w <= 150
                # an unknown mode is refused by the API in one sentence
                answer = await page.request.post(
                    proxy.url + "api/controller/mode", data={"mode": "turbo"}, headers=HEADERS
                )
                assert answer.status == 400
                assert "is not one of off, monitor" in (await answer.json())["error"]
        finally:
            stop.set()
            await meter


def _more_than(count: int) -> re.Pattern[str]:
    """A pattern for an attribute holding a whole number greater than ``count``."""
    digits = len(str(count))
    bigger = "|".join([rf"[1-9]\d{{{digits},}}"] + [rf"{n}" for n in range(count + 1, 10**digits)])
    return re.compile(rf"^(?:{bigger})$")
