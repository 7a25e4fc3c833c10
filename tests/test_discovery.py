"""Home Assistant discovery: every payload of a mixed fleet passes the documented rules."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from hoymiles_bridge.core.state import DtuDevice, InverterDevice
from hoymiles_bridge.mqtt.discovery import (
    TIMESTAMP_TEMPLATE,
    TOTALS_NODE_ID,
    DiscoveryContext,
    dtu_discovery,
    inverter_discovery,
    removal_messages,
    state_template,
)
from hoymiles_bridge.mqtt.topics import (
    BRIDGE_FIELDS,
    DTU_COMMAND_NAMES,
    DTU_COMMANDS,
    DTU_FIELDS,
    INVERTER_COMMAND_NAMES,
    INVERTER_COMMANDS,
    INVERTER_FIELDS,
    INVERTER_STATUS_FIELDS,
    PORT_FIELDS,
    TOTAL_FIELDS,
    TopicLayout,
)
from hoymiles_bridge.protocol.devices import (
    built_in_dtu_serial,
    dtu_model,
    format_serial,
    inverter_type,
    parse_serial,
)
from tests.ha_discovery_schema import check_fleet, check_message

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "homeassistant"
DTU_PRO = "10F712345678"


def _inverter(serial_text: str, dtu_serial: str, *, nonpersistent: bool) -> InverterDevice:
    kind = inverter_type(parse_serial(serial_text))
    return InverterDevice(
        serial=format_serial(parse_serial(serial_text)),
        model=kind.model,
        firmware="V01.00.12",
        hardware="H00.04.00",
        name=None,
        ports=kind.ports,
        rated_power=kind.rated_power,
        dtu_serial=dtu_serial,
        supports_nonpersistent=nonpersistent,
    )


HM_1500 = _inverter("116112345678", DTU_PRO, nonpersistent=False)
HMS_800 = _inverter("141293320732", DTU_PRO, nonpersistent=True)
HMT_2250 = _inverter("138212345678", DTU_PRO, nonpersistent=False)


def _dtu(serial: str, name: str | None = None) -> DtuDevice:
    return DtuDevice(serial, dtu_model(serial), "V00.02.08", "H00.01.00", name, "192.0.2.10")


class Fleet:
    """One DTU-Pro with three inverters or, with several DTUs, the HMS-800W-2T
    on its own built-in DTU."""

    def __init__(self, several_dtus: bool) -> None:
        self.layout = TopicLayout("solar", several_dtus=several_dtus)
        self.ctx = DiscoveryContext(prefix=PREFIX, layout=self.layout, bridge_version="0.1.0")
        self.dtus = [_dtu(DTU_PRO, "Garage")]
        hms = HMS_800
        if several_dtus:
            builtin = built_in_dtu_serial(parse_serial(HMS_800.serial))
            self.dtus.append(_dtu(builtin))
            hms = InverterDevice(**{**_fields(HMS_800), "dtu_serial": builtin})
        self.inverters = [HM_1500, hms, HMT_2250]

    def dtu_messages(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for index, dtu in enumerate(self.dtus):
            out += dtu_discovery(self.ctx, dtu, totals=index == 0)
        return out

    def messages(self) -> list[tuple[str, str]]:
        out = self.dtu_messages()
        for inverter in self.inverters:
            out += inverter_discovery(self.ctx, inverter)
        return out

    def known_topics(self) -> set[str]:
        """Every topic topics.py defines for this fleet (no wildcards)."""
        layout = self.layout
        topics = {layout.will}
        topics |= {layout.total(f.topic) for f in (*TOTAL_FIELDS, *BRIDGE_FIELDS)}
        for dtu in self.dtus:
            topics |= {layout.dtu(dtu.serial, f.topic) for f in DTU_FIELDS}
            topics.add(layout.dtu_available(dtu.serial))
            topics |= {layout.dtu_command(dtu.serial, name) for name in DTU_COMMAND_NAMES}
        for inv in self.inverters:
            s = inv.serial
            topics |= {layout.inverter(s, f.topic) for f in INVERTER_FIELDS}
            topics |= {layout.inverter(s, f.topic) for f in INVERTER_STATUS_FIELDS}
            topics |= {
                layout.port(s, port, f.topic)
                for port in range(1, inv.ports + 1)
                for f in PORT_FIELDS
            }
            topics |= {
                layout.inverter_available(s),
                layout.inverter_alarms(s),
                layout.inverter_state(s),
            }
            topics |= {layout.inverter_command(s, name) for name in INVERTER_COMMAND_NAMES}
        return topics


def _fields(inverter: InverterDevice) -> dict[str, Any]:
    return {name: getattr(inverter, name) for name in InverterDevice.__dataclass_fields__}


def _payloads(messages: list[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    return {topic: json.loads(text) for topic, text in messages}


def _topic_matches(pattern: str, topic: str) -> bool:
    """MQTT wildcard match (``+`` one level, ``#`` the rest)."""
    pat, parts = pattern.split("/"), topic.split("/")
    for i, level in enumerate(pat):
        if level == "#":
            return True
        if i >= len(parts) or (level not in ("+", parts[i])):
            return False
    return len(pat) == len(parts)


@pytest.fixture(params=[False, True], ids=["one-dtu", "several-dtus"])
def fleet(request: pytest.FixtureRequest) -> Fleet:
    return Fleet(bool(request.param))


# --- the fleet as a whole --------------------------------------------------------


def test_fleet_passes_the_documented_rules(fleet: Fleet) -> None:
    assert check_fleet(fleet.messages(), PREFIX) == []


def test_entity_counts(fleet: Fleet) -> None:
    dtu_entities = len(DTU_FIELDS) + len(DTU_COMMANDS)
    first, *others = fleet.dtus
    assert len(dtu_discovery(fleet.ctx, first)) == (
        dtu_entities + len(TOTAL_FIELDS) + len(BRIDGE_FIELDS)
    )
    for dtu in others:
        assert len(dtu_discovery(fleet.ctx, dtu, totals=False)) == dtu_entities

    base = len(INVERTER_FIELDS) + len(INVERTER_STATUS_FIELDS)
    expected = {
        HM_1500.serial: (4, len(INVERTER_COMMANDS) - 2),
        HMS_800.serial: (2, len(INVERTER_COMMANDS)),
        HMT_2250.serial: (6, len(INVERTER_COMMANDS) - 2),
    }
    for inverter in fleet.inverters:
        ports, commands = expected[inverter.serial]
        assert inverter.ports == ports
        messages = inverter_discovery(fleet.ctx, inverter)
        assert len(messages) == base + ports * len(PORT_FIELDS) + commands
        port_topics = [t for t, _ in messages if "/port" in t]
        assert len(port_topics) == ports * len(PORT_FIELDS)
    # 11 + 9 + 4*6 + 5, 11 + 9 + 2*6 + 7, 11 + 9 + 6*6 + 5
    assert [len(inverter_discovery(fleet.ctx, i)) for i in fleet.inverters] == [49, 39, 61]


def test_every_topic_in_discovery_is_defined_in_topics_py(fleet: Fleet) -> None:
    known = fleet.known_topics()
    subscriptions = fleet.layout.command_subscriptions
    for topic, payload in _payloads(fleet.messages()).items():
        for key in ("stat_t", "json_attr_t"):
            if key in payload:
                assert payload[key] in known, (topic, key, payload[key])
        for item in payload["avty"]:
            assert item["t"] in known, (topic, item)
        if "cmd_t" in payload:
            assert payload["cmd_t"] in known, (topic, payload["cmd_t"])
            assert any(_topic_matches(s, payload["cmd_t"]) for s in subscriptions), topic


def test_totals_only_on_the_first_dtu(fleet: Fleet) -> None:
    topics = [t for t, _ in fleet.messages() if f"/{TOTALS_NODE_ID}/" in t]
    assert len(topics) == len(TOTAL_FIELDS)
    payloads = _payloads(fleet.messages())
    for topic in topics:
        assert payloads[topic]["dev"]["ids"] == [f"hoymiles_dtu_{DTU_PRO}"]
        assert [a["t"] for a in payloads[topic]["avty"]] == [fleet.layout.will]


# --- per-entity details -------------------------------------------------------------


def test_non_persistent_limits_only_when_supported(fleet: Fleet) -> None:
    for inverter in fleet.inverters:
        numbers = [t for t, _ in inverter_discovery(fleet.ctx, inverter) if "/number/" in t]
        nonpersistent = [t for t in numbers if "nonpersistent" in t]
        assert len(nonpersistent) == (2 if inverter.supports_nonpersistent else 0)
        assert len(numbers) - len(nonpersistent) == 2


def test_limit_numbers(fleet: Fleet) -> None:
    for inverter in fleet.inverters:
        payloads = _payloads(inverter_discovery(fleet.ctx, inverter))
        numbers = [p for t, p in payloads.items() if "/number/" in t]
        for number in numbers:
            assert number["mode"] == "box"
            if number["unit_of_meas"] == "%":
                assert (number["min"], number["max"], number["step"]) == (0, 100, 0.1)
                assert number["stat_t"].endswith(f"/{inverter.serial}/status/limit_relative")
            else:
                assert number["unit_of_meas"] == "W"
                assert number["max"] == inverter.rated_power
                assert number["min"] == 0  # OpenDTU's range; under 2 % is clamped
                assert number["step"] == 1
                assert number["stat_t"].endswith(f"/{inverter.serial}/status/limit_absolute")


def test_buttons(fleet: Fleet) -> None:
    inverter = fleet.inverters[0]
    node = f"hoymiles_inv_{inverter.serial}"
    payloads = _payloads(inverter_discovery(fleet.ctx, inverter))
    on = payloads[f"{PREFIX}/button/{node}/power_on/config"]
    off = payloads[f"{PREFIX}/button/{node}/power_off/config"]
    restart = payloads[f"{PREFIX}/button/{node}/restart/config"]
    assert on["cmd_t"] == off["cmd_t"] == fleet.layout.inverter_command(inverter.serial, "power")
    assert (on["pl_prs"], off["pl_prs"], restart["pl_prs"]) == ("1", "0", "1")
    assert restart["dev_cla"] == "restart"
    dtu = _payloads(dtu_discovery(fleet.ctx, fleet.dtus[0]))
    dtu_node = f"hoymiles_dtu_{DTU_PRO}"
    reboot = dtu[f"{PREFIX}/button/{dtu_node}/reboot/config"]
    assert reboot["cmd_t"] == fleet.layout.dtu_command(DTU_PRO, "reboot")
    assert reboot["pl_prs"] == "1"
    # the button shares its key with the binary sensor; the ids must not collide
    mode_button = dtu[f"{PREFIX}/button/{dtu_node}/performance_mode_button/config"]
    mode_sensor = dtu[f"{PREFIX}/binary_sensor/{dtu_node}/performance_mode/config"]
    assert mode_button["uniq_id"] != mode_sensor["uniq_id"]


def test_ports_are_named_and_ided_per_port(fleet: Fleet) -> None:
    inverter = fleet.inverters[2]  # HMT, 6 ports
    payloads = _payloads(inverter_discovery(fleet.ctx, inverter))
    port6 = payloads[f"{PREFIX}/sensor/hoymiles_inv_{inverter.serial}/port6_yieldday/config"]
    assert port6["name"] == "Port 6 yield day"
    assert port6["uniq_id"] == f"hoymiles_{inverter.serial}_port6_yieldday"
    assert port6["stat_t"] == fleet.layout.inverter_state(inverter.serial)
    assert port6["val_tpl"] == "{{ value_json.port6_yieldday | default('') }}"


def test_named_ports_and_inverters_change_names_only(fleet: Fleet) -> None:
    import dataclasses

    inverter = fleet.inverters[2]  # HMT, 6 ports
    named = dataclasses.replace(
        inverter, name="Garage <b>/#", port_names=("East roof", "DC power +")
    )
    plain = _payloads(inverter_discovery(fleet.ctx, inverter))
    payloads = _payloads(inverter_discovery(fleet.ctx, named))
    assert set(payloads) == set(plain)  # the same config topics
    for topic, payload in payloads.items():
        assert payload["uniq_id"] == plain[topic]["uniq_id"]
        assert payload.get("stat_t") == plain[topic].get("stat_t")
        assert payload["dev"]["name"] == "Garage <b>/#"
        assert payload["dev"]["ids"] == plain[topic]["dev"]["ids"]
    node = f"{PREFIX}/sensor/hoymiles_inv_{inverter.serial}"
    assert payloads[f"{node}/port1_power/config"]["name"] == "East roof power"
    assert payloads[f"{node}/port2_voltage/config"]["name"] == "DC power + voltage"
    assert payloads[f"{node}/port3_power/config"]["name"] == "Port 3 power"
    assert payloads[f"{node}/power/config"]["name"] == "Power"
    assert check_fleet(inverter_discovery(fleet.ctx, named)) == []
    assert (named.port_name(2), named.port_name(6), named.title) == (
        "DC power +",
        "Port 6",
        "Garage <b>/#",
    )


def test_device_blocks(fleet: Fleet) -> None:
    for inverter in fleet.inverters:
        for payload in _payloads(inverter_discovery(fleet.ctx, inverter)).values():
            dev = payload["dev"]
            assert dev["ids"] == [f"hoymiles_inv_{inverter.serial}"]
            assert dev["via_device"] == f"hoymiles_dtu_{inverter.dtu_serial}"
            assert (dev["mf"], dev["mdl"]) == ("Hoymiles", inverter.model)
            assert inverter.serial in dev["name"]
            assert dev["sn"] == inverter.serial  # Home Assistant 2024.2+ (config.yaml)
            assert "cu" not in dev  # no web UI address known
            assert payload["o"]["name"] == "Hoymiles DTU Bridge"
            assert payload["uniq_id"].startswith(f"hoymiles_{inverter.serial}_")
    assert {d.serial for d in fleet.dtus} == {i.dtu_serial for i in fleet.inverters}


def test_configuration_url_on_every_device(fleet: Fleet) -> None:
    url = "homeassistant://hassio/ingress/local_hoymiles_bridge"
    ctx = dataclasses.replace(fleet.ctx, configuration_url=url)
    messages = [m for n, d in enumerate(fleet.dtus) for m in dtu_discovery(ctx, d, totals=n == 0)]
    messages += [m for i in fleet.inverters for m in inverter_discovery(ctx, i)]
    assert check_fleet(messages, PREFIX) == []
    for payload in _payloads(messages).values():
        assert payload["dev"]["cu"] == url
        assert payload["dev"]["sn"]


def test_availability(fleet: Fleet) -> None:
    layout = fleet.layout
    inverter = fleet.inverters[1]
    node = f"hoymiles_inv_{inverter.serial}"
    payloads = _payloads(inverter_discovery(fleet.ctx, inverter))
    base = [layout.will, layout.dtu_available(inverter.dtu_serial)]
    for topic, payload in payloads.items():
        assert payload["avty_mode"] == "all"
        topics = [a["t"] for a in payload["avty"]]
        if topic == f"{PREFIX}/binary_sensor/{node}/reachable/config":
            assert topics == base
        else:
            assert topics == [*base, layout.inverter_available(inverter.serial)]
        assert {(a["pl_avail"], a["pl_not_avail"]) for a in payload["avty"]} == {
            ("online", "offline")
        }


def test_special_sensors(fleet: Fleet) -> None:
    inverter = fleet.inverters[0]
    node = f"hoymiles_inv_{inverter.serial}"
    payloads = _payloads(inverter_discovery(fleet.ctx, inverter))
    alarms = payloads[f"{PREFIX}/sensor/{node}/alarm_count/config"]
    assert alarms["json_attr_t"] == fleet.layout.inverter_alarms(inverter.serial)
    last = payloads[f"{PREFIX}/sensor/{node}/last_update/config"]
    assert last["val_tpl"] == state_template("last_update", "timestamp")
    assert last["val_tpl"] == TIMESTAMP_TEMPLATE.replace("(value |", "(value_json.last_update |")
    assert "unit_of_meas" not in last
    hardware = payloads[f"{PREFIX}/sensor/{node}/hardware/config"]
    assert hardware["en"] is False
    assert "en" not in payloads[f"{PREFIX}/sensor/{node}/power/config"]
    assert payloads[f"{PREFIX}/sensor/{node}/yieldtotal/config"]["sug_dsp_prc"] == 3
    dtu = _payloads(dtu_discovery(fleet.ctx, fleet.dtus[0]))
    status = dtu[f"{PREFIX}/binary_sensor/hoymiles_dtu_{DTU_PRO}/status/config"]
    assert (status["pl_on"], status["pl_off"]) == ("online", "offline")


def test_timestamp_template_format_is_iso_with_offset() -> None:
    """The strftime format inside the template yields what HA parses as a timestamp."""
    fmt = TIMESTAMP_TEMPLATE.split("timestamp_custom('")[1].split("'")[0]
    rendered = datetime.fromtimestamp(1_700_000_000, UTC).strftime(fmt)
    assert rendered == "2023-11-14T22:13:20+0000"
    assert datetime.fromisoformat(rendered).timestamp() == 1_700_000_000


def test_removal_messages_clear_the_same_topics(fleet: Fleet) -> None:
    for inverter in fleet.inverters:
        removal = removal_messages(fleet.ctx, inverter)
        assert [t for t, _ in removal] == [t for t, _ in inverter_discovery(fleet.ctx, inverter)]
        assert all(payload == "" for _, payload in removal)


def test_unique_ids_are_stable() -> None:
    one, two = Fleet(False), Fleet(False)
    assert one.messages() == two.messages()


def test_custom_prefix() -> None:
    fleet = Fleet(False)
    ctx = DiscoveryContext(prefix="ha-test", layout=fleet.layout, bridge_version="0.1.0")
    messages = inverter_discovery(ctx, HM_1500)
    assert all(t.startswith("ha-test/") for t, _ in messages)
    assert check_fleet(messages, "ha-test") == []


# --- the validator is not vacuous ------------------------------------------------


def _good() -> tuple[str, dict[str, Any]]:
    topic, text = inverter_discovery(Fleet(False).ctx, HM_1500)[0]
    return topic, json.loads(text)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"obj_id": "x"}, "must not be sent"),
        ({"frobnicate": 1}, "not a documented sensor option"),
        ({"unit_of_meas": "kWh"}, "not valid for device_class"),
        ({"stat_cla": "sometimes"}, "state_class"),
        ({"ent_cat": "config"}, "entity_category config"),
        ({"uniq_id": None}, "uniq_id"),
        ({"o": {"sw": "1"}}, "o.name is required"),
        ({"dev": {"name": "x"}}, "dev.ids"),
        ({"avty_mode": "some"}, "avty_mode"),
    ],
)
def test_validator_rejects(change: dict[str, Any], expected: str) -> None:
    topic, payload = _good()
    assert check_message(topic, json.dumps(payload)) == []
    problems = check_message(topic, json.dumps({**payload, **change}))
    assert any(expected in p for p in problems), problems


def test_validator_rejects_bad_topics_and_components() -> None:
    _, payload = _good()
    text = json.dumps(payload)
    assert check_message("homeassistant/sensor/a b/c/config", text)
    assert check_message("homeassistant/light/a/c/config", text)
    assert check_message("homeassistant/sensor/c/config", text)  # no node id
    energy = {**payload, "dev_cla": "energy", "unit_of_meas": "kWh", "stat_cla": "measurement"}
    assert any(
        "total" in p for p in check_message("homeassistant/sensor/a/b/config", json.dumps(energy))
    )
    number = {"cmd_t": "x/y", "uniq_id": "u", "dev": {"ids": ["d"]}, "o": {"name": "n"}}
    assert check_message("homeassistant/number/a/b/config", json.dumps(number)) == []
    assert check_message(
        "homeassistant/number/a/b/config", json.dumps({**number, "min": 5, "max": 5})
    )
    assert check_message("homeassistant/number/a/b/config", json.dumps({**number, "step": 0}))
    button = {**number, "dev_cla": "power"}
    assert check_message("homeassistant/button/a/b/config", json.dumps(button))
    binary = {**number, "stat_t": "x/z", "dev_cla": "sparkly"}
    del binary["cmd_t"]
    assert check_message("homeassistant/binary_sensor/a/b/config", json.dumps(binary))
    duplicate = [("homeassistant/number/a/b/config", json.dumps(number))] * 2
    assert len(check_fleet(duplicate)) == 2  # same topic, same unique id


# --- docs/topics.md -------------------------------------------------------------


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gen_topic_docs", ROOT / "scripts" / "gen_topic_docs.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_topics_md_is_up_to_date() -> None:
    module = _load_generator()
    rendered = module.render()
    committed = (ROOT / "docs" / "topics.md").read_text(encoding="utf-8")
    assert committed == rendered, "docs/topics.md is stale: run python scripts/gen_topic_docs.py"
    docs = (ROOT / "DOCS.md").read_text(encoding="utf-8")
    assert module.splice(docs, rendered) == docs, "DOCS.md topic tables are stale: run the script"


def test_docs_list_every_command() -> None:
    rendered = _load_generator().render()
    for name in INVERTER_COMMAND_NAMES:
        assert f"`solar/<serial>/cmd/{name}`" in rendered
    for name in DTU_COMMAND_NAMES:
        assert f"`solar/dtu/cmd/{name}`" in rendered
