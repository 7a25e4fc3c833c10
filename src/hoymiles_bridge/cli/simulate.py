"""``hoymiles-bridge simulate``: serve simulated DTUs on TCP."""

from __future__ import annotations

import argparse
import asyncio
import errno
import sys
from typing import Any

from hoymiles_bridge.cli.common import host_port
from hoymiles_bridge.simulator.fleet import (
    Fleet,
    FleetError,
    default_fleet,
    load_fleet,
    resolve_fleet,
)
from hoymiles_bridge.simulator.server import run_simulator

DEFAULT_LISTEN = "127.0.0.1:10081"
EXIT_USAGE = 2


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"speed {text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"speed must be greater than 0, not {text}")
    return value


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="run simulated DTUs that speak the real protocol",
        description=(
            "Serve one or more simulated DTUs on TCP. The first DTU listens on --listen, "
            "further DTUs of the fleet on the following ports. Stop with Ctrl-C."
        ),
    )
    parser.add_argument(
        "--listen",
        type=host_port,
        default=host_port(DEFAULT_LISTEN),
        metavar="HOST:PORT",
        help=f"address of the first DTU (default {DEFAULT_LISTEN})",
    )
    parser.add_argument(
        "--fleet",
        metavar="FILE",
        help="fleet JSON file, or a bundled fleet name (hms-800w-2t, dtu-pro); "
        "default: one HMS-800W-2T",
    )
    parser.add_argument(
        "--encrypt", action="store_true", help="encrypt payloads like 2025+ firmware"
    )
    parser.add_argument(
        "--speed", type=_speed, default=1.0, metavar="N", help="simulated seconds per real second"
    )
    parser.add_argument(
        "--night-off",
        action="store_true",
        help="refuse connections between sunset and sunrise (PV-powered DTUs)",
    )
    parser.add_argument(
        "--countdown-reset",
        action="store_true",
        help="a request within 30 s re-serves old data and restarts the 30 s wait",
    )
    parser.set_defaults(func=run)


def _fleet(path: str | None) -> Fleet:
    if path is None:
        return default_fleet()
    return load_fleet(resolve_fleet(path))


def run(args: argparse.Namespace) -> int:
    host, port = args.listen
    try:
        fleet = _fleet(args.fleet)
    except FleetError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    try:
        asyncio.run(
            run_simulator(
                fleet,
                host,
                port,
                encrypt=args.encrypt,
                speed=args.speed,
                night_off=args.night_off,
                countdown_reset=args.countdown_reset,
            )
        )
    except KeyboardInterrupt:
        return 0
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            print(f"error: port {port} on {host} is already in use.", file=sys.stderr)
        else:
            reason = err.strerror or str(err)
            print(f"error: cannot listen on {host}:{port} ({reason}).", file=sys.stderr)
        return EXIT_USAGE
    return 0


__all__ = ["register", "run"]
