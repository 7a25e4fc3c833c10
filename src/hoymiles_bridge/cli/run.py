"""``hoymiles-bridge run``: the bridge and its web server, until SIGTERM.

* ``run --config FILE``: standalone. Options come from a YAML or JSON file
  with the same keys as the add-on's options; the broker is ``mqtt.host``
  (default 127.0.0.1) and the web server listens where ``web`` says.
* ``run --addon``: inside the Home Assistant add-on (started by the s6
  service ``hoymiles-bridge``). Options come from ``/data/options.json``
  (``HOYMILES_BRIDGE_OPTIONS`` overrides), the broker from ``mqtt.host`` or
  else the Supervisor's MQTT service, logs go to stdout in the add-on log
  format, and the web server serves ingress on port 8099.

Bad options print one line per problem and exit 2, without a traceback. No
DTU at all is not bad: the service starts in setup mode (the web UI only,
"Add your first DTU"), and saving the first DTU there starts polling at once.

The web UI's configuration page saves to the ``--config`` file (and restarts
the bridge in-process) or, in the add-on, through the Supervisor (which
restarts the add-on).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from hoymiles_bridge import __version__
from hoymiles_bridge.addon.bridge import Bridge
from hoymiles_bridge.addon.config_store import SupervisorConfigStore
from hoymiles_bridge.addon.runner import (
    BrokerSource,
    WebConfig,
    addon_broker,
    addon_web_config,
    fixed_broker,
    run_service,
    standalone_web_config,
)
from hoymiles_bridge.addon.supervisor import SupervisorClient, SupervisorError
from hoymiles_bridge.config.options import Options, OptionsError, load_options
from hoymiles_bridge.config.store import ConfigStore
from hoymiles_bridge.errors import InvalidArgumentError
from hoymiles_bridge.mqtt.link import MqttSettings

_LOGGER = logging.getLogger("hoymiles_bridge")

EXIT_OPTIONS = 2
#: Where the Supervisor writes the validated add-on options before each start.
ADDON_OPTIONS = "/data/options.json"


def mqtt_settings(options: Options, default_host: str = "127.0.0.1") -> MqttSettings:
    mqtt = options.mqtt
    return MqttSettings(
        host=mqtt.host or default_host,
        port=mqtt.port,
        username=mqtt.username,
        password=mqtt.password,
        tls=mqtt.tls,
    )


def configure_logging(level: str, *, addon: bool = False) -> None:
    """Log to stdout; ``addon`` uses the add-on log's format, as bashio writes it."""
    numeric = getattr(logging, level.upper(), logging.INFO)
    if addon:
        # "[12:34:56] INFO: message", like bashio::log and the s6 finish script;
        # the Supervisor's log view adds nothing, so the time is ours to give.
        detail = " (%(name)s)" if numeric <= logging.DEBUG else ""
        fmt, datefmt = f"[%(asctime)s] %(levelname)s:{detail} %(message)s", "%H:%M:%S"
    else:
        fmt, datefmt = "%(asctime)s %(levelname)s (%(name)s) %(message)s", "%Y-%m-%d %H:%M:%S"
    logging.basicConfig(level=numeric, format=fmt, datefmt=datefmt, stream=sys.stdout, force=True)
    # gmqtt logs every packet at debug; it only matters when we say so.
    logging.getLogger("gmqtt").setLevel(max(logging.INFO, logging.getLogger().level))


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


def standalone_broker(options: Options) -> BrokerSource:
    """The standalone broker: ``mqtt.*``, localhost when ``mqtt.host`` is empty."""
    return fixed_broker(mqtt_settings(options))


def addon_config_store() -> ConfigStore | None:
    """The Supervisor keeps the add-on's options; ``None`` without its token (read-only)."""
    try:
        return SupervisorConfigStore(SupervisorClient())
    except SupervisorError:
        _LOGGER.info("No Supervisor token: the web UI shows the options read-only")
        return None


def _serve(
    options: Options,
    broker: BrokerSource,
    web: WebConfig,
    *,
    addon: bool = False,
    config_file: str | None = None,
) -> int:
    async def main() -> int:
        # The Supervisor's client lives in the running loop: build it here.
        store = addon_config_store() if addon else None
        broker_for = standalone_broker if config_file is not None else None
        if addon:
            broker_for = addon_broker
        return await run_service(
            options,
            broker,
            web,
            summary=summary,
            config_store=store,
            config_file=config_file,
            # A save that adds the first DTU restarts the bridge in-process,
            # with the broker its options name (setup mode, see runner.py).
            broker_for=broker_for,
        )

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        return 0


def run_addon() -> int:
    """``run --addon``: everything comes from the container (options file, env, Supervisor)."""
    path = os.environ.get("HOYMILES_BRIDGE_OPTIONS", ADDON_OPTIONS)
    try:
        options = load_options(path)
    except OptionsError as err:
        problems = err.problems
    else:
        problems = []
    if problems:
        configure_logging("info", addon=True)
        for problem in problems:
            _LOGGER.error("Invalid option %s", problem)
        _LOGGER.error("Fix the options in the add-on's Configuration tab, then start it again")
        return EXIT_OPTIONS
    configure_logging(options.log_level, addon=True)
    try:
        web = addon_web_config()
    except InvalidArgumentError as err:
        _LOGGER.error("%s", err)  # noqa: TRY400 - a sentence for the user, no traceback
        return EXIT_OPTIONS
    return _serve(options, addon_broker(options), web, addon=True)


def run(args: argparse.Namespace) -> int:
    if args.addon:
        return run_addon()
    try:
        options = load_options(args.config)
    except OptionsError as err:
        for problem in err.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_OPTIONS
    configure_logging(options.log_level)
    return _serve(
        options,
        standalone_broker(options),
        standalone_web_config(options),
        config_file=args.config,
    )


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run the bridge (DTUs to MQTT)",
        description="Keep every configured DTU's session and publish it to MQTT.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", help="options file (YAML or JSON): run standalone")
    source.add_argument(
        "--addon",
        action="store_true",
        help="run inside the Home Assistant add-on (options from /data/options.json)",
    )
    parser.set_defaults(func=run)
