"""Home Assistant MQTT discovery payloads: pure functions, no I/O.

Every entity is announced with *per-component* discovery
(``<prefix>/<component>/<node_id>/<object_id>/config``); device-based
discovery (``<prefix>/device/...``) only arrived with 2024.11. The oldest
release supported is 2024.2 (config.yaml's ``homeassistant``): the first that
takes a device's serial number (``sn``; 2024.1 rejects the whole payload for
it, core issue #108069). ``node_id`` is the
device id, ``object_id`` the field key; neither ends up in the entity id, and
no ``object_id``/``default_entity_id`` option is sent, so nothing here depends
on the 2025.10 deprecation of ``object_id`` (addon.md section 0.9).

What is announced comes from the tables in :mod:`hoymiles_bridge.mqtt.topics`
and nowhere else. The caller publishes each ``(topic, payload)`` retained.

Decisions worth knowing:

* Unique ids are ``hoymiles_<serial>_<object id>``; port entities use
  ``port<n>_<key>`` as object id. A command that shares its key with a state
  entity of the same device (the DTU's ``performance_mode``) gets
  ``_<component>`` appended, so unique ids stay unique across the fleet.
* The user's names (options ``dtus[].name`` and ``inverters``) change the
  device names and the port entities' names ("East roof power") only; unique
  ids, node ids and topics are built from serials alone, so renaming keeps
  the entities and their history.
* The totals (``ac/...``, ``dc/...``) cover every DTU but need a device to
  live on: they are attached to the first (usually only) DTU, chosen by the
  caller with ``dtu_discovery(..., totals=True)``. Their config topics use the
  fixed node id ``hoymiles_totals`` and unique ids ``hoymiles_totals_<key>``,
  so if another DTU becomes "first" the same entities (and their history)
  simply move to it instead of being duplicated.
* An inverter's values and its reachable/producing/last-update status are
  read from one JSON state topic (``<serial>/state``) with a
  ``value_template`` each, the zigbee2mqtt pattern: one message per inverter
  and poll for Home Assistant instead of about forty. Unique ids and config
  topics are those of the per-value topics before, so the entities (and
  their history) stay the same; ``tests/test_discovery_migration.py`` checks
  it against the discovery an earlier release left retained. A value the
  state does not hold yet renders empty, which Home Assistant ignores.
* Availability is the bridge's last will (``dtu/status``, as in OpenDTU)
  plus the DTU's reachability (``dtu/available``), plus the inverter's
  ``status/available`` for inverter entities (``avty_mode: all``). Entities
  whose whole point is to show that something is offline only depend on what
  they need: the inverter's *Reachable* sensor ignores the inverter's
  availability, the DTU's *Status* and *Connection* ignore the DTU's
  reachability, and the fleet totals and the bridge's uptime depend on the
  bridge alone. ``bridge/status`` is only an alias kept for automations: the
  broker turns the will ``offline`` after a crash, not the alias.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from hoymiles_bridge.core.commands import BY_NAME
from hoymiles_bridge.core.limits import limit_range
from hoymiles_bridge.core.state import DtuDevice, InverterDevice
from hoymiles_bridge.mqtt.topics import (
    BRIDGE_FIELDS,
    DTU_COMMANDS,
    DTU_FIELDS,
    INVERTER_COMMANDS,
    INVERTER_FIELDS,
    INVERTER_STATUS_FIELDS,
    PORT_FIELDS,
    STATE_STATUS_KEYS,
    TOTAL_FIELDS,
    Field,
    TopicLayout,
    port_key,
)

MANUFACTURER: Final = "Hoymiles"
ORIGIN_NAME: Final = "Hoymiles DTU Bridge"
PROJECT_URL: Final = "https://github.com/hoymiles-dtu-bridge/hoymiles-dtu-bridge"
PAYLOAD_ONLINE: Final = "online"
PAYLOAD_OFFLINE: Final = "offline"
TOTALS_NODE_ID: Final = "hoymiles_totals"
#: The bridge's own entities (its uptime) travel with the totals.
BRIDGE_NODE_ID: Final = "hoymiles_bridge"

#: Turns the unix-seconds payload of ``last_update`` into an ISO 8601 datetime
#: with an explicit UTC offset (``timestamp_custom`` exists on every release;
#: ``as_datetime`` only accepts numbers on newer ones).
TIMESTAMP_TEMPLATE: Final = "{{ (value | int) | timestamp_custom('%Y-%m-%dT%H:%M:%S%z', false) }}"


def state_template(key: str, device_class: str | None = None) -> str:
    """The ``value_template`` that reads ``key`` from an inverter's JSON state."""
    if device_class == "timestamp":
        return TIMESTAMP_TEMPLATE.replace("value |", f"value_json.{key} |")
    return f"{{{{ value_json.{key} | default('') }}}}"


#: Inverter entities that stay available while the inverter itself is not.
_INVERTER_ALWAYS_AVAILABLE: Final = frozenset({"reachable"})
#: DTU entities that stay available while the DTU itself is not.
_DTU_ALWAYS_AVAILABLE: Final = frozenset({"status", "connection"})


@dataclass(frozen=True, slots=True, kw_only=True)
class DiscoveryContext:
    """Where and how to announce: discovery prefix, topic layout, our version.

    ``configuration_url`` is the devices' "Visit" link (``cu``): the add-on's
    ingress panel (``homeassistant://hassio/ingress/<slug>``), or standalone
    the web UI's address when it is known; None leaves it out.
    """

    prefix: str = "homeassistant"
    layout: TopicLayout
    bridge_version: str
    configuration_url: str | None = None


# --- ids --------------------------------------------------------------------


def dtu_device_id(serial: str) -> str:
    return f"hoymiles_dtu_{serial}"


def inverter_device_id(serial: str) -> str:
    return f"hoymiles_inv_{serial}"


def unique_id(owner: str, object_id: str) -> str:
    """``hoymiles_<serial>_<object id>`` (``owner`` is a serial or ``totals``)."""
    return f"hoymiles_{owner}_{object_id}"


def config_topic(prefix: str, component: str, node_id: str, object_id: str) -> str:
    return f"{prefix.strip('/')}/{component}/{node_id}/{object_id}/config"


def port_object_id(port: int, field: Field) -> str:
    return port_key(port, field.key)


def port_entity_name(port: int, field: Field, port_name: str | None = None) -> str:
    """``"Port 1 power"``, or ``"East roof power"`` for a port named so.

    Keeps acronyms (``"DC power"``) intact. Only the name changes with the
    port's name; the unique id (:func:`port_object_id`) never does.
    """
    name = field.name
    if len(name) > 1 and not name[1].isupper():
        name = name[0].lower() + name[1:]
    return f"{port_name or f'Port {port}'} {name}"


def _command_object_id(field: Field, state_keys: Iterable[str]) -> str:
    if field.key in set(state_keys):
        return f"{field.key}_{field.component}"
    return field.key


# --- payload parts ------------------------------------------------------------


def origin_block(version: str | None) -> dict[str, str]:
    """The ``o`` (origin) of every config the bridge announces (``sw`` when given)."""
    if version is None:
        return {"name": ORIGIN_NAME, "url": PROJECT_URL}
    return {"name": ORIGIN_NAME, "sw": version, "url": PROJECT_URL}


def _device_block(
    device_id: str,
    name: str,
    model: str,
    serial: str,
    firmware: str,
    hardware: str,
    via_device: str | None = None,
    configuration_url: str | None = None,
) -> dict[str, Any]:
    block: dict[str, Any] = {"ids": [device_id], "name": name, "mf": MANUFACTURER, "mdl": model}
    if firmware:
        block["sw"] = firmware
    if hardware:
        block["hw"] = hardware
    # "sn" needs Home Assistant 2024.2 (2024.1 rejects the whole payload for it,
    # core issue #108069): config.yaml asks for 2024.2 at least.
    block["sn"] = serial
    if configuration_url:
        block["cu"] = configuration_url
    if via_device is not None:
        block["via_device"] = via_device
    return block


def dtu_device_block(dtu: DtuDevice, configuration_url: str | None = None) -> dict[str, Any]:
    return _device_block(
        dtu_device_id(dtu.serial),
        dtu.name or f"{dtu.model} {dtu.serial}",
        dtu.model,
        dtu.serial,
        dtu.firmware,
        dtu.hardware,
        configuration_url=configuration_url,
    )


def inverter_device_block(
    inverter: InverterDevice, configuration_url: str | None = None
) -> dict[str, Any]:
    return _device_block(
        inverter_device_id(inverter.serial),
        inverter.title,
        inverter.model,
        inverter.serial,
        inverter.firmware,
        inverter.hardware,
        via_device=dtu_device_id(inverter.dtu_serial),
        configuration_url=configuration_url,
    )


def availability_block(topics: Iterable[str]) -> dict[str, Any]:
    """``avty`` and ``avty_mode``: the entity is available while every topic says online."""
    return {
        "avty": [
            {"t": topic, "pl_avail": PAYLOAD_ONLINE, "pl_not_avail": PAYLOAD_OFFLINE}
            for topic in topics
        ],
        "avty_mode": "all",
    }


def _entity(
    ctx: DiscoveryContext,
    field: Field,
    *,
    name: str,
    uniq_id: str,
    device: dict[str, Any],
    availability: Iterable[str],
    state_topic: str | None = None,
    command_topic: str | None = None,
    state_key: str | None = None,
) -> dict[str, Any]:
    """The keys every component shares, then the component's own.

    With ``state_key`` the state topic is a JSON object and the value its
    ``state_key`` member.
    """
    payload: dict[str, Any] = {"name": name, "uniq_id": uniq_id}
    if state_topic is not None:
        payload["stat_t"] = state_topic
    if command_topic is not None:
        payload["cmd_t"] = command_topic
    if field.device_class is not None:
        payload["dev_cla"] = field.device_class
    if field.component == "sensor":
        if field.state_class is not None:
            payload["stat_cla"] = field.state_class
        if field.device_class == "timestamp" and state_key is None:
            payload["val_tpl"] = TIMESTAMP_TEMPLATE
        if field.precision is not None:
            payload["sug_dsp_prc"] = field.precision
    if field.component in ("sensor", "number") and field.unit is not None:
        payload["unit_of_meas"] = field.unit
    if state_key is not None:
        payload["val_tpl"] = state_template(state_key, field.device_class)
    if field.component == "binary_sensor":
        payload["pl_on"] = field.payload_on
        payload["pl_off"] = field.payload_off
    if field.component == "button":
        payload["pl_prs"] = field.payload_on
    if field.category is not None:
        payload["ent_cat"] = field.category
    if field.icon is not None:
        payload["ic"] = field.icon
    if not field.enabled:
        payload["en"] = False
    payload.update(availability_block(availability))
    payload["dev"] = device
    payload["o"] = origin_block(ctx.bridge_version)
    return payload


def config_message(
    prefix: str, component: str, node_id: str, object_id: str, payload: dict[str, Any]
) -> tuple[str, str]:
    """One entity's retained config: its topic and its JSON (compact, UTF-8 as is)."""
    topic = config_topic(prefix, component, node_id, object_id)
    return topic, json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def _message(
    ctx: DiscoveryContext, component: str, node_id: str, object_id: str, payload: dict[str, Any]
) -> tuple[str, str]:
    return config_message(ctx.prefix, component, node_id, object_id, payload)


# --- DTU ----------------------------------------------------------------------


def dtu_discovery(
    ctx: DiscoveryContext, dtu: DtuDevice, *, totals: bool = True
) -> list[tuple[str, str]]:
    """Discovery for a DTU device; with ``totals`` also the fleet totals.

    Pass ``totals=True`` for the first (or only) DTU and ``False`` for the
    others: the totals are one set of entities for the whole bridge.
    """
    layout = ctx.layout
    device = dtu_device_block(dtu, ctx.configuration_url)
    node = dtu_device_id(dtu.serial)
    bridge = layout.will
    dtu_status = layout.dtu_available(dtu.serial)
    messages: list[tuple[str, str]] = []

    for field in DTU_FIELDS:
        avail = (bridge,) if field.key in _DTU_ALWAYS_AVAILABLE else (bridge, dtu_status)
        payload = _entity(
            ctx,
            field,
            name=field.name,
            uniq_id=unique_id(dtu.serial, field.key),
            device=device,
            availability=avail,
            state_topic=layout.dtu(dtu.serial, field.topic),
        )
        messages.append(_message(ctx, field.component, node, field.key, payload))

    state_keys = [f.key for f in DTU_FIELDS]
    for field in DTU_COMMANDS:
        object_id = _command_object_id(field, state_keys)
        payload = _entity(
            ctx,
            field,
            name=field.name,
            uniq_id=unique_id(dtu.serial, object_id),
            device=device,
            availability=(bridge, dtu_status),
            command_topic=layout.dtu_command(dtu.serial, field.topic),
        )
        messages.append(_message(ctx, field.component, node, object_id, payload))

    if totals:
        groups = (
            (TOTAL_FIELDS, "totals", TOTALS_NODE_ID),
            (BRIDGE_FIELDS, "bridge", BRIDGE_NODE_ID),
        )
        for fields, owner, node_id in groups:
            for field in fields:
                payload = _entity(
                    ctx,
                    field,
                    name=field.name,
                    uniq_id=unique_id(owner, field.key),
                    device=device,
                    availability=(bridge,),
                    state_topic=layout.total(field.topic),
                )
                messages.append(_message(ctx, field.component, node_id, field.key, payload))
    return messages


# --- inverters ------------------------------------------------------------------


def _status_field(key: str) -> Field:
    for field in INVERTER_STATUS_FIELDS:
        if field.key == key:
            return field
    raise KeyError(key)  # pragma: no cover - the table is static


def inverter_commands(inverter: InverterDevice) -> tuple[Field, ...]:
    """The command entities this inverter gets (non-persistent limits need the firmware)."""
    return tuple(
        f for f in INVERTER_COMMANDS if BY_NAME[f.topic].offered_to(inverter.supports_nonpersistent)
    )


def inverter_discovery(ctx: DiscoveryContext, inverter: InverterDevice) -> list[tuple[str, str]]:
    """Discovery for one inverter: AC side, status, every port, commands."""
    layout = ctx.layout
    serial = inverter.serial
    device = inverter_device_block(inverter, ctx.configuration_url)
    node = inverter_device_id(serial)
    base_avail = (layout.will, layout.dtu_available(inverter.dtu_serial))
    full_avail = (*base_avail, layout.inverter_available(serial))
    messages: list[tuple[str, str]] = []

    def add(
        field: Field,
        object_id: str,
        name: str,
        *,
        state_topic: str | None = None,
        command_topic: str | None = None,
        extra: dict[str, Any] | None = None,
        state_key: str | None = None,
    ) -> None:
        avail = base_avail if field.key in _INVERTER_ALWAYS_AVAILABLE else full_avail
        payload = _entity(
            ctx,
            field,
            name=name,
            uniq_id=unique_id(serial, object_id),
            device=device,
            availability=avail,
            state_topic=state_topic,
            command_topic=command_topic,
            state_key=state_key,
        )
        if extra:
            payload.update(extra)
        messages.append(_message(ctx, field.component, node, object_id, payload))

    values = layout.inverter_state(serial)
    for field in INVERTER_FIELDS:
        add(field, field.key, field.name, state_topic=values, state_key=field.key)

    for field in INVERTER_STATUS_FIELDS:
        extra = None
        if field.key == "alarm_count":
            extra = {"json_attr_t": layout.inverter_alarms(serial)}
        if field.key in STATE_STATUS_KEYS:
            add(field, field.key, field.name, state_topic=values, state_key=field.key)
        else:
            add(
                field,
                field.key,
                field.name,
                state_topic=layout.inverter(serial, field.topic),
                extra=extra,
            )

    for port in range(1, inverter.ports + 1):
        for field in PORT_FIELDS:
            object_id = port_object_id(port, field)
            add(
                field,
                object_id,
                port_entity_name(port, field, inverter.port_name(port)),
                state_topic=values,
                state_key=object_id,
            )

    relative = _status_field("limit_relative")
    absolute = _status_field("limit_absolute")
    state_keys = [f.key for f in (*INVERTER_FIELDS, *INVERTER_STATUS_FIELDS)]
    for field in inverter_commands(inverter):
        object_id = _command_object_id(field, state_keys)
        command_topic = layout.inverter_command(serial, field.topic)
        if field.component == "number":
            low, high, step = limit_range(BY_NAME[field.topic], inverter.rated_power)
            shown = relative if field.unit == "%" else absolute
            add(
                field,
                object_id,
                field.name,
                state_topic=layout.inverter(serial, shown.topic),
                command_topic=command_topic,
                extra={"min": low, "max": high, "step": step, "mode": "box"},
            )
        else:
            add(field, object_id, field.name, command_topic=command_topic)
    return messages


def removal_messages(ctx: DiscoveryContext, inverter: InverterDevice) -> list[tuple[str, str]]:
    """Empty payloads on every config topic of an inverter: HA drops it."""
    return [(topic, "") for topic, _ in inverter_discovery(ctx, inverter)]


__all__ = [
    "BRIDGE_NODE_ID",
    "MANUFACTURER",
    "ORIGIN_NAME",
    "PROJECT_URL",
    "TIMESTAMP_TEMPLATE",
    "TOTALS_NODE_ID",
    "DiscoveryContext",
    "availability_block",
    "config_message",
    "config_topic",
    "dtu_device_block",
    "dtu_device_id",
    "dtu_discovery",
    "inverter_commands",
    "inverter_device_block",
    "inverter_device_id",
    "inverter_discovery",
    "origin_block",
    "port_entity_name",
    "port_object_id",
    "removal_messages",
    "state_template",
    "unique_id",
]
