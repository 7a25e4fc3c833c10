"""The web UI's console, event log and diagnostics in Chromium, through the ingress stand-in.

A real bridge polls a simulated DTU and publishes to a real Mosquitto; the
browser only sees the UI under a random ingress prefix. The console's reads
and a confirmed limit change must reach the simulator; a cancelled one must not.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import Page, Request, ViewportSize, expect

from hoymiles_bridge.core.commands import Command, CommandError, check
from hoymiles_bridge.core.limits import FALLBACK_RATED_POWER
from hoymiles_bridge.mqtt.commands import request_for
from hoymiles_bridge.mqtt.topics import DTU_COMMANDS, INVERTER_COMMANDS
from hoymiles_bridge.protocol.devices import format_serial
from hoymiles_bridge.protocol.requests import READ_REQUESTS
from hoymiles_bridge.web.api import CSRF_HEADER, CSRF_VALUE, WebApi
from hoymiles_bridge.web.console_api import READ_DESCRIPTIONS, catalogue
from hoymiles_bridge.web.hub import WebHub
from tests.browser.helpers import ConsoleErrors

from .conftest_mqtt import mosquitto_fixture  # noqa: F401
from .web_env import MQTT_PASSWORD, Ui, ui_fixture  # noqa: F401

pytest_plugins = ["tests.browser.fixtures"]

HEADERS = {CSRF_HEADER: CSRF_VALUE}
WIFI_PASSWORD = "sim-secret-password"  # the simulator's default (simulator/state.py)
PHONE: ViewportSize = {"width": 390, "height": 844}


async def _catalogue(ui: Ui) -> dict[str, Any]:
    """api/commands once the bridge knows the inverter (read through the ingress proxy)."""
    async with aiohttp.ClientSession() as session:
        for _ in range(300):
            async with session.get(ui.proxy.url + "api/commands") as response:
                assert response.status == 200
                text = await response.text()
            body: dict[str, Any] = json.loads(text)
            if body["dtus"] and body["dtus"][0]["inverters"]:
                assert MQTT_PASSWORD not in text and WIFI_PASSWORD not in text
                # Also let the bridge's first MQTT burst finish: a bridge stopped in
                # the middle of it can take longer than the fixture allows.
                await ui.bridge.link.wait_connected(15)
                return body
            await asyncio.sleep(0.05)  # the first poll has not finished yet
    raise AssertionError("the bridge never reported its inverter")


def _switched_on(ui: Ui) -> bool:
    return bool(ui.sim.dtu.inverters[0].on)


def _passwords(value: Any) -> list[Any]:
    """Every value of a key naming a password, anywhere in ``value``."""
    if isinstance(value, dict):
        found = [v for k, v in value.items() if "pass" in k and v not in (None, "")]
        return found + [p for v in value.values() for p in _passwords(v)]
    if isinstance(value, list):
        return [p for v in value for p in _passwords(v)]
    return []


def parse_command(base: str, topic: str, payload: bytes, *, retained: bool) -> Command | None:
    """What the bridge makes of an MQTT command message (raises CommandError)."""
    request = request_for(base, topic, payload, retained=retained)
    assert request is not None
    return check(request)


async def _no_overflow(page: Page) -> None:
    """Nothing sticks out sideways at phone width."""
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width} px wide on a {PHONE['width']} px phone"


async def test_commands_api(ui: Ui) -> None:
    body = await _catalogue(ui)
    assert [r["name"] for r in body["reads"]] == list(READ_REQUESTS)
    assert set(READ_DESCRIPTIONS) == set(READ_REQUESTS)
    assert all(r["description"] and r["reply"] and r["tag"] for r in body["reads"])
    assert body["limit_interval"] == ui.bridge.options.limit_interval

    # the catalogue is the command registry's entities, as the MQTT tables have them
    catalogue = {c["key"]: c for c in body["commands"]}
    assert list(catalogue) == [f.key for f in (*INVERTER_COMMANDS, *DTU_COMMANDS)]
    for field in INVERTER_COMMANDS:
        entry = catalogue[field.key]
        assert entry["command"] == field.topic and entry["target"] == "inverter"
        assert entry["label"] == field.name and entry["unit"] == field.unit
    assert {catalogue[f.key]["target"] for f in DTU_COMMANDS} == {"dtu"}
    assert catalogue["power_off"]["payload"] == "0" and catalogue["power_on"]["payload"] == "1"
    # danger flags and confirmation texts come from the registry, for the dialog
    assert catalogue["reboot"]["danger"] and catalogue["reboot"]["confirm"]
    assert not catalogue["performance_mode"]["danger"]

    dtu = body["dtus"][0]
    assert dtu["label"] and dtu["serial"] and dtu["state"] == "connected"
    assert [c["key"] for c in dtu["commands"]] == [f.key for f in DTU_COMMANDS]
    inverter = dtu["inverters"][0]
    serial = format_serial(ui.sim.dtu.inverters[0].serial)
    assert inverter["serial"] == serial
    offers = {o["key"]: o for o in inverter["commands"]}
    assert {"limit_persistent_relative", "limit_persistent_absolute", "power_on", "restart"} <= set(
        offers
    )

    # the ranges offered are the ones the MQTT validation and the bridge accept
    base = ui.bridge.layout.base
    rated = inverter["rated_power"] or FALLBACK_RATED_POWER
    for key, offer in offers.items():
        if "min" not in offer:
            continue
        command = catalogue[key]["command"]
        topic = f"{base}/{serial}/cmd/{command}"
        for value in (offer["min"], offer["max"]):
            parsed = parse_command(base, topic, f"{value:g}".encode(), retained=False)
            assert parsed is not None and parsed.value == value
        if catalogue[key]["unit"] == "%":
            assert offer["max"] == 100
            below = offer["min"] - offer["step"]
            try:
                parse_command(base, topic, f"{below:g}".encode(), retained=False)
            except CommandError:
                pass
            else:
                raise AssertionError(f"{key}: {below} % below the offered minimum was accepted")
        else:
            assert offer["max"] == rated

    # the lowest offered % limit (0, as OpenDTU) reaches the simulated inverter as 2 %
    low = offers["limit_persistent_relative"]["min"]
    assert low == 0
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            ui.proxy.url + "api/command",
            json={"command": "limit_persistent_relative", "serial": serial, "value": low},
            headers=HEADERS,
        ) as response,
    ):
        answer = await response.json()
    assert response.status == 200 and answer["status"] == "ok", answer
    assert answer["text"] == "ok: clamped to 2 %", answer
    assert answer["message"] == "clamped to 2 %", answer  # what the console shows
    assert ui.sim.dtu.inverters[0].limit_permille == 20


def test_commands_while_the_bridge_starts() -> None:
    body = catalogue(WebApi(WebHub(), lambda: None))
    assert body["dtus"] == [] and body["limit_interval"] is None
    assert len(body["reads"]) == len(READ_REQUESTS) and body["commands"]


async def test_console_reads_and_confirmed_limit(
    ui: Ui, browser_page: Page, screenshot: Any, console_errors: ConsoleErrors
) -> None:
    page = browser_page
    commands: list[Request] = []
    page.on("request", lambda r: commands.append(r) if r.url.endswith("api/command") else None)
    inverter = ui.sim.dtu.inverters[0]
    serial = format_serial(inverter.serial)

    await page.goto(ui.proxy.url_for("#console"))
    await expect(page.locator("#view-console")).to_be_visible()
    await expect(page.locator("#console-inverter option")).to_have_count(1)
    await expect(page.locator("#console-inverter")).to_have_value(serial)

    # reads: the default one (the poll's own request), then config and network info
    result = page.locator("#console-read-result")
    await expect(page.locator("#console-request")).to_have_value("RealDataNewToDtu")
    await page.click("#console-send")
    await expect(result.locator(".decoded-message")).to_have_text("RealDataNewFromDtu")
    await expect(result.locator(".hex .hx-magic")).to_have_text("48 4d")
    await expect(result.locator(".hex .hx-tag")).to_have_text("a2 11")
    await expect(result.locator(".frame-summary")).to_contain_text("CRC ok")
    await expect(result.locator(".tree")).to_contain_text("RealDataNewFromDtu")

    await page.select_option("#console-request", "GetConfigToDtu")
    await page.click("#console-send")
    await expect(result.locator(".decoded-message")).to_have_text("GetConfigFromDtu")
    await expect(result.locator(".tree")).to_contain_text("********")
    await expect(result).to_contain_text("Secrets masked")
    assert WIFI_PASSWORD not in await page.content()

    await page.select_option("#console-request", "NetworkInfoToDtu")
    await expect(page.locator(".console-request-info")).to_contain_text("NetworkInfoFromDtu")
    await page.click("#console-send")
    await expect(result.locator(".decoded-message")).to_have_text("NetworkInfoFromDtu")
    await expect(result.locator(".tree")).to_contain_text("csq")

    # a limit out of range is stopped in the form, with a sentence; nothing is sent
    await page.select_option("#console-limit-kind", "limit_persistent_relative")
    await page.fill("#console-limit-value", "500")
    await page.click("#console-set-limit")
    await expect(page.locator(".console-form-error")).to_contain_text("between 0 and 100 %")
    await expect(page.locator("#console-confirm")).to_be_hidden()

    # a cancelled change sends nothing
    dialog = page.locator("#console-confirm")
    await page.fill("#console-limit-value", "30")
    await page.click("#console-set-limit")
    await expect(dialog).to_be_visible()
    text, body = dialog.locator(".console-confirm-text"), dialog.locator(".console-confirm-body")
    await expect(text).to_contain_text(f"30 % on inverter {serial}")
    await expect(body).to_contain_text('"limit_persistent_relative"')
    await dialog.locator(".console-confirm-no").click()
    await expect(dialog).to_be_hidden()
    await expect(page.locator("#console-outcome")).to_contain_text("nothing was sent")
    assert commands == []
    assert inverter.limit_permille == 1000

    # a confirmed one reaches the simulated inverter, and the outcome is shown
    await page.fill("#console-limit-value", "40")
    await page.click("#console-set-limit")
    await dialog.locator(".console-confirm-yes").click()
    outcome = page.locator("#console-outcome")
    await expect(outcome).to_contain_text(f"limit_persistent_relative 40 for {serial}")
    await expect(outcome).to_have_attribute("data-status", "ok")
    await expect(outcome.locator(".badge")).to_have_text("ok")
    assert len(commands) == 1
    assert inverter.limit_permille == 400
    await expect(page.locator("#console-limit-hint")).to_contain_text("Applied now: 40 %")

    # a button: off and on again, each confirmed
    await page.click('[data-command="power_off"]')
    await expect(dialog.locator(".console-confirm-text")).to_contain_text(f"inverter {serial}")
    await dialog.locator(".console-confirm-yes").click()
    await expect(outcome).to_contain_text(f"power 0 for {serial}")
    await expect(outcome).to_have_attribute("data-status", "ok")
    assert _switched_on(ui) is False
    await page.click('[data-command="power_on"]')
    await dialog.locator(".console-confirm-yes").click()
    await expect(outcome).to_contain_text(f"power 1 for {serial}")
    await expect(outcome).to_have_attribute("data-status", "ok")
    assert _switched_on(ui) is True

    await screenshot(page, "console")
    await page.emulate_media(color_scheme="dark")
    await screenshot(page, "console")

    # the commands and their outcome are in the event log, also after a reload
    await page.goto(ui.proxy.url_for("#events"))
    rows = page.locator('#events li.event[data-kind="command"]')
    await expect(rows.filter(has_text="limit_persistent_relative").first).to_be_visible()
    await expect(rows.filter(has_text="limit_persistent_relative").first).to_contain_text("ok")
    await expect(rows).to_have_count(3)
    await page.reload()
    await expect(page.locator("#view-events")).to_be_visible()
    await expect(rows).to_have_count(3)
    await expect(rows.first).to_contain_text(f"power for {serial}: ok")
    await expect(rows.last).to_contain_text(f"limit_persistent_relative for {serial}: ok")
    ids = await page.locator("#events li.event").evaluate_all("rs => rs.map(r => +r.dataset.id)")
    assert ids == sorted(ids, reverse=True), "newest first"

    # readable on a phone
    await page.set_viewport_size(PHONE)
    await page.goto(ui.proxy.url_for("#console"))
    await expect(page.locator("#console-inverter option")).to_have_count(1)
    await _no_overflow(page)
    await screenshot(page)  # unlabelled: an artifact, not a documentation picture
    assert ui.proxy.absolute_redirects == [] and ui.proxy.stray_requests == []


async def test_event_log_live_and_filters(
    ui: Ui, browser_page: Page, screenshot: Any, console_errors: ConsoleErrors
) -> None:
    page = browser_page
    serial = format_serial(ui.sim.dtu.inverters[0].serial)
    await page.goto(ui.proxy.url_for("#events"))
    await expect(page.locator("#view-events")).to_be_visible()
    await expect(page.locator('#events li[data-kind="start"]')).to_have_count(1)
    await expect(page.locator('#events li[data-kind="state"]').first).to_be_visible()
    await expect(page.locator("#link-state")).to_have_text("live")

    # a refused command arrives live, newest first, as a warning (sent outside the page:
    # the browser logs every 4xx a page's fetch gets)
    response = await page.request.post(
        ui.proxy.url + "api/command",
        data={"command": "limit_persistent_relative", "serial": serial, "value": 140},
        headers=HEADERS,
    )
    assert response.status == 400
    # (the controller's first state can arrive at about the same time, so the newest
    # command is looked for, and the order is checked by the ids)
    newest = page.locator('#events li.event[data-kind="command"]').first
    await expect(newest).to_have_attribute("data-level", "warning")
    await expect(newest).to_contain_text("outside 0..100 %")
    await expect(newest.locator(".badge.warn")).to_have_text("warning")
    ids = await page.locator("#events li.event").evaluate_all("rs => rs.map(r => +r.dataset.id)")
    assert ids == sorted(ids, reverse=True), "newest first"

    # filters
    await page.select_option("#events-level", "warning")
    levels = page.locator("#events li.event")
    await expect(levels).not_to_have_count(0)
    assert set(await levels.evaluate_all("rs => rs.map(r => r.dataset.level)")) == {"warning"}
    await page.select_option("#events-level", "")
    await page.select_option("#events-kind", "state")
    await expect(page.locator('#events li.event[data-kind="command"]')).to_have_count(0)
    assert set(await levels.evaluate_all("rs => rs.map(r => r.dataset.kind)")) == {"state"}
    await page.select_option("#events-kind", "")
    await page.fill("#events-search", "outside")
    await expect(levels).to_have_count(1)
    await page.fill("#events-search", "")
    await expect(page.locator("#events-count")).to_contain_text("events")

    # the time of day is shown (the bridge's clock runs in UTC in this browser)
    await expect(page.locator("#events .event-time").first).to_have_text(
        re.compile(r"^(\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d$")
    )
    await screenshot(page, "events")
    await page.emulate_media(color_scheme="dark")
    await screenshot(page, "events")
    await page.set_viewport_size(PHONE)
    await _no_overflow(page)


async def test_diagnostics(
    ui: Ui, browser_page: Page, screenshot: Any, console_errors: ConsoleErrors, tmp_path: Path
) -> None:
    page = browser_page
    await page.goto(ui.proxy.url_for("#diagnostics"))
    await expect(page.locator("#view-diagnostics")).to_be_visible()
    frames = page.locator('[data-key="frames"] .value')
    await expect(frames).to_have_text(re.compile(r"^[1-9][\d,]*$"))
    await expect(page.locator('[data-key="version"] .value')).to_have_text(re.compile(r"^\d"))
    await expect(page.locator('[data-key="rss"] .value')).to_have_text(re.compile(r" (KB|MB)$"))
    await expect(page.locator('[data-key="p50"] .value')).to_have_text(re.compile(r" ms$"))
    await expect(page.locator(".diag-mqtt .badge")).to_have_text("connected")
    for key in ("frame_errors", "reconnects", "displacements", "connects", "p99", "max"):
        await expect(page.locator(f'[data-key="{key}"] .value')).not_to_be_empty()
    await expect(page.locator(".diag-dtus tbody tr")).to_have_count(1)

    # it refreshes by itself while shown (every 5 s): the bridge keeps polling
    first = await frames.inner_text()
    await expect(frames).not_to_have_text(first, timeout=30_000)

    # the download: relative, JSON, and no secret in it
    link = page.locator("#diag-download")
    assert await link.get_attribute("href") == "api/diagnostics/download"
    async with page.expect_download() as info:
        await link.click()
    download = await info.value
    target = tmp_path / download.suggested_filename
    await download.save_as(target)
    text = target.read_text(encoding="utf-8")
    data = json.loads(text)
    assert download.suggested_filename.startswith("hoymiles-bridge-diagnostics-")
    assert data["counters"]["frames"] > 0 and data["poll_latency"]["count"] > 0
    assert _passwords(data) == ["********"]  # the MQTT password, masked
    assert data["uptime_s"] > 0
    assert MQTT_PASSWORD not in text and WIFI_PASSWORD not in text

    await screenshot(page, "diagnostics")
    await page.emulate_media(color_scheme="dark")
    await screenshot(page, "diagnostics")
    await page.set_viewport_size(PHONE)
    await _no_overflow(page)
    assert ui.proxy.absolute_redirects == [] and ui.proxy.stray_requests == []
