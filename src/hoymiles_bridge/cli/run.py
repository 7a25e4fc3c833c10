"""``hoymiles-bridge run --config FILE``: the bridge, standalone.

Options come from a YAML or JSON file with the same keys as the add-on's
options. A bad file prints one line per problem and exits 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from hoymiles_bridge import __version__
from hoymiles_bridge.addon.options import Options, OptionsError, load_options
from hoymiles_bridge.mqtt.bridge import Bridge
from hoymiles_bridge.mqtt.link import MqttSettings

_LOGGER = logging.getLogger("hoymiles_bridge")

EXIT_OPTIONS = 2


def mqtt_settings(options: Options, default_host: str = "127.0.0.1") -> MqttSettings:
    mqtt = options.mqtt
    return MqttSettings(
        host=mqtt.host or default_host,
        port=mqtt.port,
        username=mqtt.username,
        password=mqtt.password,
        tls=mqtt.tls,
    )


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s (%(name)s) %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        stream=sys.stdout,
        force=True,
    )
    # aiomqtt/paho are chatty at debug; they only matter when we say so.
    logging.getLogger("aiomqtt").setLevel(max(logging.INFO, logging.getLogger().level))


def summary(options: Options, broker: MqttSettings) -> str:
    """The start-up block: version, DTUs, policy, broker (never its password)."""
    lines = [f"Hoymiles DTU Bridge {__version__}"]
    lines += [f"  DTU {dtu.name or '-'} at {dtu.host}:{dtu.port}" for dtu in options.dtus]
    floor = (
        f"{options.min_poll_interval} s (set by you)"
        if options.min_poll_interval is not None
        else "35 s, 120 s on DTU firmware V01.01.00+"
    )
    lines.append(
        f"  policy: poll every {options.poll_interval} s, at least {floor}; "
        f"cloud-upload pauses {'on' if options.cloud_pause else 'off'}; "
        f"release socket when polling every {options.release_socket_after} s or more; "
        f"performance mode {'on' if options.performance_mode else 'off'}; "
        f"night: {options.night_policy}"
    )
    user = f"{broker.username}@" if broker.username else ""
    lines.append(
        f"  MQTT: {user}{broker.host}:{broker.port}{' (TLS)' if broker.tls else ''}, "
        f"topics under '{options.base_topic}/', discovery "
        f"{'under ' + repr(options.discovery_prefix) if options.discovery else 'off'}"
    )
    return "\n".join(lines)


async def run_bridge(options: Options, broker: MqttSettings) -> None:
    bridge = Bridge(options, broker)
    try:
        await bridge.run()
    finally:
        await bridge.stop()


def run(args: argparse.Namespace) -> int:
    try:
        options = load_options(args.config)
    except OptionsError as err:
        for problem in err.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_OPTIONS
    configure_logging(options.log_level)
    broker = mqtt_settings(options)
    _LOGGER.info("%s", summary(options, broker))
    try:
        asyncio.run(run_bridge(options, broker))
    except KeyboardInterrupt:
        return 0
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the bridge (DTUs to MQTT)",
        description="Keep every configured DTU's session and publish it to MQTT.",
    )
    parser.add_argument("--config", required=True, help="options file (YAML or JSON)")
    parser.set_defaults(func=run)
