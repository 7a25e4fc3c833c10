"""The MS-A2 / HiBattery firmware's own MQTT interface, without sockets (sans-I/O).

Since firmware V01.05.03 an MS-A2 (and a HiBattery 1920 AC / 4020 X) is a
client of the user's broker. It publishes its state as JSON under the
discovery prefix and takes commands there (``docs``: msa2.md section 1). This
module holds everything about that interface that needs no connection:

* the firmware's topics (:class:`FirmwareTopics`, :func:`parse_topic`) and the
  strict rule for a ``dev_id`` taken from a topic (:data:`DEV_ID_PATTERN`);
* the field table (:data:`FIELDS`): every value of ``quick``, ``device`` and
  ``system``, with Home Assistant's device class, state class, unit and the
  range a plausible value stays in; discovery reads it;
* :func:`parse_state`: one state message into typed values (numbers sent as
  strings accepted, implausible values dropped, ``grid[]`` matched on
  ``type``); garbage raises :class:`BatteryPayloadError`, never anything else;
* the command payloads (EMS mode, power setpoint with the keep-alive
  perturbation, TOU day and week plans) with the TOU rules of section 1.5;
* the acknowledgement codes and their readable outcome (:data:`DAY_ACKS`,
  :data:`WEEK_ACKS`, :data:`PLAN_STATUS`).

Facts whose source is weak (msa2.md marks them M or L) sit in one constant or
table each, so a correction is one edit: :data:`MODEL_PROFILES`,
:data:`SILENCE_QUICK`, :data:`SILENCE_SLOW`, :data:`FIELDS`' ranges.
"""

from __future__ import annotations

import enum
import itertools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from hoymiles_bridge.errors import InvalidArgumentError, ProtocolError
from hoymiles_bridge.protocol.numbers import number

# --- identity and topics ------------------------------------------------------------

#: A ``dev_id`` we accept from a topic: ``<prefix>-<SN>`` or the SN alone
#: (``MSA-280024370560``). Only letters, digits, ``-`` and ``_``: it ends up in
#: topics we publish, so no ``/``, ``+``, ``#`` or anything else.
DEV_ID_PATTERN: Final = r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}"
_DEV_ID: Final = re.compile(DEV_ID_PATTERN)
#: The bridge's own discovery node ids start so (``hoymiles_bat_<dev_id>``...):
#: a topic with such a "dev_id" is the bridge's own, never a battery's.
OWN_NODE_PREFIX: Final = "hoymiles_"

#: Largest state message taken; the real ones are well under 4 KiB.
MAX_STATE_PAYLOAD: Final = 16 * 1024
#: Largest configuration or acknowledgement message taken.
MAX_SMALL_PAYLOAD: Final = 8 * 1024

#: Silence after which a battery counts as unavailable (msa2.md 1.6, hoymiles-ha's
#: rule, M): 120 s without ``quick``, or 660 s without the 5-minute topics for a
#: unit that publishes no ``quick``.
SILENCE_QUICK: Final = 120.0
SILENCE_SLOW: Final = 660.0

#: The setpoint must be re-sent within this (msa2.md 1.5: "within 60 s", H).
FIRMWARE_SETPOINT_TIMEOUT: Final = 60.0
#: The perturbation added to each re-sent setpoint, in turn (the IOB adapter's
#: way of making every message new to the firmware).
KEEPALIVE_STEPS: Final = (0.1, 0.2)


class BatteryPayloadError(ProtocolError):
    """A battery message that cannot be read: not JSON, not an object, too large."""


def is_dev_id(text: str) -> bool:
    return _DEV_ID.fullmatch(text) is not None


def check_dev_id(text: str) -> str:
    """``text`` if it is a valid ``dev_id``; raises :class:`InvalidArgumentError`."""
    if not is_dev_id(text):
        raise InvalidArgumentError(f"{text[:40]!r} is not a battery id (letters, digits, - and _)")
    return text


class Source(enum.Enum):
    """The firmware's state topics (``<prefix>/sensor/<dev_id>/<name>/state``)."""

    QUICK = "quick"  # every second
    DEVICE = "device"  # every 5 minutes
    SYSTEM = "system"  # every 5 minutes, master or standalone only


class Inbound(enum.Enum):
    """Every firmware topic we listen to, by what it carries."""

    QUICK = "quick"
    DEVICE = "device"
    SYSTEM = "system"
    ATTRIBUTES = "attributes"
    DAY_ACK = "tou_day_plan_ack"
    WEEK_ACK = "tou_week_plan_ack"
    PLAN_STATUS = "tou_plan_status"
    #: The firmware's own discovery configs (``FirmwareConfig.key`` says which).
    CONFIG = "config"


class Outbound(enum.Enum):
    """The firmware's command topics (msa2.md 1.5)."""

    EMS_MODE = "ems_mode"
    SETPOINT = "power_ctrl"
    SWITCH = "switch"
    REBOOT = "reboot"
    OUTPUT_POWER = "output_power"
    PHASE_OUTPUT_POWER = "phase_output_power"
    TOU_DAY = "tou_day_plan"
    TOU_WEEK = "tou_week_plan"
    TOU_GET = "tou_plan"


@dataclass(frozen=True, slots=True)
class FirmwareConfig:
    """One discovery config the firmware publishes (msa2.md 1.2 and 1.4).

    ``topic`` is relative to ``<prefix>/``, with ``{id}`` for the ``dev_id``.
    ``capability`` names the command it advertises (None: a plain sensor).
    """

    key: str
    topic: str
    why: str
    capability: Outbound | None = None


#: The firmware's own configs, all of which the bridge removes (retained empty
#: payload) and replaces with complete entities of its own. DOCS.md, "Repairs".
FIRMWARE_CONFIGS: Final = (
    FirmwareConfig(
        "switch",
        "switch/{id}/config",
        "no command_topic on some firmware; its state points at nested JSON",
        Outbound.SWITCH,
    ),
    FirmwareConfig(
        "ems_mode",
        "select/{id}/ems_mode/config",
        "no state_topic: 'unknown' after every restart",
        Outbound.EMS_MODE,
    ),
    FirmwareConfig(
        "power_ctrl",
        "number/{id}/power_ctrl/config",
        "shares its unique_id with the switch and select; the setpoint needs a keep-alive",
        Outbound.SETPOINT,
    ),
    FirmwareConfig("soc", "sensor/{id}/soc/config", "no unique_id and no state_class"),
    FirmwareConfig("bat_p", "sensor/{id}/bat_p/config", "no unique_id and no state_class"),
    FirmwareConfig(
        "output_power",
        "number/{id}/output_power/config",
        "replaced by the bridge's own number",
        Outbound.OUTPUT_POWER,
    ),
    FirmwareConfig(
        "phase_output_power",
        "number/{id}/phase_output_power/config",
        "the firmware takes only the full three-phase object",
        Outbound.PHASE_OUTPUT_POWER,
    ),
    FirmwareConfig(
        "reboot",
        "button/{id}/reboot/config",
        "replaced by the bridge's own button",
        Outbound.REBOOT,
    ),
)
_CONFIG_BY_KEY: Final = {c.key: c for c in FIRMWARE_CONFIGS}
#: Older firmware's retained ``text`` configs (``"mode":"textarea"``): Home
#: Assistant errors on them at every start.
LEGACY_TEXT_KEYS: Final = (*(f"tou_day{n}" for n in range(1, 9)), "tou_week_plan")


@dataclass(frozen=True, slots=True)
class FirmwareTopics:
    """The firmware's topics for one battery under the discovery ``prefix``."""

    prefix: str
    dev_id: str

    def __post_init__(self) -> None:
        check_dev_id(self.dev_id)

    def _sensor(self, name: str) -> str:
        return f"{self.prefix}/sensor/{self.dev_id}/{name}"

    def state(self, source: Source) -> str:
        return self._sensor(f"{source.value}/state")

    def command(self, what: Outbound) -> str:
        p, d = self.prefix, self.dev_id
        match what:
            case Outbound.EMS_MODE:
                return f"{p}/select/{d}/ems_mode/command"
            case Outbound.SETPOINT:
                return f"{p}/number/{d}/power_ctrl/set"
            case Outbound.SWITCH:
                return f"{p}/switch/{d}/set"
            case Outbound.REBOOT:
                return f"{p}/button/{d}/reboot/trigger"
            case Outbound.OUTPUT_POWER:
                return f"{p}/number/{d}/output_power/set"
            case Outbound.PHASE_OUTPUT_POWER:
                return f"{p}/number/{d}/phase_output_power/set"
            case Outbound.TOU_DAY:
                return self._sensor("tou_day_plan/set")
            case Outbound.TOU_WEEK:
                return self._sensor("tou_week_plan/set")
            case Outbound.TOU_GET:
                return self._sensor("tou_plan/get")

    def inbound(self, what: Inbound) -> str:
        match what:
            case Inbound.QUICK | Inbound.DEVICE | Inbound.SYSTEM:
                return self.state(Source(what.value))
            case Inbound.ATTRIBUTES:
                return self._sensor("attributes")
            case Inbound.DAY_ACK:
                return self._sensor("tou_day_plan/ack")
            case Inbound.WEEK_ACK:
                return self._sensor("tou_week_plan/ack")
            case Inbound.PLAN_STATUS:
                return self._sensor("tou_plan/status")
            case Inbound.CONFIG:
                raise InvalidArgumentError("a config topic needs its key: use config()")

    def config(self, key: str) -> str:
        """The topic of the firmware's config ``key`` (or of a legacy text config)."""
        if key in LEGACY_TEXT_KEYS:
            return f"{self.prefix}/text/{self.dev_id}/{key}/config"
        return f"{self.prefix}/" + _CONFIG_BY_KEY[key].topic.format(id=self.dev_id)


def subscriptions(prefix: str) -> tuple[str, ...]:
    """The wildcard topics that cover every battery's firmware topics."""
    p = prefix
    return (
        f"{p}/sensor/+/quick/state",
        f"{p}/sensor/+/device/state",
        f"{p}/sensor/+/system/state",
        f"{p}/sensor/+/attributes",
        f"{p}/sensor/+/tou_day_plan/ack",
        f"{p}/sensor/+/tou_week_plan/ack",
        f"{p}/sensor/+/tou_plan/status",
        f"{p}/switch/+/config",
        f"{p}/select/+/ems_mode/config",
        f"{p}/number/+/+/config",
        f"{p}/sensor/+/soc/config",
        f"{p}/sensor/+/bat_p/config",
        f"{p}/button/+/reboot/config",
        f"{p}/text/+/+/config",
    )


_STATE_TAILS: Final = {
    "quick/state": Inbound.QUICK,
    "device/state": Inbound.DEVICE,
    "system/state": Inbound.SYSTEM,
    "attributes": Inbound.ATTRIBUTES,
    "tou_day_plan/ack": Inbound.DAY_ACK,
    "tou_week_plan/ack": Inbound.WEEK_ACK,
    "tou_plan/status": Inbound.PLAN_STATUS,
}


@dataclass(frozen=True, slots=True)
class TopicMatch:
    """A firmware topic taken apart: whose it is and what it carries."""

    dev_id: str
    kind: Inbound
    #: For :attr:`Inbound.CONFIG`: the firmware config's key (or a legacy text key).
    key: str = ""


def parse_topic(prefix: str, topic: str) -> TopicMatch | None:
    """What a firmware topic is, or None (not ours, or a ``dev_id`` that breaks the rule)."""
    if not topic.startswith(prefix + "/"):
        return None
    parts = topic[len(prefix) + 1 :].split("/")
    if len(parts) < 3 or not is_dev_id(parts[1]) or parts[1].startswith(OWN_NODE_PREFIX):
        return None
    component, dev_id, rest = parts[0], parts[1], "/".join(parts[2:])
    if component == "sensor" and rest in _STATE_TAILS:
        return TopicMatch(dev_id, _STATE_TAILS[rest])
    if component == "text" and len(parts) == 4 and parts[3] == "config":
        if parts[2] in LEGACY_TEXT_KEYS:
            return TopicMatch(dev_id, Inbound.CONFIG, parts[2])
        return None
    for config in FIRMWARE_CONFIGS:
        if topic == f"{prefix}/" + config.topic.format(id=dev_id):
            return TopicMatch(dev_id, Inbound.CONFIG, config.key)
    return None


# --- models -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelProfile:
    """What a model can do, where its own messages do not say (OMNI's profiles, M)."""

    model: str
    #: Rated charge/discharge power of one unit, W (the setpoint range until the
    #: device advertises its own).
    rated_power: float
    capacity_wh: float
    serial_prefix: str


MODEL_PROFILES: Final = (
    ModelProfile("MS-A2", 1000.0, 2240.0, "2800"),
    ModelProfile("HiBattery 1920 AC", 1000.0, 1920.0, "2806"),
    ModelProfile("HiBattery 4020 X", 2000.0, 4020.0, "2805"),
)
DEFAULT_PROFILE: Final = MODEL_PROFILES[0]


def profile_for(model: str | None, serial: str | None = None) -> ModelProfile:
    """The profile of a model name (or, failing that, of a serial's prefix)."""
    if model:
        wanted = model.replace(" ", "").lower()
        for profile in MODEL_PROFILES:
            if profile.model.replace(" ", "").lower() == wanted:
                return profile
    if serial:
        for profile in MODEL_PROFILES:
            if serial.startswith(profile.serial_prefix):
                return profile
    return DEFAULT_PROFILE


def symmetric_range(low: float, high: float) -> tuple[float, float]:
    """The advertised setpoint range made symmetric (-1000..+2000 becomes -1000..+1000).

    FW 01.06.03 advertises -1000..+2000 W for a 1 kW unit (msa2.md 1.4, item 6);
    the smaller magnitude is the one the unit can do both ways.
    """
    magnitude = min(abs(low), abs(high))
    return -magnitude, magnitude


# --- the field table ------------------------------------------------------------------

Value = float | bool | str
Component = Literal["sensor", "binary_sensor"]


@dataclass(frozen=True, slots=True)
class BatteryField:
    """One value a battery reports, as Home Assistant shows it.

    ``sources`` lists where it comes from, ``(source, path)``: the path is a key
    of the JSON object, ``grid:<type>:<key>`` for an item of ``grid[]`` (matched
    on its ``type``) or ``<list>:<id>:<key>`` for ``pvs[]``/``packs[]``. The
    first source that carries it wins. ``low``/``high`` bound a plausible
    value; one outside is dropped. ``system`` fields describe the whole system
    and come only from a master or standalone unit.
    """

    key: str
    name: str
    sources: tuple[tuple[Source, str], ...]
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = None
    low: float | None = None
    high: float | None = None
    component: Component = "sensor"
    kind: Literal["number", "bool", "text"] = "number"
    options: tuple[str, ...] = ()
    system: bool = False
    category: str | None = None
    icon: str | None = None
    precision: int | None = None
    #: Only some units send it: announced once it arrived.
    optional: bool = False


#: ±10 kW covers six 1 kW units and a 4020 X with expansion packs with room to spare.
_POWER: Final = 10_000.0
#: A day's energy of one system, Wh (a generous bound).
_DAY_WH: Final = 200_000.0
#: A lifetime counter, Wh (1 GWh).
_LIFE_WH: Final = 1e9

Q, D, S = Source.QUICK, Source.DEVICE, Source.SYSTEM
BATTERY_STATES: Final = ("standby", "charge", "discharge", "lock")
EMS_MODES: Final = ("general", "mqtt_ctrl", "tou_plan")


def _power(
    key: str, name: str, *sources: tuple[Source, str], system: bool = False, optional: bool = False
) -> BatteryField:
    return BatteryField(
        key,
        name,
        sources,
        "W",
        "power",
        "measurement",
        -_POWER,
        _POWER,
        system=system,
        optional=optional,
        precision=1,
    )


def _daily(key: str, name: str, path: str, *, optional: bool = False) -> BatteryField:
    # Daily counters reset at midnight: total_increasing takes the reset as a new cycle.
    return BatteryField(
        key,
        name,
        ((S, path),),
        "Wh",
        "energy",
        "total_increasing",
        0.0,
        _DAY_WH,
        system=True,
        optional=optional,
    )


_GRID_TYPES: Final = (("grid_on", "Grid port"), ("grid_off", "EPS port"), ("inv", "Inverter"))


def _grid_fields() -> list[BatteryField]:
    fields: list[BatteryField] = []
    for kind, label in _GRID_TYPES:

        def path(key: str, kind: str = kind) -> tuple[Source, str]:
            return (D, f"grid:{kind}:{key}")

        optional = kind != "grid_on"
        fields += [
            BatteryField(
                f"{kind}_voltage",
                f"{label} voltage",
                (path("v"),),
                "V",
                "voltage",
                "measurement",
                0.0,
                400.0,
                optional=optional,
                precision=1,
            ),
            BatteryField(
                f"{kind}_current",
                f"{label} current",
                (path("i"),),
                "A",
                "current",
                "measurement",
                -100.0,
                100.0,
                optional=optional,
                precision=2,
            ),
        ]
        if kind != "inv":  # the inverter item has no frequency
            fields.append(
                BatteryField(
                    f"{kind}_frequency",
                    f"{label} frequency",
                    (path("f"),),
                    "Hz",
                    "frequency",
                    "measurement",
                    0.0,  # an unused port reports 0 Hz
                    70.0,
                    optional=optional,
                    precision=2,
                )
            )
        fields.append(
            BatteryField(
                f"{kind}_reactive_power",
                f"{label} reactive power",
                (path("q"),),
                "var",
                "reactive_power",
                "measurement",
                -_POWER,
                _POWER,
                optional=optional,
                precision=1,
            )
        )
        if kind == "inv":
            fields.append(_power("inv_power", "Inverter power", path("p"), optional=True))
        for key, what, life in (
            ("ein", "energy in today", False),
            ("eout", "energy out today", False),
            ("etin", "energy in", True),
            ("etout", "energy out", True),
        ):
            fields.append(
                BatteryField(
                    f"{kind}_{key}",
                    f"{label} {what}",
                    (path(key),),
                    "Wh",
                    "energy",
                    "total_increasing",
                    0.0,
                    _LIFE_WH if life else _DAY_WH,
                    optional=optional,
                )
            )
    return fields


#: Expansion packs and DC PV ports a unit may report (msa2.md 1.3: up to 4 packs).
MAX_PACKS: Final = 4
MAX_PV_PORTS: Final = 4


def _pack_fields() -> list[BatteryField]:
    fields: list[BatteryField] = []
    for n in range(1, MAX_PACKS + 1):
        fields += [
            BatteryField(
                f"pack{n}_soc",
                f"Pack {n} state of charge",
                ((D, f"packs:{n}:soc"),),
                "%",
                "battery",
                "measurement",
                0.0,
                100.0,
                optional=True,
            ),
            BatteryField(
                f"pack{n}_temperature",
                f"Pack {n} temperature",
                ((D, f"packs:{n}:temp"),),
                "°C",
                "temperature",
                "measurement",
                -40.0,
                100.0,
                optional=True,
                precision=1,
            ),
            BatteryField(
                f"pack{n}_heating",
                f"Pack {n} heating",
                ((D, f"packs:{n}:heat"),),
                component="binary_sensor",
                kind="bool",
                device_class="heat",
                optional=True,
            ),
        ]
    fields += [
        _power(f"pv{n}_power", f"PV {n} power", (D, f"pvs:{n}:p"), optional=True)
        for n in range(1, MAX_PV_PORTS + 1)
    ]
    return fields


#: Every value of ``quick``, ``device`` and ``system`` (msa2.md 1.3).
FIELDS: Final[tuple[BatteryField, ...]] = (
    BatteryField(
        "soc",
        "State of charge",
        ((Q, "soc"), (D, "soc")),
        "%",
        "battery",
        "measurement",
        0.0,
        100.0,
        precision=1,
    ),
    _power("battery_power", "Battery power", (Q, "bat_p"), (D, "bat_p")),
    BatteryField(
        "battery_state",
        "Battery state",
        ((Q, "bat_sts"), (D, "bat_sts")),
        device_class="enum",
        kind="text",
        options=BATTERY_STATES,
    ),
    _power("grid_on_power", "Grid port power", (Q, "grid_on_p"), (D, "grid:grid_on:p")),
    _power("grid_off_power", "EPS port power", (Q, "grid_off_p"), (D, "grid:grid_off:p")),
    _power("pv_power", "PV power", (Q, "pv_p"), optional=True),
    BatteryField(
        "heating",
        "Heating",
        ((Q, "heat"),),
        component="binary_sensor",
        kind="bool",
        device_class="heat",
        optional=True,
    ),
    BatteryField(
        "battery_voltage",
        "Battery voltage",
        ((D, "bat_v"),),
        "V",
        "voltage",
        "measurement",
        0.0,
        100.0,
        precision=2,
    ),
    BatteryField(
        "battery_current",
        "Battery current",
        ((D, "bat_i"),),
        "A",
        "current",
        "measurement",
        -200.0,
        200.0,
        precision=2,
    ),
    BatteryField(
        "battery_temperature",
        "Battery temperature",
        ((D, "bat_temp"),),
        "°C",
        "temperature",
        "measurement",
        -40.0,
        100.0,
        precision=1,
    ),
    BatteryField(
        "rssi",
        "Wi-Fi signal",
        ((D, "rssi"),),
        "dBm",
        "signal_strength",
        "measurement",
        -120.0,
        0.0,
        category="diagnostic",
    ),
    BatteryField(
        "pack_count",
        "Battery packs",
        ((D, "pack_num"),),
        state_class="measurement",
        low=0.0,
        high=float(MAX_PACKS + 1),
        category="diagnostic",
        icon="mdi:battery-plus",
        optional=True,
    ),
    BatteryField(
        "pv_count",
        "PV ports",
        ((D, "pv_num"),),
        state_class="measurement",
        low=0.0,
        high=float(MAX_PV_PORTS),
        category="diagnostic",
        icon="mdi:solar-panel",
        optional=True,
    ),
    *_grid_fields(),
    *_pack_fields(),
    # The system (master or standalone only): quick's sys_* every second,
    # system/state every 5 minutes; the same values, shown once.
    _power("system_pv_power", "System solar 1 power", (Q, "sys_pv_p"), (S, "pv_p"), system=True),
    _power(
        "system_pv2_power",
        "System solar 2 power",
        (Q, "sys_pv2_p"),
        (S, "pv2_p"),
        system=True,
        optional=True,
    ),
    _power("system_plug_power", "System plug power", (Q, "sys_plug_p"), (S, "plug_p"), system=True),
    _power(
        "system_smart_socket_power",
        "System smart socket power",
        (Q, "sys_sp_p"),
        (S, "sp_p"),
        system=True,
    ),
    _power(
        "system_battery_power", "System battery power", (Q, "sys_bat_p"), (S, "bat_p"), system=True
    ),
    _power("system_grid_power", "System grid power", (Q, "sys_grid_p"), (S, "grid_p"), system=True),
    _power("system_load_power", "System load power", (Q, "sys_load_p"), (S, "load_p"), system=True),
    _power(
        "system_eps_power",
        "System EPS power",
        (Q, "sys_eps_p"),
        (S, "eps_p"),
        system=True,
        optional=True,
    ),
    BatteryField(
        "system_soc",
        "System state of charge",
        ((Q, "sys_soc"), (S, "soc")),
        "%",
        "battery",
        "measurement",
        0.0,
        100.0,
        system=True,
        precision=1,
    ),
    BatteryField(
        "system_heating",
        "System heating",
        ((Q, "sys_heat"),),
        component="binary_sensor",
        kind="bool",
        device_class="heat",
        system=True,
        optional=True,
    ),
    _daily("system_pv_energy_today", "System solar 1 energy today", "pv_e"),
    _daily("system_pv2_energy_today", "System solar 2 energy today", "pv2_e", optional=True),
    _daily("system_charge_energy_today", "System charge energy today", "chg_e"),
    _daily("system_discharge_energy_today", "System discharge energy today", "dchg_e"),
    _daily("system_plug_out_energy_today", "System plug energy out today", "plug_out_e"),
    _daily("system_plug_in_energy_today", "System plug energy in today", "plug_in_e"),
    _daily(
        "system_eps_out_energy_today", "System EPS energy out today", "eps_out_e", optional=True
    ),
    _daily("system_eps_in_energy_today", "System EPS energy in today", "eps_in_e", optional=True),
    BatteryField(
        "ems_mode",
        "EMS mode running",
        ((S, "ems_mode"),),
        device_class="enum",
        kind="text",
        options=EMS_MODES,
        system=True,
        icon="mdi:cog-transfer",
    ),
)
FIELDS_BY_KEY: Final = {f.key: f for f in FIELDS}


# --- parsing state ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatteryReading:
    """The trusted values of one state message, and why others were dropped."""

    source: Source
    values: dict[str, Value]
    dropped: tuple[str, ...] = ()
    #: The message's top-level keys (what this unit sends at all).
    keys: frozenset[str] = frozenset()
    #: ``device.model`` when a state message names it.
    model: str | None = None


def load_object(payload: bytes, limit: int = MAX_STATE_PAYLOAD) -> dict[str, Any]:
    """A JSON object from ``payload``; raises :class:`BatteryPayloadError` for anything else."""
    if len(payload) > limit:
        raise BatteryPayloadError(f"message of {len(payload)} bytes is larger than {limit}")
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        raise BatteryPayloadError(f"not JSON ({str(err)[:80]})") from None
    if not isinstance(data, dict):
        raise BatteryPayloadError(f"not a JSON object but {type(data).__name__}")
    return data


def flag(value: object) -> bool | None:
    """A boolean from ``true``/``false``, 0/1 or their text forms; None otherwise."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in {"true", "1", "on"}:
            return True
        if text in {"false", "0", "off"}:
            return False
        return None
    n = number(value)
    if n in (0.0, 1.0):
        return n == 1.0
    return None


def _item(items: object, match_key: str, match: str) -> dict[str, Any] | None:
    """The first object of a JSON list whose ``match_key`` equals ``match``."""
    if not isinstance(items, list):
        return None
    for item in items[:16]:
        if isinstance(item, dict):
            found = item.get(match_key)
            if found == match or (match_key == "id" and number(found) == number(match)):
                return item
    return None


def _lookup(data: Mapping[str, Any], path: str) -> object:
    if ":" not in path:
        return data.get(path)
    head, which, key = path.split(":")
    match_key = "type" if head == "grid" else "id"
    item = _item(data.get(head), match_key, which)
    return None if item is None else item.get(key)


def _typed(spec: BatteryField, raw: object) -> tuple[Value | None, str]:
    """The value of ``raw`` for ``spec``, or None and why it was dropped."""
    if spec.kind == "bool":
        result = flag(raw)
        return (result, "") if result is not None else (None, f"{raw!r:.40} is not a boolean")
    if spec.kind == "text":
        if isinstance(raw, str) and raw in spec.options:
            return raw, ""
        return None, f"{raw!r:.40} is not one of {', '.join(spec.options)}"
    value = number(raw)
    if value is None:
        return None, f"{raw!r:.40} is not a number"
    if (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high):
        return None, f"{value:g} is outside {spec.low:g}..{spec.high:g}"
    return value, ""


def parse_state(source: Source, payload: bytes) -> BatteryReading:
    """The trusted values of a ``quick``/``device``/``system`` message.

    Missing fields are simply absent; a value of the wrong type or outside its
    plausible range is dropped and named in ``dropped``. Raises
    :class:`BatteryPayloadError` only for a message that is no JSON object.
    """
    data = load_object(payload)
    values: dict[str, Value] = {}
    dropped: list[str] = []
    for spec in FIELDS:
        for where, path in spec.sources:
            if where is not source:
                continue
            raw = _lookup(data, path)
            if raw is None:
                continue
            value, why = _typed(spec, raw)
            if value is None:
                dropped.append(f"{path}: {why}")
                continue
            values[spec.key] = value
            break
    model = data.get("model")
    return BatteryReading(
        source,
        values,
        tuple(dropped),
        frozenset(k for k in data if isinstance(k, str) and len(k) <= 32),
        model if isinstance(model, str) and 0 < len(model) <= 64 else None,
    )


# --- the firmware's own configs -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigInfo:
    """What a firmware config tells about its battery."""

    model: str | None = None
    serial: str | None = None
    firmware: str | None = None
    #: An advertised number range (``power_ctrl``), W.
    minimum: float | None = None
    maximum: float | None = None


def _text(value: object, limit: int = 64) -> str | None:
    if isinstance(value, str) and 0 < len(value.strip()) <= limit:
        return value.strip()
    return None


def parse_config(payload: bytes) -> ConfigInfo:
    """Model, serial (from ``identifiers``) and range of a firmware config."""
    data = load_object(payload, MAX_SMALL_PAYLOAD)
    device = data.get("device", data.get("dev"))
    model = serial = firmware = None
    if isinstance(device, dict):
        model = _text(device.get("model", device.get("mdl")))
        firmware = _text(device.get("sw_version", device.get("sw")))
        ids = device.get("identifiers", device.get("ids"))
        serial = _text(ids[0]) if isinstance(ids, list) and ids else _text(ids)
    if serial is not None and not is_dev_id(serial):
        serial = None
    low, high = number(data.get("min")), number(data.get("max"))
    if low is not None and high is not None and not (low < 0 < high and high - low <= 4 * _POWER):
        low = high = None
    return ConfigInfo(model, serial, firmware, low, high)


def supported_topics(payload: bytes) -> frozenset[str]:
    """The ``supported_topics`` names of an ``attributes`` message."""
    data = load_object(payload, MAX_SMALL_PAYLOAD)
    topics = data.get("supported_topics")
    if isinstance(topics, dict):
        names: Iterable[object] = topics.keys()
    elif isinstance(topics, list):
        names = topics
    else:
        return frozenset()
    return frozenset(n for n in list(names)[:64] if isinstance(n, str) and len(n) <= 64)


# --- commands ---------------------------------------------------------------------------


def setpoint_payload(watts: float) -> str:
    """A setpoint as the firmware takes it: W as text with one decimal (+ discharge)."""
    return f"{watts:.1f}"


def perturbed(watts: float, count: int, low: float, high: float) -> float:
    """The ``count``-th re-send of ``watts``: +0.1 and +0.2 W in turn, kept within low..high."""
    step = KEEPALIVE_STEPS[count % len(KEEPALIVE_STEPS)]
    value = watts + step
    if value > high:
        value = watts - step
    return round(min(max(value, low), high), 1)


#: ``phase_output_power`` per phase, W: hoymiles-ha's clamp (msa2.md 1.5, M).
PHASE_POWER_RANGE: Final = (100.0, 2500.0)
#: ``output_power``: its range is unknown (msa2.md 1.5); this bounds obvious mistakes.
OUTPUT_POWER_MAX: Final = 10_000.0


def phase_payload(watts: float) -> str:
    """``phase_output_power``: always the full three-phase object (msa2.md 1.4, item 4)."""
    w = round(watts)
    return json.dumps({"phase_a": w, "phase_b": w, "phase_c": w}, separators=(",", ":"))


# --- time-of-use plans --------------------------------------------------------------------


class TouMode(enum.IntEnum):
    """A period's mode (msa2.md 1.5)."""

    FORCED_CHARGE = 1  # ignores sl, pd
    PV_CHARGE = 2  # ignores sl, pc, pd
    DISCHARGE = 4  # ignores sh, pc


MAX_PERIODS: Final = 12
SLOTS_PER_DAY: Final = 96  # 15-minute slots
SOC_LIMITS: Final = (10, 100)
MIN_POWER_LIMIT: Final = 100
UNIT_POWER_LIMIT: Final = 1000  # W per unit: pc/pd go up to units x this
DAY_INDEXES: Final = range(1, 9)
WEEKDAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class TouError(InvalidArgumentError):
    """A TOU plan that breaks the firmware's rules; refused before it is sent."""


@dataclass(frozen=True, slots=True)
class Period:
    mode: TouMode
    ts: int
    te: int
    sh: int = 100
    sl: int = 10
    pc: int = MIN_POWER_LIMIT
    pd: int = MIN_POWER_LIMIT

    def to_json(self) -> dict[str, int]:
        return {
            "mode": int(self.mode),
            "ts": self.ts,
            "te": self.te,
            "sh": self.sh,
            "sl": self.sl,
            "pc": self.pc,
            "pd": self.pd,
        }


@dataclass(frozen=True, slots=True)
class DayPlan:
    day_idx: int
    periods: tuple[Period, ...] = field(default=())

    def payload(self) -> str:
        body = {"day_idx": self.day_idx, "day_plan": [p.to_json() for p in self.periods]}
        return json.dumps(body, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class WeekPlan:
    #: ``(days, day_idx)`` items, e.g. ``(("Mon", "Tue"), 1)``.
    items: tuple[tuple[tuple[str, ...], int], ...]

    def payload(self) -> str:
        body = {"week_plan": [{"week": list(days), "day_idx": idx} for days, idx in self.items]}
        return json.dumps(body, separators=(",", ":"))


def _int(data: Mapping[str, Any], key: str, where: str, default: int | None = None) -> int:
    raw = data.get(key, default)
    value = number(raw)
    if value is None or value != int(value):
        raise TouError(f"{where}: {key} must be a whole number, not {raw!r:.20}")
    return int(value)


def _within(value: int, low: int, high: int, what: str) -> None:
    if not low <= value <= high:
        raise TouError(f"{what} {value} is outside {low}..{high}")


def day_plan(data: object, *, units: int = 1) -> DayPlan:
    """A checked day plan from ``{"day_idx": n, "day_plan": [...]}``; raises :class:`TouError`.

    The rules of msa2.md 1.5: at most 12 periods, slots 0..96 with ``ts < te``,
    no overlap, modes 1/2/4, SOC limits 10..100 %, power limits 100 W up to
    ``units`` x 1000 W.
    """
    if not isinstance(data, Mapping):
        raise TouError("a day plan is a JSON object with day_idx and day_plan")
    day_idx = _int(data, "day_idx", "day plan")
    _within(day_idx, DAY_INDEXES.start, DAY_INDEXES.stop - 1, "day_idx")
    raw = data.get("day_plan")
    if not isinstance(raw, list):
        raise TouError("day_plan must be a list of periods")
    if len(raw) > MAX_PERIODS:
        raise TouError(f"a day plan has at most {MAX_PERIODS} periods, not {len(raw)}")
    top = units * UNIT_POWER_LIMIT
    periods: list[Period] = []
    for n, item in enumerate(raw, start=1):
        where = f"period {n}"
        if not isinstance(item, Mapping):
            raise TouError(f"{where} is not an object")
        mode_number = _int(item, "mode", where)
        try:
            mode = TouMode(mode_number)
        except ValueError:
            raise TouError(f"{where}: mode {mode_number} is not 1, 2 or 4") from None
        ts, te = _int(item, "ts", where), _int(item, "te", where)
        _within(ts, 0, SLOTS_PER_DAY, f"{where}: ts")
        _within(te, 0, SLOTS_PER_DAY, f"{where}: te")
        if ts >= te:
            raise TouError(f"{where}: ts {ts} must be before te {te}")
        sh, sl = _int(item, "sh", where, 100), _int(item, "sl", where, 10)
        _within(sh, *SOC_LIMITS, f"{where}: sh")
        _within(sl, *SOC_LIMITS, f"{where}: sl")
        pc = _int(item, "pc", where, MIN_POWER_LIMIT)
        pd = _int(item, "pd", where, MIN_POWER_LIMIT)
        _within(pc, MIN_POWER_LIMIT, top, f"{where}: pc")
        _within(pd, MIN_POWER_LIMIT, top, f"{where}: pd")
        periods.append(Period(mode, ts, te, sh, sl, pc, pd))
    ordered = sorted(periods, key=lambda p: p.ts)
    for before, after in itertools.pairwise(ordered):
        if after.ts < before.te:
            raise TouError(f"periods {before.ts}..{before.te} and {after.ts}..{after.te} overlap")
    return DayPlan(day_idx, tuple(periods))


def week_plan(data: object) -> WeekPlan:
    """A checked week plan from ``{"week_plan": [{"week": [...], "day_idx": n}]}``."""
    if not isinstance(data, Mapping) or not isinstance(data.get("week_plan"), list):
        raise TouError("a week plan is a JSON object with a week_plan list")
    seen: set[str] = set()
    items: list[tuple[tuple[str, ...], int]] = []
    for n, item in enumerate(data["week_plan"][:8], start=1):
        if not isinstance(item, Mapping) or not isinstance(item.get("week"), list):
            raise TouError(f"week item {n} needs a week list and a day_idx")
        days = tuple(item["week"])
        for day in days:
            if day not in WEEKDAYS:
                raise TouError(f"week item {n}: {day!r:.12} is not one of {', '.join(WEEKDAYS)}")
            if day in seen:
                raise TouError(f"week item {n}: {day} is already planned")
            seen.add(day)
        day_idx = _int(item, "day_idx", f"week item {n}")
        _within(day_idx, DAY_INDEXES.start, DAY_INDEXES.stop - 1, f"week item {n}: day_idx")
        items.append((days, day_idx))
    if len(data["week_plan"]) > len(items):
        raise TouError("a week plan has at most 8 items")
    return WeekPlan(tuple(items))


def plan_request(day: str) -> str:
    """``tou_plan/get``: one weekday per request."""
    if day not in WEEKDAYS:
        raise TouError(f"{day!r:.12} is not one of {', '.join(WEEKDAYS)}")
    return json.dumps({"week": day}, separators=(",", ":"))


# --- acknowledgements ---------------------------------------------------------------------

#: ``tou_day_plan/ack`` status codes (msa2.md 1.5, H).
DAY_ACKS: Final[Mapping[int, str]] = {
    0: "day plan accepted",
    1: "general error",
    2: "more than 12 periods",
    3: "periods overlap",
    4: "invalid mode",
    5: "invalid ts/te",
    6: "invalid sh/sl",
    7: "invalid pc/pd",
    8: "invalid day_idx",
    9: "ts after te",
    10: "the battery is not in tou_plan mode",
}
#: ``tou_week_plan/ack`` status codes.
WEEK_ACKS: Final[Mapping[int, str]] = {
    0: "week plan accepted",
    1: "general error",
    2: "invalid week",
    3: "weeks overlap",
    4: "day_idx out of range",
    5: "day_idx not configured",
    6: "the battery is not in tou_plan mode",
}
#: ``tou_plan/status`` status codes (the answer to ``tou_plan/get``).
PLAN_STATUS: Final[Mapping[int, str]] = {0: "ok", 1: "general error", 2: "no plan for that day"}


@dataclass(frozen=True, slots=True)
class Ack:
    """An acknowledgement: its status code, our text for it and the firmware's own words."""

    status: int
    text: str
    err_msg: str = ""
    #: For ``tou_plan/status``: the whole answer.
    body: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == 0

    def describe(self) -> str:
        extra = f" ({self.err_msg})" if self.err_msg and self.err_msg != self.text else ""
        return f"{self.text}{extra}" if self.ok else f"status {self.status}: {self.text}{extra}"


def parse_ack(kind: Inbound, payload: bytes) -> Ack:
    """An ack or plan status; raises :class:`BatteryPayloadError` when it is unreadable."""
    table = {Inbound.DAY_ACK: DAY_ACKS, Inbound.WEEK_ACK: WEEK_ACKS}.get(kind, PLAN_STATUS)
    data = load_object(payload, MAX_SMALL_PAYLOAD)
    status = number(data.get("status"))
    if status is None or status != int(status):
        raise BatteryPayloadError(f"acknowledgement without a status: {payload[:60]!r}")
    code = int(status)
    err = _text(data.get("err_msg"), 200) or ""
    return Ack(code, table.get(code, f"unknown status {code}"), err, data)


__all__ = [
    "BATTERY_STATES",
    "DAY_ACKS",
    "DEFAULT_PROFILE",
    "DEV_ID_PATTERN",
    "EMS_MODES",
    "FIELDS",
    "FIELDS_BY_KEY",
    "FIRMWARE_CONFIGS",
    "FIRMWARE_SETPOINT_TIMEOUT",
    "KEEPALIVE_STEPS",
    "LEGACY_TEXT_KEYS",
    "MAX_PERIODS",
    "MAX_STATE_PAYLOAD",
    "MODEL_PROFILES",
    "OUTPUT_POWER_MAX",
    "OWN_NODE_PREFIX",
    "PHASE_POWER_RANGE",
    "PLAN_STATUS",
    "SILENCE_QUICK",
    "SILENCE_SLOW",
    "WEEKDAYS",
    "WEEK_ACKS",
    "Ack",
    "BatteryField",
    "BatteryPayloadError",
    "BatteryReading",
    "ConfigInfo",
    "DayPlan",
    "FirmwareConfig",
    "FirmwareTopics",
    "Inbound",
    "ModelProfile",
    "Outbound",
    "Period",
    "Source",
    "TopicMatch",
    "TouError",
    "TouMode",
    "Value",
    "WeekPlan",
    "check_dev_id",
    "day_plan",
    "flag",
    "is_dev_id",
    "load_object",
    "number",
    "parse_ack",
    "parse_config",
    "parse_state",
    "perturbed",
    "phase_payload",
    "plan_request",
    "profile_for",
    "setpoint_payload",
    "subscriptions",
    "supported_topics",
    "symmetric_range",
    "week_plan",
]
