"""Cloud stations in the core and on MQTT, with Home Assistant discovery checked.

The discovery payloads go through the same checker as the DTUs' (tests/ha_discovery_schema.py);
the last test runs the whole bridge (no DTU, a cloud account) against the
stand-in cloud and a real Mosquitto.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import stat
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, cast

import aiohttp
import aiomqtt
import pytest

from hoymiles_bridge.cloud import facts
from hoymiles_bridge.config.options import validate
from hoymiles_bridge.core.cloud import CloudSource, CloudStation
from hoymiles_bridge.core.commands import CommandOutcome, CommandRequest, Target
from hoymiles_bridge.mqtt.cloud import (
    CLOUD_FIELDS,
    CloudPublisher,
    discovery_items,
    state_items,
)
from hoymiles_bridge.mqtt.commands import MAX_IN_FLIGHT_BY_TARGET, CommandRunner, split_topic
from hoymiles_bridge.mqtt.link import MqttLink
from hoymiles_bridge.mqtt.topics import TopicLayout
from hoymiles_bridge.protocol.secrets import MASK
from tests.bridge_env import running_bridge
from tests.cloud_standin import PASSWORD, USERNAME, Running, start
from tests.conftest_mqtt import mosquitto_fixture  # noqa: F401
from tests.ha_discovery_schema import check_fleet
from tests.mosquitto import Mosquitto, Subscriber
from tests.waiting import until
from tests.web_env import serving

STATUS = "solar/dtu/status"


@pytest.fixture
async def cloud() -> AsyncIterator[Running]:
    running = await start()
    yield running
    await running.close()


class FakeLink:
    def __init__(self) -> None:
        self.connects = 0
        self.retained: dict[str, str] = {}
        self.batches: list[list[tuple[str, str]]] = []

    async def publish_many(
        self, items: Sequence[tuple[str, str]], *, retain: bool = False, qos: int = 0
    ) -> None:
        assert retain and qos in (0, 1)
        self.batches.append(list(items))
        self.retained.update(items)


def station(**changes: Any) -> CloudStation:
    values: dict[str, Any] = {
        "sid": 101,
        "name": "Balcony",
        "soc": 53.0,
        "pv_power": 310.5,
        "battery_power": -245.8,
        "grid_power": 6.2,
        "load_power": 252.0,
        "energy_today": 1.0,
        "energy_total": 125.0,
        "battery_temperature": 22.0,
        "battery_serials": ("280024370560",),
        "available": True,
    }
    values.update(changes)
    return CloudStation(**values)


def test_the_discovery_of_a_station_is_valid() -> None:
    items = discovery_items("homeassistant", "solar", STATUS, station(), "1.0")
    # without cloud.allow_writes the settings' entities are removed
    removed = [topic for topic, text in items if not text]
    assert removed == [
        "homeassistant/switch/hoymiles_cloud_101/grid_charge/config",
        "homeassistant/number/hoymiles_cloud_101/on_grid_power/config",
    ]
    items = [(topic, text) for topic, text in items if text]
    assert not check_fleet(items)
    assert len(items) == len(CLOUD_FIELDS)
    payloads = {topic.split("/")[3]: json.loads(text) for topic, text in items}
    assert payloads["soc"]["dev_cla"] == "battery" and payloads["soc"]["unit_of_meas"] == "%"
    for key in ("energy_total", "energy_today", "battery_charged_today"):
        assert payloads[key]["dev_cla"] == "energy"
        assert payloads[key]["stat_cla"] == "total_increasing"
    soc = payloads["soc"]
    assert soc["dev"]["name"] == "Balcony" and soc["dev"]["ids"] == ["hoymiles_cloud_101"]
    assert [a["t"] for a in soc["avty"]] == [STATUS, "solar/cloud/101/available"]
    assert soc["stat_t"] == "solar/cloud/101/soc"


def test_with_writes_a_station_offers_its_settings() -> None:
    items = discovery_items("homeassistant", "solar", STATUS, station(), "1.0", writes=True)
    assert all(text for _, text in items)
    assert not check_fleet(items)
    configs = {topic: json.loads(text) for topic, text in items}
    switch = configs["homeassistant/switch/hoymiles_cloud_101/grid_charge/config"]
    assert switch["cmd_t"] == "solar/cloud/101/cmd/grid_charge"
    assert switch["stat_t"] == "solar/cloud/101/grid_charge"
    assert (switch["pl_on"], switch["pl_off"]) == ("1", "0")
    assert switch["uniq_id"] == "hoymiles_cloud_101_grid_charge"
    number = configs["homeassistant/number/hoymiles_cloud_101/on_grid_power/config"]
    assert number["cmd_t"] == "solar/cloud/101/cmd/on_grid_power"
    assert (number["min"], number["max"], number["unit_of_meas"]) == (0, 6000, "W")
    assert number["avty"] == switch["avty"] and number["dev"]["ids"] == ["hoymiles_cloud_101"]
    # what the bridge wrote is the state
    states = dict(state_items("solar", station(grid_charge=True, on_grid_power=800.0)))
    assert states["solar/cloud/101/grid_charge"] == "1"
    assert states["solar/cloud/101/on_grid_power"] == "800"
    # a fallback station removes them too
    fallback = discovery_items(
        "homeassistant", "solar", STATUS, station(fallback=True), "1.0", writes=True
    )
    assert all(text == "" for _, text in fallback)


def test_states_of_a_station() -> None:
    items = dict(state_items("solar", station()))
    assert items["solar/cloud/101/soc"] == "53"
    assert items["solar/cloud/101/battery_power"] == "-245.8"  # charging: negative
    assert items["solar/cloud/101/name"] == "Balcony"
    assert items["solar/cloud/101/available"] == "online"
    assert items["solar/cloud/101/fallback"] == "0"
    assert "solar/cloud/101/energy_month" not in items  # unknown: not published
    stale = dict(state_items("solar", station(available=False)))
    assert stale["solar/cloud/101/available"] == "offline"


def test_a_fallback_station_removes_its_discovery() -> None:
    items = discovery_items("homeassistant", "solar", STATUS, station(fallback=True), "1.0")
    assert items and all(text == "" for _, text in items)


def _options(cloud: Running, **cloud_options: Any) -> Any:
    doc = {
        "dtus": [],
        "cloud": {
            "username": USERNAME,
            "password": PASSWORD,
            "base_url": cloud.url,
            **cloud_options,
        },
    }
    return validate(doc).cloud


async def test_source_and_publisher_against_the_stand_in(cloud: Running) -> None:
    source = CloudSource(_options(cloud, stations="101"))
    link = FakeLink()
    publisher = CloudPublisher(
        source, cast(MqttLink, link), base="solar", bridge_status=STATUS, version="1.0"
    )
    try:
        await source.poller.poll_once()
        await publisher.flush()
        retained = link.retained
        assert retained["solar/cloud/101/soc"] == "53"
        assert retained["solar/cloud/101/battery_power"] == "245.8"
        assert retained["solar/cloud/101/energy_total"] == "125"
        assert retained["solar/cloud/101/battery_temperature"] == "22"
        assert retained["solar/cloud/101/available"] == "online"
        configs = [(t, p) for t, p in retained.items() if t.startswith("homeassistant/") and p]
        assert len(configs) == len(CLOUD_FIELDS) and not check_fleet(configs)
        # Nothing changed: nothing is published again.
        sent = len(link.batches)
        await source.poller.poll_once()
        await publisher.flush()
        assert len(link.batches) == sent
        # The same battery is reachable locally: the cloud station is a fallback.
        source.set_local_serials(["280024370560"])
        await publisher.flush()
        assert retained["solar/cloud/101/fallback"] == "1"
        assert all(retained[t] == "" for t, _ in configs)
        # After a reconnect everything is announced again.
        link.connects += 1
        await publisher.flush()
        assert len(link.batches) > sent + 2
        card = source.describe()
        assert card["login"] == "logged in" and card["stations"][0]["fallback"]
        inspector = json.dumps(source.inspector())
        assert PASSWORD not in inspector and USERNAME not in inspector and MASK in inspector
    finally:
        await source.client.close()


async def test_bad_station_ids_leave_the_cloud_out(
    cloud: Running, caplog: pytest.LogCaptureFixture
) -> None:
    from hoymiles_bridge.addon.bridge import Bridge
    from hoymiles_bridge.cli.run import mqtt_settings

    options = validate(
        {"dtus": [], "cloud": {"username": USERNAME, "password": PASSWORD, "stations": "x"}}
    )
    bridge = Bridge(options, mqtt_settings(options))
    assert bridge.cloud is None and "cloud.stations" in caplog.text


async def test_the_bridge_publishes_cloud_stations(mosquitto: Mosquitto, cloud: Running) -> None:
    cloud_options = {"username": USERNAME, "password": PASSWORD, "base_url": cloud.url}
    async with Subscriber(mosquitto.port, "#") as sub:
        async with running_bridge(mosquitto, [], cloud=cloud_options) as env:
            await sub.wait_for("solar/cloud/101/soc", lambda p: p == b"53")
            await sub.wait_for("solar/cloud/202/energy_total", lambda p: p == b"125")
            config = "homeassistant/sensor/hoymiles_cloud_202/battery_temperature/config"
            await sub.wait_for("homeassistant/sensor/hoymiles_cloud_101/soc/config")
            await sub.wait_for("homeassistant/sensor/hoymiles_cloud_202/soc/config")
            assert env.bridge.cloud is not None
    configs = [
        (topic, payload.decode())
        for topic, payload in sub.last.items()
        if topic.startswith("homeassistant/sensor/hoymiles_cloud_")
    ]
    assert len(configs) == 2 * len(CLOUD_FIELDS)
    assert config in dict(configs)
    assert not check_fleet(configs)


async def _outcome(env: Any, sub: Subscriber, topic: str, payload: bytes) -> bytes:
    """Send a command on ``topic``; its final outcome (after any ``pending``)."""
    status = topic + "/status"
    seen = len(sub.payloads(status))

    def finals() -> list[bytes]:
        return [p for p in sub.payloads(status)[seen:] if p != b"pending"]

    async def answered() -> bool:
        return bool(finals())

    await env.bridge.link.publish(topic, payload, qos=1)
    await until(answered, f"the outcome on {status}")
    return finals()[0]


async def test_cloud_settings_from_mqtt_through_the_registry(
    mosquitto: Mosquitto, cloud: Running
) -> None:
    cloud_options = {
        "username": USERNAME,
        "password": PASSWORD,
        "base_url": cloud.url,
        "stations": "101",
        "allow_writes": True,
    }
    settings = cloud.state.settings
    charge = "solar/cloud/101/cmd/grid_charge"
    power = "solar/cloud/101/cmd/on_grid_power"
    # a retained command waits on the broker: the bridge ignores it, and clears it
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
        await client.publish(charge, b"1", qos=1, retain=True)
    async with Subscriber(mosquitto.port, "#") as sub:
        async with running_bridge(mosquitto, [], cloud=cloud_options) as env:
            await sub.wait_for("solar/cloud/101/soc")
            switch = "homeassistant/switch/hoymiles_cloud_101/grid_charge/config"
            assert json.loads(await sub.wait_for(switch))["cmd_t"] == charge
            await sub.wait_for(charge, lambda p: p == b"")
            assert settings[facts.ACTION_GRID_CHARGE] == {"enable": 0}
            # neither the ignored retained command nor the empty echo of its clearing
            # is answered
            assert sub.payloads(charge + "/status") == []

            assert await _outcome(env, sub, charge, b"ON") == b"ok"
            assert await sub.wait_for("solar/cloud/101/grid_charge") == b"1"
            assert settings[facts.ACTION_GRID_CHARGE]["enable"] == 1
            assert await _outcome(env, sub, power, b"650") == b"ok"
            assert await sub.wait_for("solar/cloud/101/on_grid_power") == b"650"
            assert settings[facts.ACTION_ON_GRID_POWER] == {"power": 650}

            # refused in one sentence: out of range, an unknown station
            text = await _outcome(env, sub, power, b"7000")
            assert text.startswith(b"failed: ") and b"6000" in text
            text = await _outcome(env, sub, "solar/cloud/999/cmd/grid_charge", b"1")
            assert b"no cloud station" in text
            odd = await env.bridge.fleet.submit(
                CommandRequest(Target.CLOUD, "\u00b2", "grid_charge", b"1")
            )
            assert odd is not None and odd.status == "refused"
            # from the web API (no topic of its own): the outcome on the station's topic
            seen = len(sub.payloads(power + "/status"))
            api = await env.bridge.fleet.submit(
                CommandRequest(Target.CLOUD, "101", "on_grid_power", b"600")
            )
            assert api is not None and api.status == "ok"
            await until(
                lambda: _true(b"ok" in sub.payloads(power + "/status")[seen:]), "the API's outcome"
            )

            # the cloud refuses (the 2026-09 fault): failed, the state stays, polling goes on
            cloud.state.settings_empty = True
            text = await _outcome(env, sub, charge, b"0")
            assert text.startswith(b"failed: ") and b"The device list is empty" in text
            assert sub.last["solar/cloud/101/grid_charge"] == b"1"
            assert env.bridge.cloud is not None and env.bridge.cloud.status.running


async def test_cloud_command_topics_and_the_command_runner() -> None:
    assert split_topic("solar", "solar/cloud/101/cmd/grid_charge") == (
        Target.CLOUD,
        "101",
        "grid_charge",
    )
    for topic in (
        "solar/cloud/101/cmd/grid_charge/status",
        "solar/cloud/101/grid_charge",
        "other/cloud/101/cmd/grid_charge",
    ):
        assert split_topic("solar", topic) is None, topic
    assert "solar/cloud/+/cmd/+" in TopicLayout("solar").command_subscriptions

    taken: list[CommandRequest] = []
    release = asyncio.Event()

    async def submit(request: CommandRequest) -> CommandOutcome | None:
        taken.append(request)
        await release.wait()
        return CommandOutcome("ok")

    def cloud(sid: object, payload: bytes = b"1") -> CommandRequest:
        return CommandRequest(Target.CLOUD, str(sid), "grid_charge", payload)

    runner = CommandRunner(submit)
    bound = MAX_IN_FLIGHT_BY_TARGET[Target.CLOUD]
    for sid in range(bound):
        assert runner.queue(cloud(sid)) is None
    await until(lambda: _true(len(taken) == bound), "the commands to run")
    # one more cloud command than the cloud's bound is refused in a sentence; others run
    assert runner.queue(cloud(bound)) == f"more than {bound} cloud commands at once; send it again"
    dtu = CommandRequest(Target.DTU, "", "reboot", b"1")
    assert runner.queue(dtu) is None
    await until(lambda: _true(len(taken) == bound + 1), "the DTU command")
    # a newer request for a busy topic waits, replacing an older waiting one
    for payload in (b"0", b"1", b"0"):
        assert runner.queue(cloud(0, payload)) is None
    release.set()
    await until(lambda: _true(len(taken) == bound + 2), "the waiting command")
    assert taken[-1].payload == b"0" and taken[-1].serial == "0"
    # a request right after a command ended starts a new one
    await until(lambda: _true(runner.running == 0), "the commands' end")
    assert runner.queue(cloud(0)) is None
    await until(lambda: _true(len(taken) == bound + 3), "the next command")
    await runner.stop()
    assert runner.queue(cloud(0)) is None
    await asyncio.sleep(0)
    assert len(taken) == bound + 3  # stopped: taken no more


async def _true(value: bool) -> bool:
    return value


async def test_without_writes_no_cloud_command_is_taken(
    mosquitto: Mosquitto, cloud: Running
) -> None:
    cloud_options = {"username": USERNAME, "password": PASSWORD, "base_url": cloud.url}
    async with Subscriber(mosquitto.port, "#") as sub:
        async with running_bridge(mosquitto, [], cloud=cloud_options) as env:
            await sub.wait_for("solar/cloud/101/soc")
            switch = "homeassistant/switch/hoymiles_cloud_101/grid_charge/config"
            assert await sub.wait_for(switch) == b""
            answer = await env.bridge.fleet.submit(
                CommandRequest(Target.CLOUD, "101", "grid_charge", b"1")
            )
            assert answer is not None and answer.status == "refused"
            assert "cloud.allow_writes" in answer.message
            # over MQTT the same refusal, on the command's status topic
            text = await _outcome(env, sub, "solar/cloud/101/cmd/grid_charge", b"1")
            assert text.startswith(b"failed: writes to the cloud are off")
    assert not cloud.state.jobs
    assert cloud.state.settings[facts.ACTION_GRID_CHARGE] == {"enable": 0}


async def test_the_web_card_and_the_inspector_show_no_secret(
    mosquitto: Mosquitto, cloud: Running
) -> None:
    cloud_options = {"username": USERNAME, "password": PASSWORD, "base_url": cloud.url}
    async with Subscriber(mosquitto.port, "solar/cloud/#") as sub:
        async with running_bridge(mosquitto, [], cloud=cloud_options) as env:
            await sub.wait_for("solar/cloud/101/soc")
            async with (
                serving(env.bridge, cloud=lambda: env.bridge.cloud) as server,
                aiohttp.ClientSession() as session,
            ):
                base = f"http://127.0.0.1:{server.port}"
                status: dict[str, Any] = {}

                async def round_done() -> bool:
                    async with session.get(base + "/api/status") as response:
                        status.update(await response.json())
                    return status["cloud"]["next_poll"] is not None

                await until(round_done, "the first round of cloud polls")
                async with session.get(base + "/api/cloud") as response:
                    inspector = await response.text()
    card = status["cloud"]
    assert card["login"] == "logged in" and card["running"] and card["last_error"] == ""
    assert card["last_update"] is not None and card["next_poll"] is not None
    assert {s["sid"] for s in card["stations"]} == {101, 202}
    data = json.loads(inspector)
    assert data["enabled"] and data["exchanges"]
    assert any(e["url"].endswith("/iam/pub/3/auth/login") for e in data["exchanges"])
    secrets = {PASSWORD, USERNAME, "k="}
    for request in cloud.state.requests:
        secrets |= {request.authorization} if request.authorization else set()
        if isinstance(request.body, dict):
            secrets |= {str(request.body[k]) for k in ("n", "ch") if k in request.body}
    shown = inspector + json.dumps(status)
    assert not [s for s in secrets if s in shown]


async def test_the_token_is_kept_across_restarts(cloud: Running, tmp_path: Path) -> None:
    from hoymiles_bridge.cloud import facts

    def logins() -> int:
        return sum(1 for r in cloud.state.requests if r.path == facts.LOGIN)

    first = CloudSource(_options(cloud, stations="101"))
    first.keep_token_in(tmp_path)
    try:
        await first.poller.poll_once()
    finally:
        await first.client.close()
    kept = tmp_path / "cloud-token.json"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert USERNAME not in kept.read_text() and PASSWORD not in kept.read_text()
    assert logins() == 1
    second = CloudSource(_options(cloud, stations="101"))
    second.keep_token_in(tmp_path)
    try:
        await second.poller.poll_once()
        assert second.stations[0].available
    finally:
        await second.client.close()
    assert logins() == 1  # the restart cost no login
    # Another account does not take it.
    cloud.state.accounts["other@example.com"] = cloud.state.accounts[USERNAME]
    third = CloudSource(
        validate(
            {
                "dtus": [],
                "cloud": {
                    "username": "other@example.com",
                    "password": PASSWORD,
                    "base_url": cloud.url,
                },
            }
        ).cloud
    )
    third.keep_token_in(tmp_path)
    try:
        await third.poller.poll_once()
    finally:
        await third.client.close()
    assert logins() == 2


async def test_a_battery_reached_locally_makes_its_cloud_station_a_fallback(
    mosquitto: Mosquitto, cloud: Running
) -> None:
    from hoymiles_bridge.simulator.battery import BatterySimulator

    battery = BatterySimulator("127.0.0.1", mosquitto.port, quick_interval=0.2)
    assert battery.master.serial == "280024370560"  # the storage of the stand-in's station 101
    cloud_options = {"username": USERNAME, "password": PASSWORD, "base_url": cloud.url}
    runner = asyncio.create_task(battery.run(), name="battery-simulator")
    try:
        async with Subscriber(mosquitto.port, "#") as sub:
            async with running_bridge(mosquitto, [], cloud=cloud_options):
                await sub.wait_for("solar/cloud/101/fallback", lambda p: p == b"1", timeout=20)
                await sub.wait_for("solar/cloud/202/fallback", lambda p: p == b"0")
                config = "homeassistant/sensor/hoymiles_cloud_101/soc/config"
                await sub.wait_for(config, lambda p: p == b"")  # discovery removed
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
