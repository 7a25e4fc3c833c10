"""Discovery changes keep Home Assistant's entities: yesterday's retained discovery, then today's.

``tests/vectors/discovery/discovery-<version>.json`` holds what an earlier
release left retained on the broker (made by ``tests/discovery_capture.py``).
The test puts it on a real Mosquitto, runs today's bridge against the same
simulated fleet, and reads the broker as Home Assistant would after both:

* no entity is duplicated: each unique id is announced on one config topic;
* none is orphaned: every config topic still retained was announced by
  today's bridge (or cleared by it); none keeps an earlier payload that
  today's bridge no longer stands behind;
* every entity of yesterday is still there under the same config topic,
  unique id, component and device, so its entity id and history stay;
* every value template reads a key today's JSON state holds.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from hoymiles_bridge.simulator import SimClock

from .bridge_env import running_bridge
from .conftest_mqtt import mosquitto_fixture  # noqa: F401
from .discovery_capture import PREFIX, expected_inverters, simulators
from .interop_helpers import noon_today
from .mosquitto import Mosquitto, Subscriber

VECTORS = sorted((Path(__file__).resolve().parent / "vectors" / "discovery").glob("*.json"))
TEMPLATE_KEY = re.compile(r"value_json\.(\w+)")


def _entities(messages: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {topic: json.loads(payload) for topic, payload in messages.items() if payload}


async def _retain(port: int, messages: dict[str, str]) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        for topic, payload in messages.items():
            await client.publish(topic, payload, qos=1, retain=True)


@pytest.mark.parametrize("vector", VECTORS, ids=[v.stem for v in VECTORS])
async def test_yesterdays_entities_survive_todays_discovery(
    mosquitto: Mosquitto, vector: Path
) -> None:
    yesterday: dict[str, str] = json.loads(vector.read_text(encoding="utf-8"))["messages"]
    await _retain(mosquitto.port, yesterday)
    clock = SimClock(start=noon_today())
    sims = simulators(clock)
    for sim in sims:
        await sim.__aenter__()
    try:
        async with Subscriber(mosquitto.port, "#") as sub:
            async with running_bridge(mosquitto, sims, clock=clock) as env:
                states = [env.topic(serial, "state") for serial in expected_inverters()]
                for topic in states:
                    await sub.wait_for(topic, timeout=30)
                await asyncio.sleep(2.0)  # the last announcements land
                state_of = {t.split("/")[-2]: json.loads(sub.last[t]) for t in states}
            live = {m.topic for m in sub.messages if not m.retain}
    finally:
        for sim in sims:
            await sim.__aexit__(None, None, None)

    async with Subscriber(mosquitto.port, f"{PREFIX}/#") as after:
        await asyncio.sleep(0.5)
        retained = {m.topic: m.payload.decode() for m in after.messages if m.retain and m.payload}
    today = _entities({t: p for t, p in retained.items() if t.endswith("/config")})
    before = _entities(yesterday)

    # No duplicates: one config topic per unique id.
    owners: dict[str, str] = {}
    for topic, payload in today.items():
        other = owners.setdefault(payload["uniq_id"], topic)
        assert other == topic, f"unique id {payload['uniq_id']} on {other} and {topic}"

    # No orphans: whatever is retained was (re)announced by today's bridge.
    stale = sorted(set(today) - live)
    assert not stale, f"config topics left with yesterday's payload: {stale[:5]}"

    # Yesterday's entities keep their topic, unique id, component and device.
    for topic, old in before.items():
        assert topic in today, f"{topic} ({old['uniq_id']}) disappeared"
        new = today[topic]
        assert new["uniq_id"] == old["uniq_id"], topic
        assert new["dev"]["ids"] == old["dev"]["ids"], topic

    # Every template reads a key the inverter's JSON state holds.
    for topic, payload in today.items():
        template = payload.get("val_tpl", "")
        keys = TEMPLATE_KEY.findall(template)
        if not keys:
            continue
        serial = payload["stat_t"].split("/")[-2]
        assert payload["stat_t"].endswith("/state"), topic
        for key in keys:
            assert key in state_of[serial], f"{topic}: {key} not in the state of {serial}"
