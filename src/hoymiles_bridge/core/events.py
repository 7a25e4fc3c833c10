"""Typed events of the fleet, and their one-line description for people.

The :class:`~hoymiles_bridge.core.fleet.Fleet` emits an :data:`Event` after
it has updated its state, so a listener reads the state it describes. The
adapters turn them into MQTT topics, web pushes and log entries.
:func:`describe` gives the one line (kind, text, level, details) that the web
UI's event log shows; it never holds a secret.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from hoymiles_bridge.core.commands import CommandOutcome, CommandRequest
from hoymiles_bridge.core.controller import CONTROLLER_ORIGIN, Actuation
from hoymiles_bridge.core.state import (
    NORMAL_STATES,
    Alarm,
    BatteryState,
    DtuState,
    InverterDevice,
)
from hoymiles_bridge.dtu.connection import FrameEvent
from hoymiles_bridge.protocol.models import AppInfo, RealData

#: Levels of :class:`Activity`.
INFO: Final = "info"
WARNING: Final = "warning"


@dataclass(frozen=True, slots=True)
class Started:
    """The fleet started its sessions."""

    version: str
    dtus: int


@dataclass(frozen=True, slots=True)
class StateChanged:
    """A DTU's session changed state (connected, offline, night, displaced...)."""

    dtu: DtuState


@dataclass(frozen=True, slots=True)
class DtuInfoChanged:
    """A DTU's identity and inverter list were read (at start and every few minutes).

    ``removed`` are inverters the DTU no longer lists; ``limits`` the
    inverters whose applied limit came with the DTU's configuration.
    """

    dtu: DtuState
    info: AppInfo
    removed: tuple[InverterDevice, ...] = ()
    limits: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RealDataReceived:
    """A poll answered; ``fresh`` is False when the DTU repeated its last snapshot."""

    dtu: DtuState
    data: RealData
    fresh: bool
    #: Wall-clock time of the poll.
    time: float


@dataclass(frozen=True, slots=True)
class AlarmsChanged:
    """A DTU's alarm list was read; ``new`` are alarms worth telling about."""

    dtu: DtuState
    new: tuple[tuple[str, Alarm], ...] = ()


@dataclass(frozen=True, slots=True)
class LimitChanged:
    """An inverter's applied limit changed after a command."""

    dtu: DtuState
    serial: str


@dataclass(frozen=True, slots=True)
class CommandStatus:
    """A command's progress: ``pending`` while it runs, then its final outcome."""

    request: CommandRequest
    outcome: CommandOutcome
    #: The DTU's label ("" when the command named no known device).
    dtu: str = ""
    final: bool = True


@dataclass(frozen=True, slots=True)
class Notice:
    """Something an adapter reports about itself (``kind`` names it, e.g. ``mqtt``)."""

    kind: str
    text: str
    level: str = INFO


@dataclass(frozen=True, slots=True)
class ControllerActed:
    """The power controller sent an actuation through the registry; ``outcome`` is how it ended."""

    actuation: Actuation
    outcome: CommandOutcome


@dataclass(frozen=True, slots=True)
class ControllerChanged:
    """The power controller's mode or state changed (``text`` says how, for people)."""

    mode: str
    state: str
    text: str
    level: str = INFO


@dataclass(frozen=True, slots=True)
class BatteryChanged:
    """A battery's state changed; ``what`` says which parts.

    ``what`` holds ``values`` (new trusted values), ``identity`` (model,
    serial, role, fields or capabilities: discovery may change),
    ``availability``, ``setpoint``, ``mode`` and ``ack``. ``source`` names
    what caused it (``quick``, ``config``, ``silence``, ``command``...).
    """

    battery: BatteryState
    what: frozenset[str]
    source: str = ""


@dataclass(frozen=True, slots=True)
class FrameSeen:
    """A frame crossed the wire of a DTU's session (delivered synchronously)."""

    dtu: str
    frame: FrameEvent


Event = (
    Started
    | StateChanged
    | DtuInfoChanged
    | RealDataReceived
    | AlarmsChanged
    | LimitChanged
    | CommandStatus
    | Notice
    | ControllerActed
    | ControllerChanged
    | BatteryChanged
)


@dataclass(frozen=True, slots=True)
class Activity:
    """One line of the event log: what happened, to which DTU and device, how bad.

    ``kind`` is one of ``start``, ``mqtt`` (or another adapter's notice),
    ``state``, ``dtu_info``, ``poll``, ``alarm`` and ``command``. ``data``
    holds JSON-able details and never a secret.
    """

    kind: str
    dtu: str
    serial: str | None
    text: str
    level: str = INFO
    data: dict[str, Any] = field(default_factory=dict)


def describe(event: Event) -> list[Activity]:
    """The event-log lines of ``event`` (none for the ones that are not news)."""
    if isinstance(event, Started):
        return [
            Activity("start", "", None, f"bridge {event.version} started with {event.dtus} DTU(s)")
        ]
    if isinstance(event, Notice):
        return [Activity(event.kind, "", None, event.text, event.level)]
    if isinstance(event, StateChanged):
        session = event.dtu.session
        state = session.state
        reason = f" ({session.state_reason})" if session.state_reason else ""
        return [
            Activity(
                "state",
                event.dtu.label,
                event.dtu.serial,
                f"{state.value}{reason}",
                INFO if state in NORMAL_STATES else WARNING,
                {"state": state.value, "displaced": state.value == "displaced"},
            )
        ]
    if isinstance(event, DtuInfoChanged):
        device, info = event.dtu.device, event.info
        if device is None:
            return []
        return [
            Activity(
                "dtu_info",
                event.dtu.label,
                device.serial,
                f"DTU {device.serial} ({device.model}, firmware {device.firmware}, "
                f"{'encrypted' if info.encrypted else 'not encrypted'})",
            )
        ]
    if isinstance(event, RealDataReceived):
        if not event.fresh:
            return []
        inverters = event.dtu.inverters.values()
        return [
            Activity(
                "poll",
                event.dtu.label,
                event.dtu.serial,
                "poll",
                data={
                    "time": event.time,
                    "power": {
                        i.serial: i.values.values.get("power", 0.0)
                        for i in inverters
                        if i.values is not None
                    },
                    "yieldday": {
                        i.serial: i.values.values.get("yieldday", 0.0)
                        for i in inverters
                        if i.values is not None
                    },
                },
            )
        ]
    if isinstance(event, AlarmsChanged):
        return [
            Activity(
                "alarm",
                event.dtu.label,
                serial,
                f"{serial}: {alarm.text} (code {alarm.code})" + ("" if alarm.active else ", ended"),
                WARNING if alarm.active else INFO,
                {
                    "code": alarm.code,
                    "start": alarm.start,
                    "end": alarm.end,
                    "active": alarm.active,
                },
            )
            for serial, alarm in event.new
        ]
    if isinstance(event, ControllerActed):
        action, outcome = event.actuation, event.outcome
        ok = outcome.status in {"ok", "pending"}
        return [
            Activity(
                "controller",
                "",
                action.device,
                action.describe() + ("" if ok else f" ({outcome.text})"),
                INFO if ok else WARNING,
                {
                    "kind": action.kind.value,
                    "value": action.value,
                    "reason": action.reason,
                    "status": outcome.status,
                },
            )
        ]
    if isinstance(event, ControllerChanged):
        return [
            Activity(
                "controller",
                "",
                None,
                event.text,
                event.level,
                {"mode": event.mode, "state": event.state},
            )
        ]
    if isinstance(event, BatteryChanged):
        return _battery_lines(event)
    if isinstance(event, CommandStatus):
        if not event.final or event.request.origin == CONTROLLER_ORIGIN:
            # The controller's own commands are told by ControllerActed, with their reason.
            return []
        request, outcome = event.request, event.outcome
        what = "the controller" if request.name == "controller_mode" else "the DTU"
        return [
            Activity(
                "command",
                event.dtu,
                request.serial or None,
                f"{request.name} for {request.serial or what}: {outcome.text}",
                INFO if outcome.status in {"ok", "pending"} else WARNING,
                {"command": request.name, "status": outcome.status, "message": outcome.message},
            )
        ]
    return []


def _battery_lines(event: BatteryChanged) -> list[Activity]:
    battery = event.battery
    if "availability" in event.what:
        text = "available" if battery.available else "unavailable (silent)"
        level = INFO if battery.available else WARNING
        return [Activity("battery", battery.dev_id, battery.serial, f"battery {text}", level)]
    if "ack" in event.what and event.source in battery.acks:
        text = f"{event.source}: {battery.acks[event.source]}"
        return [Activity("battery", battery.dev_id, battery.serial, text)]
    return []


__all__ = [
    "Activity",
    "AlarmsChanged",
    "BatteryChanged",
    "CommandStatus",
    "ControllerActed",
    "ControllerChanged",
    "DtuInfoChanged",
    "Event",
    "FrameSeen",
    "LimitChanged",
    "Notice",
    "RealDataReceived",
    "Started",
    "StateChanged",
    "describe",
]
