"""The MQTT topic layout: one table that publishing and discovery both read.

The layout follows OpenDTU's, so automations and dashboards written for it
work unchanged (features.md section 3.1). Under ``base_topic``:

* ``<serial>/0/<field>``: an inverter's AC side and totals;
* ``<serial>/<port>/<field>``: one PV input;
* ``<serial>/status/<field>``: reachability, limits, last update;
* ``<serial>/state``: one JSON object with every value of a poll, the topic
  Home Assistant's entities read (see :data:`STATE_STATUS_KEYS`);
* ``<serial>/json``: the whole typed model; ``<serial>/alarms``...: alarms;
* ``<serial>/cmd/<command>``: commands in, ``.../status`` their outcome;
* ``dtu/<field>`` (``dtu/<dtu serial>/<field>`` with several DTUs), where
  ``dtu/available`` says whether the bridge reaches the DTU;
* ``ac/<field>``, ``dc/<field>``: totals over every inverter;
* ``dtu/status``: the bridge's last will (``online``/``offline``), as in
  OpenDTU, whose ``dtu/...`` topics describe the gateway itself; with it
  ``dtu/uptime`` (seconds since the bridge started) and the alias
  ``bridge/status`` (kept for older automations: set on start and on a clean
  stop, but only the will turns ``offline`` after a crash).

Each :class:`Field` names its topic, how to format the value, and how Home
Assistant should show it. Units and names copy OpenDTU's exactly. The command
entities come from the command registry (:mod:`hoymiles_bridge.core.commands`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from hoymiles_bridge.core.commands import Target, commands_for

Component = Literal["sensor", "binary_sensor", "number", "button", "select", "switch"]
Category = Literal["config", "diagnostic"] | None


@dataclass(frozen=True, slots=True)
class Field:
    """One published value (or one command entity)."""

    key: str  # stable id, part of the entity's unique id
    topic: str  # relative to its owner (inverter, port, dtu, totals)
    name: str  # entity name shown in Home Assistant
    component: Component = "sensor"
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = None
    category: Category = None
    icon: str | None = None
    precision: int | None = None  # suggested display precision
    enabled: bool = True  # enabled by default in Home Assistant
    payload_on: str = "1"  # binary_sensor "on" state; a button's press payload
    payload_off: str = "0"


M = "measurement"
TI = "total_increasing"

#: ``<serial>/0/...``: the inverter's AC side.
INVERTER_FIELDS: Final = (
    Field("power", "0/power", "Power", unit="W", device_class="power", state_class=M, precision=1),
    Field("voltage", "0/voltage", "Voltage", unit="V", device_class="voltage", state_class=M),
    Field("current", "0/current", "Current", unit="A", device_class="current", state_class=M),
    Field(
        "frequency", "0/frequency", "Frequency", unit="Hz", device_class="frequency", state_class=M
    ),
    Field(
        "powerfactor", "0/powerfactor", "Power factor", device_class="power_factor", state_class=M
    ),
    Field(
        "reactivepower",
        "0/reactivepower",
        "Reactive power",
        unit="var",
        device_class="reactive_power",
        state_class=M,
    ),
    Field(
        "temperature",
        "0/temperature",
        "Temperature",
        unit="°C",
        device_class="temperature",
        state_class=M,
    ),
    Field("yieldday", "0/yieldday", "Yield day", unit="Wh", device_class="energy", state_class=TI),
    Field(
        "yieldtotal",
        "0/yieldtotal",
        "Yield total",
        unit="kWh",
        device_class="energy",
        state_class=TI,
        precision=3,
    ),
    Field("powerdc", "0/powerdc", "DC power", unit="W", device_class="power", state_class=M),
    Field("efficiency", "0/efficiency", "Efficiency", unit="%", state_class=M, icon="mdi:percent"),
)

#: ``<serial>/<port>/...``: one PV input (port 1..n).
PORT_FIELDS: Final = (
    Field("power", "power", "Power", unit="W", device_class="power", state_class=M, precision=1),
    Field("voltage", "voltage", "Voltage", unit="V", device_class="voltage", state_class=M),
    Field("current", "current", "Current", unit="A", device_class="current", state_class=M),
    Field("yieldday", "yieldday", "Yield day", unit="Wh", device_class="energy", state_class=TI),
    Field(
        "yieldtotal",
        "yieldtotal",
        "Yield total",
        unit="kWh",
        device_class="energy",
        state_class=TI,
        precision=3,
    ),
    Field(
        "irradiation",
        "irradiation",
        "Irradiation",
        unit="%",
        state_class=M,
        icon="mdi:sun-wireless",
    ),
)

#: ``<serial>/status/...`` and other per-inverter state.
INVERTER_STATUS_FIELDS: Final = (
    Field(
        "reachable",
        "status/reachable",
        "Reachable",
        component="binary_sensor",
        device_class="connectivity",
        category="diagnostic",
    ),
    Field(
        "producing",
        "status/producing",
        "Producing",
        component="binary_sensor",
        device_class="running",
    ),
    Field(
        "last_update",
        "status/last_update",
        "Last update",
        device_class="timestamp",
        category="diagnostic",
    ),
    Field(
        "limit_relative",
        "status/limit_relative",
        "Limit",
        unit="%",
        state_class=M,
        category="diagnostic",
        icon="mdi:speedometer",
    ),
    Field(
        "limit_absolute",
        "status/limit_absolute",
        "Limit (W)",
        unit="W",
        device_class="power",
        state_class=M,
        category="diagnostic",
    ),
    Field(
        "alarm_count",
        "alarms/count",
        "Alarm count",
        state_class=M,
        icon="mdi:alert",
        category="diagnostic",
    ),
    Field(
        "alarm_last", "alarms/last", "Last alarm", icon="mdi:alert-circle", category="diagnostic"
    ),
    Field(
        "firmware",
        "device/fwbuildversion",
        "Firmware version",
        category="diagnostic",
        icon="mdi:chip",
    ),
    Field(
        "hardware",
        "device/hwversion",
        "Hardware version",
        category="diagnostic",
        icon="mdi:chip",
        enabled=False,
    ),
)

#: The status fields that travel in ``<serial>/state`` with every poll's values
#: (the AC fields under their key, each port's as ``port<n>_<key>``). Limits,
#: alarms and versions change seldom and keep their own topics.
STATE_STATUS_KEYS: Final = frozenset({"reachable", "producing", "last_update"})

#: ``dtu/...`` (``dtu/<dtu serial>/...`` when the bridge serves several DTUs).
DTU_FIELDS: Final = (
    Field(
        "connection",
        "connection",
        "Connection",
        category="diagnostic",
        icon="mdi:lan-connect",
    ),
    Field(
        "status",
        "available",
        "Status",
        component="binary_sensor",
        device_class="connectivity",
        category="diagnostic",
        payload_on="online",
        payload_off="offline",
    ),
    Field(
        "signal",
        "rssi",
        "Signal strength",
        unit="%",
        state_class=M,
        category="diagnostic",
        icon="mdi:wifi",
    ),
    Field("ip", "ip", "IP", category="diagnostic", icon="mdi:ip-network"),
    Field("firmware", "firmware", "Firmware version", category="diagnostic", icon="mdi:chip"),
    Field("hardware", "hardware", "Hardware version", category="diagnostic", icon="mdi:chip"),
    Field(
        "last_update",
        "last_update",
        "Last update",
        device_class="timestamp",
        category="diagnostic",
    ),
    Field(
        "rtt",
        "rtt",
        "Poll round-trip time",
        unit="ms",
        device_class="duration",
        state_class=M,
        category="diagnostic",
    ),
    Field(
        "encrypted",
        "encrypted",
        "Encrypted",
        component="binary_sensor",
        category="diagnostic",
        icon="mdi:lock",
    ),
    Field(
        "performance_mode",
        "performance_mode",
        "Performance mode",
        component="binary_sensor",
        category="diagnostic",
        icon="mdi:run-fast",
    ),
)

#: ``ac/...`` and ``dc/...``: totals over every inverter of every DTU.
TOTAL_FIELDS: Final = (
    Field("ac_power", "ac/power", "AC power", unit="W", device_class="power", state_class=M),
    Field(
        "ac_yieldtotal",
        "ac/yieldtotal",
        "Yield total",
        unit="kWh",
        device_class="energy",
        state_class=TI,
        precision=3,
    ),
    Field(
        "ac_yieldday", "ac/yieldday", "Yield day", unit="Wh", device_class="energy", state_class=TI
    ),
    Field("dc_power", "dc/power", "DC power", unit="W", device_class="power", state_class=M),
    Field(
        "dc_irradiation",
        "dc/irradiation",
        "Irradiation",
        unit="%",
        state_class=M,
        icon="mdi:sun-wireless",
    ),
)


#: The bridge itself (``dtu/...`` is OpenDTU's place for the gateway's own values);
#: announced on the first DTU's device, like the totals.
BRIDGE_FIELDS: Final = (
    Field(
        "uptime",
        "dtu/uptime",
        "Bridge uptime",
        unit="s",
        device_class="duration",
        category="diagnostic",
        icon="mdi:timer-outline",
        enabled=False,  # it changes on every publish: off unless wanted
    ),
)


def _command_fields(target: Target) -> tuple[Field, ...]:
    """The command entities of ``target``, from the registry: topic is ``.../cmd/<command>``."""
    return tuple(
        Field(
            entity.key,
            spec.name,
            entity.name,
            component=entity.component,
            unit=spec.unit,
            device_class=entity.device_class,
            category="config",
            icon=entity.icon,
            payload_on=entity.payload,
        )
        for spec in commands_for(target)
        for entity in spec.entities
    )


#: Command entities of an inverter: topic is ``<serial>/cmd/<topic>``.
INVERTER_COMMANDS: Final = _command_fields(Target.INVERTER)
#: DTU command entities: topic is ``dtu/cmd/<topic>``.
DTU_COMMANDS: Final = _command_fields(Target.DTU)
#: Commands accepted on ``<serial>/cmd/<name>``.
INVERTER_COMMAND_NAMES: Final = frozenset(s.name for s in commands_for(Target.INVERTER))
#: Commands accepted on ``dtu/cmd/<name>`` (or ``dtu/<serial>/cmd/<name>``).
DTU_COMMAND_NAMES: Final = frozenset(s.name for s in commands_for(Target.DTU))


def reliable_topics(discovery_prefix: str) -> Callable[[str], bool]:
    """The rule the link applies: availability (``.../available``) and everything
    under the discovery prefix always go at QoS 1, whatever ``mqtt.qos`` says.

    The bridge's inverters, DTUs, batteries and cloud stations all name their
    availability ``.../available``; the will and its alias go at QoS 1 anyway.
    """
    prefix = discovery_prefix.strip("/") + "/"

    def reliable(topic: str) -> bool:
        return topic.endswith("/available") or topic.startswith(prefix)

    return reliable


def port_key(port: int, key: str) -> str:
    """``port<n>_<key>``: a PV port's value in an inverter's state and its entity's object id."""
    return f"port{port}_{key}"


class TopicLayout:
    """Absolute topic names for a base topic and a number of DTUs."""

    def __init__(self, base: str = "solar", *, several_dtus: bool = False) -> None:
        self.base = base.strip("/")
        self.several_dtus = several_dtus

    def _t(self, *parts: str) -> str:
        return "/".join((self.base, *parts))

    # bridge
    @property
    def will(self) -> str:
        """``dtu/status``: the bridge's last will, ``online``/``offline`` (OpenDTU's LWT)."""
        return self._t("dtu", "status")

    @property
    def bridge_status(self) -> str:
        """``bridge/status``: an alias of :attr:`will`, set on start and clean stop only."""
        return self._t("bridge", "status")

    @property
    def uptime(self) -> str:
        """``dtu/uptime``: whole seconds since the bridge started."""
        return self._t("dtu", "uptime")

    # inverters
    def inverter(self, serial: str, relative: str) -> str:
        return self._t(serial, relative)

    def port(self, serial: str, port: int, relative: str) -> str:
        return self._t(serial, str(port), relative)

    def inverter_available(self, serial: str) -> str:
        return self._t(serial, "status", "available")

    def inverter_state(self, serial: str) -> str:
        """``<serial>/state``: a poll's values as one JSON object (what discovery reads)."""
        return self._t(serial, "state")

    def inverter_json(self, serial: str) -> str:
        return self._t(serial, "json")

    def inverter_alarms(self, serial: str) -> str:
        return self._t(serial, "alarms")

    def inverter_command(self, serial: str, name: str) -> str:
        return self._t(serial, "cmd", name)

    def inverter_command_status(self, serial: str, name: str) -> str:
        return self._t(serial, "cmd", name, "status")

    # DTUs
    def dtu(self, dtu_serial: str, relative: str) -> str:
        if self.several_dtus:
            return self._t("dtu", dtu_serial, relative)
        return self._t("dtu", relative)

    def dtu_available(self, dtu_serial: str) -> str:
        """``online`` while the bridge reaches the DTU (``dtu/<serial>/available`` with several)."""
        return self.dtu(dtu_serial, "available")

    def dtu_command(self, dtu_serial: str, name: str) -> str:
        return self.dtu(dtu_serial, f"cmd/{name}")

    def dtu_command_status(self, dtu_serial: str, name: str) -> str:
        return self.dtu(dtu_serial, f"cmd/{name}/status")

    # totals
    def total(self, relative: str) -> str:
        return self._t(relative)

    # subscriptions
    @property
    def command_subscriptions(self) -> tuple[str, ...]:
        dtu = self._t("dtu", "+", "cmd", "+") if self.several_dtus else self._t("dtu", "cmd", "+")
        battery, cloud = self._t("battery", "+", "cmd", "+"), self._t("cloud", "+", "cmd", "+")
        return (self._t("+", "cmd", "+"), dtu, battery, cloud)


__all__ = [
    "BRIDGE_FIELDS",
    "DTU_COMMANDS",
    "DTU_COMMAND_NAMES",
    "DTU_FIELDS",
    "INVERTER_COMMANDS",
    "INVERTER_COMMAND_NAMES",
    "INVERTER_FIELDS",
    "INVERTER_STATUS_FIELDS",
    "PORT_FIELDS",
    "STATE_STATUS_KEYS",
    "TOTAL_FIELDS",
    "Field",
    "TopicLayout",
    "port_key",
    "reliable_topics",
]
