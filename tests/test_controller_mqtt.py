"""The power controller in the running bridge: a meter on a real Mosquitto, a DTU simulator.

The meter is published by the test; the controller's inverter limits reach the
simulated DTU through the command registry (non-persistent, action 211); the
mode select, its status and the controller's state topics are checked on the
broker. Waits have generous deadlines and check outcomes, never durations.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import aiomqtt

from hoymiles_bridge.protocol.actions import TEMPORARY_LIMIT_FIRMWARE
from hoymiles_bridge.simulator import DtuSimulator, SimClock, default_fleet

from .bridge_env import running_bridge
from .conftest_mqtt import mosquitto_fixture  # noqa: F401
from .interop_helpers import noon_today
from .mosquitto import Mosquitto, Subscriber
from .waiting import until

METER = "shellypro3em-test/status/em:0"


def _sim() -> DtuSimulator:
    spec = dataclasses.replace(default_fleet().dtus[0], firmware=TEMPORARY_LIMIT_FIRMWARE)
    return DtuSimulator(spec, port=0, clock=SimClock(start=noon_today()))


def _controller(**options: Any) -> dict[str, Any]:
    return {"meter_topic": METER, "meter_json_path": "total_act_power", **options}


async def _publish(sub: Subscriber, topic: str, payload: str, *, retain: bool = False) -> None:
    async with aiomqtt.Client("127.0.0.1", sub.port) as client:
        await client.publish(topic, payload, qos=1, retain=retain)


async def _true(value: bool) -> bool:
    return value


async def test_feed_in_cap_limits_the_inverter_through_the_registry(mosquitto: Mosquitto) -> None:
    async with _sim() as sim, Subscriber(mosquitto.port, "#") as sub:
        controller = _controller(mode="feed_in_cap", max_feed_in=100)
        # with the default pacing of limits: the release at the stop must not wait for it
        async with running_bridge(
            mosquitto, [sim], controller=controller, limit_interval=30
        ) as env:
            base = env.base
            await sub.wait_for(f"{base}/controller/mode", lambda p: p == b"feed_in_cap")
            inverter = sim.dtu.inverters[0]

            async def limited() -> bool:
                await _publish(sub, METER, json.dumps({"total_act_power": -300.0}))
                return inverter.temporary_limit_w is not None

            await until(limited, "the controller's non-persistent limit on the simulator")
            assert inverter.temporary_limit_w is not None
            assert inverter.temporary_limit_w <= 100
            assert inverter.limit_permille == 1000  # the persistent limit is untouched
            await sub.wait_for(f"{base}/controller/state", lambda p: p == b"regulating")
            # the controller's commands get no .../status topic of their own
            assert not any(
                m.topic.endswith("/cmd/limit_nonpersistent_absolute/status") for m in sub.messages
            )
            # a stop releases the limit at once, paced or not: back to what the inverter
            # had (100 %)
            await env.bridge.controller.stop()

            async def released() -> bool:
                limit = inverter.temporary_limit_w
                return limit is not None and limit >= inverter.spec.rated_power

            await until(released, "the released limit")


async def test_mode_select_discovery_and_bad_meter_input(mosquitto: Mosquitto) -> None:
    async with _sim() as sim, Subscriber(mosquitto.port, "#") as sub:
        # retained messages the bridge finds at its start are old news: never used
        await _publish(sub, METER, '{"total_act_power": 999}', retain=True)
        await _publish(sub, "solar/controller/cmd/mode", "off", retain=True)
        async with running_bridge(mosquitto, [sim], controller=_controller()) as env:
            base = env.base
            config = await sub.wait_for(
                "homeassistant/select/hoymiles_bridge_controller/mode/config"
            )
            select = json.loads(config)
            assert select["ops"] == ["off", "monitor", "zero_export", "feed_in_cap"]
            assert select["cmd_t"] == f"{base}/controller/cmd/mode"
            await sub.wait_for(f"{base}/controller/mode", lambda p: p == b"monitor")
            service = env.bridge.controller
            assert service.readings == 0
            # bad input is ignored and counted; a good reading is taken
            for bad in (b"not json", b'{"other": 1}', b'{"total_act_power": "x"}'):
                await _publish(sub, METER, bad.decode())
            await _publish(sub, METER, '{"total_act_power": 250.5}')
            await until(lambda: _true(service.readings == 1), "one good reading")
            assert service.law.ignored_readings >= 3
            assert service.law.reading is not None
            assert service.law.reading.watts == 250.5
            # the mode through the select's command topic
            command = f"{base}/controller/cmd/mode"
            await _publish(sub, command, "zero_export")
            await sub.wait_for(f"{command}/status", lambda p: p == b"ok")
            await sub.wait_for(f"{base}/controller/mode", lambda p: p == b"zero_export")
            await _publish(sub, command, "feed_in_cap")  # needs max_feed_in
            await sub.wait_for(f"{command}/status", lambda p: p.startswith(b"failed: feed_in_cap"))
            await _publish(sub, command, "turbo")
            await sub.wait_for(f"{command}/status", lambda p: b"is not one of off, monitor" in p)
            await _publish(sub, command, "monitor")
            await sub.wait_for(f"{base}/controller/mode", lambda p: p == b"monitor")
            assert service.readings == 1


async def test_the_cli_switches_the_mode_of_a_running_bridge(mosquitto: Mosquitto) -> None:
    from hoymiles_bridge.cli.controller import _switch

    async with _sim() as sim:
        async with running_bridge(mosquitto, [sim], controller=_controller()) as env:
            await env.bridge.link.wait_connected(10)

            async def switched() -> bool:
                ok, _text = await _switch("127.0.0.1", mosquitto.port, env.base, "off", 2.0)
                return ok

            await until(switched, "the CLI's mode switch")
            assert env.bridge.controller.law.mode.value == "off"
            ok, text = await _switch("127.0.0.1", mosquitto.port, env.base, "feed_in_cap", 5.0)
            assert not ok
            assert text.startswith("failed: feed_in_cap needs")
