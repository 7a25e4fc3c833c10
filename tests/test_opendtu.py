"""OpenDTU drop-in: the last will after a real crash, and every OpenDTU topic DOCS.md promises.

The crash test runs ``hoymiles-bridge run`` in a child process against a real
Mosquitto and kills it with SIGKILL: no goodbye, no DISCONNECT packet, so only
the broker's will can turn ``solar/dtu/status`` to ``offline``.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from hoymiles_bridge.addon.runner import WebConfig
from hoymiles_bridge.simulator import DtuSimulator, SimClock, default_fleet

from .bridge_env import running_bridge
from .conftest_mqtt import mosquitto_fixture  # noqa: F401
from .interop_helpers import noon_today
from .mosquitto import Mosquitto, Subscriber

ROOT = Path(__file__).resolve().parents[1]
INV = "141293320732"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.mark.timeout(60)
async def test_sigkill_leaves_offline_on_the_will_topic(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    closed = _free_port()  # no DTU there: the bridge keeps retrying, MQTT is what counts
    config = tmp_path / "bridge.yaml"
    config.write_text(
        f"dtus:\n  - host: 127.0.0.1\n    port: {closed}\n"
        f"mqtt:\n  host: 127.0.0.1\n  port: {mosquitto.port}\n"
        f"web:\n  host: 127.0.0.1\n  port: {_free_port()}\n"
        "discovery: false\n",
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    code = "import sys; from hoymiles_bridge.cli.main import main; sys.exit(main())"
    async with Subscriber(mosquitto.port, "solar/#") as sub:
        child = subprocess.Popen(  # noqa: ASYNC220 - waited for below, off the loop
            [sys.executable, "-c", code, "run", "--config", str(config)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            await sub.wait_for("solar/dtu/status", lambda p: p == b"online", timeout=30)
            await sub.wait_for("solar/bridge/status", lambda p: p == b"online", timeout=5)
            child.send_signal(signal.SIGKILL)
            await asyncio.to_thread(child.wait, 10)
            # delivered by the broker, from the will the bridge left at connect
            await sub.wait_for("solar/dtu/status", lambda p: p == b"offline", timeout=10)
            last = [m for m in sub.messages if m.topic == "solar/dtu/status"][-1]
            assert last.payload == b"offline"
            # the alias has no will of its own (one will per connection): it keeps
            # "online" until the next start, as DOCS.md says
            assert sub.last["solar/bridge/status"] == b"online"
        finally:
            if child.poll() is None:
                child.kill()
                await asyncio.to_thread(child.wait, 10)


# --- the OpenDTU topics DOCS.md lists ------------------------------------------------


def _opendtu_topics() -> list[str]:
    """The topics of DOCS.md's table "Topics as OpenDTU publishes them"."""
    text = (ROOT / "DOCS.md").read_text(encoding="utf-8")
    start = text.index("<!-- opendtu-topics:start -->")
    end = text.index("<!-- opendtu-topics:end -->")
    topics = re.findall(r"^\| `(solar/[^`]+)` \|", text[start:end], re.MULTILINE)
    assert len(topics) >= 30, "the OpenDTU topic table went missing"
    return topics


def test_the_opendtu_table_covers_opendtus_state_topics() -> None:
    topics = set(_opendtu_topics())
    for field in (
        "current",
        "efficiency",
        "frequency",
        "power",
        "powerdc",
        "powerfactor",
        "reactivepower",
        "temperature",
        "voltage",
        "yieldday",
        "yieldtotal",
    ):
        assert f"solar/<serial>/0/{field}" in topics, field
    for total in ("ac/power", "ac/yieldday", "ac/yieldtotal", "ac/is_valid", "dc/power"):
        assert f"solar/{total}" in topics, total
    assert {"solar/dtu/status", "solar/dtu/uptime"} <= topics


async def test_every_opendtu_topic_in_docs_arrives(mosquitto: Mosquitto) -> None:
    sim = DtuSimulator(default_fleet().dtus[0], port=0, clock=SimClock(start=noon_today()))
    async with sim, Subscriber(mosquitto.port, "solar/#") as sub:
        async with running_bridge(mosquitto, [sim]) as env:
            assert env.base == "solar"
            await sub.wait_for(f"solar/{INV}/0/power", timeout=15)
            for topic in _opendtu_topics():
                concrete = topic.replace("<serial>", INV).replace("<port>", "1")
                await sub.wait_for(concrete, timeout=10)
                assert sub.last[concrete] != b"", topic


async def test_limits_take_opendtus_range_and_say_when_clamped(mosquitto: Mosquitto) -> None:
    sim = DtuSimulator(default_fleet().dtus[0], port=0, clock=SimClock(start=noon_today()))
    async with sim, Subscriber(mosquitto.port, "solar/#") as sub:
        async with running_bridge(mosquitto, [sim]) as env:
            await sub.wait_for(f"solar/{INV}/0/power", timeout=15)
            for name, payload, status, permille in (
                ("limit_persistent_relative", "0", b"ok: clamped to 2 %", 20),
                ("limit_persistent_absolute", "400", b"ok", 500),
                ("limit_persistent_absolute", "0", b"ok: clamped to 16 W (2 %)", 20),
            ):
                topic = env.topic(INV, "cmd", name)
                await env.bridge.link.publish(topic, payload, qos=1)
                await sub.wait_for(f"{topic}/status", lambda p, s=status: p == s, timeout=10)
                assert sim.dtu.inverters[0].limit_permille == permille
                sub.last.pop(f"{topic}/status")
            await sub.wait_for(
                f"solar/{INV}/status/limit_relative", lambda p: p == b"2", timeout=10
            )
            await sub.wait_for(
                f"solar/{INV}/status/limit_absolute", lambda p: p == b"16", timeout=10
            )


async def test_publish_interval_republishes_unchanged_states(mosquitto: Mosquitto) -> None:
    sim = DtuSimulator(default_fleet().dtus[0], port=0, clock=SimClock(start=noon_today()))
    async with sim, Subscriber(mosquitto.port, "solar/#") as sub:
        async with running_bridge(mosquitto, [sim], publish_interval=1) as env:
            # the DTU's firmware is read once (info every 600 s in the tests): it only
            # comes again through the timetable, with the same payload
            topic = "solar/dtu/firmware"
            await sub.wait_for(topic, timeout=15)
            first = sub.last[topic]
            async with asyncio.timeout(15):
                while sum(m.topic == topic for m in sub.messages) < 3:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
            assert {m.payload for m in sub.messages if m.topic == topic} == {first}
            assert "solar/dtu/uptime" in sub.last
            task = env.bridge.mqtt._republish_task
            assert task is not None and task.get_name() == "mqtt-publish-interval"
        assert env.bridge.mqtt._republish_task is None  # stopped with the bridge
    async with sim, Subscriber(mosquitto.port, "solar/#") as sub:
        async with running_bridge(mosquitto, [sim]) as env:
            await sub.wait_for(f"solar/{INV}/0/power", timeout=15)
            assert env.bridge.mqtt._republish_task is None  # 0: changes only


async def test_devices_link_to_the_web_ui_when_its_address_is_known(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert await WebConfig("127.0.0.1", 8099).configuration_url() is None
    assert await WebConfig("0.0.0.0", 8099).configuration_url() is None
    assert await WebConfig("192.168.1.20", 8099).configuration_url() == "http://192.168.1.20:8099/"
    named = WebConfig("0.0.0.0", 8080, hosts=("solar.lan",))
    assert await named.configuration_url() == "http://solar.lan:8080/"
    assert await WebConfig("fd00::5", 8099).configuration_url() == "http://[fd00::5]:8099/"
    # the add-on's ingress without a Supervisor token (outside the add-on): no link
    monkeypatch.delenv("SUPERVISOR_TOKEN", raising=False)
    monkeypatch.delenv("HASSIO_TOKEN", raising=False)
    assert await WebConfig("0.0.0.0", 8099, ingress=True).configuration_url() is None
