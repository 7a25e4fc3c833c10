"""What is known about the Hoymiles cloud (S-Miles), each fact in one place.

Hoymiles documents none of this. Every value below was seen by third-party
clients of the cloud (the research notes in ``shared/reference/cloud.md`` and
``msa2.md`` section 4 give the sources); when Hoymiles changes something, the
fix is here, once. Values marked *uncertain* come from a single client, were
inferred, or disagree between sources.
"""

from __future__ import annotations

import enum
from typing import Final

# --- hosts ----------------------------------------------------------------------

#: Where S-Miles Home accounts log in. ``neapi`` answers the login with a 307
#: that invalidates the nonce, so the login goes here directly.
AUTH_HOST: Final = "https://euapi.hoymiles.com"
#: The ``/pvmc/.../*_c`` data endpoints of S-Miles Home accounts.
DATA_HOST: Final = "https://neapi.hoymiles.com"
#: The host of ``station_data/real_g_c`` (today's, the month's, ... energy).
REAL_DATA_HOST: Final = "https://eud0.hoymiles.com"
#: Hosts the client follows a redirect to, or takes a burst URI from (besides
#: the host of a configured ``base_url``). Anything else is refused: the login
#: hash and the token go nowhere else.
TRUSTED_DOMAIN: Final = "hoymiles.com"


class Route(enum.Enum):
    """Which host serves a path."""

    AUTH = "auth"
    DATA = "data"
    REAL_DATA = "real_data"


# --- paths (all POST with a JSON body) -------------------------------------------

REGION: Final = "/iam/pub/0/c/region_c"
PRE_INSP: Final = "/iam/pub/3/auth/pre-insp"
LOGIN: Final = "/iam/pub/3/auth/login"
#: The md5 logins Hoymiles retired in 2026 ("Your app version is low"); never used.
RETIRED_LOGINS: Final = ("/iam/pub/0/c/login_c", "/iam/pub/0/auth/login")
STATIONS: Final = "/pvmc/api/0/station/select_by_page_c"
BURST_URI: Final = "/pvmc/api/0/station/get_sd_uri_c"
REAL_DATA: Final = "/pvmc/api/0/station_data/real_g_c"
INVERTER: Final = "/pvmc/api/0/inverter/find_c"
SETTING_READ: Final = "/pvmc/api/0/station_ctl/read_c"
SETTING_STATUS: Final = "/pvmc/api/0/station_ctl/setting_status_c"
SETTING_WRITE: Final = "/pvmc/api/0/station_ctl/write_c"

#: The host of each path; a path not listed goes to :attr:`Route.DATA`.
ROUTES: Final[dict[str, Route]] = {
    REGION: Route.AUTH,
    PRE_INSP: Route.AUTH,
    LOGIN: Route.AUTH,
    REAL_DATA: Route.REAL_DATA,
}

# --- the login --------------------------------------------------------------------

#: S-Miles Home accounts are refused unless the User-Agent is the app's:
#: ``sma/ad/{app version}/{tenant}/{dc}``. Versions 2.9.0, 2.10.0 and 2.12.1
#: were all seen working (uncertain: which versions the cloud still accepts).
APP_VERSION: Final = "2.10.0"
#: The tenant (site) id of Hoymiles itself, ``t`` in pre-insp's answer.
TENANT_ID: Final = 159
USER_AGENT: Final = "sma/ad/{version}/{tenant}/{dc}"
#: The data centre put in the User-Agent when region_c gave none. Uncertain:
#: one client always sends 0, another the account's ``dc``; we send the ``dc``.
DEFAULT_DC: Final = 0
#: region_c's ``dc`` for an account the cloud does not know.
DC_UNKNOWN_ACCOUNT: Final = -1

#: pre-insp's ``v`` for an account hashed with Argon2id (every account since 2026).
HASH_ARGON2: Final = 3
#: pre-insp's ``v`` for an account the cloud does not know.
HASH_UNKNOWN_ACCOUNT: Final = -1
#: pre-insp's ``f``: 1 means the password must be renewed in the app. Uncertain:
#: 2 is said to ask for an e-mail address to be added; the client only warns.
PASSWORD_EXPIRED_FLAG: Final = 1
EMAIL_REQUIRED_FLAG: Final = 2

#: Argon2id as the S-Miles Home app computes ``ch``: version 0x13, 3 passes,
#: 32 MiB, one lane, 32 bytes, sent as hex.
ARGON2_TIME_COST: Final = 3
ARGON2_MEMORY_KIB: Final = 32768
ARGON2_PARALLELISM: Final = 1
ARGON2_HASH_LEN: Final = 32
ARGON2_VERSION: Final = 0x13

# --- answers ------------------------------------------------------------------------

#: ``status`` values that mean success ("100" is taken as success by two clients).
SUCCESS_STATUSES: Final = frozenset({"0", "100"})


class Refusal(enum.Enum):
    """What a refusal of the cloud means, told from its message."""

    TOKEN = "token"  # noqa: S105 - the kind of refusal, not a token
    DAILY_CAP = "daily_cap"
    CREDENTIALS = "credentials"
    HOME_APP_ONLY = "home_app_only"
    APP_VERSION_LOW = "app_version_low"
    DEVICE_LIST_EMPTY = "device_list_empty"
    NO_ACCESS = "no_access"
    OTHER = "other"


#: Lower-case pieces of the cloud's messages and what they mean, first match wins.
#: The texts are the ones clients reported; the cloud may reword them.
REFUSALS: Final[tuple[tuple[str, Refusal], ...]] = (
    ("exceeds the daily maximum", Refusal.DAILY_CAP),
    ("token error", Refusal.TOKEN),
    ("token verify", Refusal.TOKEN),
    ("re-login", Refusal.TOKEN),
    ("check your account and password", Refusal.CREDENTIALS),
    ("login failed", Refusal.CREDENTIALS),
    ("can only login to the s-miles home", Refusal.HOME_APP_ONLY),
    ("only be used for logging in to the s-miles home", Refusal.HOME_APP_ONLY),
    ("app version is low", Refusal.APP_VERSION_LOW),
    ("device list is empty", Refusal.DEVICE_LIST_EMPTY),
    ("has no access to plant", Refusal.NO_ACCESS),
)


def refusal(message: str) -> Refusal:
    """What the cloud's ``message`` means."""
    text = message.lower()
    return next((kind for piece, kind in REFUSALS if piece in text), Refusal.OTHER)


#: After the daily cap, the next login waits for the next UTC day plus this
#: margin (one client waits until midnight and five minutes). The cap itself
#: is unknown.
DAILY_CAP_MARGIN_S: Final = 300

# --- data ---------------------------------------------------------------------------

#: Stations asked per page of select_by_page_c, and the most pages read.
STATION_PAGE_SIZE: Final = 50
STATION_PAGES_MAX: Final = 20
#: The body posted to the burst URI besides ``sid`` (``m`` 0: the station's flow).
BURST_MODE: Final = 0
#: The burst never gets polled faster than this, whatever ``dly`` says.
MIN_POLL_S: Final = 3.0
#: A ``dly`` of this many ms ends the live session: ask for a new burst URI
#: next time (one client; uncertain).
DLY_SESSION_END_MS: Final = 10000

#: Device types in the station's tree. Uncertain: 1 is the DTU or the MS-A2's
#: communication module; 6 is the MS-A2 battery inverter that has bms_* data.
DEVICE_DTU: Final = 1
DEVICE_BATTERY_INVERTER: Final = 6
DEVICE_METER: Final = 16

#: The unit of real_g_c's today_eq, month_eq, year_eq and total_eq, and of
#: bms_in_eq/bms_out_eq (uncertain for the *_eq totals: Wh is assumed).
ENERGY_UNIT: Final = "Wh"

# --- settings ---------------------------------------------------------------------------

#: On-grid input power, ``{"power": W}``.
ACTION_ON_GRID_POWER: Final = 1513
#: Charging from the grid, ``{"enable": 1, "target": 2, "type": 1}`` or ``{"enable": 0}``
#: (the meaning of target and type is unknown; this is what the app sends).
ACTION_GRID_CHARGE: Final = 1503
GRID_CHARGE_ON: Final = {"enable": 1, "target": 2, "type": 1}
GRID_CHARGE_OFF: Final = {"enable": 0}
#: The on-grid input power the client accepts, in W. Uncertain: up to six
#: units of 1000 W (MS-A2) per system; the device may refuse less.
ON_GRID_POWER_RANGE: Final = (0, 6000)
#: A settings job's ``code``: done, and still running.
JOB_DONE: Final = 0
JOB_RUNNING: Final = 2
#: How often and how many times a job's status is asked (a DTU may take more than 10 s).
JOB_POLL_S: Final = 1.5
JOB_POLLS_MAX: Final = 20

__all__ = [
    "ACTION_GRID_CHARGE",
    "ACTION_ON_GRID_POWER",
    "APP_VERSION",
    "ARGON2_HASH_LEN",
    "ARGON2_MEMORY_KIB",
    "ARGON2_PARALLELISM",
    "ARGON2_TIME_COST",
    "ARGON2_VERSION",
    "AUTH_HOST",
    "BURST_MODE",
    "BURST_URI",
    "DAILY_CAP_MARGIN_S",
    "DATA_HOST",
    "DC_UNKNOWN_ACCOUNT",
    "DEFAULT_DC",
    "DEVICE_BATTERY_INVERTER",
    "DEVICE_DTU",
    "DEVICE_METER",
    "DLY_SESSION_END_MS",
    "EMAIL_REQUIRED_FLAG",
    "ENERGY_UNIT",
    "GRID_CHARGE_OFF",
    "GRID_CHARGE_ON",
    "HASH_ARGON2",
    "HASH_UNKNOWN_ACCOUNT",
    "INVERTER",
    "JOB_DONE",
    "JOB_POLLS_MAX",
    "JOB_POLL_S",
    "JOB_RUNNING",
    "LOGIN",
    "MIN_POLL_S",
    "ON_GRID_POWER_RANGE",
    "PASSWORD_EXPIRED_FLAG",
    "PRE_INSP",
    "REAL_DATA",
    "REAL_DATA_HOST",
    "REFUSALS",
    "REGION",
    "RETIRED_LOGINS",
    "ROUTES",
    "SETTING_READ",
    "SETTING_STATUS",
    "SETTING_WRITE",
    "STATIONS",
    "STATION_PAGES_MAX",
    "STATION_PAGE_SIZE",
    "SUCCESS_STATUSES",
    "TENANT_ID",
    "TRUSTED_DOMAIN",
    "USER_AGENT",
    "Refusal",
    "Route",
    "refusal",
]
