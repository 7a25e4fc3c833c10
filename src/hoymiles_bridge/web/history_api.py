"""Routes for the charts page: api/history (power ring buffer, daily yields, DTU history).

Registered by :meth:`hoymiles_bridge.web.api.WebApi.register` (through
:class:`~hoymiles_bridge.web.common.ApiContext`).

* ``GET api/history[?since=<t>][&days=<n>]``: the hub's power history per
  inverter and in total (only points newer than ``since`` when given), the
  inverters' names and the daily yields the bridge saw: the newest
  :data:`~hoymiles_bridge.web.hub.DAILY_SHOWN` days, or ``days`` (1 to the
  hub's 400) of them. ``persistent`` says whether the history survives a
  restart (the hub has a store).
* ``GET api/history/dtu[?dtu=<label>]``: the DTU's own power curve for today
  (``HistPowerToDtu``, all pages), asked on the session's client like
  ``api/read``. Answers are cached per DTU for :data:`DTU_HISTORY_TTL` seconds
  (a failure for :data:`DTU_FAILURE_TTL` s) and concurrent requests share one
  fetch, so a page opened again and again cannot hammer the DTU.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web

from hoymiles_bridge.core.state import DtuState
from hoymiles_bridge.errors import HoymilesError
from hoymiles_bridge.protocol.models import HistoryPower
from hoymiles_bridge.web.common import ApiContext, BadRequest
from hoymiles_bridge.web.common import json_data as _json
from hoymiles_bridge.web.hub import BATTERY_POWER_KEY, BATTERY_SOC_KEY, DAILY_SHOWN

#: How long a DTU's history answer is reused (seconds).
DTU_HISTORY_TTL: Final = 180.0
#: How long a failed DTU history request is remembered before asking again.
DTU_FAILURE_TTL: Final = 30.0
#: Hoymiles DTUs report power every 5 minutes; used when a reply has no step.
DEFAULT_STEP: Final = 300


def _local_midnight(ts: float) -> float:
    lt = time.localtime(ts)
    return time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, 0, 0, 0, 0, 0, -1))


def history_points(history: HistoryPower, now: float) -> tuple[int, int, list[list[float]]]:
    """The curve's start, step and ``[[time, W], ...]``.

    A reply without a usable start (0) is taken to begin at local midnight, and
    one without a step to use the usual 5 minutes, so a quirky DTU still charts.
    """
    step = history.step_seconds if history.step_seconds > 0 else DEFAULT_STEP
    start = history.start if history.start > 0 else int(_local_midnight(now))
    points = [[start + i * step, watts] for i, watts in enumerate(history.samples)]
    return start, step, points


@dataclass(slots=True)
class _Answer:
    """One finished DTU history request: when (monotonic), its status and body."""

    at: float
    status: int
    body: dict[str, Any]


class HistoryRoutes:
    """The handlers and the per-DTU cache of the DTU's own history."""

    def __init__(
        self,
        api: ApiContext,
        *,
        ttl: float = DTU_HISTORY_TTL,
        failure_ttl: float = DTU_FAILURE_TTL,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.ttl = ttl
        self.failure_ttl = failure_ttl
        self._monotonic = monotonic
        self._answers: dict[str, _Answer] = {}
        self._fetches: dict[str, asyncio.Task[_Answer]] = {}
        #: How many times a DTU was actually asked (for tests and diagnostics).
        self.requests = 0

    def __repr__(self) -> str:
        return f"HistoryRoutes(cached={len(self._answers)}, fetching={len(self._fetches)})"

    # --- api/history ------------------------------------------------------------

    def _names(self) -> tuple[dict[str, str], list[dict[str, Any]]]:
        """Inverter names (the user's, else "model serial") and the DTUs; nothing while starting."""
        try:
            fleet_dtus = self.api.fleet.dtus
        except BadRequest as err:
            if err.status != 503:
                raise
            return {}, []  # the stored history is there before the bridge
        names = {
            serial: inverter.device.title
            for dtu in fleet_dtus
            for serial, inverter in dtu.inverters.items()
        }
        dtus = [
            {"label": dtu.label, "name": dtu.session.target.name, "serial": dtu.serial}
            for dtu in fleet_dtus
        ]
        for dtu in fleet_dtus:  # a DTU's energy history fills days under its serial
            if dtu.serial is not None and len(dtu.inverters) != 1:
                names.setdefault(dtu.serial, f"DTU {dtu.serial}")
        for dev_id, battery in self.api.fleet.batteries.batteries.items():
            title = battery.name or dev_id
            names[BATTERY_POWER_KEY + dev_id] = f"{title} (battery)"
            names[BATTERY_SOC_KEY + dev_id] = f"{title} SOC"
        return names, dtus

    async def history(self, request: web.Request) -> web.Response:
        since: float | None = None
        if request.query.get("since"):
            try:
                since = float(request.query["since"])
            except ValueError:
                since = math.nan
            if not math.isfinite(since):
                raise BadRequest("the parameter 'since' must be a time in seconds")
        hub = self.api.hub
        days = DAILY_SHOWN
        if request.query.get("days"):
            text = request.query["days"].strip()
            if not (text.isascii() and text.isdigit() and len(text) <= 6) or not (
                1 <= int(text) <= hub.daily_days
            ):
                raise BadRequest(
                    f"the parameter 'days' must be a whole number from 1 to {hub.daily_days}"
                )
            days = int(text)
        names, dtus = self._names()
        return _json(
            {
                "points_max": hub.history_points,
                "series": hub.history_data(since=since),
                "names": names,
                "dtus": dtus,
                "daily": hub.daily_data(days),
                "daily_days_max": hub.daily_days,
                "persistent": hub.store is not None,
            }
        )

    # --- api/history/dtu ---------------------------------------------------------

    async def _fetch(self, view: DtuState) -> _Answer:
        label = view.session.target.label
        self.requests += 1
        try:
            history = await view.session.client.history_power()
        except (HoymilesError, OSError) as err:
            return _Answer(
                self._monotonic(),
                502,
                {"error": f"the DTU {label} did not answer the history-power request: {err}"},
            )
        start, step, points = history_points(history, time.time())
        body = {
            "dtu": label,
            "name": view.session.target.name,
            "serial": history.serial or view.serial,
            "start": start,
            "step_seconds": step,
            "points": points,
            "energy_daily": history.energy_daily,
            "energy_total": history.energy_total,
        }
        return _Answer(self._monotonic(), 200, body)

    async def dtu_history(self, request: web.Request) -> web.Response:
        found = self.api.dtu(request.query.get("dtu", "").strip(), what="parameter")
        label = found.session.target.label
        answer = self._answers.get(label)
        now = self._monotonic()
        if answer is not None:
            keep = self.ttl if answer.status == 200 else self.failure_ttl
            if now - answer.at < keep:
                return self._respond(answer, cached=True)
        task = self._fetches.get(label)
        if task is None:
            task = asyncio.create_task(self._fetch(found), name=f"web-dtu-history-{label}")
            self._fetches[label] = task
            task.add_done_callback(lambda done: self._finished(label, done))
        # shield: a browser that goes away must not cancel the fetch others wait for
        answer = await asyncio.shield(task)
        return self._respond(answer, cached=False)

    def _finished(self, label: str, task: asyncio.Task[_Answer]) -> None:
        if self._fetches.get(label) is task:
            del self._fetches[label]
        if not task.cancelled() and task.exception() is None:
            self._answers[label] = task.result()

    def _respond(self, answer: _Answer, *, cached: bool) -> web.Response:
        if answer.status != 200:
            return _json(answer.body, answer.status)
        age = max(0.0, self._monotonic() - answer.at)
        return _json({**answer.body, "cached": cached, "age_s": round(age, 1)})

    async def close(self, _app: web.Application | None = None) -> None:
        """Cancel the fetches still running (at shutdown)."""
        tasks = list(self._fetches.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)


#: The app's :class:`HistoryRoutes` (tests shorten its cache through it).
HISTORY_ROUTES: Final = web.AppKey("history_routes", HistoryRoutes)


def register(app: web.Application, api: ApiContext) -> None:
    """Add this module's routes to ``app``."""
    routes = HistoryRoutes(api)
    app[HISTORY_ROUTES] = routes
    app.router.add_get("/api/history", routes.history)
    app.router.add_get("/api/history/dtu", routes.dtu_history)
    app.on_shutdown.append(routes.close)


__all__ = [
    "DTU_FAILURE_TTL",
    "DTU_HISTORY_TTL",
    "HISTORY_ROUTES",
    "HistoryRoutes",
    "history_points",
    "register",
]
