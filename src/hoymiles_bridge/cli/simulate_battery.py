"""``hoymiles-bridge simulate-battery``: an MS-A2 / HiBattery system on an MQTT broker."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from hoymiles_bridge.cli.common import broker_address
from hoymiles_bridge.simulator.battery import (
    BATTERY_MODELS,
    FIRMWARES,
    BatterySimulator,
    run_battery_simulator,
)

DEFAULT_BROKER = "127.0.0.1:1883"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "simulate-battery",
        help="run a simulated MS-A2 / HiBattery system on an MQTT broker",
        description=(
            "Publish like an MS-A2 / HiBattery firmware with MQTT (its broken discovery, "
            "1 s and 5 min state topics) and obey EMS mode, setpoint and TOU commands. "
            "Stop with Ctrl-C."
        ),
    )
    parser.add_argument(
        "--mqtt",
        type=broker_address,
        default=broker_address(DEFAULT_BROKER),
        metavar="HOST:PORT",
        help=f"the broker (default {DEFAULT_BROKER})",
    )
    parser.add_argument("--model", choices=sorted(BATTERY_MODELS), default="ms-a2")
    parser.add_argument("--firmware", choices=FIRMWARES, default="v0.5")
    parser.add_argument("--strings", action="store_true", help="send numbers as strings")
    parser.add_argument("--units", type=int, default=1, help="units in the system (1-6)")
    parser.add_argument("--prefix", default="homeassistant", help="the discovery prefix")
    parser.add_argument("--client-prefix", default="MSA", help="the app's client prefix")
    parser.add_argument(
        "--slow-interval", type=float, default=300.0, help="seconds between device/system topics"
    )
    parser.add_argument(
        "--jitter",
        type=float,
        default=0.0,
        help="W of noise on the reported powers, as a real unit's readings wander",
    )
    parser.set_defaults(func=run)


def build(args: argparse.Namespace) -> BatterySimulator:
    host, port = args.mqtt
    return BatterySimulator(
        host,
        port,
        model=args.model,
        firmware=args.firmware,
        strings=args.strings,
        units=args.units,
        prefix=args.prefix,
        client_prefix=args.client_prefix,
        slow_interval=args.slow_interval,
        jitter=args.jitter,
    )


def run(args: argparse.Namespace) -> int:
    simulator = build(args)
    for unit in simulator.units:
        role = "master" if unit.master else "slave"
        print(f"simulated {simulator.model_name} {unit.dev_id} ({role}, {args.firmware})")
    print(f"publishing to {args.mqtt[0]}:{args.mqtt[1]}; Ctrl-C stops", file=sys.stderr)
    try:
        asyncio.run(run_battery_simulator(simulator))
    except KeyboardInterrupt:
        return 0
    return 0


__all__ = ["build", "register", "run"]
