"""What a poll publishes: the JSON state, OpenDTU's per-value topics, and at which QoS."""

from __future__ import annotations

import json

from hoymiles_bridge.simulator import DtuSimulator, SimClock, default_fleet

from .bridge_env import running_bridge
from .conftest_mqtt import mosquitto_fixture  # noqa: F401
from .interop_helpers import noon_today
from .mosquitto import Mosquitto, Subscriber

INV = "141293320732"


def _sim() -> DtuSimulator:
    return DtuSimulator(default_fleet().dtus[0], port=0, clock=SimClock(start=noon_today()))


async def test_the_state_holds_what_the_value_topics_say(mosquitto: Mosquitto) -> None:
    async with (
        _sim() as sim,
        Subscriber(mosquitto.port, "solar/#") as sub,
        Subscriber(mosquitto.port, "homeassistant/#") as discovery,
    ):
        async with running_bridge(mosquitto, [sim]) as env:
            await sub.wait_for(env.topic("dtu", "available"), lambda p: p == b"online")
            raw = await sub.wait_for(env.topic(INV, "state"))
            await sub.wait_for(env.topic(INV, "status", "last_update"))
            state = json.loads(raw)
            # the values of the same poll: read them before the next one lands
            for key in ("power", "voltage", "yieldday", "yieldtotal", "efficiency"):
                assert float(sub.last[env.topic(INV, "0", key)]) == state[key], key
            for port in (1, 2):
                for key in ("power", "voltage", "current", "yieldday"):
                    topic = env.topic(INV, str(port), key)
                    assert float(sub.last[topic]) == state[f"port{port}_{key}"], topic
            assert state["reachable"] == 1 and state["producing"] == 1
            assert state["last_update"] == int(sub.last[env.topic(INV, "status", "last_update")])
            await sub.wait_for(env.topic("dtu", "available"))  # QoS 1: may come after the values
            await discovery.wait_for(f"homeassistant/sensor/hoymiles_inv_{INV}/power/config")
    values = [m for m in sub.messages if m.topic == env.topic(INV, "0", "power")]
    assert values and all(m.qos == 0 for m in values)
    for topic in (env.topic("dtu", "available"), env.topic(INV, "status", "available")):
        availability = [m for m in sub.messages if m.topic == topic]
        assert availability and all(m.qos == 1 for m in availability), topic
    assert discovery.messages and all(m.qos == 1 for m in discovery.messages)


async def test_without_opendtu_topics_only_the_state_carries_values(mosquitto: Mosquitto) -> None:
    async with _sim() as sim, Subscriber(mosquitto.port, "solar/#") as sub:
        async with running_bridge(mosquitto, [sim], opendtu_topics=False) as env:
            await sub.wait_for(env.topic(INV, "state"))
            await sub.wait_for(env.topic(INV, "status", "limit_relative"))
            await sub.wait_for(env.topic("ac", "power"))
            await sub.wait_for(env.topic(INV, "1", "name"))  # the DTU info came too
    topics = {m.topic for m in sub.messages}
    assert not any(t.startswith(env.topic(INV, "0") + "/") for t in topics)
    port = env.topic(INV, "1")
    assert {t for t in topics if t.startswith(port + "/")} == {port + "/name"}
    assert env.topic(INV, "status", "reachable") not in topics


async def test_qos_1_when_asked(mosquitto: Mosquitto) -> None:
    async with _sim() as sim, Subscriber(mosquitto.port, "solar/#") as sub:
        async with running_bridge(
            mosquitto, [sim], mqtt={"host": "127.0.0.1", "port": mosquitto.port, "qos": 1}
        ) as env:
            await sub.wait_for(env.topic(INV, "state"))
    state = [m for m in sub.messages if m.topic == env.topic(INV, "state")]
    assert state and all(m.qos == 1 for m in state)
