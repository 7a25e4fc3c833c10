"""The cloud client against the stand-in cloud (tests/cloud_standin.py) on 127.0.0.1.

Every login variant (Argon2id, the md5/sha256 forms without a salt, a
redirect that spoils the nonce) and every fault of issue "the Hoymiles cloud as
a source": wrong password, unknown account, the S-Miles Home User-Agent rule,
the retired md5 login, the daily cap, token expiry, 5xx, timeouts, bad JSON,
garbage values, the 2026-09 all-zero fault and the settings jobs.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from argon2.low_level import Type, hash_secret

from hoymiles_bridge.cloud import client as client_module
from hoymiles_bridge.cloud import facts
from hoymiles_bridge.cloud.client import (
    CloudClient,
    Credentials,
    Endpoints,
    Exchange,
    LoginState,
    argon2_hex,
    next_utc_day,
)
from hoymiles_bridge.errors import (
    CloudLoginCapError,
    CloudLoginError,
    CloudRejectedError,
    CloudResponseError,
    CloudTokenError,
    CloudUnavailableError,
    CloudWriteRefusedError,
    InvalidArgumentError,
)
from tests.cloud_standin import PASSWORD, SALT_HEX, USERNAME, Account, CloudState, Running, start


@pytest.fixture
async def cloud() -> AsyncIterator[Running]:
    running = await start()
    yield running
    await running.close()


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 22, 30, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def _no_sleep(_: float) -> None:
    return None


def make_client(cloud: Running, url: str | None = None, **kwargs: Any) -> CloudClient:
    kwargs.setdefault("sleep", _no_sleep)
    return CloudClient(
        Credentials(USERNAME, kwargs.pop("password", PASSWORD)),
        endpoints=Endpoints.at(url or cloud.url),
        **kwargs,
    )


def paths(cloud: Running) -> list[str]:
    return [r.path for r in cloud.state.requests]


# --- the login ------------------------------------------------------------------------


async def test_argon2id_login_sends_the_app_user_agent_and_the_raw_token(cloud: Running) -> None:
    async with make_client(cloud) as client:
        stations = await client.stations()
        assert client.state is LoginState.LOGGED_IN
        assert client.login_method == "argon2id"
        assert client.logins == 1
        token = client.token
    assert paths(cloud)[:4] == [
        facts.REGION,
        facts.PRE_INSP,
        facts.LOGIN,
        facts.STATIONS,
    ]
    login = cloud.state.requests[2]
    assert set(login.body) == {"u", "ch", "n"}
    assert login.body["ch"] == argon2_hex(PASSWORD, bytes.fromhex(SALT_HEX))
    data = cloud.state.requests[3]
    assert data.authorization == token and not data.authorization.startswith("Bearer")
    # The account's dc (1) from region_c goes into the User-Agent from then on.
    assert [r.user_agent for r in cloud.state.requests] == [
        "sma/ad/2.10.0/159/0",
        *["sma/ad/2.10.0/159/1"] * 3,
    ]
    assert [s.sid for s in stations] == [101, 202]
    assert stations[0].name == "Balcony"
    assert [d.id for d in stations[0].battery_inverters()] == [3423]
    assert [d.kind for d in stations[0].all_devices()] == [1, 6, 16]


def test_the_argon2id_parameters_are_the_documented_ones() -> None:
    salt = bytes.fromhex(SALT_HEX)
    encoded = hash_secret(
        PASSWORD.encode(),
        salt,
        time_cost=3,
        memory_cost=32768,
        parallelism=1,
        hash_len=32,
        type=Type.ID,
        version=19,
    ).decode()
    assert encoded.startswith("$argon2id$v=19$m=32768,t=3,p=1$")
    digest = encoded.rsplit("$", 1)[1]
    raw = base64.b64decode(digest + "=" * (-len(digest) % 4))
    assert argon2_hex(PASSWORD, salt) == raw.hex()
    assert len(argon2_hex(PASSWORD, salt)) == 64


async def test_an_account_without_salt_logs_in_with_the_md5_form(cloud: Running) -> None:
    cloud.state.accounts[USERNAME] = Account(salt=None)
    async with make_client(cloud) as client:
        await client.login()
        assert client.login_method == "legacy"
        assert client.logins == 1


async def test_the_sha256_form_is_tried_with_a_fresh_nonce(cloud: Running) -> None:
    cloud.state.accounts[USERNAME] = Account(salt=None, legacy_form="sha256")
    async with make_client(cloud) as client:
        await client.login()
        assert client.login_method == "legacy"
        assert client.logins == 2
    logins = [r.body for r in cloud.state.requests if r.path == facts.LOGIN]
    assert len(logins) == 2 and logins[0]["n"] != logins[1]["n"]
    assert paths(cloud).count(facts.PRE_INSP) == 2


async def test_a_redirected_login_starts_again_with_a_new_nonce(cloud: Running) -> None:
    async with make_client(cloud, url=cloud.wrong_url) as client:
        await client.login()
        assert client.state is LoginState.LOGGED_IN
    auth = [(r.host, r.path) for r in cloud.state.requests]
    assert auth == [
        ("wrong", facts.REGION),
        ("wrong", facts.PRE_INSP),
        ("wrong", facts.LOGIN),
        ("right", facts.REGION),
        ("right", facts.PRE_INSP),
        ("right", facts.LOGIN),
    ]
    first, second = (r.body["n"] for r in cloud.state.requests if r.path == facts.LOGIN)
    assert first != second


async def test_the_redirect_spoils_the_nonce(cloud: Running) -> None:
    # What a client that follows the 307 with the same body gets.
    headers = {"User-Agent": "sma/ad/2.10.0/159/1"}
    async with aiohttp.ClientSession() as session:
        async with session.post(
            cloud.wrong_url + facts.PRE_INSP, json={"u": USERNAME}, headers=headers
        ) as response:
            nonce = (await response.json())["data"]["n"]
        body = {"u": USERNAME, "ch": argon2_hex(PASSWORD, bytes.fromhex(SALT_HEX)), "n": nonce}
        async with session.post(
            cloud.wrong_url + facts.LOGIN, json=body, headers=headers
        ) as response:
            answer = await response.json()
    assert answer["status"] == "1" and "check your account" in answer["message"]


def test_only_trusted_hosts_get_the_login_or_the_token() -> None:
    endpoints = Endpoints()
    assert endpoints.trusts("https://euapi.hoymiles.com/iam/pub/3/auth/login")
    assert endpoints.trusts("https://eurt.hoymiles.com/rds/api/0/burst/get?k=1&t=2")
    assert not endpoints.trusts("http://euapi.hoymiles.com/iam")
    assert not endpoints.trusts("https://hoymiles.com.example.net/iam")
    assert not endpoints.trusts("https://example.net/iam")
    assert not endpoints.trusts("/relative")
    local = Endpoints.at("http://127.0.0.1:8080/")
    assert local.auth == "http://127.0.0.1:8080"
    assert local.trusts("http://127.0.0.1:9090/x")
    assert not local.trusts("https://127.0.0.2/x")
    with pytest.raises(InvalidArgumentError):
        Endpoints.at("ftp://127.0.0.1")


async def test_a_wrong_password_is_refused_once_and_not_retried(cloud: Running) -> None:
    async with make_client(cloud, password="wrong password") as client:
        with pytest.raises(CloudLoginError) as first:
            await client.stations()
        sent = len(cloud.state.requests)
        with pytest.raises(CloudLoginError) as second:
            await client.flow(101)
        assert first.value is second.value
        assert len(cloud.state.requests) == sent  # no second attempt reached the cloud
        assert client.state is LoginState.REFUSED
    assert "cloud.password" in str(first.value)
    assert first.value.reason == "credentials"


async def test_an_unknown_account_is_named(cloud: Running) -> None:
    client = CloudClient(
        Credentials("nobody@example.com", PASSWORD), endpoints=Endpoints.at(cloud.url)
    )
    async with client:
        with pytest.raises(CloudLoginError, match="does not know this account"):
            await client.login()


async def test_a_password_to_renew_is_said_plainly(cloud: Running) -> None:
    cloud.state.accounts[USERNAME] = Account(flag=1)
    async with make_client(cloud) as client:
        with pytest.raises(CloudLoginError, match="new password"):
            await client.login()


async def test_home_accounts_need_the_app_user_agent(
    cloud: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module.facts, "USER_AGENT", "Python/3.11 aiohttp")
    async with make_client(cloud) as client:
        with pytest.raises(CloudLoginError) as caught:
            await client.login()
    assert caught.value.reason == "home_app_only"
    assert "S-Miles Home" in str(caught.value)


async def test_the_retired_md5_login_says_app_version_is_low(cloud: Running) -> None:
    async with make_client(cloud) as client:
        for path in facts.RETIRED_LOGINS:
            with pytest.raises(CloudLoginError) as caught:
                await client._post(cloud.url + path, {"user_name": USERNAME}, token=None)
            assert caught.value.reason == "app_version_low"
            assert "app version is low" in str(caught.value)


async def test_the_daily_cap_waits_for_the_next_utc_day(cloud: Running) -> None:
    cloud.state.daily_cap = 0
    clock = Clock()
    async with make_client(cloud, clock=clock) as client:
        with pytest.raises(CloudLoginCapError) as caught:
            await client.login()
        retry_at = datetime(2026, 12, 2, 0, 5, tzinfo=UTC)
        assert caught.value.retry_at == retry_at == client.retry_at
        assert "2026-12-02 00:05 UTC" in str(caught.value)
        assert client.state is LoginState.CAPPED
        sent = len(cloud.state.requests)
        clock.now += timedelta(hours=1)
        with pytest.raises(CloudLoginCapError):
            await client.stations()
        assert len(cloud.state.requests) == sent  # no login before the next day
        clock.now = retry_at
        cloud.state.daily_cap = 10
        await client.login()
        assert client.state is LoginState.LOGGED_IN


def test_next_utc_day() -> None:
    late = datetime(2026, 12, 31, 23, 59, tzinfo=UTC)
    assert next_utc_day(late) == datetime(2027, 1, 1, 0, 5, tzinfo=UTC)


async def test_an_expired_token_means_one_new_login(cloud: Running) -> None:
    async with make_client(cloud) as client:
        await client.stations()
        cloud.state.expire_tokens()
        await client.stations()
        assert client.logins == 2


async def test_a_token_refused_right_after_login_is_an_error(cloud: Running) -> None:
    cloud.state.tokens_die = True
    async with make_client(cloud) as client:
        with pytest.raises(CloudTokenError, match="again right after a new login"):
            await client.stations()
        assert client.logins == 2


async def test_a_kept_token_is_used_without_a_login(cloud: Running) -> None:
    async with make_client(cloud) as first:
        await first.login()
        token = first.token
    cloud.state.requests.clear()
    async with make_client(cloud, token=token) as second:
        await second.stations()
        assert second.logins == 0
    assert paths(cloud) == [facts.STATIONS]


# --- data -------------------------------------------------------------------------------


async def test_the_live_flow_and_its_dly(cloud: Running) -> None:
    async with make_client(cloud) as client:
        flow = await client.flow(101)
        again = await client.flow(101)
    assert (flow.soc, flow.pv, flow.battery, flow.grid, flow.load) == (
        53.0,
        310.5,
        245.8,
        6.2,
        252.0,
    )
    assert flow.delay_ms == 3000 and flow.connected and not flow.expired
    assert again == flow
    assert paths(cloud).count(facts.BURST_URI) == 1  # the URI is kept


async def test_a_dly_of_10_s_ends_the_live_session(cloud: Running) -> None:
    cloud.state.dly = facts.DLY_SESSION_END_MS
    async with make_client(cloud) as client:
        await client.flow(101)
        await client.flow(101)
    assert paths(cloud).count(facts.BURST_URI) == 2


async def test_an_expired_burst_gets_a_new_uri(cloud: Running) -> None:
    cloud.state.burst_expired_once = True
    async with make_client(cloud) as client:
        flow = await client.flow(101)
    assert not flow.expired and flow.pv == 310.5
    assert paths(cloud).count(facts.BURST_URI) == 2


async def test_the_2026_09_fault_is_visible(cloud: Running) -> None:
    cloud.state.zero_live = True
    async with make_client(cloud) as client:
        flow = await client.flow(101)
        data = await client.station_data(101)
    assert flow.all_zero and flow.soc == 53.0
    assert data.powers_all_zero


async def test_station_data_and_battery_from_strings(cloud: Running) -> None:
    async with make_client(cloud) as client:
        data = await client.station_data(101)
        battery = await client.battery(101, 3423)
    assert (data.today, data.month, data.year, data.total) == (1.0, 20.0, 104.0, 125.0)
    assert (data.battery_in, data.battery_out, data.soc) == (285.0, 641.0, 53.0)
    assert data.data_time == "2025-02-06 15:12:30"
    assert (battery.soc, battery.temperature, battery.state) == (53.0, 22.0, 0)
    assert battery.serial == "280024370560" and battery.connected


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("500", CloudUnavailableError),
        ("badjson", CloudResponseError),
        ("nostatus", CloudResponseError),
    ],
)
async def test_server_faults_are_typed_errors(
    cloud: Running, fault: str, error: type[Exception]
) -> None:
    async with make_client(cloud) as client:
        await client.login()
        cloud.state.faults.append(fault)
        with pytest.raises(error):
            await client.station_data(101)
        assert (await client.station_data(101)).today == 1.0  # and the next call works


async def test_a_timeout_is_a_typed_error(cloud: Running) -> None:
    async with make_client(cloud, timeout=0.2) as client:
        await client.login()
        cloud.state.faults.append("hang")
        with pytest.raises(CloudUnavailableError, match="did not answer"):
            await client.flow(101)


async def test_no_connection_is_a_typed_error() -> None:
    client = CloudClient(
        Credentials(USERNAME, PASSWORD), endpoints=Endpoints.at("http://127.0.0.1:9")
    )
    async with client:
        with pytest.raises(CloudUnavailableError, match="cannot reach"):
            await client.login()
        assert client.state is LoginState.LOGGED_OUT


async def test_garbage_values_become_unknown(cloud: Running) -> None:
    async with make_client(cloud) as client:
        await client.login()
        await client.flow(101)
        cloud.state.faults.append("garbage")
        flow = await client.flow(101)
        cloud.state.faults.append("garbage")
        data = await client.station_data(101)
        cloud.state.faults.append("garbage")
        battery = await client.battery(101, 3423)
        cloud.state.faults.append("garbage")
        stations = await client.stations()
    assert (flow.soc, flow.pv, flow.battery, flow.grid, flow.load) == (None,) * 5
    assert flow.delay_ms is None
    assert data.today is None and data.battery_in is None
    assert battery.soc is None and battery.temperature is None
    assert stations == ()


# --- settings ------------------------------------------------------------------------------


async def test_a_settings_read_waits_for_its_job(cloud: Running) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async with make_client(cloud, sleep=sleep) as client:
        assert await client.on_grid_power(101) == 800.0
    assert waits == [facts.JOB_POLL_S]
    read = next(r for r in cloud.state.requests if r.path == facts.SETTING_READ)
    assert read.body == {"action": 1513, "data": {"sid": 101}}


async def test_writes_are_refused_unless_allowed(cloud: Running) -> None:
    async with make_client(cloud) as client:
        with pytest.raises(CloudWriteRefusedError, match="allow_writes"):
            await client.set_on_grid_power(101, 500)
        with pytest.raises(CloudWriteRefusedError):
            await client.set_grid_charge(101, True)
    assert facts.SETTING_WRITE not in paths(cloud)


async def test_writes_when_allowed(cloud: Running) -> None:
    async with make_client(cloud, allow_writes=True) as client:
        await client.set_on_grid_power(101, 500)
        assert await client.on_grid_power(101) == 500.0
        await client.set_grid_charge(101, True)
        with pytest.raises(CloudWriteRefusedError, match="0 to 6000 W"):
            await client.set_on_grid_power(101, 7000)
    writes = [r.body for r in cloud.state.requests if r.path == facts.SETTING_WRITE]
    assert writes == [
        {"action": 1513, "data": {"power": 500, "sid": 101}},
        {"action": 1503, "data": {"enable": 1, "target": 2, "type": 1, "sid": 101}},
    ]


async def test_settings_of_the_2026_09_fault(cloud: Running) -> None:
    cloud.state.settings_empty = True
    async with make_client(cloud) as client:
        with pytest.raises(CloudRejectedError) as caught:
            await client.on_grid_power(101)
    assert caught.value.reason == "device_list_empty"


async def test_a_job_that_never_finishes(cloud: Running) -> None:
    cloud.state.job_running_polls = 10_000
    async with make_client(cloud) as client:
        with pytest.raises(CloudUnavailableError, match="did not finish"):
            await client.on_grid_power(101)


# --- secrets -------------------------------------------------------------------------------


async def test_no_password_token_nonce_or_hash_anywhere(
    cloud: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    records: list[Exchange] = []
    shown: list[str] = []
    async with make_client(cloud, url=cloud.wrong_url, observer=records.append) as client:
        await client.stations()
        cloud.state.expire_tokens()
        await client.flow(101)
        await client.station_data(101)
        shown += [repr(client), str(client.state)]
        token = client.token
    async with make_client(cloud, password="wrong password", observer=records.append) as bad:
        with pytest.raises(CloudLoginError) as caught:
            await bad.login()
        shown += [repr(bad), str(caught.value)]
    shown.append(repr(Credentials(USERNAME, PASSWORD)))
    secrets = {PASSWORD, "wrong password", USERNAME, token or "?"}
    for request in cloud.state.requests:
        for key in ("n", "ch"):
            if isinstance(request.body, dict) and key in request.body:
                secrets.add(str(request.body[key]))
        if request.authorization:
            secrets.add(request.authorization)
        if "k=" in request.path:
            secrets.add(request.path)
    # The burst URI's key, and every nonce the cloud handed out.
    for request in cloud.state.requests:
        if request.path == facts.LOGIN:
            secrets.add(request.body["n"])
    # Our log lines (the stand-in's own access log shows what it received).
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("hoymiles_bridge")]
    everything = "\n".join([*ours, *shown, *(repr(r) for r in records)])
    assert records and any(r.url.endswith(facts.LOGIN) for r in records)
    assert "k=" not in everything  # burst URIs are shown without their key
    leaked = [s for s in secrets if s and s in everything]
    assert not leaked


def test_credentials_need_both_parts() -> None:
    with pytest.raises(InvalidArgumentError):
        Credentials("", PASSWORD)
    with pytest.raises(InvalidArgumentError):
        Credentials(USERNAME, "")


def test_state_helpers() -> None:
    assert CloudState().daily_cap > 0
