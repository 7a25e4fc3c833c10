"""The Hoymiles cloud client: the S-Miles Home login and the station data.

The login (v3, 2026) is ``region_c`` (the account's data centre), then
``pre-insp`` (a nonce and the account's salt), then the credential hash
``ch`` - Argon2id of the password with the salt, or, for an account without
a salt, the older md5/sha256 forms, one fresh nonce each - and ``login``,
which gives a token. The token goes raw into ``Authorization`` (no
"Bearer"); every request carries the S-Miles Home app's User-Agent, without
which Home accounts are refused. The login goes to the EU auth host; a
redirect (which invalidates the nonce) is followed once, to a trusted host,
by starting again there.

The client logs in when it needs a token, keeps it, and logs in again once
when the cloud refuses it. It never retries a login the cloud refused for
good (a wrong password: the same error again, without a request) and makes
no login before the next UTC day once the daily cap is reached.

Nothing the cloud sends is trusted: answers are size-capped, parsed by
:mod:`hoymiles_bridge.cloud.models`, and a bad one raises a typed
:class:`~hoymiles_bridge.errors.CloudError`. No password, hash, nonce or
token appears in a log line, a repr or an :class:`Exchange`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Self
from urllib.parse import urljoin, urlsplit

import aiohttp

from hoymiles_bridge.cloud import facts
from hoymiles_bridge.cloud.models import (
    BatteryInfo,
    Flow,
    SettingResult,
    Station,
    StationData,
    mapping,
    number,
    parse_battery,
    parse_flow,
    parse_station_data,
    parse_station_page,
    text,
    whole,
)
from hoymiles_bridge.errors import (
    CloudError,
    CloudLoginCapError,
    CloudLoginError,
    CloudRejectedError,
    CloudResponseError,
    CloudTokenError,
    CloudUnavailableError,
    CloudWriteRefusedError,
    InvalidArgumentError,
)
from hoymiles_bridge.protocol.secrets import mask_cloud

_LOGGER = logging.getLogger(__name__)

#: Seconds one request may take (one client uses 10 s for the burst).
REQUEST_TIMEOUT: Final = 10.0
#: The largest answer read; a longer one is refused, not parsed.
MAX_BODY: Final = 1 << 20
#: The longest token, nonce or job id taken from the cloud.
MAX_TOKEN: Final = 4096
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, slots=True)
class Credentials:
    """The account's user name (e-mail) and password; neither is in the repr."""

    username: str = field(repr=False)
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.username.strip() or not self.password:
            raise InvalidArgumentError("the cloud needs a user name and a password")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True, slots=True)
class Endpoints:
    """The hosts the client talks to (``base_url`` puts every route on one host)."""

    auth: str = facts.AUTH_HOST
    data: str = facts.DATA_HOST
    real_data: str = facts.REAL_DATA_HOST

    @classmethod
    def at(cls, base_url: str) -> Endpoints:
        """Every route on ``base_url`` (a stand-in server, a proxy)."""
        parts = urlsplit(base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidArgumentError(f"{base_url[:80]!r} is not an http(s) URL")
        root = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        return cls(root, root, root)

    def url(self, path: str) -> str:
        route = facts.ROUTES.get(path, facts.Route.DATA)
        host = {
            facts.Route.AUTH: self.auth,
            facts.Route.DATA: self.data,
            facts.Route.REAL_DATA: self.real_data,
        }[route]
        return host + path

    def trusts(self, url: str) -> bool:
        """Whether ``url`` may receive a login hash or the token.

        An https host of the cloud's domain, or a host of these endpoints
        (any port, same scheme: a stand-in's other port).
        """
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if not host:
            return False
        if parts.scheme == "https" and (
            host == facts.TRUSTED_DOMAIN or host.endswith("." + facts.TRUSTED_DOMAIN)
        ):
            return True
        own = {
            (urlsplit(h).scheme, (urlsplit(h).hostname or "").lower())
            for h in (self.auth, self.data, self.real_data)
        }
        return (parts.scheme, host) in own


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request to the cloud and what came back, secrets masked (for the inspector).

    ``url`` has no query (the burst URI's key is a secret too); ``request``
    and ``response`` are the JSON bodies with :func:`mask_cloud` applied;
    ``status`` is the HTTP status (``None`` when there was no answer) and
    ``error`` says in words what went wrong.
    """

    at: float
    url: str
    request: Any
    status: int | None
    response: Any = None
    error: str = ""


ExchangeObserver = Callable[[Exchange], None]


class LoginState(enum.Enum):
    """Where the client's login stands."""

    LOGGED_OUT = "logged out"
    LOGGED_IN = "logged in"
    REFUSED = "login refused"
    CAPPED = "daily login limit"


class _RedirectedError(CloudError):
    """The cloud answered with a redirect to ``location``."""

    def __init__(self, location: str) -> None:
        super().__init__("the cloud redirected the request")
        self.location = location


@dataclass(frozen=True, slots=True)
class _Challenge:
    """pre-insp's answer: the nonce and, for Argon2id accounts, the salt."""

    nonce: str = field(repr=False)
    salt: bytes | None = field(repr=False)
    version: int | None


def argon2_hex(password: str, salt: bytes) -> str:
    """``ch`` of an Argon2id account: the hash as the S-Miles Home app computes it.

    argon2-cffi loads with the first login: a bridge without the cloud never does.
    """
    from argon2.exceptions import HashingError
    from argon2.low_level import Type, hash_secret_raw

    try:
        raw = hash_secret_raw(
            password.encode("utf-8"),
            salt,
            time_cost=facts.ARGON2_TIME_COST,
            memory_cost=facts.ARGON2_MEMORY_KIB,
            parallelism=facts.ARGON2_PARALLELISM,
            hash_len=facts.ARGON2_HASH_LEN,
            type=Type.ID,
            version=facts.ARGON2_VERSION,
        )
    except HashingError:
        raise CloudResponseError("the cloud's salt cannot be used for Argon2id") from None
    return raw.hex()


def legacy_hashes(password: str) -> tuple[str, ...]:
    """``ch`` forms of an account without a salt, in the order they are tried."""
    data = password.encode("utf-8")
    md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
    sha = base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")
    return (f"{md5}.{sha}", hashlib.sha256(data).hexdigest())


def _salt(value: Any) -> bytes | None:
    """The salt of pre-insp's ``a``: hex (documented), or base64 (accepted defensively)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 1024:
        raise CloudResponseError("the cloud's salt is not text")
    try:
        return bytes.fromhex(value)
    except ValueError:
        pass
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise CloudResponseError("the cloud's salt is neither hex nor base64") from None


def next_utc_day(now: datetime) -> datetime:
    """When a login may be tried again after the daily cap: the next UTC day, plus a margin."""
    day = now.astimezone(UTC).date() + timedelta(days=1)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start + timedelta(seconds=facts.DAILY_CAP_MARGIN_S)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _shorten(message: str) -> str:
    return text(message)[:160] or "no message"


def _rejection(what: str, status: str, message: str, now: datetime) -> CloudRejectedError:
    """The error for a refusal of ``what`` with the cloud's ``message``, in plain words."""
    said = _shorten(message)
    kind = facts.refusal(message)
    match kind:
        case facts.Refusal.TOKEN:
            return CloudTokenError(
                f"the cloud refused the session token ({said})", status=status, reason=kind.value
            )
        case facts.Refusal.DAILY_CAP:
            retry_at = next_utc_day(now)
            return CloudLoginCapError(
                "the account reached the cloud's daily number of logins; the next attempt is at "
                f"{retry_at:%Y-%m-%d %H:%M} UTC",
                retry_at=retry_at,
                status=status,
            )
        case facts.Refusal.CREDENTIALS:
            return CloudLoginError(
                "the cloud refused the login: check cloud.username and cloud.password "
                f"(the cloud said: {said})",
                status=status,
                reason=kind.value,
            )
        case facts.Refusal.HOME_APP_ONLY:
            return CloudLoginError(
                "the cloud lets this account log in only with the S-Miles Home app and "
                f"refused the app's User-Agent the bridge sends (the cloud said: {said})",
                status=status,
                reason=kind.value,
            )
        case facts.Refusal.APP_VERSION_LOW:
            return CloudLoginError(
                "the cloud refused a retired login method ('app version is low'): "
                f"this version of the bridge needs an update (the cloud said: {said})",
                status=status,
                reason=kind.value,
            )
        case _:
            return CloudRejectedError(
                f"the cloud refused {what}: {said}", status=status, reason=kind.value
            )


class CloudClient:
    """One account's connection to the Hoymiles cloud (see the module docstring).

    ``token`` is a token kept from an earlier run (tried before logging in).
    ``clock`` gives the current UTC time (the daily cap), ``sleep`` waits
    between a settings job's status reads; both are for tests. ``observer``
    sees every :class:`Exchange`, masked.
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        endpoints: Endpoints | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout: float = REQUEST_TIMEOUT,
        allow_writes: bool = False,
        token: str | None = None,
        observer: ExchangeObserver | None = None,
        clock: Callable[[], datetime] = _utcnow,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._credentials = credentials
        self._endpoints = endpoints or Endpoints()
        self._session = session
        self._own_session = session is None
        self._timeout = timeout
        self._allow_writes = allow_writes
        self._token = token or None
        self._observer = observer
        self._clock = clock
        self._sleep = sleep
        self._dc = facts.DEFAULT_DC
        self._login_lock = asyncio.Lock()
        self._refused: CloudLoginError | None = None
        self._cap_until: datetime | None = None
        self._burst: dict[int, str] = {}
        self.state = LoginState.LOGGED_IN if self._token else LoginState.LOGGED_OUT
        #: Logins made (successful or not) since the client was made.
        self.logins = 0
        #: How the last successful login hashed the password: ``argon2id`` or ``legacy``.
        self.login_method = ""

    def __repr__(self) -> str:
        return f"<CloudClient {self.state.value}>"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def token(self) -> str | None:
        """The session token, to keep for the next run (never log it)."""
        return self._token

    def use_token(self, token: str | None) -> None:
        """Start from a token kept from an earlier run, unless the client has one."""
        if token and not self._token:
            self._token = token
            self.state = LoginState.LOGGED_IN

    @property
    def allow_writes(self) -> bool:
        return self._allow_writes

    @property
    def retry_at(self) -> datetime | None:
        """When a login is allowed again after the daily cap, or ``None``."""
        return self._cap_until

    @property
    def user_agent(self) -> str:
        return facts.USER_AGENT.format(
            version=facts.APP_VERSION, tenant=facts.TENANT_ID, dc=self._dc
        )

    # --- the login ---------------------------------------------------------------

    async def login(self) -> None:
        """Log in now (also with a token at hand); raises a :class:`CloudLoginError` or worse."""
        async with self._login_lock:
            await self._login_locked()

    async def _login_locked(self) -> None:
        if self._refused is not None:
            raise self._refused
        now = self._clock()
        if self._cap_until is not None:
            if now < self._cap_until:
                raise CloudLoginCapError(
                    "the account reached the cloud's daily number of logins; the next attempt "
                    f"is at {self._cap_until:%Y-%m-%d %H:%M} UTC",
                    retry_at=self._cap_until,
                )
            self._cap_until = None
        self._token = None
        self._burst.clear()
        self.state = LoginState.LOGGED_OUT
        try:
            token = await self._login_flow()
        except CloudLoginCapError as err:
            self._cap_until = err.retry_at
            self.state = LoginState.CAPPED
            raise
        except CloudLoginError as err:
            self._refused = err
            self.state = LoginState.REFUSED
            raise
        self._token = token
        self.state = LoginState.LOGGED_IN
        _LOGGER.info("cloud: logged in (%s)", self.login_method)

    async def _login_flow(self) -> str:
        host = self._endpoints.auth
        for hop in range(2):
            try:
                await self._region(host)
                return await self._login_at(host)
            except _RedirectedError as moved:
                if hop or not self._endpoints.trusts(moved.location):
                    raise CloudResponseError(
                        "the cloud redirected the login to a host the bridge does not trust"
                    ) from None
                host = _origin(moved.location)
                _LOGGER.info("cloud: the login was redirected to %s; starting again there", host)
        raise CloudResponseError("the cloud redirected the login more than once")

    async def _region(self, host: str) -> None:
        """region_c: the account's data centre (for the User-Agent)."""
        try:
            data = await self._post(
                host + facts.REGION, {"email": self._credentials.username}, token=None
            )
        except CloudLoginError:
            raise
        except CloudRejectedError as err:
            _LOGGER.debug("cloud: region_c refused (%s); going on", err.reason)
            return
        body = mapping(data)
        dc = whole(body.get("dc"))
        if dc == facts.DC_UNKNOWN_ACCOUNT:
            raise CloudLoginError(
                "the cloud does not know this account: check cloud.username",
                reason=facts.Refusal.CREDENTIALS.value,
            )
        if dc is not None and 0 <= dc < 1000:
            self._dc = dc

    async def _pre_insp(self, host: str) -> _Challenge:
        data = mapping(
            await self._post(host + facts.PRE_INSP, {"u": self._credentials.username}, token=None)
        )
        version = whole(data.get("v"))
        if version == facts.HASH_UNKNOWN_ACCOUNT:
            raise CloudLoginError(
                "the cloud does not know this account: check cloud.username",
                reason=facts.Refusal.CREDENTIALS.value,
            )
        flag = whole(data.get("f"))
        if flag == facts.PASSWORD_EXPIRED_FLAG:
            raise CloudLoginError(
                "the cloud wants a new password for this account: set one in the S-Miles "
                "Home app, then put it in cloud.password",
                reason=facts.Refusal.CREDENTIALS.value,
            )
        if flag == facts.EMAIL_REQUIRED_FLAG:
            _LOGGER.warning("cloud: the cloud asks for an e-mail address to be added in the app")
        nonce = data.get("n")
        if isinstance(nonce, int) and not isinstance(nonce, bool):
            nonce = str(nonce)
        if not isinstance(nonce, str) or not nonce or len(nonce) > MAX_TOKEN:
            raise CloudResponseError("the cloud's pre-insp answer has no nonce")
        return _Challenge(nonce, _salt(data.get("a")), version)

    async def _login_at(self, host: str) -> str:
        challenge = await self._pre_insp(host)
        if challenge.salt is not None:
            self.logins += 1
            ch = await asyncio.to_thread(argon2_hex, self._credentials.password, challenge.salt)
            token = await self._login_post(host, ch, challenge.nonce)
            self.login_method = "argon2id"
            return token
        variants = legacy_hashes(self._credentials.password)
        for index, ch in enumerate(variants):
            if index:
                challenge = await self._pre_insp(host)  # a nonce serves one attempt
                if challenge.salt is not None:
                    return await self._login_at(host)
            self.logins += 1
            try:
                token = await self._login_post(host, ch, challenge.nonce)
            except CloudLoginError as err:
                last = index == len(variants) - 1
                if last or err.reason != facts.Refusal.CREDENTIALS.value:
                    raise
                continue
            self.login_method = "legacy"
            return token
        raise CloudResponseError("no password form to try")  # pragma: no cover - variants

    async def _login_post(self, host: str, ch: str, nonce: str) -> str:
        body = {"u": self._credentials.username, "ch": ch, "n": nonce}
        data = mapping(await self._post(host + facts.LOGIN, body, token=None))
        token = data.get("token")
        if not isinstance(token, str) or not token.strip() or len(token) > MAX_TOKEN:
            raise CloudResponseError("the cloud's login answer has no token")
        return token.strip()

    async def _ensure_token(self) -> str:
        token = self._token
        if token:
            return token
        async with self._login_lock:
            if not self._token:
                await self._login_locked()
            if not self._token:  # pragma: no cover - a login that did not raise set it
                raise CloudResponseError("the login gave no token")
            return self._token

    # --- data ----------------------------------------------------------------------

    async def stations(self) -> tuple[Station, ...]:
        """Every station of the account, with its device tree."""
        found: list[Station] = []
        for page in range(1, facts.STATION_PAGES_MAX + 1):
            data = await self._call(
                self._endpoints.url(facts.STATIONS),
                {"page": page, "page_size": facts.STATION_PAGE_SIZE},
            )
            stations, total = parse_station_page(data)
            found += stations
            complete = total is not None and len(found) >= total
            if len(stations) < facts.STATION_PAGE_SIZE or complete:
                break
        unique: dict[int, Station] = {}
        for station in found:
            unique.setdefault(station.sid, station)
        return tuple(unique.values())

    async def station_data(self, sid: int) -> StationData:
        """real_g_c: the station's energy counters and slow values."""
        return parse_station_data(
            await self._call(self._endpoints.url(facts.REAL_DATA), {"sid": sid})
        )

    async def battery(self, sid: int, device_id: int) -> BatteryInfo:
        """inverter/find_c: the battery's bms_soc, bms_temp and bms_state."""
        data = await self._call(self._endpoints.url(facts.INVERTER), {"id": device_id, "sid": sid})
        return parse_battery(device_id, data)

    async def flow(self, sid: int) -> Flow:
        """The station's live flow from its burst URI (a new URI when the session ended)."""
        for attempt in range(2):
            uri = self._burst.get(sid) or await self._burst_uri(sid)
            flow = parse_flow(
                await self._call(uri, {"m": facts.BURST_MODE, "sid": sid}, what="the live data")
            )
            if flow.expired or flow.delay_ms == facts.DLY_SESSION_END_MS:
                self._burst.pop(sid, None)
            if not flow.expired or attempt:
                return flow
        raise AssertionError("unreachable")  # pragma: no cover

    async def _burst_uri(self, sid: int) -> str:
        data = mapping(await self._call(self._endpoints.url(facts.BURST_URI), {"sid": sid}))
        uri = data.get("uri")
        if not isinstance(uri, str) or len(uri) > 2048 or not self._endpoints.trusts(uri):
            raise CloudResponseError("the cloud gave no usable live-data URI")
        self._burst[sid] = uri
        return uri

    # --- settings --------------------------------------------------------------------

    async def read_setting(self, sid: int, action: int) -> SettingResult:
        """Read a setting: a job, whose status is read until it is done."""
        answer = await self._call(
            self._endpoints.url(facts.SETTING_READ), {"action": action, "data": {"sid": sid}}
        )
        job = _job_id(answer)
        if job is None:
            raise CloudResponseError("the cloud's settings read gave no job id")
        return await self._wait_job(action, job)

    async def write_setting(self, sid: int, action: int, values: dict[str, Any]) -> SettingResult:
        """Write a setting (refused unless writes are allowed); waits for its job if it has one."""
        if not self._allow_writes:
            raise CloudWriteRefusedError(
                "writes to the cloud are off: set cloud.allow_writes to true to allow them"
            )
        answer = await self._call(
            self._endpoints.url(facts.SETTING_WRITE),
            {"action": action, "data": {**values, "sid": sid}},
        )
        job = _job_id(answer)
        if job is None:
            return SettingResult(action, {})
        return await self._wait_job(action, job)

    async def on_grid_power(self, sid: int) -> float | None:
        """The on-grid input power setting (W), or ``None`` when the cloud gave none."""
        result = await self.read_setting(sid, facts.ACTION_ON_GRID_POWER)
        return number(result.values.get("power"))

    async def set_on_grid_power(self, sid: int, watts: int) -> SettingResult:
        low, high = facts.ON_GRID_POWER_RANGE
        if isinstance(watts, bool) or not isinstance(watts, int) or not low <= watts <= high:
            raise CloudWriteRefusedError(f"the on-grid input power must be {low} to {high} W")
        return await self.write_setting(sid, facts.ACTION_ON_GRID_POWER, {"power": watts})

    async def set_grid_charge(self, sid: int, enabled: bool) -> SettingResult:
        values = facts.GRID_CHARGE_ON if enabled else facts.GRID_CHARGE_OFF
        return await self.write_setting(sid, facts.ACTION_GRID_CHARGE, dict(values))

    async def _wait_job(self, action: int, job: str) -> SettingResult:
        url = self._endpoints.url(facts.SETTING_STATUS)
        for poll in range(facts.JOB_POLLS_MAX):
            if poll:
                await self._sleep(facts.JOB_POLL_S)
            status = _json_or_value(await self._call(url, {"id": job}))
            body = mapping(status)
            code = whole(body.get("code"))
            if code == facts.JOB_RUNNING:
                continue
            if code not in (None, facts.JOB_DONE):
                raise CloudRejectedError(f"the settings job failed (code {code})")
            return SettingResult(action, mapping(_json_or_value(body.get("data"))))
        raise CloudUnavailableError(
            f"the settings job did not finish after {facts.JOB_POLLS_MAX} status reads"
        )

    # --- requests ----------------------------------------------------------------------

    async def _call(self, url: str, body: dict[str, Any], *, what: str = "") -> Any:
        """An authorised request; one new login when the cloud refuses the token."""
        for attempt in range(2):
            token = await self._ensure_token()
            try:
                return await self._post(url, body, token=token, what=what)
            except CloudTokenError:
                if self._token == token:
                    self._token = None
                    self.state = LoginState.LOGGED_OUT
                if attempt:
                    raise CloudTokenError(
                        "the cloud refused the session token again right after a new login",
                        reason=facts.Refusal.TOKEN.value,
                    ) from None
                _LOGGER.info("cloud: the session token was refused; logging in again")
            except _RedirectedError:
                raise CloudResponseError(
                    f"the cloud redirected {what or urlsplit(url).path}"
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _post(
        self, url: str, body: dict[str, Any], *, token: str | None, what: str = ""
    ) -> Any:
        """POST ``body``; the envelope's ``data`` on success, else a typed error."""
        shown = url.split("?", 1)[0]
        what = what or urlsplit(shown).path
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": self.user_agent,
        }
        if token:
            headers["Authorization"] = token
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.post(
                url,
                json=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            ) as response:
                status = response.status
                if status in _REDIRECTS:
                    self._record(shown, body, status, error="redirect")
                    raise _RedirectedError(urljoin(url, response.headers.get("Location", "")))
                raw = await response.content.read(MAX_BODY + 1)
        except TimeoutError:
            self._record(shown, body, None, error="timeout")
            raise CloudUnavailableError(
                f"the cloud did not answer {what} within {self._timeout:g} s"
            ) from None
        except aiohttp.ClientError as err:
            self._record(shown, body, None, error=type(err).__name__)
            raise CloudUnavailableError(
                f"cannot reach the cloud for {what} ({type(err).__name__})"
            ) from None
        if status >= 500:
            self._record(shown, body, status, error=f"HTTP {status}")
            raise CloudUnavailableError(f"the cloud answered {what} with HTTP {status}")
        if status != 200:
            self._record(shown, body, status, error=f"HTTP {status}")
            raise CloudResponseError(f"the cloud answered {what} with HTTP {status}")
        if len(raw) > MAX_BODY:
            self._record(shown, body, status, error="too long")
            raise CloudResponseError(f"the cloud's answer to {what} is too long")
        try:
            envelope = json.loads(raw)
        except (ValueError, RecursionError):
            self._record(shown, body, status, error="not JSON")
            raise CloudResponseError(f"the cloud's answer to {what} is not JSON") from None
        self._record(shown, body, status, response=envelope)
        if not isinstance(envelope, dict) or "status" not in envelope:
            raise CloudResponseError(f"the cloud's answer to {what} has no status")
        code = envelope["status"]
        code_text = text(code) if isinstance(code, str | int) else "?"
        if code_text in facts.SUCCESS_STATUSES:
            return envelope.get("data")
        message = envelope.get("message")
        raise _rejection(
            what, code_text, message if isinstance(message, str) else "", self._clock()
        )

    def _record(
        self,
        url: str,
        body: dict[str, Any],
        status: int | None,
        *,
        response: Any = None,
        error: str = "",
    ) -> None:
        _LOGGER.debug("cloud: POST %s -> %s", url, error or status)
        if self._observer is not None:
            self._observer(
                Exchange(time.time(), url, mask_cloud(body), status, mask_cloud(response), error)
            )


def _json_or_value(value: Any) -> Any:
    """``value``, or what it holds when it is JSON text (status data may be a JSON string)."""
    if isinstance(value, str) and len(value) <= MAX_BODY:
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return value
    return value


def _job_id(value: Any) -> str | None:
    """A settings job's id from ``data`` (text or a number)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip() and len(value) <= MAX_TOKEN:
        return value.strip()
    return None


__all__ = [
    "MAX_BODY",
    "REQUEST_TIMEOUT",
    "CloudClient",
    "Credentials",
    "Endpoints",
    "Exchange",
    "ExchangeObserver",
    "LoginState",
    "argon2_hex",
    "legacy_hashes",
    "next_utc_day",
]
