"""The fleet's typed state: what is known about each DTU, inverter and battery, with trusted values.

Every adapter (MQTT, the web UI) reads this state; none parses another
adapter's output. The state is written only by :class:`~hoymiles_bridge.core.fleet.Fleet`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from hoymiles_bridge.core.values import InverterGuard, InverterValues
from hoymiles_bridge.dtu.session import DtuSession, SessionState
from hoymiles_bridge.protocol import battery as fw
from hoymiles_bridge.protocol.battery import Outbound, Value

#: Session states in which a DTU counts as available.
AVAILABLE_STATES: Final = frozenset(
    {SessionState.CONNECTED, SessionState.FROZEN, SessionState.DISPLACED}
)
#: Session states that are normal operation (the others are worth a warning).
NORMAL_STATES: Final = frozenset(
    {SessionState.STARTING, SessionState.CONNECTED, SessionState.NIGHT, SessionState.STOPPED}
)


@dataclass(frozen=True, slots=True)
class DtuDevice:
    """The identity of one DTU."""

    serial: str
    model: str
    firmware: str
    hardware: str
    name: str | None
    host: str


@dataclass(frozen=True, slots=True)
class InverterDevice:
    """The identity and abilities of one inverter.

    ``name`` and ``port_names`` are the user's (the ``inverters`` option):
    ``None`` and ``()`` when not given. They are text to show, never part of
    a topic or an id.
    """

    serial: str
    model: str
    firmware: str
    hardware: str
    name: str | None
    ports: int
    rated_power: int  # W; 0 when unknown
    dtu_serial: str
    supports_nonpersistent: bool
    port_names: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        """The user's name, else ``"<model> <serial>"``."""
        return self.name or f"{self.model} {self.serial}".strip()

    def port_name(self, port: int) -> str:
        """The user's name of PV port ``port`` (1..n), else ``"Port <n>"``."""
        if 1 <= port <= len(self.port_names):
            return self.port_names[port - 1]
        return f"Port {port}"


@dataclass(frozen=True, slots=True)
class Alarm:
    """One alarm of an inverter, as the DTU reported it."""

    code: int
    text: str
    start: int
    end: int | None
    active: bool

    def to_dict(self) -> dict[str, int | str | bool | None]:
        return {
            "code": self.code,
            "text": self.text,
            "start": self.start,
            "end": self.end,
            "active": self.active,
        }


def _start(alarm: Alarm) -> int:
    return alarm.start


@dataclass
class InverterState:
    """One inverter: identity, trusted values, limit and alarms."""

    device: InverterDevice
    guard: InverterGuard
    values: InverterValues | None = None
    #: The limit the inverter applies, in percent (None until known).
    limit: float | None = None
    #: Wall-clock time of the last fresh values.
    last_update: float | None = None
    alarms: tuple[Alarm, ...] = ()

    @property
    def serial(self) -> str:
        return self.device.serial

    @property
    def active_alarms(self) -> list[Alarm]:
        return [a for a in self.alarms if a.active]

    @property
    def latest_alarm(self) -> Alarm | None:
        return max(self.alarms, key=_start) if self.alarms else None


@dataclass
class DtuState:
    """One DTU: its session, identity and inverters."""

    session: DtuSession
    device: DtuDevice | None = None
    inverters: dict[str, InverterState] = field(default_factory=dict)

    @property
    def serial(self) -> str | None:
        return self.session.dtu_serial

    @property
    def label(self) -> str:
        return self.session.target.label

    @property
    def available(self) -> bool:
        return self.session.state in AVAILABLE_STATES


@dataclass(frozen=True, slots=True)
class Totals:
    """Sums over every inverter of every DTU."""

    ac_power: float
    dc_power: float
    yield_day: float
    yield_total: float
    irradiation: float
    valid: bool


def totals(dtus: list[DtuState]) -> Totals:
    """The fleet totals: power, yields and irradiation, valid while every DTU is available."""
    ac = dc = day = total = rated = 0.0
    valid = True
    for dtu in dtus:
        valid = valid and dtu.available
        for inverter in dtu.inverters.values():
            rated += inverter.device.rated_power
            values = inverter.values
            if values is None:
                continue
            ac += values.values.get("power", 0.0)
            dc += values.values.get("powerdc", 0.0)
            day += values.values.get("yieldday", 0.0)
            total += values.values.get("yieldtotal", 0.0)
    return Totals(
        ac_power=round(ac, 1),
        dc_power=round(dc, 1),
        yield_day=day,
        yield_total=round(total, 3),
        irradiation=round(dc * 100 / rated, 1) if rated else 0.0,
        valid=valid,
    )


# --- batteries ---------------------------------------------------------------


@dataclass
class Holding:
    """A setpoint the bridge keeps alive: the value asked for, when last sent, sends so far."""

    watts: float
    sent_at: float
    count: int = 0


@dataclass
class BatteryState:
    """What the bridge knows about one battery."""

    dev_id: str
    #: The user's name (option ``batteries``).
    name: str | None = None
    model: str | None = None
    serial: str | None = None
    firmware: str | None = None
    values: dict[str, Value] = field(default_factory=dict)
    #: Field keys this battery ever sent (announced once they arrive).
    seen: set[str] = field(default_factory=set)
    #: True: master or standalone (sends sys_*); False: a slave; None: not known yet.
    master: bool | None = None
    #: Commands the firmware advertised (its configs, ``supported_topics``).
    capabilities: set[Outbound] = field(default_factory=set)
    #: The setpoint range the firmware advertised (``power_ctrl``'s min/max).
    advertised: tuple[float, float] | None = None
    last_quick: float | None = None
    last_slow: float | None = None
    available: bool = False
    #: The EMS mode reported by ``system/state``, or the last one we sent.
    mode: str | None = None
    #: When we last sent a mode (a report older than our command may still arrive).
    mode_sent_at: float | None = None
    holding: Holding | None = None
    #: Firmware configs seen (by key), legacy text configs included.
    firmware_configs: set[str] = field(default_factory=set)
    #: The last acknowledgement per kind (readable).
    acks: dict[str, str] = field(default_factory=dict)
    updated_at: float | None = None

    @property
    def title(self) -> str:
        return self.name or f"{self.model or 'Battery'} {self.serial or self.dev_id}"

    @property
    def profile(self) -> fw.ModelProfile:
        return fw.profile_for(self.model, self.serial)

    @property
    def setpoint_range(self) -> tuple[float, float]:
        """The setpoint range: the advertised one made symmetric, else the model's rating."""
        if self.advertised is not None:
            return fw.symmetric_range(*self.advertised)
        rated = self.profile.rated_power
        return -rated, rated

    def to_dict(self) -> dict[str, Any]:
        low, high = self.setpoint_range
        return {
            "dev_id": self.dev_id,
            "name": self.title,
            "model": self.model,
            "serial": self.serial,
            "firmware": self.firmware,
            "master": self.master,
            "available": self.available,
            "mode": self.mode,
            "setpoint": self.holding.watts if self.holding is not None else None,
            "setpoint_range": [low, high],
            "capabilities": sorted(c.value for c in self.capabilities),
            "values": dict(self.values),
            "acks": dict(self.acks),
        }


__all__ = [
    "AVAILABLE_STATES",
    "NORMAL_STATES",
    "Alarm",
    "BatteryState",
    "DtuDevice",
    "DtuState",
    "Holding",
    "InverterDevice",
    "InverterState",
    "Totals",
    "totals",
]
