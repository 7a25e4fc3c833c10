"""The user's names (options dtus[].name and inverters) in the web UI, shown as text only.

A real bridge polls a simulated DTU whose DTU, inverter and ports carry names
with HTML and MQTT topic characters; Chromium opens the UI through the ingress
stand-in and must show them literally, never as markup.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest_asyncio
from playwright.async_api import Page, expect

from hoymiles_bridge.protocol.devices import format_serial
from hoymiles_bridge.simulator import DtuSimulator, SimClock, default_fleet
from tests.browser.helpers import ConsoleErrors, IngressProxies

from .bridge_env import running_bridge
from .conftest_mqtt import mosquitto_fixture  # noqa: F401
from .interop_helpers import noon_today
from .mosquitto import Mosquitto
from .web_env import Ui, serving

pytest_plugins = ["tests.browser.fixtures"]

#: Names that would run script or break a topic if they were parsed or used as topic levels.
DTU_NAME = 'Roof <img src=x onerror="window.__pwned = 1"> /#'
INVERTER_NAME = "Garage <script>window.__pwned = 2</script> +/#"
PORT_NAME = "East <b>roof</b> /+"


@pytest_asyncio.fixture(name="named_ui")
async def named_ui_fixture(
    mosquitto: Mosquitto, ingress_proxy: IngressProxies
) -> AsyncIterator[Ui]:
    clock = SimClock(start=noon_today())
    spec = default_fleet().dtus[0]
    async with DtuSimulator(spec, port=0, clock=clock) as sim:  # type: ignore[arg-type]
        serial = format_serial(sim.dtu.inverters[0].serial)
        async with running_bridge(
            mosquitto,
            [sim],
            clock=clock,
            dtus=[{"host": sim.host, "port": sim.port, "name": DTU_NAME}],
            inverters=[{"serial": serial, "name": INVERTER_NAME, "ports": [PORT_NAME]}],
        ) as env:
            async with serving(env.bridge, clock=clock.now) as server:
                proxy = await ingress_proxy(f"http://127.0.0.1:{server.port}")
                yield Ui(proxy, sim, clock, server, env.bridge)


async def _json(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        return json.loads(await response.text())


async def test_the_ui_shows_the_names_as_text(
    named_ui: Ui, browser_page: Page, console_errors: ConsoleErrors
) -> None:
    ui, page = named_ui, browser_page
    serial = format_serial(ui.sim.dtu.inverters[0].serial)
    await page.goto(ui.proxy.url)

    # The overview: the DTU card and the inverter are titled with the names, literally.
    dtu = page.locator(".card.dtu")
    await expect(dtu.locator(".card-head h3")).to_have_text(DTU_NAME)
    inverter = page.locator(f'[data-serial="{serial}"]')
    await expect(inverter.locator(".inverter-title")).to_have_text(INVERTER_NAME)
    await expect(inverter.locator(".inverter-id")).to_contain_text(serial)
    ports = inverter.locator("td.port-name")
    await expect(ports).to_have_text([PORT_NAME, "Port 2"])
    # Nothing of the names became markup, and no script ran.
    assert await page.locator("#dtus img, #dtus script, #dtus b").count() == 0
    assert await page.evaluate("window.__pwned === undefined")

    # The charts: the inverter's series is named by its name.
    await page.goto(ui.proxy.url_for("#charts"))
    key = page.locator(f'#chart-power .hbchart-key[data-key="{serial}"]')
    await expect(key).to_contain_text(INVERTER_NAME)

    # The console: the inverter is chosen by its name, the DTU by its name and serial.
    await page.goto(ui.proxy.url_for("#console"))
    option = page.locator("#console-inverter option")
    await expect(option).to_have_text(f"{INVERTER_NAME} ({serial}, HMS-800W-2T)")
    await expect(page.locator("#console-dtu option")).to_contain_text(DTU_NAME)
    assert await page.evaluate("window.__pwned === undefined")
    assert console_errors.entries == []

    # The API says the same: status, history names and the event log's DTU label.
    status = await _json(ui.proxy.url_for("api/status"))
    (view,) = status["dtus"]
    assert (view["name"], view["label"]) == (DTU_NAME, DTU_NAME)
    (named,) = view["inverters"]
    assert named["name"] == INVERTER_NAME
    assert named["port_names"] == {"1": PORT_NAME, "2": "Port 2"}
    history = await _json(ui.proxy.url_for("api/history"))
    assert history["names"] == {serial: INVERTER_NAME}
    events = await _json(ui.proxy.url_for("api/events"))
    assert any(e["dtu"] == DTU_NAME for e in events["events"])
