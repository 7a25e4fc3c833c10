"""Routes for the web UI's command console page: api/commands (what the console can send).

Registered by :meth:`hoymiles_bridge.web.api.WebApi.register`.

``GET api/commands`` answers, without side effects::

    {
      "reads": [{"name", "tag", "reply", "reply_tag", "title", "description"}, ...],
      "commands": [{"key", "command", "target", "label", "kind", "unit",
      "limit_interval": <s>,
      "dtus": [{"label", "name", "serial", "state", "model", "available",
                "commands": [{"key"}, ...],
                "inverters": [{"serial", "model", "rated_power", "reachable",
                               "limit_applied",
                               "commands": [{"key", "min"?, "max"?, "step"?}, ...]}]}]
    }

Nothing here is a second copy of the command rules. The catalogue comes from
the MQTT tables (:data:`~hoymiles_bridge.mqtt.topics.INVERTER_COMMANDS` and
:data:`~hoymiles_bridge.mqtt.topics.DTU_COMMANDS`): ``command`` is the name
``api/command`` takes, ``payload`` what a button sends. What one inverter is
offered, and the range of its limits, come from the functions Home
Assistant's discovery uses (:func:`~hoymiles_bridge.mqtt.discovery.inverter_commands`
and :func:`~hoymiles_bridge.mqtt.discovery.limit_range`), so the console
offers exactly what Home Assistant shows. ``api/command`` still validates
every value (:mod:`hoymiles_bridge.mqtt.commands`); these ranges are for the
form only.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from hoymiles_bridge.mqtt.discovery import inverter_commands, limit_range
from hoymiles_bridge.mqtt.topics import DTU_COMMANDS, INVERTER_COMMANDS, Field
from hoymiles_bridge.protocol.registry import BY_NAME, BY_TAG, reply_tag
from hoymiles_bridge.web.api import READ_REQUESTS, BadRequest, WebApi
from hoymiles_bridge.web.hub import encode

#: What each read of :data:`~hoymiles_bridge.web.api.READ_REQUESTS` asks the DTU,
#: for people (a test checks that both name the same requests).
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


def _command_entry(field: Field, target: str) -> dict[str, Any]:
    number = field.component == "number"
    return {
        "key": field.key,
        "command": field.topic,
        "target": target,
        "label": field.name,
        "kind": "number" if number else "press",
        "unit": field.unit,
        # a button's payload is fixed; a number's is the value typed in
        "payload": None if number else field.payload_on,
        "persistent": field.key.startswith("limit_persistent_") if number else None,
    }


def _offer(field: Field, rated_power: int) -> dict[str, Any]:
    if field.component != "number":
        return {"key": field.key}
    low, high, step = limit_range(field, rated_power)
    return {"key": field.key, "min": low, "max": high, "step": step}


def catalogue(api: WebApi) -> dict[str, Any]:
    """The body of ``api/commands`` (see the module docs)."""
    commands = [_command_entry(f, "inverter") for f in INVERTER_COMMANDS]
    commands += [_command_entry(f, "dtu") for f in DTU_COMMANDS]
    body: dict[str, Any] = {
        "reads": [_read_entry(name) for name in READ_REQUESTS],
        "commands": commands,
        "limit_interval": None,
        "dtus": [],
    }
    try:
        bridge = api.bridge
    except BadRequest:  # still starting: the catalogue without devices
        return body
    body["limit_interval"] = bridge.options.limit_interval
    for view in bridge.views:
        session = view.session
        info = session.app_info
        inverters = []
        for serial, device in view.inverters.items():
            values = view.values.get(serial)
            inverters.append(
                {
                    "serial": serial,
                    "model": device.model,
                    "rated_power": device.rated_power or None,
                    "reachable": values.reachable if values is not None else None,
                    "limit_applied": view.limits.get(serial),
                    "commands": [_offer(f, device.rated_power) for f in inverter_commands(device)],
                }
            )
        body["dtus"].append(
            {
                "label": session.target.label,
                "name": session.target.name,
                "serial": view.serial,
                "state": session.state.value,
                "model": info.dtu_model if info is not None else None,
                "available": view.available,
                "commands": [{"key": f.key} for f in DTU_COMMANDS],
                "inverters": inverters,
            }
        )
    return body


def register(app: web.Application, api: WebApi) -> None:
    """Add this module's routes to ``app``."""

    async def commands(request: web.Request) -> web.Response:
        return web.Response(text=encode(catalogue(api)), content_type="application/json")

    app.router.add_get("/api/commands", commands)
