"""Batteries end to end: the bridge against the battery simulator on a real Mosquitto.

Both firmware variants (V0.3 with its command-less switch and legacy text
configs, V0.5.1 with reboot/output power), numbers sent as strings, two units
(master and slave), the setpoint keep-alive over three simulated minutes, TOU
acks for every status code, availability from silence, bad input, the
broker going away, and the release at stop.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import aiomqtt
import pytest

from hoymiles_bridge.cli.main import main
from hoymiles_bridge.protocol import battery as fw
from hoymiles_bridge.protocol.battery import FIELDS, LEGACY_TEXT_KEYS

from .battery_env import BASE, PREFIX, BatteryEnv, battery_env
from .conftest_mqtt import mosquitto_fixture  # noqa: F401
from .ha_discovery_schema import check_fleet
from .mosquitto import Mosquitto, Subscriber
from .waiting import until

VARIANTS = [
    pytest.param("v0.3", False, id="v0.3"),
    pytest.param("v0.5", False, id="v0.5"),
    pytest.param("v0.5", True, id="v0.5-strings"),
    pytest.param("v0.3", True, id="v0.3-strings"),
]


async def _discovered(env: BatteryEnv, keys: set[str], unit: int = 0) -> dict[str, Any]:
    dev_id = env.sim.units[unit].dev_id

    async def complete() -> bool:
        found = {t.rsplit("/", 2)[1] for t in env.discovery() if f"hoymiles_bat_{dev_id}/" in t}
        return keys <= found

    def missing() -> list[str]:
        found = {t.rsplit("/", 2)[1] for t in env.discovery() if f"hoymiles_bat_{dev_id}/" in t}
        return sorted(keys - found)

    try:
        await until(complete, "discovery", timeout=10)
    except pytest.fail.Exception:
        pytest.fail(f"not discovered: {missing()}")
    return {
        t.rsplit("/", 2)[1]: p for t, p in env.discovery().items() if f"hoymiles_bat_{dev_id}/" in t
    }


def _expected_sensors(model: str, master: bool) -> set[str]:
    optional_ok = {"heating"}
    if model == "4020x":
        optional_ok |= {"pv_power", "pack_count", "pv_count", "pv1_power", "pv2_power"}
        optional_ok |= {f"pack{n}_{k}" for n in (1, 2) for k in ("soc", "temperature", "heating")}
    optional_ok |= {f"{kind}_{key}" for kind in ("grid_off", "inv") for key in (
        "voltage", "current", "reactive_power", "ein", "eout", "etin", "etout")}  # fmt: skip
    optional_ok |= {"grid_off_frequency", "inv_power", "system_heating", "system_pv2_power"}
    optional_ok |= {"system_eps_power", "system_pv2_energy_today"}
    return {
        f.key
        for f in FIELDS
        if (not f.optional or f.key in optional_ok) and (master or not f.system)
    }


@pytest.mark.parametrize(("firmware", "strings"), VARIANTS)
async def test_every_entity_is_discovered_and_valid(
    mosquitto: Mosquitto, firmware: str, strings: bool
) -> None:
    async with battery_env(mosquitto, firmware=firmware, strings=strings) as env:
        await env.sim.publish_states()
        sensors = _expected_sensors("ms-a2", master=True)
        commands = {"ems_mode_select", "setpoint"}
        if firmware == "v0.5":
            commands |= {"battery_reboot", "output_power", "phase_output_power", "awake"}
        found = await _discovered(env, sensors | commands)
        messages = [(t, json.dumps(p)) for t, p in env.discovery().items()]
        assert check_fleet(messages, PREFIX) == []
        if firmware == "v0.3":
            assert not commands & {"battery_reboot"} and "awake" not in found
        # the Energy dashboard: lifetime counters are total_increasing energy in Wh
        for key in ("grid_on_etin", "grid_on_etout", "system_charge_energy_today"):
            entity = found[key]
            assert (entity["dev_cla"], entity["stat_cla"], entity["unit_of_meas"]) == (
                "energy",
                "total_increasing",
                "Wh",
            )
        assert found["soc"]["uniq_id"] == f"hoymiles_{env.sim.master.dev_id}_soc"
        assert found["soc"]["stat_cla"] == "measurement"
        assert found["rssi"]["dev_cla"] == "signal_strength"
        assert found["ems_mode_select"]["ops"] == list(fw.EMS_MODES)
        assert found["ems_mode_select"]["stat_t"] == env.topic(0, "ems_mode")
        setpoint = found["setpoint"]
        # FW 01.06.03's -1000..+2000 W made symmetric
        assert (setpoint["min"], setpoint["max"]) == (-1000.0, 1000.0)
        # every value arrives as a clean number on its own topic, strings or not
        await until(lambda: _has(env, "grid_on_voltage"), "grid values")
        await until(lambda: _has(env, "ems_mode"), "the system's values")
        assert env.state(0, "grid_on_voltage") == "230.4"  # matched on type, not position
        assert env.state(0, "grid_on_frequency") == "50.01"
        assert float(env.state(0, "soc") or "nan") == pytest.approx(62.0, abs=1)
        assert env.state(0, "ems_mode") == "general"
        assert env.state(0, "available") == "online"
        assert env.state(0, "battery_state") in fw.BATTERY_STATES


async def _has(env: BatteryEnv, key: str, unit: int = 0) -> bool:
    return env.state(unit, key) is not None


async def test_a_4020x_announces_its_pv_ports_and_packs(mosquitto: Mosquitto) -> None:
    async with battery_env(mosquitto, model="4020x") as env:
        await env.sim.publish_states()
        found = await _discovered(env, {"pv_power", "pv1_power", "pack2_soc", "pack_count"})
        assert found["pack2_temperature"]["unit_of_meas"] == "°C"
        assert found["setpoint"]["max"] == 2000.0
        assert "pack3_soc" not in found  # only what the unit sends


@pytest.mark.parametrize("firmware", ["v0.3", "v0.5"])
async def test_the_firmware_configs_are_removed_every_time(
    mosquitto: Mosquitto, firmware: str
) -> None:
    async with battery_env(mosquitto, firmware=firmware) as env:
        dev_id = env.sim.master.dev_id
        topics = fw.FirmwareTopics(PREFIX, dev_id)
        broken = [topics.config(k) for k in ("switch", "ems_mode", "power_ctrl", "soc", "bat_p")]
        if firmware == "v0.3":
            broken += [topics.config(k) for k in LEGACY_TEXT_KEYS]
        else:
            broken += [topics.config(k) for k in ("reboot", "output_power", "phase_output_power")]

        async def cleared() -> bool:
            return all(env.seen.last.get(t) == b"" for t in broken)

        await until(cleared, "the firmware's configs removed")
        repairs = env.bridge.batteries.repairs
        # the firmware publishes them again after a reconnect: removed again
        env.sim.reboot()

        async def again() -> bool:
            return env.bridge.batteries.repairs >= repairs + len(broken) and await cleared()

        await until(again, "the configs removed again after the reconnect")
        # nothing broken is left retained on the broker: a fresh client sees none
        async with Subscriber(mosquitto.port, f"{PREFIX}/+/{dev_id}/#") as fresh:
            await until(lambda: _quick_seen(fresh, dev_id), "a live message")
            retained_configs = [
                m for m in fresh.messages if m.retain and m.topic.endswith("/config") and m.payload
            ]
            assert retained_configs == []


async def _quick_seen(sub: Any, dev_id: str) -> bool:
    return any(m.topic.endswith(f"{dev_id}/quick/state") for m in sub.messages)


async def test_two_units_master_and_slave(mosquitto: Mosquitto) -> None:
    async with battery_env(mosquitto, units=2) as env:
        await env.sim.publish_states(unit=0)
        await env.sim.publish_states(unit=1)
        master = await _discovered(env, {"system_soc", "ems_mode_select", "setpoint"})
        slave = await _discovered(env, {"soc", "battery_power", "grid_on_etout"}, unit=1)
        assert not any(k.startswith("system_") for k in slave)
        assert "ems_mode_select" not in slave and "setpoint" not in slave
        assert "system_load_power" in master
        assert env.battery(0).master is True and env.battery(1).master is False
        # the system totals appear once, on the master
        messages = [(t, json.dumps(p)) for t, p in env.discovery().items()]
        assert check_fleet(messages, PREFIX) == []
        status = await env.command(1, "setpoint", "100")
        assert status.startswith("failed: battery") and "slave" in status
        assert env.sent("power_ctrl/set", unit=1) == []


async def test_a_setpoint_is_kept_alive_for_three_simulated_minutes(mosquitto: Mosquitto) -> None:
    async with battery_env(mosquitto) as env:
        assert await env.command(0, "setpoint", "-300") == "ok: EMS mode set to mqtt_ctrl"
        await until(lambda: _count(env, "power_ctrl/set", 1), "the setpoint at the battery")
        start = env.clock.now()
        while env.clock.now() - start < 180:
            env.clock.advance(5)
            # wait until the bridge sent what it owes: a setpoint at most 25 s old
            await until(lambda: _fresh(env, 25), "the keep-alive")
            assert env.sim.master.setpoint is not None, "the battery forgot the setpoint"
        times = [r.at for r in env.sim.received if r.topic.endswith("power_ctrl/set")]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert len(times) >= 7 and max(gaps) <= 30
        values = [float(p) for p in env.sent("power_ctrl/set")]
        assert values[0] == -300.0
        # the perturbation alternates +0.1 / +0.2 W around the value
        assert {round(v + 300, 1) for v in values[1:]} == {0.1, 0.2}
        assert env.sent("ems_mode/command") == ["mqtt_ctrl"]
        assert env.state(0, "setpoint") == "-300"
        # another mode ends the keep-alive
        assert await env.command(0, "ems_mode", "general") == "ok"
        sent = len(env.sent("power_ctrl/set"))
        env.clock.advance(60)
        await until(lambda: _settled(env), "the hub to look at the clock")
        assert len(env.sent("power_ctrl/set")) == sent


async def _count(env: BatteryEnv, suffix: str, n: int) -> bool:
    return len(env.sent(suffix)) >= n


async def _fresh(env: BatteryEnv, age: float) -> bool:
    times = [r.at for r in env.sim.received if r.topic.endswith("power_ctrl/set")]
    return bool(times) and env.clock.now() - times[-1] <= age


async def _settled(env: BatteryEnv) -> bool:
    """Let the hub look at the clock a few times (every 10 ms) when there is nothing to wait for."""
    await asyncio.sleep(0.1)
    return True


async def test_a_setpoint_outside_the_range_is_refused_and_nothing_is_sent(
    mosquitto: Mosquitto,
) -> None:
    async with battery_env(mosquitto, firmware="v0.3") as env:
        await until(lambda: _advertised(env), "the advertised range")
        status = await env.command(0, "setpoint", "1500")
        assert status == "failed: setpoint 1500 W is outside -1000..1000 W"
        assert await env.command(0, "setpoint", "abc") == "failed: 'abc' is not a number"
        assert env.sent("power_ctrl/set") == [] and env.sent("ems_mode/command") == []


async def _advertised(env: BatteryEnv) -> bool:
    return env.battery().advertised is not None


async def test_ems_mode_select_follows_system_state(mosquitto: Mosquitto) -> None:
    async with battery_env(mosquitto) as env:
        assert await env.command(0, "ems_mode", "tou_plan") == "ok"
        assert env.sent("ems_mode/command") == ["tou_plan"]
        await env.sim.publish_states()
        await until(lambda: _state_is(env, "ems_mode", "tou_plan"), "the mode read back")
        assert (await env.command(0, "ems_mode", "off")).startswith("failed: 'off' is not one of")


async def _state_is(env: BatteryEnv, key: str, value: str) -> bool:
    return env.state(0, key) == value


DAY_PLAN = {"day_idx": 1, "day_plan": [{"mode": 1, "ts": 8, "te": 24, "sh": 90, "sl": 10,
            "pc": 800, "pd": 100}, {"mode": 4, "ts": 68, "te": 88, "sh": 100, "sl": 20,
            "pc": 100, "pd": 600}]}  # fmt: skip


async def test_tou_plans_are_sent_one_at_a_time_with_their_acks(mosquitto: Mosquitto) -> None:
    async with battery_env(mosquitto) as env:
        # not in tou_plan mode: the battery answers 10
        status = await env.command(0, "tou_day_plan", json.dumps(DAY_PLAN))
        assert status == "failed: status 10: the battery is not in tou_plan mode (error 10)"
        await env.command(0, "ems_mode", "tou_plan")
        assert await env.command(0, "tou_day_plan", json.dumps(DAY_PLAN)) == "ok"
        week = {"week_plan": [{"week": ["Mon", "Tue", "Wed", "Thu", "Fri"], "day_idx": 1}]}
        assert await env.command(0, "tou_week_plan", json.dumps(week)) == "ok"
        answer = await env.command(0, "tou_get", "Tue")
        assert answer.startswith("ok: ")
        body = json.loads(answer.removeprefix("ok: "))
        assert body["day_idx"] == 1 and len(body["day_plan"]) == 2
        assert (await env.command(0, "tou_get", "Sun")).startswith("failed: status 2")


@pytest.mark.parametrize("status", sorted(fw.DAY_ACKS))
async def test_every_day_ack_code_is_mapped(mosquitto: Mosquitto, status: int) -> None:
    async with battery_env(mosquitto) as env:
        await env.command(0, "ems_mode", "tou_plan")
        env.sim.forced_status["day"] = status
        text = await env.command(0, "tou_day_plan", json.dumps(DAY_PLAN))
        if status == 0:
            assert text == "ok"
        else:
            assert text.startswith(f"failed: status {status}: {fw.DAY_ACKS[status]}")


@pytest.mark.parametrize("status", sorted(fw.WEEK_ACKS))
async def test_every_week_ack_code_is_mapped(mosquitto: Mosquitto, status: int) -> None:
    async with battery_env(mosquitto) as env:
        await env.command(0, "ems_mode", "tou_plan")
        await env.command(0, "tou_day_plan", json.dumps(DAY_PLAN))
        env.sim.forced_status["week"] = status
        week = {"week_plan": [{"week": ["Sat"], "day_idx": 1}]}
        text = await env.command(0, "tou_week_plan", json.dumps(week))
        if status == 0:
            assert text == "ok"
        else:
            assert text.startswith(f"failed: status {status}: {fw.WEEK_ACKS[status]}")


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ({"day_idx": 1, "day_plan": [{"mode": 1, "ts": 0, "te": 10}] * 13}, "at most 12 periods"),
        (
            {
                "day_idx": 1,
                "day_plan": [{"mode": 1, "ts": 0, "te": 10}, {"mode": 4, "ts": 5, "te": 20}],
            },
            "overlap",
        ),  # fmt: skip
        ({"day_idx": 1, "day_plan": [{"mode": 1, "ts": 90, "te": 97}]}, "te 97 is outside 0..96"),
        ({"day_idx": 9, "day_plan": []}, "day_idx 9 is outside 1..8"),
        ({"day_idx": 1, "day_plan": [{"mode": 3, "ts": 0, "te": 4}]}, "mode 3 is not 1, 2 or 4"),
    ],
)
async def test_an_invalid_tou_plan_is_refused_before_sending(
    mosquitto: Mosquitto, plan: dict[str, Any], message: str
) -> None:
    async with battery_env(mosquitto) as env:
        text = await env.command(0, "tou_day_plan", json.dumps(plan))
        assert text.startswith("failed: ") and message in text
        assert env.sent("tou_day_plan/set") == []


async def test_availability_follows_silence(mosquitto: Mosquitto) -> None:
    async with battery_env(mosquitto) as env:
        await until(lambda: _state_is(env, "available", "online"), "online")
        env.sim.master.silent = True
        await _settled(env)
        env.clock.advance(fw.SILENCE_QUICK - 5)
        await _settled(env)
        assert env.battery().available
        env.clock.advance(10)
        await until(lambda: _state_is(env, "available", "offline"), "offline after silence")
        env.sim.master.silent = False
        await until(lambda: _state_is(env, "available", "online"), "online again")


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[1, 2]",
        b'{"soc": "lots", "bat_p": [1], "grid_on_p": 1e99}',
        b'{"soc": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b"{" + b'"x": 1,' * 5000 + b'"y": 2}',
        b"\xff\xfe",
    ],
)
async def test_bad_input_changes_nothing(mosquitto: Mosquitto, payload: bytes) -> None:
    async with battery_env(mosquitto) as env:
        env.sim.master.silent = True
        dev_id = env.sim.master.dev_id
        await env.sim.publish_raw(f"{PREFIX}/sensor/{dev_id}/quick/state", payload)
        await env.sim.publish_raw(f"{PREFIX}/sensor/{dev_id}/device/state", payload)
        await env.sim.publish_raw(f"{PREFIX}/sensor/{dev_id}/tou_day_plan/ack", payload)
        marker = f"{PREFIX}/sensor/{dev_id}/attributes"
        await env.sim.publish_raw(marker, b'{"supported_topics": ["marker"]}')
        # Messages of one client arrive in order: the marker read, the bad ones were too.
        await until(lambda: _read_by_hub(env, "marker"), "the messages to pass the bridge")
        text = payload[:4096].decode("utf-8", "replace")
        bad = [m for m in env.hub.messages if m.text == text]
        assert len(bad) == 3, [m.kind for m in bad]
        # Each one was read as nothing: an error, or no value that passed the checks
        # (the simulator's own messages, sent before the silence, may still land).
        for message in bad:
            assert message.error is not None or not message.decoded["values"], message
        assert not env.task.done()  # nothing escaped


async def _read_by_hub(env: BatteryEnv, marker: str) -> bool:
    return any(m.kind == "attributes" and marker in m.text for m in env.hub.messages)


async def test_a_topic_with_a_bad_dev_id_is_ignored(mosquitto: Mosquitto) -> None:
    async with battery_env(mosquitto) as env:
        await env.publish(f"{PREFIX}/sensor/bad id!/quick/state", b'{"soc": 50}')
        await env.publish(f"{PREFIX}/sensor/{'x' * 80}/quick/state", b'{"soc": 50}')
        await _settled(env)
        assert set(env.hub.batteries) == {env.sim.master.dev_id}


async def test_a_retained_command_is_ignored_and_cleared(mosquitto: Mosquitto) -> None:
    # a command left retained on the broker (by a tool, or an automation with retain on)
    topic = f"{BASE}/battery/MSA-280024370560/cmd/ems_mode"
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
        await client.publish(topic, b"tou_plan", qos=1, retain=True)
    async with battery_env(mosquitto) as env:
        assert topic == env.cmd(0, "ems_mode")
        await env.seen.wait_for(topic, lambda p: p == b"")  # cleared
        # the battery got nothing, and neither the command nor the clearing's echo is
        # answered; a live command still is
        assert await env.command(0, "ems_mode", "general") == "ok"
        assert env.sent("ems_mode/command") == ["general"]
        assert [p for p in env.seen.payloads(topic + "/status") if p != b"pending"] == [b"ok"]


async def test_broker_loss_stops_the_keepalive_and_the_reconnect_resends(
    mosquitto: Mosquitto,
) -> None:
    async with battery_env(mosquitto) as env:
        await env.command(0, "setpoint", "200")
        await until(lambda: _count(env, "power_ctrl/set", 1), "the setpoint")
        sent = env.hub.keepalives_sent
        await mosquitto.stop()
        await until(lambda: _disconnected(env), "the bridge to see the broker gone")
        env.clock.advance(120)
        await _settled(env)
        assert env.hub.keepalives_sent == sent  # nothing sent, nothing queued
        await mosquitto.start()
        await until(lambda: _more(env, sent), "a re-send after the reconnect")


async def _disconnected(env: BatteryEnv) -> bool:
    return not env.bridge.link.connected


async def _more(env: BatteryEnv, sent: int) -> bool:
    return env.hub.keepalives_sent > sent


async def test_stopping_releases_the_setpoint(mosquitto: Mosquitto) -> None:
    async with battery_env(mosquitto) as env:
        await env.command(0, "setpoint", "150")
        await until(lambda: _count(env, "power_ctrl/set", 1), "the setpoint")
        await env.bridge.stop()
        await until(lambda: _count(env, "power_ctrl/set", 2), "0 W at stop")
        assert env.sent("power_ctrl/set")[-1] == "0.0"
        await until(lambda: _mode_sent(env, "general"), "general at stop")


async def _mode_sent(env: BatteryEnv, mode: str) -> bool:
    return env.sent("ems_mode/command")[-1:] == [mode]


async def test_release_mode_zero_sends_only_zero(mosquitto: Mosquitto) -> None:
    async with battery_env(mosquitto, battery_release_mode="zero") as env:
        await env.command(0, "setpoint", "150")
        await until(lambda: _count(env, "power_ctrl/set", 1), "the setpoint")
        await env.bridge.stop()
        await until(lambda: _count(env, "power_ctrl/set", 2), "0 W at stop")
        assert env.sent("ems_mode/command") == ["mqtt_ctrl"]


async def test_v05_commands_reach_the_firmware(mosquitto: Mosquitto) -> None:
    async with battery_env(mosquitto, firmware="v0.5") as env:
        await until(lambda: _capable(env), "the advertised commands")
        assert await env.command(0, "phase_output_power", "800") == "ok"
        await until(lambda: _count(env, "phase_output_power/set", 1), "phase power")
        assert env.sim.master.phase_output_power == {"phase_a": 800, "phase_b": 800, "phase_c": 800}
        assert await env.command(0, "output_power", "900") == "ok"
        assert await env.command(0, "awake", "OFF") == "ok"
        await until(lambda: _count(env, "set", 1), "the switch")
        assert env.sim.master.asleep
        assert await env.command(0, "battery_reboot", "1") == "ok"
        await until(lambda: _rebooted(env), "the reboot")


async def _capable(env: BatteryEnv) -> bool:
    return fw.Outbound.REBOOT in env.battery().capabilities


async def _rebooted(env: BatteryEnv) -> bool:
    return env.sim.master.reboots == 1


async def test_v03_offers_no_v05_commands(mosquitto: Mosquitto) -> None:
    async with battery_env(mosquitto, firmware="v0.3") as env:
        text = await env.command(0, "battery_reboot", "1")
        assert text.startswith("failed: battery") and "does not offer" in text


async def test_batteries_not_listed_are_left_alone(mosquitto: Mosquitto) -> None:
    async with battery_env(
        mosquitto, start_sim=False, batteries_auto=False, batteries=[{"dev_id": "MSA-other"}]
    ) as env:
        await until(lambda: _quick_published(env), "the simulator to publish")
        await _settled(env)
        assert env.hub.batteries == {}
        assert env.discovery() == {}


async def _quick_published(env: BatteryEnv) -> bool:
    return any(t.endswith("/quick/state") for t in env.seen.last)


async def test_the_battery_cli_talks_to_the_firmware(
    mosquitto: Mosquitto, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    async with battery_env(mosquitto) as env:
        broker = f"127.0.0.1:{mosquitto.port}"

        def cli(*argv: str) -> int:
            return main(["battery", "--mqtt", broker, "--wait", "1", *argv])

        assert await asyncio.to_thread(cli, "list") == 0
        assert env.sim.master.dev_id in capsys.readouterr().out
        dev_id = env.sim.master.dev_id
        assert await asyncio.to_thread(cli, "--battery", dev_id, "status") == 0
        status = json.loads(capsys.readouterr().out)
        assert status["dev_id"] == dev_id and "quick" in status["sources"]
        assert isinstance(status["soc"], int | float)
        assert await asyncio.to_thread(cli, "setpoint", "5000") == 2
        assert "outside -1000..1000 W" in capsys.readouterr().err
        plan = tmp_path / "plan.json"
        plan.write_text(json.dumps({"day_plans": [DAY_PLAN], "week_plan": [
            {"week": ["Mon"], "day_idx": 1}]}))  # fmt: skip
        assert await asyncio.to_thread(cli, "tou-set", str(plan)) == 1  # not in tou_plan
        assert "status 10" in capsys.readouterr().out
        assert await asyncio.to_thread(cli, "mode", "tou_plan") == 0
        await until(lambda: _mode_is(env, "tou_plan"), "the mode at the battery")
        assert await asyncio.to_thread(cli, "tou-set", str(plan)) == 0
        assert "week plan accepted" in capsys.readouterr().out
        assert await asyncio.to_thread(cli, "tou-get", "Mon") == 0
        assert json.loads(capsys.readouterr().out)["day_idx"] == 1
        plan.write_text(json.dumps({"day_idx": 1, "day_plan": [DAY_PLAN["day_plan"][0]] * 2}))
        assert await asyncio.to_thread(cli, "tou-set", str(plan)) == 2
        assert "overlap" in capsys.readouterr().err


async def _mode_is(env: BatteryEnv, mode: str) -> bool:
    return env.sim.master.mode == mode
