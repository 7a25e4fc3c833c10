"""The controller service: meter payloads in, registry requests out, events (no network)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hoymiles_bridge.config.options import ControllerOptions
from hoymiles_bridge.core.commands import CommandOutcome, CommandRequest, Target
from hoymiles_bridge.core.controller import (
    CONTROLLER_ORIGIN,
    Actuation,
    BatteryUnit,
    InverterUnit,
    Kind,
    Mode,
)
from hoymiles_bridge.core.controller_service import (
    MODE_FILE_NAME,
    ControllerService,
    FleetActuators,
    battery_grid,
    battery_units,
    request_for,
)
from hoymiles_bridge.core.events import ControllerActed, ControllerChanged, Event, describe


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeFleet:
    """Records requests; answers battery commands as ``answer`` says."""

    def __init__(self, answer: str = "ok") -> None:
        self.requests: list[CommandRequest] = []
        self.answer = answer

    async def submit(self, request: CommandRequest) -> CommandOutcome | None:
        self.requests.append(request)
        if request.name == "setpoint":
            return CommandOutcome(self.answer, "" if self.answer == "ok" else "no such battery")
        return CommandOutcome("ok")


def _service(
    fleet: FakeFleet, clock: Clock, batteries: Sequence[BatteryUnit] = (), **options: object
) -> tuple[ControllerService, list[Event]]:
    events: list[Event] = []

    async def emit(event: Event) -> None:
        events.append(event)

    inverters = [InverterUnit("116100000001", 800.0, 790.0, controllable=True, limit=800.0)]
    actuators = FleetActuators(fleet, lambda: inverters, lambda now: batteries)
    defaults = {"meter_topic": "m", "meter_json_path": "p"}
    service = ControllerService(
        ControllerOptions(**(defaults | options)),  # type: ignore[arg-type]
        actuators,
        emit,
        clock=clock,
        wall=clock,
    )
    return service, events


async def _feed(service: ControllerService, payload: bytes) -> None:
    """A meter message, then the step the service's loop would take at once."""
    await service.on_meter(payload)
    await service.step()


def test_requests_use_the_registry_names_and_never_a_persistent_limit() -> None:
    limit = request_for(Actuation(Kind.LIMIT, "116100000001", 400.0, "cap"))
    assert (limit.target, limit.name, limit.payload) == (
        Target.INVERTER,
        "limit_nonpersistent_absolute",
        b"400",
    )
    setpoint = request_for(Actuation(Kind.SETPOINT, "MSA-1", -250.0, "export"))
    assert (setpoint.name, setpoint.payload, setpoint.origin) == (
        "setpoint",
        b"-250.0",
        CONTROLLER_ORIGIN,
    )
    assert request_for(Actuation(Kind.EMS_MODE, "MSA-1", "general", "x")).payload == b"general"


async def test_meter_payloads_drive_the_battery_and_every_actuation_is_an_event() -> None:
    clock, fleet = Clock(), FakeFleet()
    battery = BatteryUnit("MSA-1", 50.0, 1000.0, 1000.0, power=0.0, seen_at=clock.now)
    service, events = _service(fleet, clock, [battery], mode="zero_export")
    await _feed(service, b'{"p": 400}')
    (request,) = fleet.requests
    assert request.name == "setpoint"
    acted = [e for e in events if isinstance(e, ControllerActed)]
    (line,) = describe(acted[0])
    assert line.kind == "controller"
    assert "grid +400 W, target +0 W" in line.text
    assert service.status(history=True)["history"]


async def test_bad_and_retained_payloads_hold() -> None:
    clock, fleet = Clock(), FakeFleet()
    service, _ = _service(fleet, clock, mode="zero_export")
    for payload in (b"", b"{", b'{"q": 1}', b'{"p": "many"}'):
        await service.on_meter(payload)
    await service.on_meter(b'{"p": 1}', retained=True)
    assert service.readings == 0
    assert service.law.ignored_readings == 4
    assert fleet.requests == []


async def test_a_battery_that_fails_leaves_the_split() -> None:
    clock, fleet = Clock(), FakeFleet(answer="refused")
    battery = BatteryUnit("MSA-1", 50.0, 1000.0, 1000.0, power=0.0, seen_at=clock.now)
    service, events = _service(fleet, clock, [battery], mode="zero_export")
    await _feed(service, b'{"p": 400}')
    clock.now += 1
    await _feed(service, b'{"p": 400}')
    assert [r.name for r in fleet.requests] == ["setpoint"]  # not tried again
    (line,) = describe(next(e for e in events if isinstance(e, ControllerActed)))
    assert line.level == "warning"
    assert "no such battery" in line.text


async def test_mode_switch_release_and_meter_loss_are_told() -> None:
    clock, fleet = Clock(), FakeFleet()
    battery = BatteryUnit("MSA-1", 50.0, 1000.0, 1000.0, power=0.0, seen_at=clock.now)
    service, events = _service(fleet, clock, [battery])
    assert service.law.mode is Mode.MONITOR
    await _feed(service, b'{"p": 400}')
    assert fleet.requests == []  # monitor sends nothing
    assert (await service.set_mode("zero_export")).status == "ok"
    clock.now += 1
    await _feed(service, b'{"p": 400}')
    assert [r.name for r in fleet.requests] == ["setpoint"]
    clock.now += 11
    await service.step()
    changed = [e for e in events if isinstance(e, ControllerChanged)]
    assert changed[-1].state == "meter missing"
    assert changed[-1].level == "warning"
    assert fleet.requests[-1].payload == b"0.0"
    assert (await service.set_mode("feed_in_cap")).status == "refused"
    await service.stop()
    assert [r.payload for r in fleet.requests[-1:]] == [b"general"]
    await service.step()  # stopped: nothing more
    assert fleet.requests[-1].payload == b"general"


@dataclass
class StandInBattery:
    """Shaped like the battery hub's state (what battery_units reads)."""

    dev_id: str
    values: dict[str, object] = field(default_factory=dict)
    available: bool = True
    master: bool | None = True
    setpoint_range: tuple[float, float] = (-1000.0, 1000.0)
    last_quick: float | None = 5.0


def test_battery_units_one_per_system_with_the_system_values() -> None:
    master = StandInBattery(
        "MSA-1",
        {"soc": 40.0, "sys_soc": 55.5, "bat_p": 100.0, "sys_bat_p": 220.0},
        setpoint_range=(-2000.0, 2000.0),
    )
    slave = StandInBattery("MSA-2", {"soc": 70.0}, master=False)
    alone = StandInBattery("MSA-3", {"soc": "n/a", "bat_p": True}, master=None, last_quick=None)
    units = battery_units([master, slave, alone])
    assert [u.id for u in units] == ["MSA-1", "MSA-3"]
    first, third = units
    assert (first.soc, first.power, first.charge_max, first.discharge_max) == (
        55.5,
        220.0,
        2000.0,
        2000.0,
    )
    assert (third.soc, third.power, third.seen_at) == (None, None, None)  # not usable yet


def test_battery_grid_reads_a_masters_sys_grid_p() -> None:
    slave = StandInBattery("MSA-2", {"sys_grid_p": 5.0}, master=False)
    silent = StandInBattery("MSA-3", {"sys_grid_p": 7.0}, last_quick=None)
    master = StandInBattery("MSA-1", {"sys_grid_p": -120.5}, last_quick=42.0)
    assert battery_grid([slave, silent, master]) == (-120.5, 42.0)
    assert battery_grid([StandInBattery("MSA-4", {"sys_grid_p": "x"})]) is None


async def test_without_a_meter_topic_the_batterys_own_meter_serves() -> None:
    clock, fleet = Clock(), FakeFleet()
    battery = BatteryUnit("MSA-1", 50.0, 1000.0, 1000.0, power=0.0, seen_at=clock.now)
    grid: list[tuple[float, float]] = [(400.0, clock.now)]
    events: list[Event] = []

    async def emit(event: Event) -> None:
        events.append(event)

    actuators = FleetActuators(fleet, list, lambda now: [battery], lambda: grid[-1])
    service = ControllerService(
        ControllerOptions(mode="zero_export", meter_sign="export_positive"),
        actuators,
        emit,
        clock=clock,
        wall=clock,
    )
    await service.step()
    (request,) = fleet.requests
    assert request.name == "setpoint"
    assert request.payload.startswith(b"-")  # export_positive: +400 is feed-in, so charge
    assert service.readings == 1
    await service.step()
    assert service.readings == 1  # the same reading is not taken twice
    clock.now += 11  # the battery's meter goes quiet: the safety rule applies
    await service.step()
    assert service.law.state == "meter missing"
    assert fleet.requests[-1].payload == b"0.0"


async def test_a_mode_switched_at_run_time_is_kept_until_the_option_changes(
    tmp_path: Path,
) -> None:
    clock, fleet = Clock(), FakeFleet()
    service, _ = _service(fleet, clock)
    service.keep_mode_in(tmp_path)
    assert service.law.mode is Mode.MONITOR
    assert (await service.set_mode("zero_export")).status == "ok"
    kept = json.loads((tmp_path / MODE_FILE_NAME).read_text())
    assert kept == {"mode": "zero_export", "option": "monitor"}

    # a restart with the same options carries on in the switched mode, sending nothing yet
    again, _ = _service(fleet, clock)
    again.keep_mode_in(tmp_path)
    assert again.law.mode is Mode.ZERO_EXPORT
    assert fleet.requests == []
    # back at the option's mode: nothing is kept
    assert (await again.set_mode("monitor")).status == "ok"
    assert not (tmp_path / MODE_FILE_NAME).exists()

    # a changed option wins, and the kept mode is forgotten
    assert (await again.set_mode("off")).status == "ok"
    changed, _ = _service(fleet, clock, mode="zero_export")
    changed.keep_mode_in(tmp_path)
    assert changed.law.mode is Mode.ZERO_EXPORT
    assert not (tmp_path / MODE_FILE_NAME).exists()
    back, _ = _service(fleet, clock)
    back.keep_mode_in(tmp_path)
    assert back.law.mode is Mode.MONITOR


async def test_a_bad_kept_mode_file_is_no_error(tmp_path: Path) -> None:
    clock, fleet = Clock(), FakeFleet()
    for text in ("{", '["zero_export"]', '{"mode": "turbo", "option": "monitor"}', "x" * 5000):
        (tmp_path / MODE_FILE_NAME).write_text(text)
        service, _ = _service(fleet, clock)
        service.keep_mode_in(tmp_path)
        assert service.law.mode is Mode.MONITOR
    # feed_in_cap without a cap is not taken from the file either
    (tmp_path / MODE_FILE_NAME).write_text('{"mode": "feed_in_cap", "option": "monitor"}')
    service, _ = _service(fleet, clock)
    service.keep_mode_in(tmp_path)
    assert service.law.mode is Mode.MONITOR
    # a mode that cannot be kept removes the one kept earlier: a restart starts in the option
    (tmp_path / MODE_FILE_NAME).write_text('{"mode": "zero_export", "option": "monitor"}')
    (tmp_path / (MODE_FILE_NAME + ".part")).mkdir()
    service, _ = _service(fleet, clock)
    service.keep_mode_in(tmp_path)
    assert service.law.mode is Mode.ZERO_EXPORT
    assert (await service.set_mode("off")).status == "ok"
    assert not (tmp_path / MODE_FILE_NAME).exists()
    # a state directory that cannot be written: the switch still works, with a warning
    blocked = tmp_path / "file"
    blocked.write_text("")
    service, _ = _service(fleet, clock)
    service.keep_mode_in(blocked)
    assert (await service.set_mode("zero_export")).status == "ok"
    assert service.law.mode is Mode.ZERO_EXPORT
