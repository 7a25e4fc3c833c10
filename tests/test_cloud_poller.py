"""The cloud poller against the stand-in cloud: pace, stale marking and every fault.

Time never passes by itself here: the poller gets a fake clock, a fake
monotonic clock and a sleep that only records, and the tests call
``poll_once`` (or ``run`` with a sleep that stops it).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from hoymiles_bridge.cloud import facts
from hoymiles_bridge.cloud.client import CloudClient, Credentials, Endpoints
from hoymiles_bridge.cloud.poller import (
    ENERGY_INTERVAL_S,
    STALE_AFTER,
    STATIONS_INTERVAL_S,
    TOKEN_BACKOFF_S,
    CloudPoller,
    CloudStatus,
    StationSnapshot,
    station_ids,
)
from hoymiles_bridge.errors import InvalidArgumentError
from tests.cloud_standin import PASSWORD, USERNAME, Running, start


@pytest.fixture
async def cloud() -> AsyncIterator[Running]:
    running = await start()
    yield running
    await running.close()


class Time:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 22, 30, tzinfo=UTC)
        self.mono = 1000.0

    def clock(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    async def sleep(self, seconds: float) -> None:
        self.mono += seconds
        self.now += timedelta(seconds=seconds)


class Recorder:
    def __init__(self) -> None:
        self.snapshots: list[StationSnapshot] = []
        self.statuses: list[CloudStatus] = []

    def station_updated(self, snapshot: StationSnapshot) -> None:
        self.snapshots.append(snapshot)

    def status_changed(self, status: CloudStatus) -> None:
        self.statuses.append(status)


@pytest.fixture
def fake_time() -> Time:
    return Time()


def make(
    cloud: Running, fake_time: Time, *, password: str = PASSWORD, **kwargs: Any
) -> tuple[CloudClient, CloudPoller, Recorder]:
    client = CloudClient(
        Credentials(USERNAME, password),
        endpoints=Endpoints.at(cloud.url),
        clock=fake_time.clock,
        sleep=fake_time.sleep,
    )
    recorder = Recorder()
    poller = CloudPoller(
        client,
        listener=recorder,
        clock=fake_time.clock,
        monotonic=fake_time.monotonic,
        sleep=fake_time.sleep,
        **kwargs,
    )
    return client, poller, recorder


def count(cloud: Running, path: str) -> int:
    return sum(1 for r in cloud.state.requests if r.path.split("?")[0] == path)


async def test_a_round_reads_flow_energy_and_battery(cloud: Running, fake_time: Time) -> None:
    client, poller, recorder = make(cloud, fake_time, poll_interval=10)
    async with client:
        assert await poller.poll_once() == 10.0
        snapshots = {s.sid: s for s in poller.snapshots}
        assert set(snapshots) == {101, 202}
        balcony = snapshots[101]
        assert balcony.name == "Balcony" and not balcony.stale
        assert balcony.flow is not None and balcony.flow.battery == 245.8
        assert balcony.energy is not None and balcony.energy.total == 125.0
        assert [b.soc for b in balcony.batteries] == [53.0]
        assert balcony.updated_at == fake_time.now
        assert snapshots[202].batteries == ()
        # Energy waits for its interval; the flow does not.
        await poller.poll_once()
        assert count(cloud, facts.REAL_DATA) == 2  # one per station
        fake_time.mono += ENERGY_INTERVAL_S
        await poller.poll_once()
        assert count(cloud, facts.REAL_DATA) == 4
    status = recorder.statuses[-1]
    assert status.login == "logged in" and status.last_error == "" and status.running
    assert status.next_poll == fake_time.now + timedelta(seconds=10)


@pytest.mark.parametrize(
    ("interval", "dly", "expected"),
    [(10, 3000, 10.0), (10, 30000, 30.0), (1, 1000, facts.MIN_POLL_S), (3, 3000, 3.0)],
)
async def test_the_pace_is_the_slower_of_dly_and_the_interval(
    cloud: Running, fake_time: Time, interval: int, dly: int, expected: float
) -> None:
    cloud.state.dly = dly
    client, poller, _ = make(cloud, fake_time, poll_interval=interval)
    async with client:
        assert await poller.poll_once() == expected


async def test_a_station_added_later_is_polled_within_the_hour(
    cloud: Running, fake_time: Time
) -> None:
    client, poller, _ = make(cloud, fake_time, poll_interval=10)
    async with client:
        await poller.poll_once()
        assert {s.sid for s in poller.snapshots} == {101, 202}
        cloud.state.added_stations.append({"sid": 303, "sn": "ST303", "name": "Shed"})
        await poller.poll_once()
        assert {s.sid for s in poller.snapshots} == {101, 202}  # not read again yet
        lists = count(cloud, facts.STATIONS)
        fake_time.mono += STATIONS_INTERVAL_S
        await poller.poll_once()
        assert count(cloud, facts.STATIONS) == lists + 1
        assert {s.sid for s in poller.snapshots} == {101, 202, 303}
        # A list that cannot be read keeps the stations known.
        fake_time.mono += STATIONS_INTERVAL_S
        cloud.state.fail_path[facts.STATIONS] = 1
        await poller.poll_once()
        assert {s.sid for s in poller.snapshots} == {101, 202, 303}
        assert not any(s.stale for s in poller.snapshots)


async def test_only_the_configured_stations(
    cloud: Running, fake_time: Time, caplog: pytest.LogCaptureFixture
) -> None:
    client, poller, _ = make(cloud, fake_time, stations=(202, 999))
    async with client:
        await poller.poll_once()
    assert [s.sid for s in poller.snapshots] == [202]
    assert "station 999 is not in the account (it has 101, 202)" in caplog.text


async def test_faults_keep_the_last_values_and_go_stale_after_three(
    cloud: Running, fake_time: Time
) -> None:
    client, poller, _ = make(cloud, fake_time, stations=(101,))
    async with client:
        await poller.poll_once()
        good = poller.snapshots[0]
        for index, fault in enumerate(("500", "badjson", "nostatus")):
            cloud.state.faults.append(fault)
            assert await poller.poll_once() == 10.0
            snapshot = poller.snapshots[0]
            assert snapshot.flow == good.flow and snapshot.updated_at == good.updated_at
            assert snapshot.missed == index + 1
            assert snapshot.stale == (index + 1 >= STALE_AFTER)
        assert "no status" in poller.status.last_error
        await poller.poll_once()
        assert not poller.snapshots[0].stale and poller.snapshots[0].missed == 0


async def test_garbage_is_a_missed_poll(cloud: Running, fake_time: Time) -> None:
    client, poller, _ = make(cloud, fake_time, stations=(101,))
    async with client:
        await poller.poll_once()
        good = poller.snapshots[0].flow
        cloud.state.faults.append("garbage")
        await poller.poll_once()
    assert poller.snapshots[0].flow == good and poller.snapshots[0].missed == 1


async def test_the_all_zero_fault_keeps_the_last_values(
    cloud: Running, fake_time: Time, caplog: pytest.LogCaptureFixture
) -> None:
    client, poller, _ = make(cloud, fake_time, stations=(101,))
    async with client:
        await poller.poll_once()
        good = poller.snapshots[0].flow
        cloud.state.zero_live = True
        for _ in range(STALE_AFTER):
            await poller.poll_once()
    assert poller.snapshots[0].flow == good
    assert poller.snapshots[0].stale
    assert caplog.text.count("sends 0 W for PV, battery, grid and load") == 1


async def test_a_wrong_password_is_one_line_and_no_loop(
    cloud: Running, fake_time: Time, caplog: pytest.LogCaptureFixture
) -> None:
    client, poller, recorder = make(cloud, fake_time, password="not it")
    async with client:
        await poller.run()  # returns: no retry loop
        sent = len(cloud.state.requests)
        assert await poller.poll_once() is None
        assert len(cloud.state.requests) == sent
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "cloud.password" in errors[0].getMessage()
    assert poller.halted and not recorder.statuses[-1].running
    assert recorder.statuses[-1].login == "login refused"
    assert count(cloud, facts.LOGIN) == 1


async def test_the_daily_cap_waits_for_the_next_utc_day(
    cloud: Running, fake_time: Time, caplog: pytest.LogCaptureFixture
) -> None:
    cloud.state.daily_cap = 0
    client, poller, _ = make(cloud, fake_time)
    async with client:
        first = await poller.poll_once()
        retry_at = datetime(2026, 12, 2, 0, 5, tzinfo=UTC)
        assert first == (retry_at - fake_time.now).total_seconds()
        sent = len(cloud.state.requests)
        fake_time.now += timedelta(minutes=30)
        second = await poller.poll_once()
        assert second == (retry_at - fake_time.now).total_seconds()
        assert len(cloud.state.requests) == sent  # no login attempt before then
        fake_time.now = retry_at
        cloud.state.daily_cap = 10
        assert await poller.poll_once() == 10.0
    assert caplog.text.count("daily number of logins") == 1
    assert "2026-12-02 00:05 UTC" in caplog.text


async def test_a_token_refused_after_a_new_login_backs_off(cloud: Running, fake_time: Time) -> None:
    client, poller, _ = make(cloud, fake_time, stations=(101,))
    async with client:
        await poller.poll_once()
        cloud.state.expire_tokens()
        assert await poller.poll_once() == 10.0  # one new login, and it worked
        assert client.logins == 2
        cloud.state.tokens_die = True
        cloud.state.expire_tokens()
        assert await poller.poll_once() == TOKEN_BACKOFF_S
        assert client.logins == 3
        assert await poller.poll_once() == 2 * TOKEN_BACKOFF_S
    assert poller.snapshots[0].missed == 2


async def test_run_sleeps_the_delay_between_rounds(cloud: Running, fake_time: Time) -> None:
    waits: list[float] = []

    class StopError(Exception):
        pass

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            raise StopError

    cloud.state.dly = 5000
    client = CloudClient(Credentials(USERNAME, PASSWORD), endpoints=Endpoints.at(cloud.url))
    poller = CloudPoller(client, stations=(101,), poll_interval=3, sleep=sleep)
    async with client:
        with pytest.raises(StopError):
            await poller.run()
    assert waits == [5.0, 5.0, 5.0]


def test_station_ids() -> None:
    assert station_ids(None) == ()
    assert station_ids("  ") == ()
    assert station_ids("101, 202;101") == (101, 202)
    for bad in ("abc", "0", "-5", "1.5"):
        with pytest.raises(InvalidArgumentError, match="cloud.stations"):
            station_ids(bad)


def test_the_option_table_and_the_poller_agree() -> None:
    from hoymiles_bridge.cloud.poller import DEFAULT_POLL_INTERVAL
    from hoymiles_bridge.config.options import validate
    from hoymiles_bridge.config.table import DEFAULT_CLOUD_POLL_INTERVAL, option

    assert DEFAULT_POLL_INTERVAL == DEFAULT_CLOUD_POLL_INTERVAL
    assert option("cloud.poll_interval").min == facts.MIN_POLL_S
    options = validate({"dtus": [], "cloud": {"username": USERNAME, "password": PASSWORD}})
    assert options.cloud.enabled and PASSWORD not in repr(options)
    assert not validate({"dtus": [], "cloud": {"username": USERNAME}}).cloud.enabled


async def test_a_failed_energy_read_is_retried_after_a_minute(
    cloud: Running, fake_time: Time
) -> None:
    from hoymiles_bridge.cloud.poller import ENERGY_RETRY_S

    client, poller, _ = make(cloud, fake_time, stations=(202,))
    async with client:
        await poller.poll_once()  # flow and energy
        fake_time.mono += ENERGY_INTERVAL_S
        cloud.state.fail_path[facts.REAL_DATA] = 1  # the flow answers, the energy read fails
        await poller.poll_once()
        reads = count(cloud, facts.REAL_DATA)
        await poller.poll_once()
        assert count(cloud, facts.REAL_DATA) == reads  # not at every poll
        fake_time.mono += ENERGY_RETRY_S
        await poller.poll_once()
        assert count(cloud, facts.REAL_DATA) == reads + 1
    assert poller.snapshots[0].energy is not None  # the last good counters are kept
