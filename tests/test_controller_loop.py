"""The controller closed around the simulated household, in virtual time.

Nothing here measures wall-clock time: the household and the controller step
together in virtual seconds, so the checks are about energy and power, and do
not flake with a slow machine.
"""

from __future__ import annotations

from hoymiles_bridge.cli.closed_loop import ClosedLoop
from hoymiles_bridge.core.controller import ControllerConfig, Kind, Mode
from hoymiles_bridge.simulator.household import Household

MORNING = 9 * 3600.0
NOON = 12.8 * 3600.0


def quiet_house(start: float = MORNING, batteries: int = 2) -> Household:
    house = Household.balcony(start=start, batteries=batteries)
    house.load.steps = []
    house.load.noise = 5.0
    house.pv.clouds = False
    house.pv.__post_init__()
    return house


def mean_grid(loop: ClosedLoop, seconds: float) -> float:
    recent = [s.grid for s in loop.samples if s.t > loop.house.now - seconds]
    return sum(recent) / len(recent)


def test_zero_export_holds_the_grid_at_the_target_through_a_load_step() -> None:
    loop = ClosedLoop.build(quiet_house(), ControllerConfig(mode=Mode.ZERO_EXPORT))
    loop.run(120)
    assert abs(mean_grid(loop, 30)) < 15
    loop.house.extra = 2000.0  # a kettle
    loop.run(60)
    assert abs(mean_grid(loop, 30)) < 15
    assert loop.house.battery_power > 1000  # the batteries cover it
    assert all(b.mode == "mqtt_ctrl" for b in loop.house.batteries)


def test_zero_export_outlives_the_batteries_forgetting_their_setpoint() -> None:
    loop = ClosedLoop.build(quiet_house(), ControllerConfig(mode=Mode.ZERO_EXPORT))
    loop.run(600)  # ten minutes of a steady house: the keep-alive must hold it
    assert all(b.mode == "mqtt_ctrl" for b in loop.house.batteries)
    assert abs(mean_grid(loop, 60)) < 15


def test_zero_export_with_full_batteries_throttles_the_inverters() -> None:
    house = quiet_house(start=NOON)
    for battery in house.batteries:
        battery.soc = 100.0
    loop = ClosedLoop.build(house, ControllerConfig(mode=Mode.ZERO_EXPORT))
    loop.run(600)
    assert abs(mean_grid(loop, 120)) < 60
    assert any(a.kind is Kind.LIMIT for _, a in loop.actuations)
    assert all(i.limit is not None and i.limit < 800 for i in house.inverters)


def test_feed_in_cap_keeps_the_inverters_under_the_cap_and_uses_the_battery() -> None:
    house = quiet_house(start=NOON)
    config = ControllerConfig(mode=Mode.FEED_IN_CAP, max_feed_in=600.0)
    loop = ClosedLoop.build(house, config)
    loop.run(300)
    assert house.pv_power <= 600 + 5
    assert abs(mean_grid(loop, 60)) < 20  # the battery still keeps the grid at 0 W


def test_monitor_sends_nothing() -> None:
    house = quiet_house()
    loop = ClosedLoop.build(house, ControllerConfig(mode=Mode.MONITOR, max_feed_in=600.0))
    loop.run(300)
    assert loop.actuations == []
    assert all(b.commands == 0 for b in house.batteries)
    assert loop.controller.last  # what it would do is shown


def test_meter_loss_zeroes_then_hands_the_battery_back() -> None:
    house = quiet_house()
    loop = ClosedLoop.build(house, ControllerConfig(mode=Mode.ZERO_EXPORT, meter_timeout=10))
    loop.run(120)
    limits_before = [i.limits_taken for i in house.inverters]
    house.meter.silent = True
    loop.run(20)
    assert all(b.setpoint == 0.0 for b in house.batteries)
    assert loop.controller.state == "meter missing"
    loop.run(60)
    assert all(b.mode == "general" for b in house.batteries)
    assert [i.limits_taken for i in house.inverters] == limits_before
    house.meter.silent = False
    loop.run(60)
    assert loop.controller.state == "regulating"
    assert abs(mean_grid(loop, 20)) < 20


def test_a_battery_that_goes_silent_leaves_the_split() -> None:
    house = quiet_house()
    loop = ClosedLoop.build(house, ControllerConfig(mode=Mode.ZERO_EXPORT))
    loop.run(120)
    lost = house.batteries[1]
    lost.responsive = False
    loop.run(60)
    silent_at = house.now - 60
    house.extra = 800.0
    loop.run(60)
    assert abs(mean_grid(loop, 20)) < 20  # the other unit carries the load
    after = [a for t, a in loop.actuations if t > silent_at and a.device == lost.dev_id]
    assert [(a.kind, a.value) for a in after] == [(Kind.EMS_MODE, "general")]
    assert after[0].reason.startswith("left the split (no telemetry for 2")


def test_stop_releases_everything() -> None:
    house = quiet_house(start=NOON)
    loop = ClosedLoop.build(house, ControllerConfig(mode=Mode.FEED_IN_CAP, max_feed_in=600.0))
    loop.run(120)
    loop.stop()
    loop.run(30)
    assert all(b.mode == "general" for b in house.batteries)
    assert all(i.limit == 800.0 for i in house.inverters)
