"""The bridge end to end: simulator -> bridge -> real Mosquitto -> a test subscriber."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from hoymiles_bridge.dtu.session import SessionState
from hoymiles_bridge.protocol.actions import Action
from hoymiles_bridge.simulator import DtuSimulator, SimClock, default_fleet

from .bridge_env import running_bridge
from .conftest_mqtt import mosquitto_fixture  # noqa: F401
from .ha_discovery_schema import check_fleet
from .interop_helpers import noon_today
from .mosquitto import Mosquitto, Subscriber
from .waiting import until

INV = "141293320732"
DTU = "414393320732"


def _sim(**kwargs: object) -> DtuSimulator:
    kwargs.setdefault("clock", SimClock(start=noon_today()))
    return DtuSimulator(default_fleet().dtus[0], port=0, **kwargs)  # type: ignore[arg-type]


async def test_full_loop_topics_and_discovery(mosquitto: Mosquitto) -> None:
    async with _sim() as sim, Subscriber(mosquitto.port, "#") as sub:
        async with running_bridge(mosquitto, [sim]) as env:
            await sub.wait_for(env.topic(INV, "0", "power"))
            await sub.wait_for(env.topic("dtu", "status"), lambda p: p == b"online")
            await sub.wait_for(env.topic(INV, "alarms", "count"))
            expected = [
                *(
                    f"{INV}/0/{k}"
                    for k in (
                        "power",
                        "voltage",
                        "current",
                        "frequency",
                        "powerfactor",
                        "reactivepower",
                        "temperature",
                        "yieldday",
                        "yieldtotal",
                        "powerdc",
                        "efficiency",
                    )
                ),
                *(
                    f"{INV}/{p}/{k}"
                    for p in (1, 2)
                    for k in (
                        "power",
                        "voltage",
                        "current",
                        "yieldday",
                        "yieldtotal",
                        "irradiation",
                    )
                ),
                *(
                    f"{INV}/status/{k}"
                    for k in (
                        "reachable",
                        "producing",
                        "last_update",
                        "limit_relative",
                        "limit_absolute",
                        "available",
                    )
                ),
                f"{INV}/json",
                f"{INV}/alarms",
                "dtu/connection",
                "dtu/rssi",
                "dtu/firmware",
                "dtu/rtt",
                "dtu/last_update",
                "ac/power",
                "ac/yieldday",
                "ac/yieldtotal",
                "dc/power",
                "dc/irradiation",
                "dtu/available",
                "dtu/uptime",
                "bridge/status",
            ]
            for relative in expected:
                await sub.wait_for(env.topic(*relative.split("/")), timeout=5)
            power = float(sub.last[env.topic(INV, "0", "power")])
            assert 0 < power <= 800
            assert float(sub.last[env.topic(INV, "status", "limit_relative")]) == 100
            model = json.loads(sub.last[env.topic(INV, "json")])
            assert model["serial"] == INV and model["dtu_serial"] == DTU
            # HMS-800W-2T on old firmware: no non-persistent limits; + bridge uptime. The
            # power controller's device (its own tests check it) is not counted here.
            expected_configs = 37 + 19 + 1

            def fleet_discovery() -> list[tuple[str, str]]:
                return [
                    (t, p.decode())
                    for t, p in sub.last.items()
                    if t.startswith("homeassistant/") and "/hoymiles_bridge_controller/" not in t
                ]

            async def announced() -> bool:
                return len(fleet_discovery()) >= expected_configs

            await until(announced, "the fleet's discovery")
            discovery = fleet_discovery()
            assert len(discovery) == expected_configs
            assert check_fleet(discovery) == []
        # a clean stop leaves the bridge offline: the will's topic and its alias
        await sub.wait_for(env.topic("dtu", "status"), lambda p: p == b"offline")
        await sub.wait_for(env.topic("bridge", "status"), lambda p: p == b"offline")


async def _command(
    sub: Subscriber, topic: str, payload: str, expect: str = "ok", *, retain: bool = False
) -> bytes:
    """Publish a command and wait for a *new* status that starts with ``expect``."""
    import aiomqtt

    status = f"{topic}/status"
    seen = len(sub.payloads(status))
    async with aiomqtt.Client("127.0.0.1", sub.port) as client:
        await client.publish(topic, payload, qos=1, retain=retain)
    for _ in range(200):
        fresh = sub.payloads(status)[seen:]
        if any(p.decode().startswith(expect) for p in fresh):
            return next(p for p in fresh if p.decode().startswith(expect))
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {expect!r} on {status}; got {sub.payloads(status)[seen:]!r}")


async def test_commands_round_trip(mosquitto: Mosquitto) -> None:
    async with _sim() as sim, Subscriber(mosquitto.port, "#") as sub:
        async with running_bridge(mosquitto, [sim]) as env:
            await sub.wait_for(env.topic(INV, "0", "power"))
            inverter = sim.dtu.inverters[0]
            await _command(sub, env.topic(INV, "cmd", "limit_persistent_relative"), "50")
            assert inverter.limit_permille == 500
            await sub.wait_for(env.topic(INV, "status", "limit_relative"), lambda p: p == b"50")
            await sub.wait_for(env.topic(INV, "status", "limit_absolute"), lambda p: p == b"400")
            sim.clock.advance(31)
            await sub.wait_for(env.topic(INV, "0", "power"), lambda p: float(p) <= 400.5)
            await _command(sub, env.topic(INV, "cmd", "limit_persistent_absolute"), "200")
            assert inverter.limit_permille == 250
            await _command(sub, env.topic(INV, "cmd", "power"), "0")
            assert inverter.on is False
            sim.clock.advance(31)
            await sub.wait_for(env.topic(INV, "0", "power"), lambda p: float(p) == 0)
            await sub.wait_for(env.topic(INV, "alarms", "count"), lambda p: int(p) >= 1)
            await sub.wait_for(env.topic(INV, "alarms", "last"), lambda p: b"remote control" in p)
            await _command(sub, env.topic(INV, "cmd", "power"), "1")
            assert inverter.on is True
            assert any(w.end for w in inverter.warnings)  # the shutdown alarm has ended
            await _command(sub, env.topic("dtu", "cmd", "clear_alarms"), "1")
            assert not [w for w in inverter.warnings if w.end]  # only active ones stay
            inverter.add_warning(121, sim.clock.now())
            await _command(sub, env.topic("dtu", "cmd", "refresh_alarms"), "1")
            assert sim.dtu.last_command is not None
            assert sim.dtu.last_command.action == Action.ALARM_LIST
            await sub.wait_for(env.topic(INV, "alarms", "last"), lambda p: b"temperature" in p)
            await _command(sub, env.topic(INV, "cmd", "restart"), "1")
            assert inverter.unreachable_until > sim.clock.now()
            await _command(sub, env.topic("dtu", "cmd", "performance_mode"), "1")
            assert sim.dtu.performance_mode is True
            await _command(sub, env.topic("dtu", "cmd", "reboot"), "1")
            for _ in range(100):
                if sim.dtu.boot_count:
                    break
                await asyncio.sleep(0.05)
            assert sim.dtu.boot_count == 1
            # the session comes back by itself after the reboot
            before = sub.last[env.topic(INV, "json")]
            sim.clock.advance(120)
            await sub.wait_for(env.topic(INV, "json"), lambda p: p != before, timeout=15)
            # the non-persistent limit is refused by this (older) DTU firmware
            await _command(
                sub, env.topic(INV, "cmd", "limit_nonpersistent_absolute"), "100", "failed"
            )


async def test_limit_pacing_latest_wins_and_no_resend(mosquitto: Mosquitto) -> None:
    async with _sim() as sim, Subscriber(mosquitto.port, "#") as sub:
        async with running_bridge(mosquitto, [sim], limit_interval=2) as env:
            await sub.wait_for(env.topic(INV, "0", "power"))
            topic = env.topic(INV, "cmd", "limit_persistent_relative")
            await _command(sub, topic, "40")
            assert sim.dtu.inverters[0].limit_permille == 400
            await _command(sub, topic, "60", "pending")
            await _command(sub, topic, "70", "pending")
            assert sim.dtu.inverters[0].limit_permille == 400
            await sub.wait_for(f"{topic}/status", lambda p: p == b"ok", timeout=5)
            assert sim.dtu.inverters[0].limit_permille == 700  # the latest value won
            commands = len(sim.dtu.commands)
            await asyncio.sleep(2.1)
            await _command(sub, topic, "70")  # equal to the last one: not re-sent
            assert len(sim.dtu.commands) == commands


#: Invalid for every command topic (out-of-range values are checked separately).
GARBAGE = [b"", b"abc", b"\xff\xfe", b"1e309", b"nan", b"inf", b"-5", b"0x10", b"9" * 40, b"1 2"]
OUT_OF_RANGE = {
    "limit_persistent_relative": b"150",
    "limit_persistent_absolute": b"5000",
    "limit_nonpersistent_relative": b"1",
    "limit_nonpersistent_absolute": b"0",
    "power": b"2",
    "restart": b"0",
}


async def test_garbage_on_every_command_topic(mosquitto: Mosquitto) -> None:
    import aiomqtt

    async with _sim() as sim, Subscriber(mosquitto.port, "#") as sub:
        async with running_bridge(mosquitto, [sim]) as env:
            await sub.wait_for(env.topic(INV, "0", "power"))
            names = [
                "limit_persistent_relative",
                "limit_persistent_absolute",
                "limit_nonpersistent_relative",
                "limit_nonpersistent_absolute",
                "power",
                "restart",
                "no_such_command",
            ]
            async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
                for name in names:
                    for payload in GARBAGE:
                        await client.publish(env.topic(INV, "cmd", name), payload, qos=1)
                for payload in GARBAGE:
                    await client.publish(env.topic("dtu", "cmd", "reboot"), payload, qos=1)
                await client.publish(env.topic("DEADBEEF0001", "cmd", "power"), b"1", qos=1)
                for name in ("no_such_command", "restart"):  # restart is an inverter's
                    await client.publish(env.topic("dtu", "cmd", name), b"1", qos=1)
            for name in names:
                status = await sub.wait_for(env.topic(INV, "cmd", name, "status"))
                assert status.startswith(b"failed: "), (name, status)
            # Out of range only after the garbage's statuses were read: a clamped
            # limit answers "ok: clamped ..." and could otherwise be the latest.
            async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
                for name, payload in OUT_OF_RANGE.items():
                    await client.publish(env.topic(INV, "cmd", name), payload, qos=1)
            unknown = b"failed: unknown command 'no_such_command'"
            assert sub.last[env.topic(INV, "cmd", "no_such_command", "status")] == unknown
            for name in ("no_such_command", "restart"):
                status = await sub.wait_for(env.topic("dtu", "cmd", name, "status"))
                assert status == f"failed: unknown command {name!r}".encode(), status
            await sub.wait_for(
                env.topic("DEADBEEF0001", "cmd", "power", "status"),
                lambda p: b"no inverter" in p,
            )
            inverter = sim.dtu.inverters[0]
            assert inverter.limit_permille == 1000 and inverter.on
            assert sim.dtu.boot_count == 0
            # nothing reached the DTU, and the bridge still works
            before = sub.last[env.topic(INV, "json")]
            sim.clock.advance(31)
            await sub.wait_for(env.topic(INV, "json"), lambda p: p != before)


async def test_retained_one_shot_commands_are_ignored(mosquitto: Mosquitto) -> None:
    import aiomqtt

    async with _sim() as sim, Subscriber(mosquitto.port, "#") as sub:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
            await client.publish(f"solar/{INV}/cmd/restart", b"1", qos=1, retain=True)
            await client.publish(
                f"solar/{INV}/cmd/limit_nonpersistent_relative", b"10", retain=True
            )
        async with running_bridge(mosquitto, [sim]) as env:
            await sub.wait_for(env.topic(INV, "0", "power"))
            # ignored, and cleared from the broker so it stops coming back
            for name in ("restart", "limit_nonpersistent_relative"):
                await sub.wait_for(env.topic(INV, "cmd", name), lambda p: p == b"")
            await asyncio.sleep(0.5)
            assert sim.dtu.inverters[0].unreachable_until == 0
            assert env.topic(INV, "cmd", "restart", "status") not in sub.last


async def test_broker_restart_reconnects_and_reannounces(mosquitto: Mosquitto) -> None:
    async with _sim() as sim:
        async with running_bridge(mosquitto, [sim]) as env:
            async with Subscriber(mosquitto.port, "#") as sub:
                await sub.wait_for(env.topic(INV, "0", "power"))
            await mosquitto.restart(down_for=1.0)
            # persistence is off: everything retained is gone until the bridge re-announces
            async with Subscriber(mosquitto.port, "#") as sub:
                await sub.wait_for(env.topic("bridge", "status"), lambda p: p == b"online")
                await sub.wait_for(env.topic(INV, "0", "power"))
                await sub.wait_for(env.topic("dtu", "status"), lambda p: p == b"online")
                await sub.wait_for(f"homeassistant/sensor/hoymiles_inv_{INV}/power/config")
                await _command(sub, env.topic(INV, "cmd", "limit_persistent_relative"), "30")
                assert sim.dtu.inverters[0].limit_permille == 300
            assert env.bridge.link.connects >= 2


async def test_home_assistant_birth_triggers_reannounce(mosquitto: Mosquitto) -> None:
    import aiomqtt

    async with _sim() as sim, Subscriber(mosquitto.port, "homeassistant/#") as sub:
        async with running_bridge(mosquitto, [sim]) as env:
            topic = f"homeassistant/sensor/hoymiles_inv_{INV}/power/config"
            await sub.wait_for(topic)
            count = len(sub.payloads(topic))
            async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
                await client.publish("homeassistant/status", b"online")
            for _ in range(100):
                if len(sub.payloads(topic)) > count:
                    break
                await asyncio.sleep(0.05)
            assert len(sub.payloads(topic)) > count
            assert env.bridge.link.connected
            # a flood of "online" (a restarting frontend, a hostile client) is absorbed:
            # at most one more re-announce, not one per message
            count = len(sub.payloads(topic))
            async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
                for _ in range(50):
                    await client.publish("homeassistant/status", b"online")
            await asyncio.sleep(1.0)
            assert len(sub.payloads(topic)) <= count + 1


async def test_commands_on_one_topic_merge_and_the_latest_wins(mosquitto: Mosquitto) -> None:
    import aiomqtt

    async with _sim() as sim, Subscriber(mosquitto.port, "#") as sub:
        async with running_bridge(mosquitto, [sim]) as env:
            await sub.wait_for(env.topic(INV, "0", "power"))
            sim.faults.delay = 0.3  # every command takes a while
            topic = env.topic(INV, "cmd", "limit_persistent_relative")
            async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
                for percent in range(20, 100, 2):  # 40 commands in a burst
                    await client.publish(topic, str(percent).encode(), qos=1)
            await sub.wait_for(
                env.topic(INV, "status", "limit_relative"), lambda p: p == b"98", timeout=15
            )
            sim.faults.clear()
            assert sim.dtu.inverters[0].limit_permille == 980
            # merged: far fewer writes than messages, and every status says ok or pending
            statuses = sub.payloads(f"{topic}/status")
            assert statuses and all(p in {b"ok", b"pending"} for p in statuses)
            assert sum(p == b"ok" for p in statuses) < 10


@pytest.mark.parametrize(
    "fault",
    [
        "drop_replies",
        "truncate_replies",
        "corrupt_crc",
        "garbage_before",
        "wrong_sequence",
        "close_mid_frame",
        "stale_reply",
    ],
)
async def test_bridge_recovers_from_every_fault(mosquitto: Mosquitto, fault: str) -> None:
    async with _sim() as sim, Subscriber(mosquitto.port, "#") as sub:
        async with running_bridge(mosquitto, [sim]) as env:
            # The JSON topic carries the DTU's data timestamp: it changes with every
            # fresh snapshot (last_update has only one-second resolution).
            topic = env.topic(INV, "json")
            await sub.wait_for(topic)
            setattr(sim.faults, fault, 3)
            for _ in range(3):
                before = sub.last[topic]
                sim.clock.advance(31)
                await sub.wait_for(topic, lambda p, b=before: p != b, timeout=15)
            assert float(sub.last[env.topic(INV, "0", "voltage")]) > 200


async def test_refused_connections_and_delay(mosquitto: Mosquitto) -> None:
    async with _sim() as sim, Subscriber(mosquitto.port, "#") as sub:
        async with running_bridge(mosquitto, [sim]) as env:
            await sub.wait_for(env.topic(INV, "0", "power"))
            view = env.bridge.fleet.dtus[0]
            view.session.client.request_timeout = 0.5
            sim.faults.delay = 2.0
            await sub.wait_for(env.topic("dtu", "available"), lambda p: p == b"offline", timeout=15)
            sim.faults.clear()
            sim.faults.refuse_connections = True
            await asyncio.sleep(1)
            sim.faults.refuse_connections = False
            await sub.wait_for(env.topic("dtu", "available"), lambda p: p == b"online", timeout=15)
            assert view.session.state is SessionState.CONNECTED


async def test_night_off_dtu_goes_and_returns(mosquitto: Mosquitto) -> None:
    lt = noon_today()
    clock = SimClock(start=lt + 7 * 3600)  # 19:00
    async with _sim(clock=clock, night_off=True) as sim, Subscriber(mosquitto.port, "#") as sub:
        async with running_bridge(mosquitto, [sim], clock=clock) as env:
            await sub.wait_for(env.topic(INV, "0", "yieldday"))
            clock.advance(58 * 60 + 30)  # 19:58:30: production fades
            await sub.wait_for(env.topic(INV, "0", "power"), lambda p: float(p) < 16, timeout=10)
            clock.advance(90 * 60)  # 21:28: the PV-powered DTU has switched off
            await sub.wait_for(env.topic("dtu", "connection"), lambda p: p == b"night", timeout=20)
            assert sub.last[env.topic("dtu", "available")] == b"online"  # night policy "zero"
            await sub.wait_for(env.topic(INV, "0", "power"), lambda p: float(p) == 0)
            day_yield = float(sub.last[env.topic(INV, "0", "yieldday")])
            assert day_yield > 0
            clock.advance(11 * 3600)  # 08:30 the next day
            await sub.wait_for(
                env.topic("dtu", "connection"), lambda p: p == b"connected", timeout=20
            )
            await sub.wait_for(env.topic(INV, "0", "yieldday"), lambda p: float(p) < day_yield)


async def test_two_dtus_one_failing(mosquitto: Mosquitto) -> None:
    from hoymiles_bridge.simulator import load_fleet, resolve_fleet

    pro = load_fleet(resolve_fleet("dtu-pro")).dtus[0]
    clock = SimClock(start=noon_today())
    async with (
        _sim(clock=clock) as first,
        DtuSimulator(pro, port=0, clock=clock) as second,
        Subscriber(mosquitto.port, "#") as sub,
    ):
        # the same name twice: names are for people, the DTUs stay apart
        dtus = [{"host": s.host, "port": s.port, "name": "Roof"} for s in (first, second)]
        async with running_bridge(mosquitto, [first, second], clock=clock, dtus=dtus) as env:
            pro_inverter = pro.inverters[0].serial
            await sub.wait_for(env.topic("dtu", DTU, "available"), lambda p: p == b"online")
            await sub.wait_for(env.topic("dtu", pro.serial, "available"), lambda p: p == b"online")
            await sub.wait_for(env.topic(pro_inverter, "0", "power"))
            for serial in (INV, pro_inverter):
                await sub.wait_for(f"homeassistant/sensor/hoymiles_inv_{serial}/power/config")
            await second.stop()
            await sub.wait_for(
                env.topic("dtu", pro.serial, "available"), lambda p: p == b"offline", timeout=15
            )
            await sub.wait_for(
                env.topic(pro_inverter, "status", "available"), lambda p: p == b"offline"
            )
            # the healthy DTU keeps flowing, undisturbed
            topic = env.topic(INV, "json")
            for _ in range(3):
                before = sub.last[topic]
                clock.advance(31)
                await sub.wait_for(topic, lambda p, b=before: p != b, timeout=5)
            assert sub.last[env.topic("dtu", DTU, "available")] == b"online"
            assert sub.last[env.topic("ac", "is_valid")] == b"0"
            # with several DTUs the will stays the bridge's one dtu/status, and the
            # per-DTU status topic of earlier versions is cleared, not reused
            assert sub.last[env.topic("dtu", "status")] == b"online"
            assert sub.last.get(env.topic("dtu", DTU, "status"), b"") == b""


async def test_energy_monotonic_over_a_week_with_reboots(mosquitto: Mosquitto) -> None:
    lt = time.localtime(noon_today())
    monday = time.mktime((lt.tm_year, lt.tm_mon, lt.tm_mday, 0, 30, 0, 0, 0, -1))
    clock = SimClock(start=monday)
    async with _sim(clock=clock) as sim, Subscriber(mosquitto.port, "#") as sub:
        async with running_bridge(mosquitto, [sim], clock=clock) as env:
            session = env.bridge.fleet.dtus[0].session
            last_update = env.topic(INV, "status", "last_update")
            total_topic = env.topic(INV, "0", "yieldtotal")
            day_topic = env.topic(INV, "0", "yieldday")
            await sub.wait_for(total_topic)
            await sub.wait_for(last_update)
            previous_total = 0.0
            previous_day: tuple[int, float] | None = None
            missed = 0
            for step in range(7 * 8):  # a week in 3-hour steps
                clock.advance(3 * 3600)
                if step % 9 == 8:
                    await _command(sub, env.topic("dtu", "cmd", "reboot"), "1")
                if step % 7 == 6:
                    await _command(sub, env.topic(INV, "cmd", "restart"), "1")
                    clock.advance(61)  # the inverter is back, the DTU has refreshed
                before = sub.last[last_update]
                fresh = False
                for _ in range(5):
                    session.poll_now()
                    try:
                        await sub.wait_for(last_update, lambda p, b=before: p != b, timeout=2)
                    except AssertionError:
                        continue
                    fresh = True
                    break
                if not fresh:
                    # The DTU was still rebooting: nothing new was published, and
                    # the values on the broker belong to an earlier step.
                    missed += 1
                    continue
                await asyncio.sleep(0.2)  # the rest of this poll's topics
                total = float(sub.last[total_topic])
                assert total >= previous_total, (step, total, previous_total)
                previous_total = total
                day = float(sub.last[day_topic])
                today = time.localtime(clock.now()).tm_yday
                if previous_day is not None and previous_day[0] == today:
                    assert day >= previous_day[1], (step, day, previous_day)
                previous_day = (today, day)
            assert previous_total > 0
            assert missed <= 4, f"{missed} of 56 steps saw no fresh poll"


async def test_displaced_by_the_app_backs_off_then_returns(mosquitto: Mosquitto) -> None:
    from hoymiles_bridge.dtu.client import DtuClient

    async with _sim() as sim, Subscriber(mosquitto.port, "#") as sub:
        async with running_bridge(mosquitto, [sim]) as env:
            await sub.wait_for(env.topic("dtu", "connection"), lambda p: p == b"connected")
            # "the S-Miles app" connects: the DTU drops the bridge's session
            async with DtuClient(sim.host, sim.port, min_spacing=0) as app:
                await app.heartbeat()
                await sub.wait_for(
                    env.topic("dtu", "connection"), lambda p: p == b"displaced", timeout=10
                )
                assert sub.last[env.topic("dtu", "available")] == b"online"
            await sub.wait_for(
                env.topic("dtu", "connection"), lambda p: p == b"connected", timeout=15
            )
            assert sim.displaced_total >= 1


async def test_inverter_that_disappears_loses_its_discovery(mosquitto: Mosquitto) -> None:
    import dataclasses

    async with _sim() as sim, Subscriber(mosquitto.port, "#") as sub:
        async with running_bridge(mosquitto, [sim]) as env:
            topic = f"homeassistant/sensor/hoymiles_inv_{INV}/power/config"
            await sub.wait_for(topic, lambda p: p != b"")
            await sub.wait_for(env.topic(INV, "0", "power"))
            view = env.bridge.fleet.dtus[0]
            info = view.session.app_info
            assert info is not None
            await env.bridge.fleet.on_dtu_info(
                view.session, dataclasses.replace(info, inverters=()), None, None
            )
            await sub.wait_for(topic, lambda p: p == b"")
            assert INV not in view.inverters
            # its retained state is cleared from the broker and forgotten by the bridge
            await sub.wait_for(env.topic(INV, "0", "power"), lambda p: p == b"")
            assert not [t for t in env.bridge.mqtt._published if f"/{INV}/" in t]


async def test_a_hostile_dtu_never_reaches_a_topic_and_the_other_keeps_going(
    mosquitto: Mosquitto,
) -> None:
    """A DTU whose serial holds MQTT wildcards and '/cmd' (issue #10): refused at decode."""
    import dataclasses

    spec = default_fleet().dtus[0]
    hostile = dataclasses.replace(spec, serial="4143/cmd/#")
    clock = SimClock(start=noon_today())
    async with (
        _sim(clock=clock) as good,
        DtuSimulator(hostile, port=0, clock=clock) as bad,  # type: ignore[arg-type]
        Subscriber(mosquitto.port, "#") as sub,
    ):
        async with running_bridge(mosquitto, [good, bad], clock=clock) as env:
            await sub.wait_for(env.topic("dtu", DTU, "available"), lambda p: p == b"online")
            topic = env.topic(INV, "json")
            for _ in range(3):
                before = sub.last.get(topic)
                clock.advance(31)
                await sub.wait_for(topic, lambda p, b=before: p != b, timeout=10)
            assert not env.task.done()  # the bridge is still running
            assert not [t for t in sub.last if "cmd/#" in t or "4143/" in t]
            hostile_state = env.bridge.fleet.dtus[1].session.state
            assert hostile_state in {SessionState.OFFLINE, SessionState.STARTING}


async def test_names_from_the_options_reach_topics_and_discovery(mosquitto: Mosquitto) -> None:
    """The user's names are payloads and discovery names; topics and unique ids keep serials."""
    import dataclasses

    from hoymiles_bridge.mqtt.discovery import dtu_discovery, inverter_discovery

    odd = "Gar/age +# <script>alert(1)</script>"
    async with _sim() as sim, Subscriber(mosquitto.port, "#") as sub:
        names = {
            "dtus": [{"host": sim.host, "port": sim.port, "name": "Balcony/#"}],
            "inverters": [{"serial": INV.lower(), "name": odd, "ports": ["East roof"]}],
        }
        async with running_bridge(mosquitto, [sim], **names) as env:
            await sub.wait_for(env.topic(INV, "0", "power"))
            await sub.wait_for(env.topic(INV, "name"), lambda p: p.decode() == odd)
            await sub.wait_for(env.topic(INV, "1", "name"), lambda p: p == b"East roof")
            await sub.wait_for(env.topic(INV, "2", "name"), lambda p: p == b"Port 2")
            node = f"homeassistant/sensor/hoymiles_inv_{INV}"
            await sub.wait_for(f"{node}/port2_power/config")
            view = env.bridge.fleet.dtus[0]
            assert view.device is not None
            inverter = view.inverters[INV].device
            ctx = env.bridge.mqtt.discovery
            # a subscriber to "#" may lag behind the bridge: every config first
            configs = [*dtu_discovery(ctx, view.device), *inverter_discovery(ctx, inverter)]
            await sub.wait_for_all(t for t, _ in configs)
            discovery = {
                t: json.loads(p)
                for t, p in sub.last.items()
                if t.startswith("homeassistant/") and p
            }
            power1 = discovery[f"{node}/port1_power/config"]
            assert power1["name"] == "East roof power"
            assert power1["uniq_id"] == f"hoymiles_{INV}_port1_power"
            assert discovery[f"{node}/port2_voltage/config"]["name"] == "Port 2 voltage"
            assert discovery[f"{node}/power/config"]["dev"]["name"] == odd
            dtu_node = f"homeassistant/sensor/hoymiles_dtu_{DTU}"
            assert discovery[f"{dtu_node}/rtt/config"]["dev"]["name"] == "Balcony/#"
            assert check_fleet([(t, json.dumps(p)) for t, p in discovery.items()]) == []
            # The names never become topic levels ...
            assert not [t for t in sub.last if "Gar" in t or "East" in t or "Balcony" in t]
            # ... and the unique ids are those of the same devices without names.
            assert view.label == "Balcony/#"
            assert inverter.name == odd and inverter.port_names == ("East roof",)
            plain = [
                *dtu_discovery(ctx, dataclasses.replace(view.device, name=None)),
                *inverter_discovery(ctx, dataclasses.replace(inverter, name=None, port_names=())),
            ]
            assert {t for t, _ in plain} == set(discovery)
            assert {json.loads(p)["uniq_id"] for _, p in plain} == {
                p["uniq_id"] for p in discovery.values()
            }


async def test_without_names_the_name_topics_hold_the_model_and_port_numbers(
    mosquitto: Mosquitto,
) -> None:
    async with _sim() as sim, Subscriber(mosquitto.port, "#") as sub:
        async with running_bridge(mosquitto, [sim]) as env:
            await sub.wait_for(env.topic(INV, "name"), lambda p: p == b"HMS-800W-2T")
            await sub.wait_for(env.topic(INV, "1", "name"), lambda p: p == b"Port 1")
            await sub.wait_for(env.topic(INV, "2", "name"), lambda p: p == b"Port 2")
            node = f"homeassistant/sensor/hoymiles_inv_{INV}"
            config = await sub.wait_for(f"{node}/port1_power/config")
            assert json.loads(config)["name"] == "Port 1 power"
            assert json.loads(config)["dev"]["name"] == f"HMS-800W-2T {INV}"
