"""``hoymiles-bridge demo``: the bridge's main job against the built-in simulator.

What ``scripts/demo.sh`` runs: simulated DTUs on localhost, a simulated
MS-A2 battery on the broker (unless ``--no-battery``), a private
Mosquitto (unless ``--mqtt`` names a broker), the real bridge between them,
publishing topics and Home Assistant discovery, and the web server on
127.0.0.1:8099 (a free port when that one is taken). It prints where to look
and a one-line summary after every poll. No hardware, no configuration: the
generated options go to a file in a temporary directory, which the web UI's
Configuration page edits (saving and restarting the bridge in-process).

With ``--controller`` the DTUs take non-persistent limits, and a household
meter (:func:`_household_meter`: the load of ``simulator/household.py`` minus
what the simulated inverters and battery feed in) publishes the grid power
every second on ``demo/meter``; the power controller reads it (mode ``monitor`` until switched
in the web UI, Home Assistant or ``hoymiles-bridge controller mode``), with a
600 W feed-in cap.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import yaml

from hoymiles_bridge.addon.bridge import Bridge
from hoymiles_bridge.addon.runner import Service, WebConfig, fixed_broker
from hoymiles_bridge.cli.common import broker_address
from hoymiles_bridge.cli.run import configure_logging, mqtt_settings, summary
from hoymiles_bridge.config.options import Options, validate
from hoymiles_bridge.config.store import write_atomically
from hoymiles_bridge.errors import HoymilesError
from hoymiles_bridge.mqtt.link import MqttSettings
from hoymiles_bridge.mqtt.local_broker import LocalBroker
from hoymiles_bridge.protocol.actions import TEMPORARY_LIMIT_FIRMWARE
from hoymiles_bridge.simulator import (
    SimClock,
    SimulatorGroup,
    default_fleet,
    load_fleet,
    resolve_fleet,
)
from hoymiles_bridge.simulator.battery import BatterySimulator
from hoymiles_bridge.simulator.household import LoadProfile
from hoymiles_bridge.web.store import state_dir_for


def _line(bridge: Bridge) -> str:
    parts = []
    for dtu in bridge.fleet.dtus:
        shown = [i for i in dtu.inverters.values() if i.values is not None]
        for inverter in shown:
            values = inverter.values.values if inverter.values is not None else {}
            parts.append(
                f"{inverter.serial} {values.get('power', 0):6.1f} W "
                f"(today {values.get('yieldday', 0):.0f} Wh)"
            )
        if not shown:
            parts.append(f"{dtu.label}: {dtu.session.state.value}")
    return f"[{time.strftime('%H:%M:%S')}] " + " | ".join(parts)


async def _printer(service: Service, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        if service.bridge is not None:  # None while the bridge restarts
            print(_line(service.bridge), flush=True)


#: Where the demo's household meter publishes (the controller's ``meter_topic``).
DEMO_METER_TOPIC = "demo/meter"


async def _household_meter(
    group: SimulatorGroup, battery: BatterySimulator | None, host: str, port: int
) -> None:
    """Publish the house's grid power every second: its load minus what the inverters
    and the battery feed in.

    The load follows the simulated clock (kettle and oven steps included); the
    inverters' power is what the simulated DTUs would report now and the
    battery's what the simulated MS-A2 delivers (+ discharge), so the controller's
    limits and setpoints show in the meter. Import positive, Shelly Pro 3EM's field.
    """
    import aiomqtt  # the demo only

    load = LoadProfile()
    while True:
        try:
            async with aiomqtt.Client(host, port, identifier="hoymiles-demo-meter") as client:
                while True:
                    now = group.clock.now()
                    fed = sum(
                        reading.power
                        for sim in group.simulators
                        for reading in sim.dtu.live_readings()
                    )
                    if battery is not None:
                        fed += sum(unit.power for unit in battery.units)
                    grid = round(load.at(now % 86_400) - fed, 1)
                    payload = json.dumps({"total_act_power": grid, "ts": round(now, 3)})
                    await client.publish(DEMO_METER_TOPIC, payload, qos=0)
                    await asyncio.sleep(1.0)
        except aiomqtt.MqttError:
            await asyncio.sleep(2.0)


async def _start_service(
    options: Options, options_file: Path, settings: MqttSettings, port: int
) -> Service:
    """The bridge's service with its web server listening on localhost: ``port``, or any
    free port when that one is taken. The configuration page edits ``options_file``."""
    for candidate in (port, 0):
        service = Service(
            options,
            fixed_broker(settings),
            WebConfig("127.0.0.1", candidate),
            summary=summary,
            config_file=options_file,
            broker_for=lambda o: fixed_broker(mqtt_settings(o)),
            state_dir=state_dir_for(options_file),  # the temporary directory's
        )
        try:
            await service.web.start()
        except OSError:
            continue
        return service
    raise HoymilesError("cannot open a port for the web server on 127.0.0.1")


async def _demo(args: argparse.Namespace) -> int:
    fleet = load_fleet(resolve_fleet(args.fleet)) if args.fleet else default_fleet()
    if args.controller:
        # DTU firmware that takes non-persistent limits (the controller's slow loop).
        fresh = [dataclasses.replace(d, firmware=TEMPORARY_LIMIT_FIRMWARE) for d in fleet.dtus]
        fleet = dataclasses.replace(fleet, dtus=fresh)
    async with contextlib.AsyncExitStack() as stack:
        if args.mqtt:
            mqtt_host, mqtt_port = args.mqtt
        else:
            broker = await stack.enter_async_context(LocalBroker())
            mqtt_host, mqtt_port = broker.host, broker.port
        clock = None
        if args.controller:
            # Daylight from the start (09:00 today, local), so the controller has PV to cap.
            day = time.localtime()
            nine = time.mktime((day.tm_year, day.tm_mon, day.tm_mday, 9, 0, 0, 0, 0, -1))
            clock = SimClock(start=nine, speed=args.speed)
        group = await stack.enter_async_context(
            SimulatorGroup(
                fleet,
                host="127.0.0.1",
                port=0,
                encrypt=args.encrypt,
                speed=args.speed,
                clock=clock,
            )
        )
        document = {
            "dtus": [
                {"host": sim.host, "port": sim.port, "name": f"Simulated {sim.spec.model}"}
                for sim in group.simulators
            ],
            # The simulator refreshes as often as --speed makes it; a real DTU
            # needs 35 s or more, which is why the guard exists.
            "poll_interval": args.interval,
            "min_poll_interval": args.interval,
            "mqtt": {"host": mqtt_host, "port": mqtt_port},
            "log_level": "warning" if not args.verbose else "info",
        }
        if args.controller:
            document["controller"] = {
                "mode": "monitor",
                "meter_topic": DEMO_METER_TOPIC,
                "meter_json_path": "total_act_power",
                "max_feed_in": 600,
            }
        options = validate(document)
        battery: BatterySimulator | None = None
        if not args.no_battery:
            battery = BatterySimulator(mqtt_host, mqtt_port, slow_interval=30.0)
            battery_task = asyncio.create_task(battery.run(), name="demo-battery-simulator")
            stack.push_async_callback(_cancel, battery_task)
        # The configuration page saves here and restarts the bridge in-process.
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hoymiles-demo-")))
        options_file = directory / "bridge.yaml"
        write_atomically(options_file, yaml.safe_dump(document, sort_keys=False))
        configure_logging(options.log_level)
        settings = mqtt_settings(options)
        print(summary(options, settings))
        for sim in group.simulators:
            print(f"  simulated {sim.spec.model} {sim.spec.serial} on {sim.host}:{sim.port}")
        if battery is not None:
            dev_id = battery.master.dev_id
            print(
                f"  simulated {battery.model_name} {dev_id} on the broker "
                f"(setpoint: mosquitto_pub -t '{options.base_topic}/battery/{dev_id}/cmd/setpoint'"
                " -m -300)"
            )
        print(
            f"\nWatch the topics:   mosquitto_sub -h {mqtt_host} -p {mqtt_port} -t "
            f"'{options.base_topic}/#' -v\n"
            f"Send a command:     mosquitto_pub -h {mqtt_host} -p {mqtt_port} -t "
            f"'{options.base_topic}/<serial>/cmd/limit_persistent_relative' -m 50\n"
            f"Talk to a DTU:      hoymiles-bridge dtu {group.simulators[0].host}:"
            f"{group.simulators[0].port} real-data  (it serves one client at a time)\n"
            f"Options file:       {options_file}  (the web UI's Configuration page edits it)\n"
            "Ctrl-C stops.\n",
            flush=True,
        )
        service = await _start_service(options, options_file, settings, args.web_port)
        print(
            f"Web UI:             http://127.0.0.1:{service.web.port}/  (API: api/status)\n",
            flush=True,
        )
        tasks = {
            asyncio.create_task(_printer(service, max(args.interval, 2.0)), name="demo-printer")
        }
        if args.controller:
            meter = _household_meter(group, battery, mqtt_host, mqtt_port)
            tasks.add(asyncio.create_task(meter, name="demo-household-meter"))
            print(
                f"Power controller:   meter on {DEMO_METER_TOPIC}; switch the mode in the web "
                "UI or with\n                    hoymiles-bridge controller mode zero_export "
                f"--mqtt {mqtt_host}:{mqtt_port}\n",
                flush=True,
            )
        try:
            code = await service.run()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
    return code


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.wait({task})


def run(args: argparse.Namespace) -> int:
    try:
        code = asyncio.run(_demo(args))
    except KeyboardInterrupt:
        code = 0
    except HoymilesError as err:
        print(f"error: {err}")
        return 1
    print("\nstopped")
    return code


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the bridge against the built-in simulator",
        description="Simulated DTUs, a private MQTT broker and the bridge, on localhost.",
    )
    parser.add_argument("--fleet", help="fleet file or bundled name (dtu-pro); default HMS-800W-2T")
    parser.add_argument(
        "--mqtt", type=broker_address, metavar="HOST[:PORT]", help="use this broker"
    )
    parser.add_argument("--speed", type=float, default=60.0, help="simulated seconds per second")
    parser.add_argument("--interval", type=int, default=5, help="seconds between polls")
    parser.add_argument("--encrypt", action="store_true", help="simulate encrypting firmware")
    parser.add_argument("--verbose", action="store_true", help="show the bridge's log")
    parser.add_argument(
        "--no-battery", action="store_true", help="no simulated MS-A2 battery on the broker"
    )
    parser.add_argument("--web-port", type=int, default=8099, help="web UI port on localhost")
    parser.add_argument(
        "--controller",
        action="store_true",
        help="a simulated household meter and the power controller (monitor until switched); "
        "the simulated day starts at 09:00",
    )
    parser.set_defaults(func=run)
