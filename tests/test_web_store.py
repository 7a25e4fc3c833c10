"""History that survives restarts: the hub's SQLite store (web/store.py) and its hooks in the hub.

Unit tests feed the hub and the store by hand (real SQLite files in tmp_path);
the service tests run the real bridge against the simulator and a real
Mosquitto, stop it, and start a new service on the same state directory.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from hoymiles_bridge.addon.runner import Service, WebConfig, fixed_broker
from hoymiles_bridge.cli.run import mqtt_settings
from hoymiles_bridge.config.options import validate
from hoymiles_bridge.core.events import Activity
from hoymiles_bridge.errors import DtuTimeoutError
from hoymiles_bridge.mqtt.link import MqttSettings
from hoymiles_bridge.protocol.devices import format_serial
from hoymiles_bridge.protocol.pb import history_pb2
from hoymiles_bridge.simulator import DtuSimulator
from hoymiles_bridge.web.hub import HISTORY_SECONDS, WebHub, daily_energies
from hoymiles_bridge.web.store import (
    DB_NAME,
    Batch,
    HistoryStore,
    StoreUnavailable,
    state_dir_for,
)

from .conftest_mqtt import mosquitto_fixture  # noqa: F401
from .mosquitto import Mosquitto
from .waiting import until

NOW = time.time()


def _poll(when: float, power: dict[str, float], yieldday: dict[str, float]) -> Activity:
    return Activity(
        "poll", "dtu", "DTU1", "poll", data={"time": when, "power": power, "yieldday": yieldday}
    )


def _day(ts: float) -> str:
    return time.strftime("%Y-%m-%d", time.localtime(ts))


#: The shared wait, with this module's deadline and poll step.
_until = functools.partial(until, timeout=30.0, step=0.1)


def _local_midnight(ts: float) -> float:
    day = time.localtime(ts)
    return time.mktime((day.tm_year, day.tm_mon, day.tm_mday, 0, 0, 0, 0, 0, -1))


#: Where _feed's polls start: an hour ago, but never before today's midnight, so that
#: the polls of one test fall on one day (a run just after midnight found two).
FEED_START = max(NOW - 3600, _local_midnight(NOW) + 1)


def _feed(hub: WebHub, polls: int, *, start: float = FEED_START, step: float = 35.0) -> None:
    for i in range(polls):
        when = start + i * step
        hub.on_event(_poll(when, {"A": 10.0 + i, "B": 5.0}, {"A": float(i), "B": 2.0 * i}))


# --- the hub and its store -------------------------------------------------------


async def test_a_new_hub_on_the_same_directory_has_the_history_the_yields_and_the_events(
    tmp_path: Path,
) -> None:
    first = WebHub()
    await first.open_store(tmp_path)
    assert first.store is not None
    _feed(first, 20)
    first.log("start", "bridge started")
    first.log("state", "DTU1 online", dtu="dtu", serial="DTU1")
    first.daily["2020-01-01"] = {"old": 1.0}  # memory only: not written, not loaded
    await first.close_store()

    second = WebHub()
    await second.open_store(tmp_path)
    try:
        assert second.history_data() == first.history_data()
        assert second.daily_data() == [d for d in first.daily_data() if d["date"] != "2020-01-01"]
        assert [e.data for e in second.events] == [e.data for e in first.events]
        # the event numbering goes on where the first hub stopped
        second.log("start", "bridge started again")
        assert second.events[-1].data["id"] == first.events[-1].data["id"] + 1
        assert second.history_data(since=NOW)["total"] == []
    finally:
        await second.close_store()


async def test_the_hub_loads_only_a_day_of_power_and_forgets_series_not_polled_since(
    tmp_path: Path,
) -> None:
    first = WebHub()
    await first.open_store(tmp_path)
    first.on_event(_poll(NOW - HISTORY_SECONDS - 60, {"A": 1.0}, {}))
    first.on_event(_poll(NOW - 60, {"A": 2.0}, {}))
    await first.close_store()

    second = WebHub()
    await second.open_store(tmp_path)
    try:
        assert second.history_data()["A"] == [[round(NOW - 60, 1), 2.0]]
        # restored series count as seen at their last point: gone 48 h later
        second.on_event(_poll(NOW + 49 * 3600, {"B": 3.0}, {}))
        assert "A" not in second.history_data()
    finally:
        await second.close_store()


async def test_rows_of_one_flush_go_in_one_transaction(tmp_path: Path) -> None:
    hub = WebHub(flush_delay=3600)  # the timer never fires during the test: flush() by hand
    await hub.open_store(tmp_path)
    assert hub.store is not None
    try:
        _feed(hub, 50)  # 50 polls of 2 inverters: 150 power rows, 100 yields
        for i in range(30):
            hub.log("command", f"command {i}")
        assert hub.store_transactions == 0
        await hub.flush()
        assert hub.store_transactions == 1
        assert await asyncio.to_thread(hub.store.counts) == {
            "power": 150,
            "daily": 2,
            "events": 30,
        }
        await hub.flush()  # nothing pending: no transaction
        assert hub.store_transactions == 1
        _feed(hub, 3, start=NOW)
        await hub.close_store()  # writes what is pending, once
        assert hub.store is None
    finally:
        await hub.close_store()
    store = HistoryStore(tmp_path / DB_NAME)
    store.open()
    assert store.counts()["power"] == 159
    store.close()


async def test_the_store_task_writes_pending_rows_by_itself(tmp_path: Path) -> None:
    hub = WebHub(flush_delay=0.0)
    await hub.open_store(tmp_path)
    try:
        _feed(hub, 5)
        hub.log("start", "bridge started")

        async def written() -> bool:
            return hub.store_transactions >= 1

        await _until(written, "the first transaction")
        # everything fed before the task woke up went in that one transaction
        assert hub.store_transactions == 1
    finally:
        await hub.close_store()


def test_the_store_does_not_grow_past_its_bounds(tmp_path: Path) -> None:
    clock = [NOW]
    store = HistoryStore(
        tmp_path / DB_NAME,
        power_seconds=3600,
        power_rows=500,
        daily_days=10,
        event_rows=200,
        clock=lambda: clock[0],
    )
    store.open()
    pages: list[int] = []
    event_id = 0
    for round_ in range(40):
        batch = Batch()
        for i in range(100):  # 100 rows a round, one a second: the row cap bites first
            batch.power.append((f"S{i % 4}", clock[0] + i, float(i)))
            event_id += 1
            batch.events.append((event_id, clock[0], f'{{"id":{event_id}}}'))
        for day in range(3):
            batch.daily[(f"2024-{1 + round_ // 28:02d}-{1 + (round_ % 28):02d}", f"S{day}")] = (
                1.0,
                "bridge",
            )
        store.write(batch)
        clock[0] += 100
        counts = store.counts()
        assert counts["power"] <= 500
        assert counts["events"] <= 200
        assert len(store.load(power_since=0, events=0).daily) <= 10
        pages.append(_pages(store))
    # the row cap holds and the file stops growing once it is reached (pages are reused)
    assert store.counts() == {"power": 500, "daily": 30, "events": 200}
    assert max(pages[20:]) <= max(pages[:10]) + 2
    newest = store.load(power_since=0, events=5)
    assert [e["id"] for e in newest.events] == list(range(event_id - 4, event_id + 1))
    assert newest.last_event_id == event_id
    # the age bound: an hour later only what is younger than an hour is left
    clock[0] += 3 * 3600
    store.write(Batch(power=[("S0", clock[0], 1.0)]))
    assert store.counts()["power"] == 1
    assert store.transactions == 41
    store.close()


def _pages(store: HistoryStore) -> int:
    db = sqlite3.connect(store.path)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return int(db.execute("PRAGMA page_count").fetchone()[0])
    finally:
        db.close()


def test_the_database_uses_wal(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / DB_NAME)
    store.open()
    store.close()
    db = sqlite3.connect(tmp_path / DB_NAME)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


def test_rows_that_are_not_sound_are_skipped_at_load(tmp_path: Path) -> None:
    store = HistoryStore(tmp_path / DB_NAME)
    store.open()
    store.write(
        Batch(
            power=[("A", NOW, 1.0), ("A", NOW + 1, -5.0), ("", NOW + 2, 1.0)],
            daily={("2024-06-01", "A"): (10.0, "bridge"), ("yesterday", "A"): (1.0, "bridge")},
            events=[(1, NOW, '{"id":1,"text":"ok"}'), (2, NOW, "not json"), (3, NOW, '{"id":9}')],
        )
    )
    snapshot = store.load(power_since=0, events=10)
    store.close()
    assert snapshot.power == {"A": [(NOW, 1.0)]}
    assert snapshot.daily == {"2024-06-01": {"A": 10.0}}
    assert snapshot.events == [{"id": 1, "text": "ok"}]
    assert snapshot.last_event_id == 3


# --- corruption and unusable directories ---------------------------------------------


def _good_database(directory: Path) -> Path:
    store = HistoryStore(directory / DB_NAME)
    store.open()
    store.write(
        Batch(
            power=[(f"S{i % 7}", NOW - i, float(i)) for i in range(3000)],
            events=[(i, NOW, f'{{"id":{i},"text":"{"x" * 200}"}}') for i in range(1, 300)],
        )
    )
    store.close()
    db = sqlite3.connect(directory / DB_NAME)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return directory / DB_NAME


@pytest.mark.parametrize("damage", ["garbage", "pages"])
async def test_a_damaged_database_is_moved_aside_and_a_new_one_started(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = _good_database(tmp_path)
    if damage == "garbage":
        path.write_bytes(b"this is not a database, just some text " * 200)
    else:  # the header is fine, the pages behind it are not
        data = bytearray(path.read_bytes())
        assert len(data) > 40_000
        for offset in range(8192, len(data) - 4096, 4096):
            data[offset + 8 : offset + 400] = b"\xa5" * 392
        path.write_bytes(bytes(data))
    caplog.set_level(logging.WARNING)
    hub = WebHub()
    await hub.open_store(tmp_path)
    try:
        assert hub.store is not None
        moved = hub.store.moved_aside
        assert moved is not None and moved.exists()
        assert moved.name.startswith(f"{DB_NAME}.corrupt-")
        lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(lines) == 1
        assert "is damaged" in lines[0] and moved.name in lines[0] and "new one" in lines[0]
        # the bridge goes on with a new, empty database
        assert hub.history_data() == {} and not hub.events
        _feed(hub, 2)
        await hub.flush()
        assert hub.store_transactions == 1
    finally:
        await hub.close_store()
    second = HistoryStore(path)
    second.open()
    assert second.moved_aside is None
    assert second.counts()["power"] == 6
    second.close()


def test_a_database_from_a_newer_bridge_is_moved_aside(tmp_path: Path) -> None:
    path = _good_database(tmp_path)
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.close()
    store = HistoryStore(path)
    store.open()
    assert store.moved_aside is not None
    assert store.counts()["power"] == 0
    store.close()


async def test_an_unusable_state_directory_leaves_the_history_in_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreUnavailable, match="cannot create the state directory"):
        HistoryStore(blocker / "state" / DB_NAME).open()
    caplog.set_level(logging.WARNING)
    hub = WebHub()
    await hub.open_store(blocker / "state")
    assert hub.store is None
    assert "kept in memory only" in caplog.text
    _feed(hub, 2)
    assert hub.history_data()["total"]
    await hub.close_store()


def test_the_standalone_state_directory_is_next_to_the_options_file(tmp_path: Path) -> None:
    assert state_dir_for(tmp_path / "bridge.yaml") == tmp_path.resolve() / "hoymiles-bridge-state"


# --- the DTU's energy history ------------------------------------------------------------


def test_daily_energies_reads_days_and_skips_what_it_cannot_place() -> None:
    noon = time.mktime((2024, 6, 12, 12, 0, 0, 0, 0, -1))
    reply = history_pb2.HistEnergyFromDtu(
        energ=[
            history_pb2.EnergyInfo(ed=4200, r_time=int(noon - 86400)),
            history_pb2.EnergyInfo(ed=3100, r_time=int(noon)),
            history_pb2.EnergyInfo(ed=3300, r_time=int(noon + 3600)),  # same day: the larger
            history_pb2.EnergyInfo(ed=500, r_time=3600),  # a relative time? skipped
            history_pb2.EnergyInfo(ed=4_000_000_000, r_time=int(noon + 86400)),  # implausible
        ]
    )
    assert daily_energies(reply) == {"2024-06-11": 4200.0, "2024-06-12": 3300.0}


def _view(reply: history_pb2.HistEnergyFromDtu | None, inverters: list[str]) -> Any:
    async def history_energy() -> history_pb2.HistEnergyFromDtu:
        if reply is None:
            raise DtuTimeoutError("no answer")
        return reply

    client = SimpleNamespace(history_energy=history_energy)
    return SimpleNamespace(
        label="dtu",
        serial="DTU1",
        inverters=dict.fromkeys(inverters),
        session=SimpleNamespace(client=client),
    )


async def test_the_backfill_fills_only_earlier_days_that_hold_no_yield(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    noon = time.mktime((2024, 6, 12, 12, 0, 0, 0, 0, -1))
    hub = WebHub(flush_delay=3600, clock=lambda: noon)
    await hub.open_store(tmp_path)
    try:
        hub.daily["2024-06-10"] = {"INV1": 100.0}  # the bridge ran that day
        reply = history_pb2.HistEnergyFromDtu(
            energ=[
                history_pb2.EnergyInfo(ed=1000 * (i + 1), r_time=int(noon - (3 - i) * 86400))
                for i in range(4)  # 06-09 .. 06-12 (today)
            ]
        )
        await hub._backfill(_view(reply, ["INV1", "INV2"]))
        assert hub.daily == {
            "2024-06-09": {"DTU1": 1000.0},  # two inverters: the DTU's total, under its serial
            "2024-06-10": {"INV1": 100.0},  # kept: the bridge's own value wins
            "2024-06-11": {"DTU1": 3000.0},
        }
        assert hub.backfilled_days == 2
        await hub._backfill(_view(reply, ["INV1", "INV2"]))  # nothing new the second time
        assert hub.backfilled_days == 2
        await hub.flush()
        assert hub.store is not None
        stored = await asyncio.to_thread(hub.store.load, power_since=0, events=0)
        assert stored.daily == {"2024-06-09": {"DTU1": 1000.0}, "2024-06-11": {"DTU1": 3000.0}}
        # with one inverter the DTU's yield goes under the inverter's serial
        single = WebHub(clock=lambda: noon)
        await single._backfill(_view(reply, ["INV1"]))
        assert single.daily["2024-06-09"] == {"INV1": 1000.0}
        caplog.set_level(logging.INFO)
        await single._backfill(_view(None, ["INV1"]))
        assert "did not give its energy history: no answer" in caplog.text
    finally:
        await hub.close_store()


async def test_a_failed_write_is_logged_once_and_the_hub_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = WebHub(flush_delay=3600)
    await hub.open_store(tmp_path)
    assert hub.store is not None
    try:

        def full(batch: Batch) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        real = hub.store.write
        monkeypatch.setattr(hub.store, "write", full)
        caplog.set_level(logging.INFO)
        for _ in range(3):
            _feed(hub, 2)
            await hub.flush()
        assert hub.store_errors == 3 and hub.store_transactions == 0
        assert caplog.text.count("Cannot save the history") == 1
        monkeypatch.setattr(hub.store, "write", real)
        _feed(hub, 2)
        await hub.flush()
        assert hub.store_transactions == 1
        assert "works again" in caplog.text
        assert len(hub.history_data()["total"]) == 8  # memory kept everything
    finally:
        await hub.close_store()


# --- the service, stopped and started again -----------------------------------------------


def _options(sim: DtuSimulator, mosquitto: Mosquitto) -> Any:
    return validate(
        {
            "dtus": [{"host": sim.host, "port": sim.port}],
            "poll_interval": 1,
            "min_poll_interval": 1,
            "mqtt": {"host": "127.0.0.1", "port": mosquitto.port},
        }
    )


async def _get(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        assert response.status == 200
        return await response.json()


async def test_a_restarted_service_shows_the_history_of_the_one_before(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    start_day = _day(time.time())  # a run across midnight must not count today as earlier
    async with DtuSimulator(speed=60) as sim:  # its data changes between two polls
        options = _options(sim, mosquitto)
        first = Service(
            options,
            fixed_broker(mqtt_settings(options)),
            WebConfig("127.0.0.1", 0),
            state_dir=state,
        )
        task = asyncio.create_task(first.run(), name="test-first-service")

        async def backfilled() -> bool:
            hub = first.hub
            return (
                len(hub.history.get("total", ())) >= 3
                and _day(time.time()) in hub.daily
                and hub.backfilled_days > 0
                and hub.store_transactions >= 1
            )

        await _until(backfilled, "polls, today's yield and the DTU's energy history")
        polls = len(first.hub.history["total"])
        first.request_stop()
        assert await task == 0
        assert first.hub.store is None  # closed, pending rows written
        # batched: far fewer transactions than rows (never one per value)
        assert 1 <= first.hub.store_transactions <= polls + len(first.hub.events)
        history = first.hub.history_data()
        daily = first.hub.daily_data(400)
        events = [e.data for e in first.hub.events]
        earlier = [d for d in daily if d["date"] < start_day]
        assert len(earlier) == first.hub.backfilled_days
        inverters = [format_serial(i.serial) for i in sim.dtu.inverters]
        assert len(inverters) == 1 and all(set(d["inverters"]) == set(inverters) for d in earlier)
        # asked once, however many polls
        asked = [f for f in first.hub.frames if f.data["message"] == "HistEnergyToDtu"]
        assert len(asked) == 1

    # the second service's bridge never gets its broker: all it shows comes from the store
    never = asyncio.Event()

    async def no_broker() -> MqttSettings:
        await never.wait()
        raise AssertionError("unreachable")

    second = Service(options, no_broker, WebConfig("127.0.0.1", 0), state_dir=state)
    task = asyncio.create_task(second.run(), name="test-second-service")
    try:

        async def serving() -> bool:
            return second.web.running and second.hub.store is not None

        await _until(serving, "the second service")
        base = f"http://127.0.0.1:{second.web.port}/"
        async with aiohttp.ClientSession() as session:
            body = await _get(session, base + "api/history?days=400")
            assert body["persistent"] is True
            assert body["series"] == history
            assert body["daily"] == daily
            shown = await _get(session, base + "api/history")
            assert shown["daily"] == daily[-31:]
            logged = await _get(session, base + "api/events")
            assert logged["events"] == events
            async with session.get(base + "api/history?days=0") as response:
                assert response.status == 400
                assert "'days'" in (await response.json())["error"]
    finally:
        second.request_stop()
        assert await task == 0
