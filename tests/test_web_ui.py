"""The web UI's overview and frame inspector in Chromium, through the ingress stand-in.

A real bridge polls a simulated DTU and publishes to a real Mosquitto; the
browser only sees the UI under a random ingress prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import time
from typing import Any

from playwright.async_api import Page, expect

from hoymiles_bridge.cli.main import main as cli_main
from hoymiles_bridge.dtu.connection import FrameEvent
from hoymiles_bridge.errors import BadMagicError
from hoymiles_bridge.protocol.devices import format_serial
from hoymiles_bridge.protocol.registry import Direction
from hoymiles_bridge.simulator.battery import BatterySimulator
from hoymiles_bridge.web.hub import HEX_BYTES
from tests.browser.helpers import ConsoleErrors

from .conftest_mqtt import mosquitto_fixture  # noqa: F401
from .mosquitto import Mosquitto
from .waiting import until
from .web_env import Ui, ui_fixture  # noqa: F401

pytest_plugins = ["tests.browser.fixtures"]

#: A HistPowerToDtu request (tag A315) as the S-Miles app sends it.
HIST_POWER = "484da3150009404900141080e10118b8ddc6a806"


def _decode_cli(hex_text: str) -> dict[str, Any]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(["decode", hex_text]) == 0
    record: dict[str, Any] = json.loads(out.getvalue().splitlines()[0])
    return record


async def test_overview_live(ui: Ui, browser_page: Page, screenshot: Any) -> None:
    page = browser_page
    response = await page.goto(ui.proxy.url)
    assert response is not None and response.ok
    # assets are versioned and relative
    scripts = await page.eval_on_selector_all(
        "script[src], link[rel=stylesheet]",
        "els => els.map(e => e.getAttribute('src') || e.getAttribute('href'))",
    )
    assert scripts and all(
        re.fullmatch(r"static/[a-z]+\.(js|css)\?v=[0-9a-f]{12}", s) for s in scripts
    )

    serial = format_serial(ui.sim.dtu.inverters[0].serial)
    inverter = page.locator(f'[data-serial="{serial}"]')
    await expect(inverter).to_be_visible()
    await expect(inverter).to_contain_text(serial)
    power = inverter.locator(".power .value")
    await expect(power).to_have_text(re.compile(r"^[\d,.]+ W$"))
    await expect(page.locator("#link-state")).to_have_text("live")

    # live: the last poll moves on, and a jump of the clock changes the power, no reload
    last_poll = page.locator(".dtu .last-poll .value")
    first_poll = await last_poll.get_attribute("data-ts")
    first_power = await power.inner_text()
    await page.evaluate("window.__marker = 'same page'")
    ui.clock.advance(2 * 3600)
    await expect(last_poll).not_to_have_attribute("data-ts", first_poll or "")
    await expect(power).not_to_have_text(first_power)
    assert await page.evaluate("window.__marker") == "same page"
    await expect(page.locator(".dtu")).not_to_contain_text("stale", timeout=5000)

    await screenshot(page, "overview")
    await page.emulate_media(color_scheme="dark")
    await screenshot(page, "overview")
    assert ui.proxy.absolute_redirects == [] and ui.proxy.stray_requests == []


async def test_inspector(
    ui: Ui, browser_page: Page, screenshot: Any, console_errors: ConsoleErrors
) -> None:
    # the paste box's bad frame is answered 400, which Chromium logs
    console_errors.allow(r"status of 400")
    page = browser_page
    await page.goto(ui.proxy.url_for("#inspector"))
    await expect(page.locator("#view-inspector")).to_be_visible()
    await expect(page.locator("#view-overview")).to_be_hidden()
    rows = page.locator("#frames tr.frame")
    await expect(rows.first).to_be_visible()
    await expect(rows.filter(has_text="RealDataNewFromDtu").first).to_be_visible()

    # expand one: header bytes marked, the payload as a tree
    reply = rows.filter(has_text="RealDataNewFromDtu").first
    await reply.click()
    detail = page.locator(".detail-row").first
    await expect(detail.locator(".hex .hx-magic")).to_have_text("48 4d")
    await expect(detail.locator(".hex .hx-tag")).to_be_visible()
    await expect(detail.locator(".tree")).to_contain_text("RealDataNewFromDtu")

    # direction filter hides the other direction
    await page.select_option("#filter-direction", "from_dtu")
    await expect(rows.first).to_be_visible()
    directions = await rows.evaluate_all("rs => rs.map(r => r.dataset.direction)")
    assert directions and set(directions) == {"from_dtu"}

    # pause holds the list, resume catches up
    await page.click("#pause")
    held = await rows.count()
    await page.wait_for_timeout(1500)
    assert await rows.count() == held
    await expect(page.locator("#frame-count")).to_contain_text("paused")
    await page.click("#pause")
    await expect(page.locator("#pause")).to_have_text("Pause")
    assert await rows.count() > held

    # export the filtered view; decode reads it back
    href = await page.locator("#export").get_attribute("href")
    assert href == "api/frames.jsonl?direction=from_dtu"
    export_url = await page.evaluate("document.getElementById('export').href")
    assert export_url.startswith(ui.proxy.url)
    response = await page.request.get(export_url)
    assert response.ok
    lines = [json.loads(line) for line in (await response.text()).splitlines() if line]
    assert lines and all(r["direction"] == "from_dtu" for r in lines)
    for record in lines[-3:]:
        assert _decode_cli(record["hex"])["message"] == record["message"]

    # the paste box
    await page.fill("#decode-hex", HIST_POWER)
    await page.click("#decode-form button")
    await expect(page.locator(".decoded-message")).to_have_text("HistPowerToDtu")
    await page.fill("#decode-hex", "zz")
    await page.click("#decode-form button")
    await expect(page.locator(".decode-error")).to_contain_text("'hex'")

    await page.select_option("#filter-direction", "")
    await screenshot(page, "inspector")
    await page.emulate_media(color_scheme="dark")
    await screenshot(page, "inspector")
    assert ui.proxy.absolute_redirects == [] and ui.proxy.stray_requests == []


async def test_inspector_says_when_a_frame_is_cut(ui: Ui, browser_page: Page) -> None:
    """A run of garbage longer than any frame keeps only its start; the detail says so."""
    page = browser_page
    await page.goto(ui.proxy.url_for("#inspector"))
    await expect(page.locator("#frames tr.frame").first).to_be_visible()
    raw = b"\x00garbage" * 5000
    error = BadMagicError(f"skipped {len(raw)} bytes that are not part of a frame", raw)
    assert ui.server.hub is not None
    ui.server.hub.on_frame(
        "DTU", FrameEvent(time.time(), Direction.FROM_DTU, raw, None, None, error)
    )
    row = page.locator(f'#frames tr.frame[data-id="{ui.server.hub.frames[-1].data["id"]}"]')
    await expect(row).to_contain_text("40000")
    await row.click()
    detail = page.locator(".detail-row .frame-detail")
    note = f"Only the first {HEX_BYTES:,} of 40,000 bytes are kept"
    await expect(detail.locator(".truncated-note")).to_contain_text(note)
    await expect(detail.locator(".error-text")).to_contain_text("not part of a frame")
    # Frames that were not cut say nothing of the kind.
    await page.locator("#frames tr.frame").first.click()
    await expect(page.locator(".detail-row").first).not_to_contain_text("are kept")


async def test_overview_shows_a_battery_card(
    ui: Ui, mosquitto: Mosquitto, browser_page: Page, screenshot: Any
) -> None:
    battery = BatterySimulator("127.0.0.1", mosquitto.port, quick_interval=0.1, slow_interval=1)
    runner = asyncio.create_task(battery.run(), name="web-ui-battery-sim")
    try:
        # (the browser_page fixture fails the test on any console error)
        await browser_page.goto(ui.proxy.url)
        card = browser_page.locator(f'[data-battery="{battery.master.dev_id}"]')
        await expect(card).to_be_visible(timeout=15_000)
        await expect(card).to_contain_text("available")
        await expect(card.locator(".power .value")).to_have_text(
            re.compile(r"^[\d,.]+ W \(discharging\)$")
        )
        await expect(card).to_contain_text("general", timeout=10_000)
        await screenshot(browser_page, "battery")
        # the inspector shows the battery's own messages, filtered by unit
        await browser_page.locator('nav a[href="#inspector"]').click()
        box = browser_page.locator("#battery-messages")
        await expect(box).to_be_visible(timeout=10_000)
        await browser_page.select_option("#battery-filter-unit", battery.master.dev_id)
        await expect(box.locator(".battery-message").first).to_contain_text(
            battery.master.dev_id, timeout=10_000
        )
        await expect(
            box.locator(".battery-message summary", has_text="quick").first
        ).to_be_visible()
        # the charts: the battery's power beside the inverters', its SOC in a card of its own
        await browser_page.locator('nav a[href="#charts"]').click()
        await expect(browser_page.locator("#chart-soc")).to_be_visible(timeout=10_000)
        await expect(browser_page.locator("#chart-soc")).to_contain_text("SOC")
        await expect(browser_page.locator("#chart-power")).to_contain_text("(battery)")
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


async def test_console_controls_a_battery(ui: Ui, mosquitto: Mosquitto, browser_page: Page) -> None:
    battery = BatterySimulator(
        "127.0.0.1", mosquitto.port, firmware="v0.5", quick_interval=0.1, slow_interval=1
    )
    runner = asyncio.create_task(battery.run(), name="web-console-battery-sim")
    try:
        page = browser_page
        dev_id = battery.master.dev_id
        await page.goto(ui.proxy.url_for("#console"))
        card = page.locator(".console-battery")
        await expect(card).to_be_visible(timeout=15_000)
        await expect(page.locator("#console-battery")).to_have_value(dev_id)
        setpoint = card.locator('input[data-command="setpoint"]')
        await expect(setpoint).to_have_attribute("max", "1000")  # -1000..+2000 made symmetric
        form = card.locator("form").filter(has=page.locator('input[data-command="setpoint"]'))
        # out of range: the form says so, nothing is asked or sent
        await setpoint.fill("1500")
        await form.locator("button").click()
        await expect(form.locator(".console-form-error")).to_contain_text("-1000 to 1000 W")
        await expect(page.locator("#console-confirm")).to_be_hidden()
        # a confirmed setpoint reaches the battery, with the mode it needs
        await setpoint.fill("-300")
        await form.locator("button").click()
        dialog = page.locator("#console-confirm")
        await expect(dialog.locator(".console-confirm-text")).to_contain_text("-300 W on battery")
        await expect(dialog.locator(".console-confirm-note")).to_contain_text("mqtt_ctrl")
        await dialog.locator(".console-confirm-yes").click()
        outcome = page.locator("#console-outcome")
        await expect(outcome).to_have_attribute("data-status", "ok")
        await expect(outcome).to_contain_text(f"setpoint -300 for {dev_id}")
        await until(lambda: _holds(battery, -300.0), "the setpoint at the battery")
        # the reboot button of V0.5.1 asks with the registry's confirmation text
        await card.locator('[data-command="battery_reboot"] button').click()
        await expect(dialog.locator(".console-confirm-note")).to_contain_text("restarts")
        await dialog.locator(".console-confirm-no").click()
        await expect(outcome).to_contain_text("nothing was sent")
        assert battery.master.reboots == 0
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


async def _holds(battery: BatterySimulator, watts: float) -> bool:
    return battery.master.mode == "mqtt_ctrl" and battery.master.setpoint == watts
