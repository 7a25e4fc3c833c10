"""Cloud stations on MQTT: their topics and their Home Assistant discovery.

Each station of :class:`~hoymiles_bridge.core.cloud.CloudSource` is a device
``hoymiles_cloud_<sid>`` with sensors for the battery's SOC, PV, battery,
grid and load power, the energy counters (for the Energy dashboard) and the
battery's temperature, under ``<base>/cloud/<sid>/...``. Each entity is
available while the bridge is online and the station's values are not stale
(``<base>/cloud/<sid>/available``). A fallback station (its battery is
reachable locally, and the local device wins) has its discovery removed.

:class:`CloudPublisher` shares the bridge's :class:`~hoymiles_bridge.mqtt.link.MqttLink`:
it publishes retained states when a station changes, and announces again
after the link reconnected (it watches the link's connect count).

With ``cloud.allow_writes`` each station also gets the registry's cloud
commands (``grid_charge`` a switch, ``on_grid_power`` a number) on
``<base>/cloud/<sid>/cmd/<name>``. The bridge's adapter takes them like every
other command topic (:mod:`hoymiles_bridge.mqtt.commands`) and the registry
answers on ``.../status``. Their state topics (``<base>/cloud/<sid>/grid_charge``,
``.../on_grid_power``) hold what the bridge last wrote: the cloud is not asked
for the settings.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any, Final

from hoymiles_bridge.core.cloud import CloudSource, CloudStation
from hoymiles_bridge.core.commands import (
    CommandSpec,
    Target,
    commands_for,
)
from hoymiles_bridge.mqtt.discovery import (
    MANUFACTURER,
    PAYLOAD_OFFLINE,
    PAYLOAD_ONLINE,
    availability_block,
    config_message,
    config_topic,
    origin_block,
)
from hoymiles_bridge.mqtt.link import MqttLink

M: Final = "measurement"
TI: Final = "total_increasing"
MODEL: Final = "S-Miles station (cloud)"
#: Seconds between two looks at the link's connect count without a change.
RECHECK_S: Final = 60.0
#: The registry's cloud commands (the settings a station offers with cloud.allow_writes).
CLOUD_COMMANDS: Final = commands_for(Target.CLOUD)


@dataclass(frozen=True, slots=True)
class CloudField:
    """One sensor of a station: its topic leaf, name and Home Assistant classes."""

    key: str
    name: str
    unit: str | None
    device_class: str | None
    state_class: str | None
    precision: int | None = None


#: The station's sensors (the attribute of :class:`CloudStation` is the key).
CLOUD_FIELDS: Final = (
    CloudField("soc", "Battery SOC", "%", "battery", M, 0),
    CloudField("pv_power", "PV power", "W", "power", M, 0),
    CloudField("battery_power", "Battery power", "W", "power", M, 0),
    CloudField("grid_power", "Grid power", "W", "power", M, 0),
    CloudField("load_power", "Load power", "W", "power", M, 0),
    CloudField("energy_today", "Yield today", "Wh", "energy", TI, 0),
    CloudField("energy_month", "Yield this month", "Wh", "energy", TI, 0),
    CloudField("energy_year", "Yield this year", "Wh", "energy", TI, 0),
    CloudField("energy_total", "Yield total", "Wh", "energy", TI, 0),
    CloudField("battery_charged_today", "Battery charged today", "Wh", "energy", TI, 0),
    CloudField("battery_discharged_today", "Battery discharged today", "Wh", "energy", TI, 0),
    CloudField("battery_temperature", "Battery temperature", "°C", "temperature", M, 1),
)


def device_id(sid: int) -> str:
    return f"hoymiles_cloud_{sid}"


def station_topic(base: str, sid: int, leaf: str) -> str:
    return f"{base.strip('/')}/cloud/{sid}/{leaf}"


def _value(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if value == int(value) else f"{value:g}"


def command_topic(base: str, sid: int | str, name: str) -> str:
    """Where a station's command arrives (its outcome goes to ``<topic>/status``)."""
    return f"{base.strip('/')}/cloud/{sid}/cmd/{name}"


def state_items(base: str, station: CloudStation) -> list[tuple[str, str]]:
    """The station's retained states: each sensor, its name, availability and fallback
    flag, and the settings the bridge wrote."""
    items = [
        (station_topic(base, station.sid, f.key), _value(getattr(station, f.key)))
        for f in CLOUD_FIELDS
        if getattr(station, f.key) is not None
    ]
    sid = station.sid
    if station.grid_charge is not None:
        items.append((station_topic(base, sid, "grid_charge"), str(int(station.grid_charge))))
    if station.on_grid_power is not None:
        items.append((station_topic(base, sid, "on_grid_power"), _value(station.on_grid_power)))
    items += [
        (station_topic(base, station.sid, "name"), station.name),
        (
            station_topic(base, station.sid, "available"),
            PAYLOAD_ONLINE if station.available else PAYLOAD_OFFLINE,
        ),
        (station_topic(base, station.sid, "fallback"), "1" if station.fallback else "0"),
    ]
    return items


def _command_config(
    spec: CommandSpec, base: str, sid: int, node: str
) -> tuple[str, dict[str, Any]]:
    """A cloud command's entity: its component and its own part of the config."""
    entity = spec.entities[0]
    payload: dict[str, Any] = {
        "name": entity.name,
        "uniq_id": f"{node}_{entity.key}",
        "cmd_t": command_topic(base, sid, spec.name),
        "stat_t": station_topic(base, sid, spec.name),
    }
    if entity.icon is not None:
        payload["ic"] = entity.icon
    payload["ent_cat"] = "config"  # a setting of the station, shown with its controls
    if entity.component == "switch":
        payload.update({"pl_on": "1", "pl_off": "0"})
    else:
        payload.update(
            {"min": spec.minimum, "max": spec.maximum, "step": 1, "mode": "box"}
            | ({"unit_of_meas": spec.unit, "dev_cla": "power"} if spec.unit == "W" else {})
        )
    return entity.component, payload


def discovery_items(
    prefix: str,
    base: str,
    bridge_status: str,
    station: CloudStation,
    version: str,
    *,
    writes: bool = False,
) -> list[tuple[str, str]]:
    """The station's discovery configs; empty payloads (removal) for a fallback station.

    With ``writes`` (``cloud.allow_writes``) the station's settings too, else
    their configs are removed.
    """
    node = device_id(station.sid)
    device = {
        "ids": [node],
        "name": station.name,
        "mf": MANUFACTURER,
        "mdl": MODEL,
        "sn": str(station.sid),
    }
    common = {
        **availability_block((bridge_status, station_topic(base, station.sid, "available"))),
        "dev": device,
        "o": origin_block(version),
    }
    # (component, object id, payload; None: removed)
    configs: list[tuple[str, str, dict[str, Any] | None]] = []
    for field in CLOUD_FIELDS:
        if station.fallback:
            configs.append(("sensor", field.key, None))
            continue
        payload: dict[str, Any] = {
            "name": field.name,
            "uniq_id": f"{node}_{field.key}",
            "stat_t": station_topic(base, station.sid, field.key),
        }
        if field.device_class is not None:
            payload["dev_cla"] = field.device_class
        if field.state_class is not None:
            payload["stat_cla"] = field.state_class
        if field.unit is not None:
            payload["unit_of_meas"] = field.unit
        if field.precision is not None:
            payload["sug_dsp_prc"] = field.precision
        configs.append(("sensor", field.key, payload))
    for spec in CLOUD_COMMANDS:
        component, payload = _command_config(spec, base, station.sid, node)
        offered = writes and not station.fallback
        configs.append((component, spec.entities[0].key, payload if offered else None))
    return [
        (config_topic(prefix, component, node, key), "")
        if payload is None
        else config_message(prefix, component, node, key, payload | common)
        for component, key, payload in configs
    ]


class CloudPublisher:
    """Publishes a :class:`CloudSource`'s stations over the bridge's MQTT link."""

    def __init__(
        self,
        source: CloudSource,
        link: MqttLink,
        *,
        base: str,
        bridge_status: str,
        prefix: str = "homeassistant",
        discovery: bool = True,
        version: str = "",
        qos: int = 0,
        writes: bool = False,
    ) -> None:
        self._source = source
        #: Whether the stations' settings are offered (cloud.allow_writes).
        self._writes = writes
        #: The values' QoS (``mqtt.qos``); availability and discovery go at 1.
        self._qos = qos
        self._link = link
        self._base = base
        self._bridge_status = bridge_status
        self._prefix = prefix
        self._discovery = discovery
        self._version = version
        self._dirty: dict[int, CloudStation] = {}
        self._announced: dict[int, bool] = {}  # sid: announced as a fallback
        self._announced_at = -1  # the link's connect count at the last announcement
        self._published: dict[str, str] = {}
        self._wake = asyncio.Event()
        source.subscribe(self._changed)

    def _changed(self, station: CloudStation) -> None:
        self._dirty[station.sid] = station
        self._wake.set()

    async def run(self) -> None:
        """Publish changes until cancelled; look for a reconnect at least every minute."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RECHECK_S):
                    await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Publish what changed (everything again after a reconnect)."""
        again = self._link.connects != self._announced_at
        if again:
            self._announced_at = self._link.connects
            self._announced.clear()
            self._published.clear()
            for station in self._source.stations:
                self._dirty.setdefault(station.sid, station)
        dirty, self._dirty = self._dirty, {}
        for station in dirty.values():
            if self._discovery and self._announced.get(station.sid) != station.fallback:
                await self._link.publish_many(
                    discovery_items(
                        self._prefix,
                        self._base,
                        self._bridge_status,
                        station,
                        self._version,
                        writes=self._writes,
                    ),
                    retain=True,
                    qos=1,
                )
                self._announced[station.sid] = station.fallback
            fresh = [
                (t, p) for t, p in state_items(self._base, station) if self._published.get(t) != p
            ]
            if fresh:
                self._published.update(fresh)
                # the link sends the station's availability at QoS 1
                await self._link.publish_many(fresh, retain=True, qos=self._qos)


__all__ = [
    "CLOUD_COMMANDS",
    "CLOUD_FIELDS",
    "MODEL",
    "CloudField",
    "CloudPublisher",
    "command_topic",
    "device_id",
    "discovery_items",
    "state_items",
    "station_topic",
]
