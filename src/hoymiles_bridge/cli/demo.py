"""``hoymiles-bridge demo``: the simulator and a live polling client in one process.

This is what ``scripts/demo.sh`` runs: a simulated DTU on localhost and a
client that keeps one session to it and prints live values. It needs no
hardware and no broker.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from hoymiles_bridge.cli.output import real_data_text
from hoymiles_bridge.dtu.client import DtuClient
from hoymiles_bridge.errors import DtuConnectionError, DtuTimeoutError, ProtocolError
from hoymiles_bridge.simulator import DtuSimulator, default_fleet, load_fleet


async def _demo(args: argparse.Namespace) -> None:
    fleet = load_fleet(args.fleet) if args.fleet else default_fleet()
    spec = fleet.dtus[0]
    async with DtuSimulator(
        spec, host="127.0.0.1", port=args.port, encrypt=args.encrypt, speed=args.speed
    ) as sim:
        print(
            f"Simulated {spec.model} {spec.serial} listening on {sim.host}:{sim.port} "
            f"(speed x{args.speed:g}{', encrypted' if args.encrypt else ''})."
        )
        print(
            f"Try another terminal:  hoymiles-bridge dtu {sim.host}:{sim.port} real-data "
            "(the DTU serves one client at a time, like a real one)."
        )
        print(f"Polling every {args.interval:g} s. Ctrl-C stops.\n", flush=True)
        async with DtuClient(sim.host, sim.port, min_spacing=0.5) as dtu:
            info = await dtu.app_info()
            print(
                f"DTU {info.dtu_serial} ({info.dtu_model}, firmware {info.dtu_firmware}), "
                f"{len(info.inverters)} inverter(s), encrypted: {info.encrypted}",
                flush=True,
            )
            await dtu.performance_mode()
            while True:
                try:
                    data = await dtu.real_data()
                except (DtuConnectionError, DtuTimeoutError, ProtocolError) as err:
                    print(f"poll failed: {err}", flush=True)
                else:
                    clock = time.strftime("%H:%M:%S", time.localtime(data.timestamp))
                    print(f"[simulated time {clock}] {real_data_text(data)}\n", flush=True)
                await asyncio.sleep(args.interval)


def run(args: argparse.Namespace) -> int:
    try:
        asyncio.run(_demo(args))
    except KeyboardInterrupt:
        print("\nstopped")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the simulator and a live polling client",
        description="Start a simulated DTU on localhost and print its live values.",
    )
    parser.add_argument("--fleet", help="fleet file (JSON); default: one HMS-800W-2T")
    parser.add_argument("--port", type=int, default=0, help="listen port (default: any free)")
    parser.add_argument("--speed", type=float, default=60.0, help="simulated seconds per second")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between polls")
    parser.add_argument("--encrypt", action="store_true", help="simulate encrypting firmware")
    parser.set_defaults(func=run)
