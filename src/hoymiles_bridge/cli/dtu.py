"""``hoymiles-bridge dtu HOST[:PORT] COMMAND``: every client command from the shell."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from hoymiles_bridge.cli.common import enc_rand_hex, host_port
from hoymiles_bridge.cli.output import print_result
from hoymiles_bridge.core.commands import BY_NAME, CommandSpec, Target, parse_value
from hoymiles_bridge.core.commands import COMMANDS as REGISTRY
from hoymiles_bridge.core.limits import clamp_limit
from hoymiles_bridge.dtu.client import DEFAULT_MIN_SPACING, DtuClient
from hoymiles_bridge.dtu.connection import REQUEST_TIMEOUT
from hoymiles_bridge.errors import InvalidArgumentError
from hoymiles_bridge.protocol.devices import inverter_type, parse_serial
from hoymiles_bridge.protocol.records import Result

Handler = Callable[[DtuClient, argparse.Namespace], Awaitable[Result]]


@dataclass(frozen=True)
class _Command:
    name: str
    help: str
    handler: Handler
    arguments: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = ()
    aliases: tuple[str, ...] = ()


def _serial_arg(required: bool = False) -> tuple[tuple[str, ...], dict[str, Any]]:
    if required:
        return ("serial",), {"help": "inverter serial (12 hex digits)"}
    return ("--serial",), {"help": "inverter serial (12 hex digits); default: all inverters"}


def _value(name: str, text: str, serial: str | None = None) -> float:
    """``text`` checked by the registry's rules for command ``name``.

    A limit is clamped into the inverter's safe range as the bridge does
    (:func:`~hoymiles_bridge.core.limits.clamp_limit`), saying so on stderr.
    """
    spec = BY_NAME[name]
    value = parse_value(spec, text.encode("utf-8", "replace"))
    if spec.limit is None:
        return value
    rated = inverter_type(parse_serial(serial)).rated_power if serial else 0
    value, note = clamp_limit(spec, value, rated)
    if note:
        print(f"note: {note}", file=sys.stderr)
    return value


async def _limit(dtu: DtuClient, args: argparse.Namespace) -> Result:
    if args.watts:
        if not args.serial:
            raise InvalidArgumentError("a limit in W needs --serial to know the rated power")
        watts = _value("limit_persistent_absolute", args.value, args.serial)
        ack = await dtu.set_power_limit_watts(watts, args.serial)
    else:
        ack = await dtu.set_power_limit(
            _value("limit_persistent_relative", args.value), args.serial
        )
    return await dtu.wait_command(ack) if args.wait else ack


async def _limit_temporary(dtu: DtuClient, args: argparse.Namespace) -> Result:
    return await dtu.set_power_limit_temporary(_value("limit_nonpersistent_absolute", args.watts))


def _registry_handler(spec: CommandSpec, value: float) -> Handler:
    async def handler(dtu: DtuClient, args: argparse.Namespace) -> Result:
        serial: str = getattr(args, "serial", None) or ""
        return cast(Result, await spec.call(dtu, serial, value))

    return handler


#: Every CLI form of the command registry (on, off, reboot, alarms...), by name.
_REGISTRY_FORMS: dict[str, _Command] = {
    form.name: _Command(
        form.name,
        form.help,
        _registry_handler(spec, form.value),
        (_serial_arg(),) if spec.target is Target.INVERTER else (),
        form.aliases,
    )
    for spec in REGISTRY
    for form in spec.cli
}


def _forms(*names: str) -> tuple[_Command, ...]:
    """The registry's subcommands ``names``, placed where ``dtu -h`` lists them."""
    return tuple(_REGISTRY_FORMS[name] for name in names)


async def _command_status(dtu: DtuClient, args: argparse.Namespace) -> Result:
    return await dtu.command_status(args.action, args.tid)


async def _set_config(dtu: DtuClient, args: argparse.Namespace) -> Result:
    changes: dict[str, int | str] = {}
    for item in args.assignments:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidArgumentError(f"{item!r} is not KEY=VALUE")
        changes[key] = int(value) if value.lstrip("-").isdigit() else value
    await dtu.set_config(**changes)
    return {"written": sorted(changes)}


async def _is_encrypted(dtu: DtuClient, _args: argparse.Namespace) -> Result:
    info = await dtu.app_info()
    return {"dtu_serial": info.dtu_serial, "encrypted": info.encrypted}


#: The reads, the limits (they take a unit flag) and, through :func:`_forms`, the
#: registry's forms that have a place of their own in ``dtu -h``.
_PLACED: tuple[_Command, ...] = (
    _Command(
        "real-data",
        "live values of every inverter and port",
        lambda d, a: d.real_data(),
        aliases=("get-real-data-new",),
    ),
    _Command(
        "real-data-legacy", "live values via the legacy tag A303", lambda d, a: d.real_data_legacy()
    ),
    _Command(
        "app-info",
        "DTU and inverter identity and versions",
        lambda d, a: d.app_info(),
        aliases=("app-information-data",),
    ),
    _Command("is-encrypted", "whether the DTU encrypts its payloads", _is_encrypted),
    _Command("heartbeat", "keep-alive round trip", lambda d, a: d.heartbeat()),
    _Command(
        "config", "the DTU configuration", lambda d, a: d.get_config(), aliases=("get-config",)
    ),
    _Command(
        "set-config",
        "change DTU configuration fields (KEY=VALUE ...)",
        _set_config,
        ((("assignments",), {"nargs": "+", "metavar": "KEY=VALUE"}),),
    ),
    _Command("network-info", "network status", lambda d, a: d.network_info()),
    _Command(
        "limit",
        "set the active power limit (persistent in the inverter)",
        _limit,
        (
            (("value",), {"help": "percent (0..100, at least 2 is sent), or W with --watts"}),
            (("--watts",), {"action": "store_true", "help": "VALUE is in W"}),
            _serial_arg(),
            (("--wait",), {"action": "store_true", "help": "wait until the inverters applied it"}),
        ),
        aliases=("set-power-limit",),
    ),
    _Command(
        "limit-temporary",
        "set a non-persistent limit in W (HMS-W, DTU firmware V01.01.01+)",
        _limit_temporary,
        ((("watts",), {"help": "limit in W (kept between 45 and 2250 W)"}),),
        aliases=("set-power-limit-temporary",),
    ),
    *_forms("on", "off", "restart", "reboot", "performance-mode", "alarms"),
    _Command("warnings", "read the warnings the DTU holds", lambda d, a: d.warnings()),
    *_forms("clear-alarms"),
    _Command(
        "command-status",
        "progress of a command",
        _command_status,
        (
            (("action",), {"type": int}),
            (("tid",), {"type": int}),
        ),
    ),
    _Command("history-power", "today's power curve", lambda d, a: d.history_power()),
    _Command("history-energy", "energy history", lambda d, a: d.history_energy()),
    _Command(
        "grid-profile",
        "read an inverter's grid profile (raw bytes)",
        lambda d, a: d.grid_profile(a.serial),
        (_serial_arg(required=True),),
    ),
    _Command("auto-search", "inverters the DTU found", lambda d, a: d.auto_search()),
    _Command(
        "grid-self-test", "grid protection self-test results", lambda d, a: d.grid_self_test()
    ),
    _Command("gateway-info", "gateway info (24-byte header family)", lambda d, a: d.gateway_info()),
    _Command(
        "gateway-net-info",
        "gateway network info",
        lambda d, a: d.gateway_net_info(a.gateway),
        ((("gateway",), {"help": "gateway serial"}),),
    ),
    _Command(
        "es-registry",
        "energy-storage registry",
        lambda d, a: d.es_registry(a.gateway),
        ((("gateway",), {"help": "gateway serial"}),),
    ),
    _Command(
        "es-data",
        "energy-storage live data",
        lambda d, a: d.es_data(a.gateway, a.inverter),
        ((("gateway",), {"help": "gateway serial"}), (("inverter",), {"help": "inverter serial"})),
    ),
)


#: Every subcommand: the placed ones, then any other form of the registry (a new
#: command's form needs no edit here).
COMMANDS: tuple[_Command, ...] = _PLACED + tuple(
    form for form in _REGISTRY_FORMS.values() if form not in _PLACED
)


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    common.add_argument("--enc-rand", type=enc_rand_hex, help="encryption seed (hex); detected")
    common.add_argument(
        "--timeout", type=float, default=REQUEST_TIMEOUT, help="seconds to wait for a reply"
    )
    common.add_argument(
        "--min-spacing",
        type=float,
        default=DEFAULT_MIN_SPACING,
        help="minimum seconds between two requests",
    )
    return common


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "dtu",
        help="talk to a DTU",
        description="Send one command to a DTU and print the reply.",
    )
    parser.add_argument("address", type=host_port, metavar="HOST[:PORT]")
    commands = parser.add_subparsers(dest="dtu_command", metavar="COMMAND", required=True)
    common = _common()
    for command in COMMANDS:
        sub = commands.add_parser(
            command.name, help=command.help, parents=[common], aliases=list(command.aliases)
        )
        for names, options in command.arguments:
            sub.add_argument(*names, **options)
        sub.set_defaults(handler=command.handler)
    parser.set_defaults(func=run)


async def _run(args: argparse.Namespace) -> Result:
    host, port = args.address
    async with DtuClient(
        host,
        port,
        enc_rand=args.enc_rand,
        request_timeout=args.timeout,
        min_spacing=args.min_spacing,
    ) as dtu:
        handler: Handler = args.handler
        return await handler(dtu, args)


def run(args: argparse.Namespace) -> int:
    result = asyncio.run(_run(args))
    print_result(result, as_json=args.json)
    return 0
