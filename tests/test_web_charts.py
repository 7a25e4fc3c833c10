"""The charts page: api/history, api/history/dtu, the hub's daily yields and chart.js.

The browser tests drive Chromium through the ingress stand-in against a real
bridge polling a simulated DTU; the API tests talk to the same server directly;
the unit tests feed the hub and the history routes by hand.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections import deque
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from playwright.async_api import Page, expect

from hoymiles_bridge.core.events import Activity
from hoymiles_bridge.errors import DtuTimeoutError
from hoymiles_bridge.protocol.devices import format_serial
from hoymiles_bridge.protocol.models import HistoryPower
from hoymiles_bridge.web.api import WebApi
from hoymiles_bridge.web.history_api import HISTORY_ROUTES, HistoryRoutes, history_points
from hoymiles_bridge.web.hub import WebHub
from tests.browser.helpers import ConsoleErrors

from .conftest_mqtt import mosquitto_fixture  # noqa: F401
from .waiting import until
from .web_env import Ui, ui_fixture  # noqa: F401

pytest_plugins = ["tests.browser.fixtures"]

NUMBER = re.compile(r"^[1-9]\d*$")


def _poll(when: float, power: dict[str, float], yieldday: dict[str, float]) -> Activity:
    return Activity(
        "poll", "dtu", "DTU1", "poll", data={"time": when, "power": power, "yieldday": yieldday}
    )


def _day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.localtime(ts))


#: The shared wait, with this module's deadline and poll step.
_until = functools.partial(until, timeout=15.0, step=0.1)


# --- the hub ---------------------------------------------------------------------


def test_daily_yields_keep_the_days_maximum_and_are_bounded() -> None:
    hub = WebHub(daily_days=3)
    noon = time.mktime((2024, 6, 10, 12, 0, 0, 0, 0, -1))
    hub.on_event(_poll(noon, {"A": 100.0, "B": 50.0}, {"A": 400.0, "B": 200.0}))
    hub.on_event(_poll(noon + 60, {"A": 120.0, "B": 0.0}, {"A": 410.0, "B": 150.0}))
    assert hub.daily_data() == [
        {"date": "2024-06-10", "total": 610.0, "inverters": {"A": 410.0, "B": 200.0}}
    ]
    # each new local day starts afresh; only the newest three days are kept
    for days in range(1, 5):
        hub.on_event(_poll(noon + days * 86400, {"A": 1.0}, {"A": float(days)}))
    daily = hub.daily_data()
    assert [d["date"] for d in daily] == ["2024-06-12", "2024-06-13", "2024-06-14"]
    assert daily[-1] == {"date": "2024-06-14", "total": 4.0, "inverters": {"A": 4.0}}
    # a poll without yields (an older bridge) records power only
    hub.on_event(Activity("poll", "dtu", "DTU1", "poll", data={"time": noon + 5 * 86400}))
    assert len(hub.daily_data()) == 3


def test_history_since_returns_only_newer_points() -> None:
    hub = WebHub()
    for i in range(5):
        hub.on_event(_poll(1000.0 + i, {"A": float(i)}, {}))
    assert [p[0] for p in hub.history_data()["total"]] == [1000.0, 1001.0, 1002.0, 1003.0, 1004.0]
    newer = hub.history_data(since=1002.0)
    assert newer == {"A": [[1003.0, 3.0], [1004.0, 4.0]], "total": [[1003.0, 3.0], [1004.0, 4.0]]}
    assert hub.history_data(since=2000.0) == {"A": [], "total": []}


def test_history_points_time_base() -> None:
    curve = HistoryPower("DTU1", 1_700_000_000, 300, (0.0, 12.5, 30.0), 5000, 42)
    start, step, points = history_points(curve, 1_700_000_900)
    assert (start, step) == (1_700_000_000, 300)
    assert points == [[1_700_000_000, 0.0], [1_700_000_300, 12.5], [1_700_000_600, 30.0]]
    # a DTU without a start or step: today's local midnight, every 5 minutes
    now = time.mktime((2024, 6, 10, 13, 0, 0, 0, 0, -1))
    start, step, points = history_points(HistoryPower("D", 0, 0, (1.0, 2.0), 0, 0), now)
    assert start == time.mktime((2024, 6, 10, 0, 0, 0, 0, 0, -1)) and step == 300
    assert points[1][0] == start + 300


# --- api/history/dtu without a DTU: errors, failure cache, one fetch for many --------


class _FakeClient:
    def __init__(self, answer: HistoryPower | Exception, gate: asyncio.Event | None = None) -> None:
        self.answer = answer
        self.gate = gate
        self.calls = 0

    async def history_power(self) -> HistoryPower:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def _fake_api(*clients: _FakeClient) -> Any:
    dtus = [
        SimpleNamespace(
            serial=f"DTU{i}",
            label=f"dtu{i}",
            session=SimpleNamespace(
                target=SimpleNamespace(label=f"dtu{i}", name=f"Roof {i}", host=f"10.0.0.{i}"),
                client=client,
            ),
        )
        for i, client in enumerate(clients, start=1)
    ]
    fleet = SimpleNamespace(dtus=dtus)
    return WebApi(WebHub(), lambda: fleet)  # type: ignore[arg-type]


async def _ask(routes: HistoryRoutes, query: str) -> tuple[int, dict[str, Any]]:
    import json

    # through the API's own middleware, which answers a BadRequest as the server does
    response = await routes.api._same_origin(
        make_mocked_request("GET", f"/api/history/dtu{query}"), routes.dtu_history
    )
    assert isinstance(response, web.Response)
    assert response.text is not None
    return response.status, json.loads(response.text)


async def test_dtu_history_errors_name_the_field_and_failures_are_cached() -> None:
    failing = _FakeClient(DtuTimeoutError("no reply within 5 s"))
    curve = HistoryPower("DTU2", 1_700_000_000, 300, (1.0, 2.0), 10, 3)
    fine = _FakeClient(curve)
    routes = HistoryRoutes(_fake_api(failing, fine))
    status, body = await _ask(routes, "")
    assert status == 400 and "'dtu'" in body["error"]
    status, body = await _ask(routes, "?dtu=garage")
    assert status == 404 and "'dtu'" in body["error"] and "garage" in body["error"]
    status, body = await _ask(routes, "?dtu=dtu1")
    assert status == 502 and body["error"].startswith("the DTU dtu1 did not answer")
    status, body = await _ask(routes, "?dtu=dtu1")  # remembered: not asked again
    assert status == 502 and failing.calls == 1
    routes.failure_ttl = 0
    await _ask(routes, "?dtu=dtu1")
    assert failing.calls == 2
    # the serial and the host name the DTU too
    status, body = await _ask(routes, "?dtu=10.0.0.2")
    assert status == 200 and body["dtu"] == "dtu2" and body["cached"] is False
    status, body = await _ask(routes, "?dtu=DTU2")
    assert status == 200 and body["cached"] is True and fine.calls == 1


async def test_dtu_history_concurrent_requests_share_one_fetch() -> None:
    gate = asyncio.Event()
    client = _FakeClient(HistoryPower("DTU1", 1_700_000_000, 300, (5.0,), 0, 0), gate)
    routes = HistoryRoutes(_fake_api(client))
    asks = [asyncio.create_task(_ask(routes, ""), name=f"ask-{i}") for i in range(5)]
    await _until(lambda: _true_soon(client.calls == 1), "the fetch to start")
    gate.set()
    answers = await asyncio.gather(*asks)
    assert client.calls == 1 and routes.requests == 1
    assert all(
        status == 200 and body["points"] == [[1_700_000_000, 5.0]] for status, body in answers
    )


async def _true_soon(value: bool) -> bool:
    await asyncio.sleep(0)
    return value


# --- the API against the simulator -------------------------------------------------------


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as response:
        return response.status, await response.json()


async def test_history_api_against_the_simulator(ui: Ui) -> None:
    base = f"http://127.0.0.1:{ui.server.port}/"
    serials = [format_serial(i.serial) for i in ui.sim.dtu.inverters]
    rated = sum(i.spec.rated_power for i in ui.sim.dtu.inverters)
    async with aiohttp.ClientSession() as session:
        body: dict[str, Any] = {}

        async def polled() -> bool:
            nonlocal body
            _, body = await _get(session, base + "api/history")
            return all(body["series"].get(s) for s in [*serials, "total"]) and bool(body["daily"])

        await _until(polled, "the power history")
        assert body["points_max"] > 0
        assert set(body["names"]) >= set(serials)
        assert all(body["names"][s].endswith(s) for s in serials)
        assert [d["label"] for d in body["dtus"]] == [ui.bridge.fleet.dtus[0].label]
        today = body["daily"][-1]
        assert today["date"] == _day(ui.clock.now())
        assert set(today["inverters"]) == set(serials)
        assert today["total"] == pytest.approx(sum(today["inverters"].values()), abs=0.2)
        assert today["total"] > 0  # at noon the simulated sun has produced something

        # since: only newer points (the simulated DTU refreshes its data when time moves on)
        last = body["series"]["total"][-1][0]
        ui.clock.advance(600)

        async def newer() -> bool:
            nonlocal body
            _, body = await _get(session, base + f"api/history?since={last}")
            return bool(body["series"]["total"])

        await _until(newer, "a newer poll")
        assert all(t > last for key in body["series"] for t, _ in body["series"][key])
        status, error = await _get(session, base + "api/history?since=yesterday")
        assert status == 400 and "'since'" in error["error"]

        # the DTU's own history: today since midnight, every 5 minutes, plausible watts
        label = ui.bridge.fleet.dtus[0].label
        routes = ui.server.app[HISTORY_ROUTES]
        frames_before = sum(
            1 for f in ui.server.hub.frames if f.data["message"] == "HistPowerToDtu"
        )  # type: ignore[union-attr]
        status, curve = await _get(session, base + f"api/history/dtu?dtu={label}")
        assert status == 200, curve
        assert curve["dtu"] == label and curve["cached"] is False
        assert curve["step_seconds"] == 300
        assert _day(curve["start"]) == _day(ui.clock.now())
        assert time.localtime(curve["start"]).tm_hour == 0
        points = curve["points"]
        assert len(points) == pytest.approx((ui.clock.now() - curve["start"]) / 300, abs=3)
        watts = [w for _, w in points]
        assert min(watts) >= 0 and 0 < max(watts) <= rated
        assert watts[0] == 0  # no sun at midnight
        asked = sum(1 for f in ui.server.hub.frames if f.data["message"] == "HistPowerToDtu")  # type: ignore[union-attr]
        assert asked > frames_before  # sent on the session's client, so the inspector saw it

        # cached: the DTU is not asked again
        status, again = await _get(session, base + "api/history/dtu")
        assert status == 200 and again["cached"] is True and again["points"] == points
        assert routes.requests == 1
        routes.ttl = 0
        status, fresh = await _get(session, base + f"api/history/dtu?dtu={label}")
        assert status == 200 and fresh["cached"] is False and routes.requests == 2
        status, error = await _get(session, base + "api/history/dtu?dtu=nowhere")
        assert status == 404 and "'dtu'" in error["error"]


# --- the page in Chromium ---------------------------------------------------------------


def _backfill_morning(ui: Ui) -> float:
    """Give the hub the morning a bridge started at dawn would have seen.

    Every 5 minutes from local midnight until 10 minutes ago, from the
    simulator's own physics, merged in time order with the real polls, so the
    page (and its screenshot) shows a day's curve. Returns the last time added;
    everything after it comes from real polls.
    """
    hub = ui.server.hub
    assert hub is not None
    now = ui.clock.now()
    lt = time.localtime(now)
    t = time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, 0, 0, 0, 0, 0, -1))
    added: dict[str, list[tuple[float, float]]] = {"total": []}
    while t < now - 600:
        total = 0.0
        for inverter in ui.sim.dtu.inverters:
            model = inverter.model
            _, ac = model.limited(model.available_dc(t), inverter.effective_permille, inverter.on)
            added.setdefault(format_serial(inverter.serial), []).append((t, round(ac, 1)))
            total += ac
        added["total"].append((t, round(total, 1)))
        t += 300
    for key, points in added.items():
        hub.history[key] = deque(
            sorted([*hub.history.get(key, ()), *points]), maxlen=hub.history_points
        )
    return added["total"][-1][0]


async def test_charts_page(ui: Ui, browser_page: Page, screenshot: Any) -> None:
    page = browser_page
    serials = [format_serial(i.serial) for i in ui.sim.dtu.inverters]
    hub = ui.server.hub
    assert hub is not None

    async def polled() -> bool:
        return all(hub.history.get(key) for key in [*serials, "total"])

    await _until(polled, "the first poll")
    backfilled = _backfill_morning(ui)
    await page.goto(ui.proxy.url_for("#charts"))
    await expect(page.locator("#view-charts")).to_be_visible()
    power = page.locator("#chart-power")

    # a series per simulator inverter and the total, each with points up to the real polls
    total = power.locator('.hbchart-key[data-key="total"]')
    await expect(total).to_have_attribute("data-points", NUMBER)
    await expect(total).to_contain_text("Total")
    for serial in serials:
        key = power.locator(f'.hbchart-key[data-key="{serial}"]')
        await expect(key).to_contain_text(serial)
        await expect(key).to_have_attribute("data-points", NUMBER)
        assert float(await key.get_attribute("data-last") or 0) > backfilled
    drawn = await power.locator(".chart-holder").evaluate("h => h.hbchart.lastDraw")
    assert drawn["series"] == len(serials) + 1 and drawn["vertices"] > 0

    # live: the simulated clock jumps two hours, the page follows without a reload
    first = float(await total.get_attribute("data-last") or 0)
    await page.evaluate("window.__marker = 'same page'")
    ui.clock.advance(2 * 3600)
    await page.wait_for_function(
        "min => Number(document.querySelector('#chart-power [data-key=total]').dataset.last)"
        " >= min",
        arg=first + 7200,
    )
    assert await page.evaluate("window.__marker") == "same page"

    # hover: crosshair tooltip with a value per series
    box = await power.locator(".hbchart-overlay").bounding_box()
    assert box is not None
    # near the newest point, at the right end of the plot
    await page.mouse.move(box["x"] + box["width"] - 14, box["y"] + box["height"] / 2)
    tip = power.locator(".hbchart-tip")
    await expect(tip).to_be_visible()
    await expect(tip).to_contain_text("Total")
    await expect(tip).to_contain_text(re.compile(r"\d W"))
    await page.mouse.move(0, 0)
    await expect(tip).to_be_hidden()

    # a legend button hides its series
    await total.click()
    await expect(total).to_have_attribute("aria-pressed", "false")
    drawn = await power.locator(".chart-holder").evaluate("h => h.hbchart.lastDraw")
    assert drawn["series"] == len(serials)
    await total.click()
    await expect(total).to_have_attribute("aria-pressed", "true")

    # the DTU's own history, with its time base
    label = ui.bridge.fleet.dtus[0].label
    dtu = page.locator(f'.dtu-history[data-dtu="{label}"]')
    await expect(dtu.locator('.hbchart-key[data-key="dtu"]')).to_have_attribute(
        "data-points", NUMBER
    )
    await expect(dtu).to_contain_text("samples every 5 min")

    # daily yields: a bar per inverter for today
    daily = page.locator("#chart-daily")
    for serial in serials:
        await expect(daily.locator(f'.hbchart-key[data-key="{serial}"]')).to_have_attribute(
            "data-points", "1"
        )
    await expect(daily).to_contain_text(_day(ui.clock.now()))

    await screenshot(page, "charts")
    await page.emulate_media(color_scheme="dark")
    # the chart reads its colours again: the dark palette's first colour
    await expect(total.locator(".hbchart-swatch")).to_have_css(
        "background-color", "rgb(79, 195, 247)"
    )
    await screenshot(page, "charts")
    assert ui.proxy.absolute_redirects == [] and ui.proxy.stray_requests == []


async def test_charts_page_on_a_phone(ui: Ui, browser_page: Page) -> None:
    page = browser_page
    await page.set_viewport_size({"width": 390, "height": 800})
    await page.goto(ui.proxy.url_for("#charts"))
    power = page.locator("#chart-power")
    total = power.locator('.hbchart-key[data-key="total"]')
    await expect(total).to_have_attribute("data-points", NUMBER)
    await expect(page.locator(".dtu-history .hbchart-key")).to_have_attribute("data-points", NUMBER)
    # nothing sticks out sideways
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    # the 24 h range redraws the same data; a touch on the plot shows the values
    await page.click('[data-range="24h"]')
    await expect(page.locator('[data-range="24h"]')).to_have_attribute("aria-pressed", "true")
    await expect(page.locator('[data-range="today"]')).to_have_attribute("aria-pressed", "false")
    box = await power.locator(".hbchart-overlay").bounding_box()
    assert box is not None
    await page.mouse.click(box["x"] + box["width"] - 14, box["y"] + box["height"] / 2)
    await expect(power.locator(".hbchart-tip")).to_contain_text("Total")


async def test_charts_empty_states_and_a_silent_dtu(
    ui: Ui, browser_page: Page, console_errors: ConsoleErrors
) -> None:
    # the DTU's 502 below is logged by Chromium as a failed resource
    console_errors.allow(r"status of 502")
    page = browser_page
    label = ui.bridge.fleet.dtus[0].label
    empty = {"points_max": 100, "series": {}, "names": {}, "daily": [], "dtus": []}
    await page.route(
        re.compile(r"/api/history(\?.*)?$"),
        lambda route: route.fulfill(json=empty),
    )
    await page.goto(ui.proxy.url_for("#charts"))
    await expect(page.locator("#chart-power .chart-empty")).to_have_text(
        re.compile(r"^No power readings yet")
    )
    await expect(page.locator("#chart-daily .chart-empty")).to_have_text(
        re.compile(r"^No daily yields yet")
    )
    await expect(page.locator("#view-charts")).to_contain_text("No DTU configured.")
    await expect(page.locator("#chart-power .hbchart")).to_be_hidden()

    # a DTU that does not answer: its card says so in a sentence
    await page.unroute(re.compile(r"/api/history(\?.*)?$"))
    error = {"error": f"the DTU {label} did not answer the history-power request: timeout"}
    await page.route(
        re.compile(r"/api/history/dtu"),
        lambda route: route.fulfill(status=502, json=error),
    )
    await page.reload()
    card = page.locator(f'.dtu-history[data-dtu="{label}"]')
    await expect(card.locator(".chart-empty.error-text")).to_have_text(error["error"])
    await expect(card.locator(".hbchart")).to_be_hidden()
    await expect(page.locator('#chart-power [data-key="total"]')).to_have_attribute(
        "data-points", NUMBER
    )


async def test_chart_module_with_20000_points(ui: Ui, browser_page: Page) -> None:
    page = browser_page
    await page.goto(ui.proxy.url_for("#charts"))
    await expect(page.locator("#view-charts")).to_be_visible()
    result = await page.evaluate(
        """() => {
          const box = document.createElement("div");
          box.style.width = "800px";
          document.body.append(box);
          const chart = new HBChart.TimeChart(box, { unit: "W", gap: 600 });
          const start = new Date(2024, 5, 10).getTime() / 1000;
          const series = [0, 1, 2].map((n) => ({
            key: `s${n}`, label: `Series ${n}`,
            data: Array.from({ length: 20000 }, (_, i) =>
              [start + i * 4, 400 * Math.sin(i / 3000) ** 2 + n * 50 + (i % 7)]),
          }));
          chart.setSeries(series);
          chart.draw();
          const bars = new HBChart.BarChart(box, { unit: "Wh", digits: 0 });
          bars.setData(Array.from({ length: 31 }, (_, i) => `06-${String(i + 1).padStart(2, "0")}`),
            [{ key: "a", label: "A", values: Array.from({ length: 31 }, (_, i) => 1000 + i * 10) },
             { key: "b", label: "B", values: Array.from({ length: 31 }, () => 500) }]);
          bars.draw();
          const ticks = HBChart.timeTicks(start, start + 86400, 12);
          return {
            line: chart.lastDraw,
            plotWidth: chart.plot.clientWidth,
            bars: bars.lastDraw,
            keys: [...box.querySelectorAll(".hbchart-key")].map((b) => b.dataset.points),
            value: HBChart.valueTicks(0, 873, 5),
            step: ticks.step,
            roundHours: ticks.ticks.every((t) => new Date(t * 1000).getMinutes() === 0),
            labels: ticks.ticks.slice(0, 2).map((t) => HBChart.timeLabel(t, ticks.step)),
          };
        }"""
    )
    line = result["line"]
    assert line["series"] == 3
    # decimated: at most four vertices per pixel column and series, far fewer than 60,000
    assert 0 < line["vertices"] <= 3 * 4 * (result["plotWidth"] + 1)
    assert result["bars"]["bars"] == 62 and result["bars"]["labels"] == 31
    assert result["keys"] == ["20000", "20000", "20000", "31", "31"]
    assert result["value"]["step"] == 200 and result["value"]["ticks"][-1] == 1000
    assert result["step"] == 7200 and result["roundHours"]
    assert result["labels"] == ["06-10", "02:00"]
