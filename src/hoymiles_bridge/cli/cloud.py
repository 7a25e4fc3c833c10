"""``hoymiles-bridge cloud login|stations|flow|station|settings``: the cloud from a shell.

The account comes from the options file (``--config``, its ``cloud.username``
and ``cloud.password``) or from the environment (``HOYMILES_CLOUD_USERNAME``,
``HOYMILES_CLOUD_PASSWORD``, which win over the file), never from the command
line, where other users could read it. ``HOYMILES_CLOUD_BASE_URL`` or the
file's ``cloud.base_url`` sends every request elsewhere (a stand-in).

The session token is kept between runs in a file only the user can read
(``--token-file``, by default in the user's cache directory), so that a few
commands do not eat into the account's daily number of logins.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

from hoymiles_bridge.cli.output import print_json
from hoymiles_bridge.cloud.client import CloudClient, Credentials, Endpoints
from hoymiles_bridge.cloud.models import BatteryInfo, Flow, Station, StationData
from hoymiles_bridge.cloud.tokens import TOKEN_FILE_NAME, TokenFile, account_key
from hoymiles_bridge.config.options import load_options
from hoymiles_bridge.errors import InvalidArgumentError

ENV_USERNAME = "HOYMILES_CLOUD_USERNAME"
ENV_PASSWORD = "HOYMILES_CLOUD_PASSWORD"  # noqa: S105 - the variable's name
ENV_BASE_URL = "HOYMILES_CLOUD_BASE_URL"

_KINDS = {1: "DTU", 6: "battery inverter", 16: "meter"}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "cloud",
        help="read S-Miles stations from the Hoymiles cloud",
        description=(
            "Log in to the Hoymiles cloud and read stations. The account comes from "
            f"--config (cloud.username, cloud.password) or from {ENV_USERNAME} and "
            f"{ENV_PASSWORD}; never from the command line."
        ),
    )
    parser.add_argument("--config", type=Path, help="options file (YAML or JSON) with `cloud:`")
    parser.add_argument(
        "--token-file",
        type=Path,
        help="where the session token is kept between runs (default: the user's cache)",
    )
    parser.add_argument(
        "--no-token-file", action="store_true", help="log in every time, keep no token"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    sub = parser.add_subparsers(dest="cloud_command", metavar="WHAT", required=True)
    sub.add_parser("login", help="log in and say how")
    sub.add_parser("stations", help="the account's stations and their devices")
    flow = sub.add_parser("flow", help="a station's live power flow")
    flow.add_argument("sid", type=int, help="station id")
    station = sub.add_parser("station", help="a station's energy counters and batteries")
    station.add_argument("sid", type=int, help="station id")
    setting = sub.add_parser("settings", help="read a station's on-grid input power (a job)")
    setting.add_argument("sid", type=int, help="station id")
    writes = (
        "Changes the station in the cloud: only with cloud.allow_writes in the --config "
        "file or --allow-writes."
    )
    power = sub.add_parser(
        "on-grid-power", help="set a station's on-grid input power (W)", description=writes
    )
    power.add_argument("sid", type=int, help="station id")
    power.add_argument("watts", type=int, help="W")
    power.add_argument("--allow-writes", action="store_true", help="allow this change")
    charge = sub.add_parser(
        "grid-charge", help="switch a station's charging from the grid", description=writes
    )
    charge.add_argument("sid", type=int, help="station id")
    charge.add_argument("state", choices=("on", "off"))
    charge.add_argument("--allow-writes", action="store_true", help="allow this change")
    parser.set_defaults(func=run)


def _allow_writes(args: argparse.Namespace) -> bool:
    """A write goes out with --allow-writes or the options file's cloud.allow_writes."""
    if getattr(args, "allow_writes", False):
        return True
    return args.config is not None and load_options(args.config).cloud.allow_writes


def _account(args: argparse.Namespace) -> tuple[Credentials, Endpoints]:
    username = password = base_url = None
    if args.config is not None:
        cloud = load_options(args.config).cloud
        username, password, base_url = cloud.username, cloud.password, cloud.base_url
    username = os.environ.get(ENV_USERNAME) or username
    password = os.environ.get(ENV_PASSWORD) or password
    base_url = os.environ.get(ENV_BASE_URL) or base_url
    if not username or not password:
        raise InvalidArgumentError(
            "no cloud account: set cloud.username and cloud.password in the --config file, "
            f"or {ENV_USERNAME} and {ENV_PASSWORD}"
        )
    endpoints = Endpoints.at(base_url) if base_url else Endpoints()
    return Credentials(username, password), endpoints


def _token_file(args: argparse.Namespace) -> TokenFile | None:
    if args.no_token_file:
        return None
    if args.token_file is not None:
        return TokenFile(Path(args.token_file))
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return TokenFile(Path(cache) / "hoymiles-bridge" / TOKEN_FILE_NAME)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    credentials, endpoints = _account(args)
    token_file = _token_file(args)
    key = account_key(credentials, endpoints)
    kept = token_file.load(key) if token_file is not None else None
    async with CloudClient(
        credentials, endpoints=endpoints, token=kept, allow_writes=_allow_writes(args)
    ) as client:
        try:
            result = await _command(client, args)
        finally:
            if token_file is not None and client.token != kept:
                token_file.save(key, client.token)
    if args.json:
        print_json(result)
    else:
        print(_text(args.cloud_command, result))
    return 0


async def _command(client: CloudClient, args: argparse.Namespace) -> dict[str, Any]:
    match args.cloud_command:
        case "login":
            await client.login()
            return {"state": client.state.value, "method": client.login_method}
        case "stations":
            return {"stations": [_station(s) for s in await client.stations()]}
        case "flow":
            return _flow(await client.flow(args.sid))
        case "settings":
            return {"on_grid_power": await client.on_grid_power(args.sid)}
        case "on-grid-power":
            done = await client.set_on_grid_power(args.sid, args.watts)
            return {"written": {"on_grid_power": args.watts}, "answer": done.values}
        case "grid-charge":
            done = await client.set_grid_charge(args.sid, args.state == "on")
            return {"written": {"grid_charge": args.state}, "answer": done.values}
        case _:
            stations = {s.sid: s for s in await client.stations()}
            if args.sid not in stations:
                known = ", ".join(str(sid) for sid in stations) or "none"
                raise InvalidArgumentError(f"no station {args.sid} in the account (it has {known})")
            station = stations[args.sid]
            energy = await client.station_data(args.sid)
            batteries = [
                await client.battery(args.sid, d.id)
                for d in station.battery_inverters()
                if d.id is not None
            ]
            return {
                "name": station.name,
                **_energy(energy),
                "batteries": [_battery(b) for b in batteries],
            }


def _station(station: Station) -> dict[str, Any]:
    return {
        "sid": station.sid,
        "name": station.name,
        "devices": [
            {"id": d.id, "serial": d.serial, "type": d.kind, "connected": d.connected}
            for d in station.all_devices()
        ],
    }


def _flow(flow: Flow) -> dict[str, Any]:
    return {
        "soc": flow.soc,
        "pv": flow.pv,
        "battery": flow.battery,
        "grid": flow.grid,
        "load": flow.load,
        "smart_plug": flow.smart_plug,
        "delay_ms": flow.delay_ms,
        "all_zero": flow.all_zero,
    }


def _energy(data: StationData) -> dict[str, Any]:
    return {
        "today_wh": data.today,
        "month_wh": data.month,
        "year_wh": data.year,
        "total_wh": data.total,
        "battery_in_today_wh": data.battery_in,
        "battery_out_today_wh": data.battery_out,
        "soc": data.soc,
        "data_time": data.data_time,
    }


def _battery(info: BatteryInfo) -> dict[str, Any]:
    return {
        "id": info.device_id,
        "serial": info.serial,
        "soc": info.soc,
        "temperature": info.temperature,
        "state": info.state,
    }


def _show(value: Any, unit: str = "") -> str:
    return "-" if value is None else f"{value:g}{unit}" if isinstance(value, float) else str(value)


def _text(command: str, result: dict[str, Any]) -> str:
    if command == "login":
        return f"{result['state']} ({result['method']})"
    if command == "stations":
        lines = []
        for station in result["stations"]:
            lines.append(f"{station['sid']}  {station['name']}")
            for device in station["devices"]:
                kind = _KINDS.get(device["type"], f"type {device['type']}")
                lines.append(f"    {kind} {device['serial'] or '?'} (id {device['id']})")
        return "\n".join(lines) or "no stations"
    if command == "settings":
        return f"on-grid input power: {_show(result['on_grid_power'], ' W')}"
    if command in ("on-grid-power", "grid-charge"):
        ((name, value),) = result["written"].items()
        return f"{name.replace('_', ' ')}: {value} (the cloud confirmed the job)"
    if command == "flow":
        note = "  (all 0: the cloud's known fault?)" if result["all_zero"] else ""
        return (
            f"SOC {_show(result['soc'], ' %')}  PV {_show(result['pv'], ' W')}  "
            f"battery {_show(result['battery'], ' W')}  grid {_show(result['grid'], ' W')}  "
            f"load {_show(result['load'], ' W')}{note}"
        )
    lines = [
        f"{result['name']}: today {_show(result['today_wh'], ' Wh')}, month "
        f"{_show(result['month_wh'], ' Wh')}, year {_show(result['year_wh'], ' Wh')}, "
        f"total {_show(result['total_wh'], ' Wh')}",
        f"  battery today: in {_show(result['battery_in_today_wh'], ' Wh')}, "
        f"out {_show(result['battery_out_today_wh'], ' Wh')}",
    ]
    lines += [
        f"  battery {b['serial'] or b['id']}: SOC {_show(b['soc'], ' %')}, "
        f"{_show(b['temperature'], ' °C')}, state {_show(b['state'])}"
        for b in result["batteries"]
    ]
    return "\n".join(lines)
