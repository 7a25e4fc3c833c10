"""The battery hub without MQTT: a fake sender port and a manual clock."""

from __future__ import annotations

import json

import pytest

from hoymiles_bridge.config.options import validate
from hoymiles_bridge.core.battery import KEEPALIVE_INTERVAL, MODE_REPORT_GRACE, BatteryHub
from hoymiles_bridge.core.commands import CommandError, CommandRequest, Target, check
from hoymiles_bridge.core.events import BatteryChanged, Event
from hoymiles_bridge.protocol.battery import Outbound, Source

from .manual_clock import ManualClock

DEV = "MSA-280024370560"
MASTER_QUICK = json.dumps({"soc": 50, "bat_p": 0, "sys_soc": 50}).encode()


class FakeSender:
    def __init__(self) -> None:
        self.connected = True
        self.sent: list[tuple[str, Outbound, str]] = []

    async def send(self, dev_id: str, what: Outbound, payload: str) -> None:
        self.sent.append((dev_id, what, payload))

    def of(self, what: Outbound) -> list[str]:
        return [p for _, w, p in self.sent if w is what]


async def _hub(**options: object) -> tuple[BatteryHub, FakeSender, ManualClock, list[Event]]:
    events: list[Event] = []

    async def emit(event: Event) -> None:
        events.append(event)

    clock = ManualClock()
    hub = BatteryHub(validate({"dtus": [], **options}), emit, clock=clock.now)
    sender = FakeSender()
    hub.attach(sender)
    await hub.on_state(DEV, Source.QUICK, MASTER_QUICK)
    return hub, sender, clock, events


async def _run(hub: BatteryHub, name: str, payload: bytes) -> str:
    command = check(CommandRequest(Target.BATTERY, DEV, name, payload))
    assert command is not None
    return (await hub.execute(command)).text


async def test_a_held_setpoint_is_resent_and_pauses_without_the_broker() -> None:
    hub, sender, clock, _ = await _hub()
    assert await _run(hub, "setpoint", b"-250") == "ok: EMS mode set to mqtt_ctrl"
    assert sender.of(Outbound.EMS_MODE) == ["mqtt_ctrl"]
    for _ in range(12):  # three minutes in 15 s steps
        clock.advance(15)
        await hub.tick()
    assert len(sender.of(Outbound.SETPOINT)) == 1 + 6
    sender.connected = False
    clock.advance(120)
    await hub.tick()
    assert len(sender.of(Outbound.SETPOINT)) == 7  # nothing while the broker is away
    sender.connected = True
    await hub.link_up()
    assert len(sender.of(Outbound.SETPOINT)) == 8


async def test_the_reconnect_resends_only_in_mqtt_ctrl() -> None:
    hub, sender, clock, _ = await _hub()
    await _run(hub, "setpoint", b"100")
    sender.connected = False
    clock.advance(MODE_REPORT_GRACE)
    # the battery reports another mode (the app changed it): the hold ends
    await hub.on_state(DEV, Source.SYSTEM, b'{"ems_mode": "general"}')
    sender.connected = True
    await hub.link_up()
    clock.advance(KEEPALIVE_INTERVAL * 4)
    await hub.tick()
    assert sender.of(Outbound.SETPOINT) == ["100.0"]


async def test_out_of_range_and_offline_setpoints_send_nothing() -> None:
    hub, sender, _, _ = await _hub()
    with pytest.raises(CommandError, match=r"outside -1000\.\.1000 W"):
        await _run(hub, "setpoint", b"1000.5")
    sender.connected = False
    with pytest.raises(CommandError, match="not connected"):
        await _run(hub, "setpoint", b"10")
    assert sender.sent == []


async def test_release_sends_zero_and_general_by_the_option() -> None:
    for mode, expected in (("general", ["mqtt_ctrl", "general"]), ("zero", ["mqtt_ctrl"])):
        hub, sender, _, _ = await _hub(battery_release_mode=mode)
        await _run(hub, "setpoint", b"300")
        await hub.release()
        assert sender.of(Outbound.SETPOINT) == ["300.0", "0.0"]
        assert sender.of(Outbound.EMS_MODE) == expected
        await hub.release()  # nothing held any more: nothing sent
        assert len(sender.sent) == 2 + len(expected)


async def test_silence_makes_a_battery_unavailable() -> None:
    hub, _, clock, events = await _hub()
    clock.advance(119)
    await hub.tick()
    assert hub.find(DEV).available
    clock.advance(2)
    await hub.tick()
    assert not hub.find(DEV).available
    assert isinstance(events[-1], BatteryChanged) and "availability" in events[-1].what
    # a unit without quick: 660 s after its five-minute topics
    await hub.on_state("MSA-2", Source.DEVICE, b'{"soc": 40}')
    clock.advance(600)
    await hub.tick()
    assert hub.find("MSA-2").available
    clock.advance(61)
    await hub.tick()
    assert not hub.find("MSA-2").available


async def test_garbage_changes_no_state() -> None:
    hub, _, _, events = await _hub()
    before = dict(hub.find(DEV).values)
    count = len(events)
    for payload in (b"nope", b"[]", b'{"soc": "x"}' * 5000):
        await hub.on_state(DEV, Source.QUICK, payload)
        await hub.on_config(DEV, "power_ctrl", payload)
        await hub.on_attributes(DEV, payload)
    assert hub.find(DEV).values == before and len(events) == count


async def test_lifetime_counters_never_go_back() -> None:
    hub, _, _, _ = await _hub()
    grid = {"grid": [{"type": "grid_on", "etout": 5000}]}
    await hub.on_state(DEV, Source.DEVICE, json.dumps(grid).encode())
    grid["grid"][0]["etout"] = 10
    await hub.on_state(DEV, Source.DEVICE, json.dumps(grid).encode())
    assert hub.find(DEV).values["grid_on_etout"] == 5000


async def test_only_listed_batteries_without_auto() -> None:
    hub, _, _, _ = await _hub(batteries_auto=False, batteries=[{"dev_id": "MSA-1", "name": "A"}])
    assert hub.batteries == {}
    await hub.on_state("MSA-1", Source.QUICK, MASTER_QUICK)
    assert hub.find("MSA-1").title == "A"


async def test_a_report_older_than_our_mode_command_does_not_end_the_hold() -> None:
    hub, sender, clock, _ = await _hub()
    await _run(hub, "setpoint", b"100")
    clock.advance(1)
    # a system/state made before the battery took mqtt_ctrl crosses our command
    await hub.on_state(DEV, Source.SYSTEM, b'{"ems_mode": "general"}')
    assert hub.find(DEV).holding is not None
    clock.advance(MODE_REPORT_GRACE)
    await hub.on_state(DEV, Source.SYSTEM, b'{"ems_mode": "general"}')  # now it counts
    assert hub.find(DEV).holding is None
