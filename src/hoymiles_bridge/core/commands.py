"""The one command registry: every command a DTU or inverter takes, described once.

Each :class:`CommandSpec` carries the command's name (the MQTT topic's last
level and the web API's ``command``), its target, how its value is read and
checked, whether a retained message may trigger it, its danger flag and
confirmation text, the client call that carries it out, the Home Assistant
entities that offer it and its CLI forms. The MQTT command topics, the
discovery buttons and numbers, the web console, the CLI and the fleet's
dispatch are all generated from :data:`COMMANDS`.

Adding a command: a :class:`CommandSpec` here, the client method it calls
(``dtu/client.py``), the simulator's handling of it (``simulator/state.py``)
and a test. ARCHITECTURE.md walks through it.

Nothing here talks to a DTU. :func:`check` turns a :class:`CommandRequest`
into a validated :class:`Command` or raises :class:`CommandError` with one
sentence that names the problem. Payload rules follow OpenDTU: one-shot
commands and non-persistent limits are ignored when the message is retained
(a retained restart would restart the inverter at every reconnect).
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, Literal

from hoymiles_bridge.cloud.facts import ON_GRID_POWER_RANGE
from hoymiles_bridge.config.table import CONTROLLER_MODES
from hoymiles_bridge.dtu.client import DtuClient
from hoymiles_bridge.errors import (
    DtuConnectionError,
    DtuRejectedError,
    DtuTimeoutError,
    InvalidArgumentError,
    ProtocolError,
)
from hoymiles_bridge.protocol.battery import (
    EMS_MODES,
    OUTPUT_POWER_MAX,
    PHASE_POWER_RANGE,
    WEEKDAYS,
)

#: Longest payload a command may have (a number, "ON", "PRESS"...).
MAX_PAYLOAD: Final = 32
_TRUE: Final = frozenset({"1", "on", "true", "press"})
_FALSE: Final = frozenset({"0", "off", "false"})


class CommandError(InvalidArgumentError):
    """A command was refused before reaching the DTU; the message says why."""


class Target(enum.Enum):
    INVERTER = "inverter"
    DTU = "dtu"
    #: An MS-A2 / HiBattery over its own MQTT (core/battery.py carries them out).
    BATTERY = "battery"
    #: The bridge's power controller (core/controller_service.py carries it out).
    CONTROLLER = "controller"
    #: An S-Miles station's setting through the Hoymiles cloud (core/cloud.py; writes
    #: need ``cloud.allow_writes``). Its "serial" is the station id.
    CLOUD = "cloud"


class ValueKind(enum.Enum):
    NUMBER = "number"  # a finite number within the spec's range
    SWITCH = "switch"  # 0 or 1 (also on/off, true/false)
    PRESS = "press"  # 1 (also press, on, true): a button
    CHOICE = "choice"  # one of the spec's choices (a select)
    JSON = "json"  # a JSON object (a TOU plan), checked by the target's own rules


@dataclass(frozen=True, slots=True)
class Entity:
    """A Home Assistant entity offering a command (``key`` is part of its unique id)."""

    key: str
    name: str
    component: Literal["number", "button", "select", "switch"]
    icon: str | None = None
    device_class: str | None = None
    #: What a button sends (numbers send the value typed in).
    payload: str = "1"


@dataclass(frozen=True, slots=True)
class CliForm:
    """A ``hoymiles-bridge dtu HOST <name>`` subcommand for a command.

    ``value`` is the fixed value it sends (``on`` and ``off`` share ``power``).
    """

    name: str
    help: str
    value: float = 1.0
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LimitKind:
    """A power limit: persistent (inverter EEPROM, in %) or not (in W); relative or absolute."""

    persistent: bool
    relative: bool


#: The client call of a command: ``(client, serial, value)``; serial is "" for "all".
ClientCall = Callable[[DtuClient, str, float], Awaitable[object]]


async def _no_dtu_call(client: DtuClient, serial: str, value: float) -> object:
    """The call of a command no DTU carries out (a battery's)."""
    raise CommandError("this command is not for a DTU")


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """Everything about one command (see the module docs)."""

    name: str
    target: Target
    value: ValueKind
    label: str
    help: str
    call: ClientCall = _no_dtu_call
    unit: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    #: A retained message never triggers it.
    ignore_retained: bool = False
    danger: bool = False
    confirm: str | None = None
    entities: tuple[Entity, ...] = ()
    cli: tuple[CliForm, ...] = ()
    #: Paced and converted by :mod:`hoymiles_bridge.core.limits`.
    limit: LimitKind | None = None
    #: The session's performance mode after the command succeeded (None: unchanged).
    performance_mode: bool | None = None
    #: The call returns the DTU's alarm list (``Warnings``), which the fleet takes in.
    reads_alarms: bool = False
    #: What a CHOICE command takes.
    choices: tuple[str, ...] = ()
    #: The longest payload it takes (a TOU plan is longer than a number).
    max_payload: int = MAX_PAYLOAD

    def offered_to(self, supports_nonpersistent: bool) -> bool:
        """Whether an inverter is offered this command (non-persistent limits need firmware)."""
        return self.limit is None or self.limit.persistent or supports_nonpersistent


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """A command as it arrived, not yet checked.

    ``serial`` is the inverter's, or the DTU's ("" = the only DTU).
    ``origin`` is the adapter's own note of where it came from (the MQTT
    adapter: the topic); the fleet only passes it on in its events.
    """

    target: Target | None
    serial: str
    name: str
    payload: bytes
    retained: bool = False
    origin: str | None = None
    #: A non-persistent limit the pacing (``limit_interval``) must not hold back: the
    #: power controller's release, at a stop or a mode change.
    unpaced: bool = False


@dataclass(frozen=True, slots=True)
class Command:
    """A checked command: its spec, the device and the value.

    CHOICE and JSON commands carry their payload in ``text`` (the choice, or
    the JSON object as sent); their ``value`` is the choice's index, or 0.
    """

    spec: CommandSpec
    serial: str
    value: float
    text: str = ""

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """How a command ended: ``ok``, ``pending`` (paced, sent later), ``refused``
    (invalid, never sent) or ``failed`` (the DTU did not take it)."""

    status: str
    message: str = ""
    #: What the bridge changed about an accepted command (``clamped to 2 %``).
    note: str = ""

    @property
    def text(self) -> str:
        """The MQTT ``.../status`` payload: ``ok``, ``pending`` (``: <note>`` when there
        is one, e.g. ``ok: clamped to 2 %``) or ``failed: <reason>``."""
        if self.status in {"ok", "pending"}:
            return f"{self.status}: {self.note}" if self.note else self.status
        return f"failed: {self.message}"


def outcome_for(error: Exception) -> CommandOutcome:
    """The outcome of a command that raised ``error`` (the one mapping for every surface)."""
    if isinstance(error, InvalidArgumentError):
        return CommandOutcome("refused", str(error))
    if isinstance(error, DtuRejectedError):
        return CommandOutcome("failed", str(error))
    if isinstance(error, DtuConnectionError | DtuTimeoutError | ProtocolError):
        return CommandOutcome("failed", f"the DTU did not take it ({error})")
    raise error


#: Errors :func:`outcome_for` maps; anything else is a bug and propagates.
COMMAND_ERRORS: Final = (
    InvalidArgumentError,
    DtuRejectedError,
    DtuConnectionError,
    DtuTimeoutError,
    ProtocolError,
)


# --- the client calls -------------------------------------------------------------


def _one(serial: str) -> str | None:
    return serial or None


async def _limit_percent(client: DtuClient, serial: str, value: float) -> object:
    return await client.set_power_limit(value, _one(serial))


async def _limit_watts(client: DtuClient, serial: str, value: float) -> object:
    return await client.set_power_limit_temporary(value)


async def _power(client: DtuClient, serial: str, value: float) -> object:
    if value:
        return await client.inverter_on(_one(serial))
    return await client.inverter_off(_one(serial))


async def _restart(client: DtuClient, serial: str, value: float) -> object:
    return await client.inverter_restart(_one(serial))


async def _reboot(client: DtuClient, serial: str, value: float) -> object:
    return await client.reboot_dtu()


async def _performance_mode(client: DtuClient, serial: str, value: float) -> object:
    return await client.performance_mode()


async def _clear_alarms(client: DtuClient, serial: str, value: float) -> object:
    return await client.clear_alarms()


async def _refresh_alarms(client: DtuClient, serial: str, value: float) -> object:
    return await client.alarms()


def _limit(
    name: str, label: str, *, persistent: bool, relative: bool, help_text: str
) -> CommandSpec:
    unit = "%" if relative else "W"
    return CommandSpec(
        name=name,
        target=Target.INVERTER,
        value=ValueKind.NUMBER,
        label=label,
        help=help_text,
        call=_limit_percent if persistent else _limit_watts,
        unit=unit,
        # OpenDTU's ranges; below the inverter's 2 % floor (and above its rated
        # power) a limit is clamped by core/limits.py, not refused.
        minimum=0.0,
        maximum=100.0 if relative else None,
        ignore_retained=not persistent,
        entities=(
            Entity(
                name,
                label,
                "number",
                icon="mdi:speedometer" if persistent else "mdi:speedometer-slow",
            ),
        ),
        limit=LimitKind(persistent=persistent, relative=relative),
    )


COMMANDS: Final[tuple[CommandSpec, ...]] = (
    _limit(
        "limit_persistent_relative",
        "Limit persistent",
        persistent=True,
        relative=True,
        help_text="Persistent limit in % of the rated power (stored in the inverter's EEPROM).",
    ),
    _limit(
        "limit_persistent_absolute",
        "Limit persistent (W)",
        persistent=True,
        relative=False,
        help_text="Persistent limit in W, sent as % of the rated power (EEPROM).",
    ),
    _limit(
        "limit_nonpersistent_relative",
        "Limit non-persistent",
        persistent=False,
        relative=True,
        help_text="Non-persistent limit in % of the rated power (lost at restart).",
    ),
    _limit(
        "limit_nonpersistent_absolute",
        "Limit non-persistent (W)",
        persistent=False,
        relative=False,
        help_text="Non-persistent limit in W (HMS-W, DTU firmware V01.01.01+; lost at restart).",
    ),
    CommandSpec(
        name="power",
        target=Target.INVERTER,
        value=ValueKind.SWITCH,
        label="Power",
        help="Turn the inverter on (1) or off (0).",
        call=_power,
        ignore_retained=True,
        danger=True,
        confirm="Turned off, the inverter stops feeding in until it is turned on again.",
        # Two buttons on one command topic, as OpenDTU does: the DTU reports
        # no on/off state a switch could show.
        entities=(
            Entity("power_on", "Turn inverter on", "button", icon="mdi:power-plug"),
            Entity(
                "power_off", "Turn inverter off", "button", icon="mdi:power-plug-off", payload="0"
            ),
        ),
        cli=(
            CliForm("on", "turn inverter(s) on", 1.0),
            CliForm("off", "turn inverter(s) off", 0.0),
        ),
    ),
    CommandSpec(
        name="restart",
        target=Target.INVERTER,
        value=ValueKind.PRESS,
        label="Restart inverter",
        help="Restart the inverter; it stops feeding in for about a minute.",
        call=_restart,
        ignore_retained=True,
        danger=True,
        confirm="The inverter stops feeding in for about a minute.",
        entities=(Entity("restart", "Restart inverter", "button", device_class="restart"),),
        cli=(CliForm("restart", "restart inverter(s)"),),
    ),
    CommandSpec(
        name="reboot",
        target=Target.DTU,
        value=ValueKind.PRESS,
        label="Reboot DTU",
        help="Reboot the DTU; it is unreachable for about a minute.",
        call=_reboot,
        ignore_retained=True,
        danger=True,
        confirm="The DTU is unreachable for about a minute and forgets performance mode.",
        entities=(Entity("reboot", "Reboot DTU", "button", device_class="restart"),),
        cli=(CliForm("reboot", "reboot the DTU", aliases=("restart-dtu",)),),
        performance_mode=False,
    ),
    CommandSpec(
        name="performance_mode",
        target=Target.DTU,
        value=ValueKind.PRESS,
        label="Performance mode",
        help="Ask the DTU for fresh data on every poll (POLL_ALL) until it reboots.",
        call=_performance_mode,
        ignore_retained=True,
        entities=(Entity("performance_mode", "Performance mode", "button", icon="mdi:run-fast"),),
        cli=(CliForm("performance-mode", "ask for fresh data on every poll (POLL_ALL)"),),
        performance_mode=True,
    ),
    CommandSpec(
        name="clear_alarms",
        target=Target.DTU,
        value=ValueKind.PRESS,
        label="Clear alarms",
        help="Clear the ended alarms the DTU keeps (CLEAR_ALARM); active ones stay.",
        call=_clear_alarms,
        ignore_retained=True,
        entities=(Entity("clear_alarms", "Clear alarms", "button", icon="mdi:alert-remove"),),
        cli=(CliForm("clear-alarms", "clear the alarm list"),),
    ),
    CommandSpec(
        name="refresh_alarms",
        target=Target.DTU,
        value=ValueKind.PRESS,
        label="Read alarms now",
        help="Ask the DTU to collect its inverters' alarms now (ALARM_LIST) and read them.",
        call=_refresh_alarms,
        ignore_retained=True,
        reads_alarms=True,
        entities=(
            Entity("refresh_alarms", "Read alarms now", "button", icon="mdi:alert-circle-check"),
        ),
        cli=(CliForm("alarms", "collect and read the alarm list", aliases=("get-alarm-list",)),),
    ),
    # --- batteries (MS-A2 / HiBattery over their own MQTT; core/battery.py) ---
    CommandSpec(
        name="ems_mode",
        target=Target.BATTERY,
        value=ValueKind.CHOICE,
        label="EMS mode",
        help="general (self-consumption), mqtt_ctrl (follow the power setpoint) or tou_plan.",
        ignore_retained=True,
        choices=EMS_MODES,
        entities=(Entity("ems_mode", "EMS mode", "select", icon="mdi:cog-transfer"),),
    ),
    CommandSpec(
        name="setpoint",
        target=Target.BATTERY,
        value=ValueKind.NUMBER,
        label="Power setpoint",
        help=(
            "Battery power in W: + discharges (feeds the house), - charges. Switches the EMS "
            "mode to mqtt_ctrl; the bridge re-sends it until another mode is chosen."
        ),
        unit="W",
        ignore_retained=True,
        entities=(Entity("setpoint", "Power setpoint", "number", icon="mdi:battery-sync"),),
    ),
    CommandSpec(
        name="tou_day_plan",
        target=Target.BATTERY,
        value=ValueKind.JSON,
        label="TOU day plan",
        help='One day plan: {"day_idx": 1..8, "day_plan": [up to 12 periods]}.',
        ignore_retained=True,
        max_payload=4096,
    ),
    CommandSpec(
        name="tou_week_plan",
        target=Target.BATTERY,
        value=ValueKind.JSON,
        label="TOU week plan",
        help='Day plans by weekday: {"week_plan": [{"week": ["Mon"], "day_idx": 1}]}.',
        ignore_retained=True,
        max_payload=2048,
    ),
    CommandSpec(
        name="tou_get",
        target=Target.BATTERY,
        value=ValueKind.CHOICE,
        label="Read TOU day",
        help="Ask the battery for the plan of one weekday (Mon..Sun); the answer is the status.",
        ignore_retained=True,
        choices=WEEKDAYS,
    ),
    CommandSpec(
        name="battery_reboot",
        target=Target.BATTERY,
        value=ValueKind.PRESS,
        label="Reboot battery",
        help="Reboot the battery (firmware with guide V0.5.1 only).",
        ignore_retained=True,
        danger=True,
        confirm="The battery stops charging and discharging while it restarts.",
        entities=(Entity("battery_reboot", "Reboot", "button", device_class="restart"),),
    ),
    CommandSpec(
        name="output_power",
        target=Target.BATTERY,
        value=ValueKind.NUMBER,
        label="Output power",
        help="The full-load output ceiling in W (firmware with guide V0.5.1 only).",
        unit="W",
        minimum=0.0,
        maximum=OUTPUT_POWER_MAX,
        ignore_retained=True,
        entities=(Entity("output_power", "Output power", "number", icon="mdi:gauge"),),
    ),
    CommandSpec(
        name="phase_output_power",
        target=Target.BATTERY,
        value=ValueKind.NUMBER,
        label="Phase output power",
        help="Output power per phase in W, sent for all three phases (V0.5.1 only).",
        unit="W",
        minimum=PHASE_POWER_RANGE[0],
        maximum=PHASE_POWER_RANGE[1],
        ignore_retained=True,
        entities=(
            Entity("phase_output_power", "Phase output power", "number", icon="mdi:sine-wave"),
        ),
    ),
    CommandSpec(
        name="awake",
        target=Target.BATTERY,
        value=ValueKind.SWITCH,
        label="Awake",
        help="Wake the battery (1) or put it to sleep (0); newer firmware only.",
        ignore_retained=True,
        danger=True,
        confirm="Asleep, the battery neither charges nor discharges until it is woken.",
        entities=(Entity("awake", "Awake", "switch", icon="mdi:power-sleep"),),
    ),
    # --- the power controller (core/controller_service.py; its topic is
    # <base>/controller/cmd/mode, mqtt/controller.py) ---
    CommandSpec(
        name="controller_mode",
        target=Target.CONTROLLER,
        value=ValueKind.CHOICE,
        label="Controller mode",
        help=(
            "off; monitor (computes and shows, sends nothing); zero_export; feed_in_cap. "
            "Leaving zero_export or feed_in_cap releases what the controller changed."
        ),
        ignore_retained=True,
        choices=CONTROLLER_MODES,
        entities=(
            Entity(
                "controller_mode", "Controller mode", "select", icon="mdi:transmission-tower-export"
            ),
        ),
    ),
    # --- S-Miles stations through the cloud (core/cloud.py; their topics are
    # <base>/cloud/<sid>/cmd/<name>, mqtt/cloud.py; only with cloud.allow_writes) ---
    CommandSpec(
        name="grid_charge",
        target=Target.CLOUD,
        value=ValueKind.SWITCH,
        label="Grid charge",
        help="Let the station's battery charge from the grid (1) or not (0), through the cloud.",
        ignore_retained=True,
        entities=(
            Entity("grid_charge", "Grid charge", "switch", icon="mdi:transmission-tower-import"),
        ),
    ),
    CommandSpec(
        name="on_grid_power",
        target=Target.CLOUD,
        value=ValueKind.NUMBER,
        label="On-grid input power",
        help="The station's on-grid input power setting in W, through the cloud.",
        unit="W",
        minimum=float(ON_GRID_POWER_RANGE[0]),
        maximum=float(ON_GRID_POWER_RANGE[1]),
        ignore_retained=True,
        entities=(
            Entity("on_grid_power", "On-grid input power", "number", icon="mdi:transmission-tower"),
        ),
    ),
)

#: Every command by name (names are unique across targets).
BY_NAME: Final = {spec.name: spec for spec in COMMANDS}


def commands_for(target: Target) -> tuple[CommandSpec, ...]:
    return tuple(spec for spec in COMMANDS if spec.target is target)


def known_names() -> str:
    """``"a, b, c"``: every command name, for error messages."""
    return ", ".join(sorted(BY_NAME))


def lookup(name: str, target: Target | None = None) -> CommandSpec:
    """The spec called ``name`` (of ``target``, when given); raises :class:`CommandError`."""
    spec = BY_NAME.get(name)
    if spec is None or (target is not None and spec.target is not target):
        raise CommandError(f"unknown command {name!r}")
    return spec


# --- values -------------------------------------------------------------------------


def _text(payload: bytes, limit: int = MAX_PAYLOAD) -> str:
    if len(payload) > limit:
        raise CommandError(f"payload is longer than {limit} bytes")
    try:
        return payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CommandError("payload is not text") from None


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CommandError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise CommandError(f"{text!r} is not a finite number")
    return value


def _switch(text: str) -> float:
    lowered = text.lower()
    if lowered in _TRUE:
        return 1.0
    if lowered in _FALSE:
        return 0.0
    raise CommandError(f"{text!r} is not 0 or 1")


def _choice(spec: CommandSpec, text: str) -> str:
    if text not in spec.choices:
        raise CommandError(f"{text!r} is not one of {', '.join(spec.choices)}")
    return text


def _json_object(text: str) -> dict[str, object]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise CommandError("payload is not JSON") from None
    if not isinstance(data, dict):
        raise CommandError("payload is not a JSON object")
    return data


def parse_value(spec: CommandSpec, payload: bytes) -> float:
    """The command's value from its payload; raises :class:`CommandError`."""
    text = _text(payload, spec.max_payload)
    if not text:
        raise CommandError("payload is empty")
    if spec.value is ValueKind.CHOICE:
        return float(spec.choices.index(_choice(spec, text)))
    if spec.value is ValueKind.JSON:
        _json_object(text)
        return 0.0
    if spec.value is ValueKind.SWITCH:
        return _switch(text)
    if spec.value is ValueKind.PRESS:
        if _switch(text) != 1.0:
            raise CommandError(f"send 1 to {spec.name.replace('_', ' ')}")
        return 1.0
    value = _number(text)
    unit = f" {spec.unit}" if spec.unit else ""
    what = "limit" if spec.limit is not None else spec.name.replace("_", " ")
    if spec.minimum is not None and spec.maximum is not None:
        if not spec.minimum <= value <= spec.maximum:
            raise CommandError(
                f"{what} {value:g}{unit} is outside {spec.minimum:g}..{spec.maximum:g}{unit}"
            )
    elif spec.minimum is not None and value < spec.minimum:
        raise CommandError(f"{what} {value:g}{unit} must be {spec.minimum:g}{unit} or more")
    return value


def check(request: CommandRequest) -> Command | None:
    """Validate a request; None means "ignore quietly" (a retained one-shot).

    Raises :class:`CommandError` for an unknown name or a bad value.
    """
    spec = lookup(request.name, request.target)
    if request.retained and spec.ignore_retained:
        return None
    value = parse_value(spec, request.payload)
    text = ""
    if spec.value in (ValueKind.CHOICE, ValueKind.JSON):
        text = request.payload.decode("utf-8").strip()
    return Command(spec, request.serial, value, text)


__all__ = [
    "BY_NAME",
    "COMMANDS",
    "COMMAND_ERRORS",
    "MAX_PAYLOAD",
    "CliForm",
    "ClientCall",
    "Command",
    "CommandError",
    "CommandOutcome",
    "CommandRequest",
    "CommandSpec",
    "Entity",
    "LimitKind",
    "Target",
    "ValueKind",
    "check",
    "commands_for",
    "known_names",
    "lookup",
    "outcome_for",
]
