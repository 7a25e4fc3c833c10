"""A stand-in for the Hoymiles cloud (S-Miles Home), built from the documented shapes.

It answers on 127.0.0.1 only, with the envelopes third-party clients saw
(``{"status": "0", "message": "success", "data": ...}``, status as text) and
the faults they reported. Its login really checks an Argon2id hash of the known
password with the account's salt, hands out single-use nonces, and counts
logins against a daily cap. One :class:`CloudState` can serve two hosts: the
right one, and a "wrong" one whose login answers 307 to the right one and
spoils the nonce, as ``neapi`` does for S-Miles Home accounts.

Everything it received is in :attr:`CloudState.requests` for assertions.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer
from argon2.low_level import Type, hash_secret_raw

USERNAME = "home@example.com"
PASSWORD = "correct horse battery"
SALT_HEX = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
HOME_UA = re.compile(r"^sma/ad/[0-9.]+/159/[0-9]+$")

OK = "0"
REFUSED = "1"
TOKEN_ERROR = "token error,please Re-login."
LOGIN_FAILED = "Login failed. Please check your account and password."
APP_VERSION_LOW = "Your app version is low. Please update to the latest version."
HOME_ONLY = "Can only login to the S-Miles Home."
DAILY_CAP = "The number of logins exceeds the daily maximum limit."
DEVICE_LIST_EMPTY = "The device list is empty"


def argon2id_hex(password: str, salt_hex: str) -> str:
    raw = hash_secret_raw(
        password.encode(),
        bytes.fromhex(salt_hex),
        time_cost=3,
        memory_cost=32768,
        parallelism=1,
        hash_len=32,
        type=Type.ID,
        version=0x13,
    )
    return raw.hex()


def md5_sha_form(password: str) -> str:
    data = password.encode()
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    return md5 + "." + base64.b64encode(hashlib.sha256(data).digest()).decode()


@dataclass
class Account:
    password: str = PASSWORD
    #: Hex salt for Argon2id; None: an account of the older md5/sha256 forms.
    salt: str | None = SALT_HEX
    #: Which legacy form the account takes when it has no salt: "md5" or "sha256".
    legacy_form: str = "md5"
    #: An S-Miles Home account: refused without the app's User-Agent.
    home: bool = True
    dc: int = 1
    flag: int = 0


@dataclass
class Request:
    host: str
    path: str
    body: Any
    user_agent: str
    authorization: str


def station_list() -> list[dict[str, Any]]:
    meter = {
        "id": 9001,
        "sn": "MTR001",
        "dtu_sn": "DTU001",
        "type": 16,
        "warn_data": {"connect": True},
        "extend_data": {"name": "ShellyPro3EM", "type": 2, "model": "xxx"},
        "devices": [],
    }
    inverter = {
        "id": 3423,
        "sn": "280024370560",
        "dtu_sn": "DTU001",
        "type": 6,
        "warn_data": {"connect": True, "warn": False},
        "extend_data": {"role": 0},
        "devices": [meter],
    }
    dtu = {
        "id": 75460,
        "sn": "DTU001",
        "dtu_sn": "DTU001",
        "type": 1,
        "warn_data": {"connect": True, "warn": False},
        "extend_data": {"dfs": 1, "inner": 1},
        "devices": [inverter],
    }
    return [
        {
            "sid": 101,
            "sn": "ST101",
            "name": "Balcony",
            "area_code": "AT",
            "classify": 10,
            "devices": [dtu],
            "dc": 1,
            "ak": "xxxx",
            "bt": 1,
        },
        {"sid": "202", "sn": "ST202", "name": "Garage", "devices": []},
    ]


@dataclass
class CloudState:
    """What the stand-in knows and which faults it plays."""

    accounts: dict[str, Account] = field(default_factory=lambda: {USERNAME: Account()})
    #: Logins (successful or not) the cloud takes per day before the cap message.
    daily_cap: int = 50
    logins: int = 0
    nonces: dict[str, str] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    #: Every token handed out dies at once (the next use is refused).
    tokens_die: bool = False
    #: Burst keys in use, and the dly the burst answers with.
    burst_keys: set[str] = field(default_factory=set)
    dly: int = 3000
    #: The 2026-09 fault: every live power is 0 (burst and real_g_c).
    zero_live: bool = False
    #: The next answers of data paths: "500", "badjson", "garbage", "hang", "nostatus".
    faults: list[str] = field(default_factory=list)
    #: Per data path, how many of its next answers are a 500 (other paths answer).
    fail_path: dict[str, int] = field(default_factory=dict)
    #: The burst session ends: the next burst answer has no flow (and a new URI is needed).
    burst_expired_once: bool = False
    #: Settings reads answer "The device list is empty" (2026-09).
    settings_empty: bool = False
    settings: dict[int, dict[str, Any]] = field(
        default_factory=lambda: {1513: {"power": 800}, 1503: {"enable": 0}}
    )
    jobs: dict[str, tuple[int, dict[str, Any], int]] = field(default_factory=dict)
    #: Status reads a job answers "running" (code 2) before it is done.
    job_running_polls: int = 1
    requests: list[Request] = field(default_factory=list)
    #: Stations added to the account after the start (as in the app).
    added_stations: list[dict[str, Any]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    base: str = ""

    def expire_tokens(self) -> None:
        self.tokens.clear()


def _reply(status: str, message: str, data: Any = None) -> web.Response:
    return web.json_response({"status": status, "message": message, "data": data})


def _ok(data: Any) -> web.Response:
    return _reply(OK, "success", data)


class StandInCloud:
    """The stand-in's handlers for one host (``wrong``: the host that redirects logins)."""

    def __init__(self, state: CloudState, *, wrong: bool = False, target: str = "") -> None:
        self.state = state
        self.wrong = wrong
        self.target = target

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{path:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        state = self.state
        path = "/" + request.match_info["path"]
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return web.Response(status=400, text="bad json")
        state.requests.append(
            Request(
                "wrong" if self.wrong else "right",
                path,
                body,
                request.headers.get("User-Agent", ""),
                request.headers.get("Authorization", ""),
            )
        )
        if path.startswith("/iam/"):
            return self.auth(path, body, request)
        if path.startswith("/rds/api/0/burst/get"):
            return await self.burst(body, request)
        return await self.data(path, body, request)

    # --- auth -----------------------------------------------------------------------

    def auth(self, path: str, body: Any, request: web.Request) -> web.StreamResponse:
        state = self.state
        if path in ("/iam/pub/0/c/login_c", "/iam/pub/0/auth/login"):
            return _reply(REFUSED, APP_VERSION_LOW)
        if path == "/iam/pub/0/c/region_c":
            account = state.accounts.get(body.get("email", ""))
            if account is None:
                return _ok({"login_url": state.base, "dc": -1})
            return _ok({"login_url": state.base, "dc": account.dc})
        user = body.get("u", "")
        account = state.accounts.get(user)
        if (
            account is not None
            and account.home
            and not HOME_UA.match(request.headers.get("User-Agent", ""))
        ):
            return _reply(REFUSED, HOME_ONLY)
        if path == "/iam/pub/3/auth/pre-insp":
            if account is None:
                return _ok({"n": secrets.token_hex(8), "a": None, "v": -1, "dc": -1, "f": 0})
            nonce = secrets.token_hex(16)
            state.nonces[nonce] = user
            return _ok(
                {
                    "n": nonce,
                    "a": account.salt,
                    "v": 3 if account.salt else 2,
                    "dc": account.dc,
                    "f": account.flag,
                    "t": 159,
                }
            )
        if path == "/iam/pub/3/auth/login":
            nonce = body.get("n", "")
            if self.wrong:
                # neapi: a 307 to the auth host, and the nonce is spoilt.
                state.nonces.pop(nonce, None)
                raise web.HTTPTemporaryRedirect(self.target + path)
            if state.logins >= state.daily_cap:
                return _reply(REFUSED, DAILY_CAP)
            state.logins += 1
            if state.nonces.pop(nonce, None) != user or account is None:
                return _reply(REFUSED, LOGIN_FAILED)
            if account.salt:
                expected = argon2id_hex(account.password, account.salt)
            elif account.legacy_form == "md5":
                expected = md5_sha_form(account.password)
            else:
                expected = hashlib.sha256(account.password.encode()).hexdigest()
            if body.get("ch") != expected:
                return _reply(REFUSED, LOGIN_FAILED)
            token = "3." + secrets.token_hex(12) + ".1"
            state.tokens.add(token)
            if state.tokens_die:
                state.tokens.discard(token)
            return _ok({"token": token})
        return web.Response(status=404)

    # --- data ----------------------------------------------------------------------------

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization", "") in self.state.tokens

    async def _fault(self) -> web.StreamResponse | None:
        state = self.state
        if not state.faults:
            return None
        fault = state.faults.pop(0)
        if fault == "500":
            return web.Response(status=500, text="Internal Server Error")
        if fault == "badjson":
            return web.Response(status=200, text="{not json", content_type="application/json")
        if fault == "nostatus":
            return web.json_response({"data": {}})
        if fault == "hang":
            await state.release.wait()
            return web.Response(status=504)
        if fault == "garbage":
            return _ok(
                {
                    "flow": "x",
                    "dly": "soon",
                    "soc": [1],
                    "power": {"pv": "abc", "bat": None, "grid": {}, "load": True},
                    "list": [{"sid": "x"}, 5],
                    "reflux_station_data": "none",
                    "today_eq": "-",
                    "real_data": {"bms_soc": "NaN", "bms_temp": "1e999"},
                }
            )
        raise AssertionError(fault)

    async def data(self, path: str, body: Any, request: web.Request) -> web.StreamResponse:
        state = self.state
        fault = await self._fault()
        if fault is not None:
            return fault
        if state.fail_path.get(path, 0) > 0:
            state.fail_path[path] -= 1
            return web.Response(status=500, text="Internal Server Error")
        if not self._authorised(request):
            return _reply(REFUSED, TOKEN_ERROR)
        if path == "/pvmc/api/0/station/select_by_page_c":
            stations = station_list() + state.added_stations
            return _ok({"page": 1, "page_size": 50, "total": len(stations), "list": stations})
        if path == "/pvmc/api/0/station/get_sd_uri_c":
            key = secrets.token_hex(8)
            state.burst_keys.add(key)
            return _ok({"uri": f"{state.base}/rds/api/0/burst/get?k={key}&t=1738851150"})
        if path == "/pvmc/api/0/station_data/real_g_c":
            zero = state.zero_live
            return _ok(
                {
                    "is_null": 0,
                    "today_eq": "1",
                    "month_eq": "20",
                    "year_eq": "104",
                    "total_eq": "125",
                    "real_power": "0",
                    "data_time": "2025-02-06 15:12:30",
                    "reflux_station_data": {
                        "pv_power": "0" if zero else "310.5",
                        "grid_power": "0" if zero else "6.2",
                        "load_power": "0" if zero else "252.0",
                        "bms_power": "0" if zero else "245.8",
                        "bms_soc": "53.0",
                        "bms_in_eq": "285",
                        "bms_out_eq": "641",
                    },
                }
            )
        if path == "/pvmc/api/0/inverter/find_c":
            return _ok(
                {
                    "id": body.get("id"),
                    "sn": "280024370560",
                    "warn_data": {"connect": True, "warn": False},
                    "real_data": {"bms_soc": "53.0", "bms_temp": "22.0", "bms_state": 0},
                }
            )
        if path.startswith("/pvmc/api/0/station_ctl/"):
            return self.settings(path, body)
        return web.Response(status=404)

    def settings(self, path: str, body: Any) -> web.StreamResponse:
        state = self.state
        if path.endswith("/setting_status_c"):
            job = state.jobs.get(str(body.get("id")))
            if job is None:
                return _reply(REFUSED, "job not found")
            action, values, left = job
            if left > 0:
                state.jobs[str(body.get("id"))] = (action, values, left - 1)
                return _ok({"code": 2, "data": None})
            # The status data may be a JSON string; the stand-in sends one.
            return _ok(json.dumps({"code": 0, "data": values}))
        if state.settings_empty:
            return _reply(REFUSED, DEVICE_LIST_EMPTY)
        action = int(body.get("action", 0))
        values = dict(body.get("data", {}))
        values.pop("sid", None)
        if path.endswith("/write_c"):
            state.settings[action] = values
        job = secrets.token_hex(6)
        state.jobs[job] = (action, dict(state.settings.get(action, {})), state.job_running_polls)
        return _ok(job)

    async def burst(self, body: Any, request: web.Request) -> web.StreamResponse:
        state = self.state
        fault = await self._fault()
        if fault is not None:
            return fault
        if not self._authorised(request) or request.query.get("k") not in state.burst_keys:
            return _reply(REFUSED, TOKEN_ERROR)
        if state.burst_expired_once:
            state.burst_expired_once = False
            state.burst_keys.discard(request.query.get("k", ""))
            return _ok({"dly": 3000})
        zero = state.zero_live
        return _ok(
            {
                "flow": [{"i": 40, "o": 20, "v": 245.8}, {"i": 1, "o": 40, "v": 252.0}],
                "dly": state.dly,
                "con": 1,
                "soc": 53.0,
                "power": {
                    "pv": 0.0 if zero else 310.5,
                    "bat": 0.0 if zero else 245.8,
                    "grid": 0.0 if zero else 6.2,
                    "load": 0.0 if zero else 252.0,
                    "sp": 0.0,
                },
                "brs": 2,
                "bhs": 0,
                "ems": 0,
            }
        )


@dataclass
class Running:
    state: CloudState
    right: TestServer
    wrong: TestServer

    @property
    def url(self) -> str:
        return str(self.right.make_url("")).rstrip("/")

    @property
    def wrong_url(self) -> str:
        return str(self.wrong.make_url("")).rstrip("/")

    async def close(self) -> None:
        self.state.release.set()
        await self.wrong.close()
        await self.right.close()


async def start(state: CloudState | None = None) -> Running:
    """The stand-in on two ports of 127.0.0.1: the right host and the redirecting one."""
    state = state or CloudState()
    right = TestServer(StandInCloud(state).app(), host="127.0.0.1")
    await right.start_server()
    state.base = str(right.make_url("")).rstrip("/")
    wrong = TestServer(StandInCloud(state, wrong=True, target=state.base).app(), host="127.0.0.1")
    await wrong.start_server()
    return Running(state, right, wrong)
