"""The controller drives a simulated MS-A2 through the registry and the battery hub.

The real bridge, the battery simulator and a real Mosquitto; the meter is
published by the test. Time is the battery environment's manual clock (the
hub's and the controller's), so meter loss is reached by moving the clock, not
by waiting; the waits only wait for messages to travel.
"""

from __future__ import annotations

import json

from .battery_env import battery_env
from .conftest_mqtt import mosquitto_fixture  # noqa: F401
from .mosquitto import Mosquitto
from .waiting import until

METER = "meter/grid"


async def test_zero_export_drives_the_battery_then_meter_loss_releases_it(
    mosquitto: Mosquitto,
) -> None:
    controller = {"mode": "zero_export", "meter_topic": METER, "meter_json_path": "p"}
    async with battery_env(mosquitto, controller=controller) as env:
        master = env.sim.master
        service = env.bridge.controller

        async def importing() -> bool:
            env.clock.advance(1.0)  # a meter reading a second
            await env.publish(METER, json.dumps({"p": 600.0}))
            return master.mode == "mqtt_ctrl" and (master.setpoint or 0.0) > 100.0

        await until(importing, "a discharging setpoint on the simulated battery")
        # through the registry, the reason with it
        assert any("grid +600 W" in line for line in service.law.status(0.0)["last"])
        assert env.hub.batteries[master.dev_id].holding is not None  # the hub keeps it alive

        async def exporting() -> bool:
            env.clock.advance(1.0)
            await env.publish(METER, json.dumps({"p": -800.0}))
            return (master.setpoint or 0.0) < -100.0

        await until(exporting, "a charging setpoint")

        # the meter goes quiet: 0 W at once, the battery's own mode a minute later
        env.clock.advance(11.0)
        await until(_true(lambda: master.setpoint == 0.0), "0 W after the meter went quiet")
        assert service.law.state == "meter missing"
        env.clock.advance(61.0)
        await until(_true(lambda: master.mode == "general"), "general after the release time")


async def test_monitor_computes_for_the_battery_and_sends_nothing(mosquitto: Mosquitto) -> None:
    controller = {"meter_topic": METER}
    async with battery_env(mosquitto, controller=controller) as env:
        service = env.bridge.controller

        async def computed() -> bool:
            env.clock.advance(1.0)
            await env.publish(METER, "700")
            return any("setpoint" in line for line in service.law.status(0.0)["last"])

        await until(computed, "what monitor would do")
        assert env.sent("power_ctrl/set") == []
        assert env.sim.master.mode == "general"


def _true(check: object) -> object:
    async def wrapped() -> bool:
        return bool(check())  # type: ignore[operator]

    return wrapped


async def test_a_battery_that_falls_silent_leaves_the_split_and_gets_its_mode_back(
    mosquitto: Mosquitto,
) -> None:
    controller = {"mode": "zero_export", "meter_topic": METER}
    async with battery_env(mosquitto, controller=controller) as env:
        master = env.sim.master
        hub_state = env.hub.batteries[master.dev_id]

        async def driven() -> bool:
            env.clock.advance(1.0)
            await env.publish(METER, "600")
            return (master.setpoint or 0.0) > 100.0

        await until(driven, "a discharging setpoint")
        master.silent = True  # no more telemetry from the battery

        async def dropped() -> bool:
            env.clock.advance(1.0)
            await env.publish(METER, "600")
            return hub_state.holding is None and master.mode == "general"

        await until(dropped, "general for the silent battery, and no held setpoint")
        sent = len(env.sent("power_ctrl/set"))
        for _ in range(5):
            env.clock.advance(1.0)
            await env.publish(METER, "600")
        assert env.bridge.controller.law.state == "regulating"
        assert len(env.sent("power_ctrl/set")) == sent  # nothing more for it
