"""Routes for the web UI's command console page: api/commands (what the console can send).

Registered by :meth:`hoymiles_bridge.web.api.WebApi.register` (through
:class:`~hoymiles_bridge.web.common.ApiContext`).

``GET api/commands`` answers, without side effects::

    {
      "reads": [{"name", "tag", "reply", "reply_tag", "title", "description"}, ...],
      "commands": [{"key", "command", "target", "label", "kind", "unit", "payload",
                    "persistent", "danger", "confirm", "help"}, ...],
      "limit_interval": <s>,
      "dtus": [{"label", "name", "serial", "state", "model", "available",
                "commands": [{"key"}, ...],
                "inverters": [{"serial", "model", "rated_power", "reachable",
                               "limit_applied",
                               "commands": [{"key", "min"?, "max"?, "step"?}, ...]}]}],
      "batteries": [{"dev_id", "name", "available", "mode", "setpoint",
                     "commands": [{"key", "command", "label", "kind", "unit", "choices"?,
                                   "min"?, "max"?, "step"?, "danger", "confirm", ...}]}]
    }

Nothing here is a second copy of the command rules. The catalogue is the
command registry (:data:`~hoymiles_bridge.core.commands.COMMANDS`), one entry
per Home Assistant entity: ``command`` is the name ``api/command`` takes,
``payload`` what a button sends. What one inverter is offered, and the range
of its limits, come from the same registry and
:func:`~hoymiles_bridge.core.limits.limit_range`, so the console offers exactly
what Home Assistant shows. ``api/command`` still checks every value; these
ranges are for the form only. A battery's commands (``kind`` ``choice``,
``number``, ``switch`` or ``press``) are the ones its Home Assistant entities
offer (:func:`~hoymiles_bridge.core.battery.offered_commands`), with the
setpoint's range made symmetric as the bridge enforces it.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from hoymiles_bridge.core.battery import offered_commands
from hoymiles_bridge.core.commands import BY_NAME as COMMANDS_BY_NAME
from hoymiles_bridge.core.commands import COMMANDS, CommandSpec, Entity, Target, commands_for
from hoymiles_bridge.core.limits import limit_range
from hoymiles_bridge.core.state import BatteryState, InverterState
from hoymiles_bridge.protocol.registry import BY_NAME, BY_TAG, reply_tag
from hoymiles_bridge.protocol.requests import READ_REQUESTS
from hoymiles_bridge.web.common import ApiContext, BadRequest
from hoymiles_bridge.web.hub import encode

#: What each read of :data:`READ_REQUESTS` asks the DTU, for people (a test
#: checks that both name the same requests).
READ_DESCRIPTIONS: Final = {
    "AppInfoToDtu": "The DTU's identity: serial, model, firmware, and its inverters.",
    "HeartbeatToDtu": "A keep-alive; the DTU answers with its clock, serial and signal.",
    "RealDataNewToDtu": "Live values of every inverter and PV port (what the bridge polls).",
    "WarnToDtu": "The inverters' alarm list, active and ended.",
    "GetConfigToDtu": "The DTU's settings: network, server, limits (passwords masked).",
    "NetworkInfoToDtu": "The DTU's network mode, connection state and signal strength.",
    "HistPowerToDtu": "Today's power curve as the DTU stores it.",
    "HistEnergyToDtu": "The energy history the DTU stores per inverter.",
}


def _read_entry(name: str) -> dict[str, Any]:
    spec = BY_NAME.get(name)
    reply = BY_TAG.get(reply_tag(spec.tag)) if spec is not None else None
    return {
        "name": name,
        "tag": spec.tag_hex if spec is not None else None,
        "reply": reply.name if reply is not None else None,
        "reply_tag": reply.tag_hex if reply is not None else None,
        "title": spec.title if spec is not None else name,
        "description": READ_DESCRIPTIONS.get(name, ""),
    }


def _command_entry(spec: CommandSpec, entity: Entity) -> dict[str, Any]:
    number = entity.component == "number"
    return {
        "key": entity.key,
        "command": spec.name,
        "target": spec.target.value,
        "label": entity.name,
        "kind": "number" if number else "press",
        "unit": spec.unit,
        # a button's payload is fixed; a number's is the value typed in
        "payload": None if number else entity.payload,
        "persistent": spec.limit.persistent if spec.limit is not None else None,
        "danger": spec.danger,
        "confirm": spec.confirm,
        "help": spec.help,
    }


def _offers(inverter: InverterState) -> list[dict[str, Any]]:
    device = inverter.device
    offers: list[dict[str, Any]] = []
    for spec in commands_for(Target.INVERTER):
        if not spec.offered_to(device.supports_nonpersistent):
            continue
        for entity in spec.entities:
            if entity.component != "number":
                offers.append({"key": entity.key})
                continue
            low, high, step = limit_range(spec, device.rated_power)
            offers.append({"key": entity.key, "min": low, "max": high, "step": step})
    return offers


def _battery_command(spec: CommandSpec, entity: Entity) -> dict[str, Any]:
    entry = _command_entry(spec, entity)
    if entity.component == "select":
        entry.update(kind="choice", payload=None, choices=list(spec.choices))
    elif entity.component == "switch":
        entry.update(kind="switch", payload=None)
    return entry


def _battery_offers(battery: BatteryState) -> dict[str, Any]:
    """A battery and the commands the console offers it (the same as its HA entities)."""
    low, high = battery.setpoint_range
    offers = []
    for name in offered_commands(battery):
        spec = COMMANDS_BY_NAME[name]
        entry = _battery_command(spec, spec.entities[0])
        if name == "setpoint":
            entry.update(min=low, max=high, step=1)
        elif entry["kind"] == "number":
            entry.update(min=spec.minimum, max=spec.maximum, step=1)
        offers.append(entry)
    return {
        "dev_id": battery.dev_id,
        "name": battery.title,
        "available": battery.available,
        "mode": battery.mode,
        "setpoint": battery.holding.watts if battery.holding is not None else None,
        "commands": offers,
    }


def catalogue(api: ApiContext) -> dict[str, Any]:
    """The body of ``api/commands`` (see the module docs)."""
    body: dict[str, Any] = {
        "reads": [_read_entry(name) for name in READ_REQUESTS],
        # Batteries have their own card; the controller's mode its card on the overview;
        # the cloud's settings go through api/command, MQTT and Home Assistant.
        "commands": [
            _command_entry(s, e)
            for s in COMMANDS
            if s.target not in (Target.BATTERY, Target.CONTROLLER, Target.CLOUD)
            for e in s.entities
        ],
        "limit_interval": None,
        "dtus": [],
    }
    try:
        fleet = api.fleet
    except BadRequest:  # still starting: the catalogue without devices
        return body
    body["limit_interval"] = fleet.options.limit_interval
    body["batteries"] = [_battery_offers(b) for b in fleet.batteries.batteries.values()]
    dtu_commands = [{"key": e.key} for s in commands_for(Target.DTU) for e in s.entities]
    for dtu in fleet.dtus:
        session = dtu.session
        info = session.app_info
        inverters = [
            {
                "serial": serial,
                "name": inverter.device.name,
                "model": inverter.device.model,
                "rated_power": inverter.device.rated_power or None,
                "reachable": inverter.values.reachable if inverter.values is not None else None,
                "limit_applied": inverter.limit,
                "commands": _offers(inverter),
            }
            for serial, inverter in dtu.inverters.items()
        ]
        body["dtus"].append(
            {
                "label": dtu.label,
                "name": session.target.name,
                "serial": dtu.serial,
                "state": session.state.value,
                "model": info.dtu_model if info is not None else None,
                "available": dtu.available,
                "commands": list(dtu_commands),
                "inverters": inverters,
            }
        )
    return body


def register(app: web.Application, api: ApiContext) -> None:
    """Add this module's routes to ``app``."""

    async def commands(request: web.Request) -> web.Response:
        return web.Response(text=encode(catalogue(api)), content_type="application/json")

    app.router.add_get("/api/commands", commands)
