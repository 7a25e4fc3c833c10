"""Running the bridge and the web server together, until SIGTERM.

Used by ``hoymiles-bridge run`` in both modes:

* add-on (``--addon``): the web server listens on the ingress port for the
  Supervisor's ingress proxy only, and the broker comes from the options'
  ``mqtt.host`` or else from the Supervisor's MQTT service;
* standalone (``--config``): the web server listens where ``web`` says.

The web server starts first, so ``/health`` answers while the bridge waits
for the Supervisor's broker. SIGTERM (``docker stop``, s6) or SIGINT stop
everything cleanly: the bridge says goodbye on MQTT, the server closes, and
:func:`run_service` returns 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Final

from hoymiles_bridge.addon.options import Options
from hoymiles_bridge.addon.supervisor import SupervisorClient, SupervisorError
from hoymiles_bridge.errors import HoymilesError, InvalidArgumentError
from hoymiles_bridge.mqtt.bridge import Bridge
from hoymiles_bridge.mqtt.link import MqttSettings
from hoymiles_bridge.web.hub import WebHub
from hoymiles_bridge.web.server import WebServer, normalize_address

_LOGGER = logging.getLogger("hoymiles_bridge")

#: The Supervisor, the only peer of the ingress port (addon.md 4.1).
SUPERVISOR_INGRESS_PEER: Final = "172.30.32.2"
INGRESS_HOST: Final = "0.0.0.0"  # noqa: S104 - the ingress port must face the hassio network
INGRESS_PORT: Final = 8099
#: How long a clean stop waits for the bridge's MQTT goodbye.
_STOP_TIMEOUT: Final = 10.0

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1

BrokerSource = Callable[[], Coroutine[Any, Any, MqttSettings]]


@dataclass(frozen=True)
class WebConfig:
    """Where the web server listens and whom it serves."""

    host: str
    port: int
    allowed_peers: frozenset[str] | None = None
    credentials: tuple[str, str] | None = None

    def describe(self) -> str:
        who = (
            "any peer"
            if self.allowed_peers is None
            else "ingress from " + ", ".join(sorted(self.allowed_peers))
        )
        auth = ", basic auth" if self.credentials is not None else ""
        return f"web: http://{self.host}:{self.port}/ ({who}{auth})"


def addon_web_config(environ: Mapping[str, str] | None = None) -> WebConfig:
    """The ingress listener; ``HOYMILES_BRIDGE_INGRESS_PEER``/``_PORT`` override (harness)."""
    env = os.environ if environ is None else environ
    peers_text = env.get("HOYMILES_BRIDGE_INGRESS_PEER", "").strip() or SUPERVISOR_INGRESS_PEER
    try:
        peers = frozenset(normalize_address(p) for p in peers_text.split(",") if p.strip())
    except ValueError:
        raise InvalidArgumentError(
            f"HOYMILES_BRIDGE_INGRESS_PEER={peers_text!r} is not a list of IP addresses"
        ) from None
    port_text = env.get("HOYMILES_BRIDGE_INGRESS_PORT", "").strip()
    try:
        port = int(port_text) if port_text else INGRESS_PORT
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise InvalidArgumentError(f"HOYMILES_BRIDGE_INGRESS_PORT={port_text!r} is not a port")
    return WebConfig(INGRESS_HOST, port, allowed_peers=peers)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def standalone_web_config(options: Options) -> WebConfig:
    """``options.web``; basic auth when it listens beyond loopback and has credentials."""
    web = options.web
    credentials = None
    if not _is_loopback(web.host):
        if web.username and web.password:
            credentials = (web.username, web.password)
        else:
            _LOGGER.warning(
                "The web server listens on %s without web.username/web.password: "
                "anyone who can reach it sees the bridge's state",
                web.host,
            )
    return WebConfig(web.host, web.port, allowed_peers=None, credentials=credentials)


def addon_broker(options: Options) -> BrokerSource:
    """The add-on's broker: ``mqtt.host`` when set (external), else the Supervisor's service."""

    async def resolve() -> MqttSettings:
        mqtt = options.mqtt
        if mqtt.host:
            _LOGGER.debug("Using the broker from the options (mqtt.host)")
            return MqttSettings(
                host=mqtt.host,
                port=mqtt.port,
                username=mqtt.username,
                password=mqtt.password,
                tls=mqtt.tls,
            )
        async with SupervisorClient() as supervisor:
            return await supervisor.mqtt_service()

    return resolve


def fixed_broker(settings: MqttSettings) -> BrokerSource:
    async def resolve() -> MqttSettings:
        return settings

    return resolve


def bridge_status(options: Options, bridge: Bridge | None) -> dict[str, Any]:
    """What ``/health`` shows: the MQTT link and each DTU's session."""
    if bridge is None:
        return {
            "mqtt": False,
            "dtus": [{"host": d.host, "serial": None, "state": "starting"} for d in options.dtus],
        }
    return {
        "mqtt": bridge.link.connected,
        "dtus": [
            {
                "host": view.session.target.host,
                "serial": view.serial,
                "state": view.session.state.value,
            }
            for view in bridge.views
        ],
    }


class Service:
    """The bridge plus the web server, run by :meth:`run` until :meth:`request_stop`."""

    def __init__(
        self,
        options: Options,
        broker: BrokerSource,
        web: WebConfig,
        *,
        describe: Callable[[MqttSettings], str],
        bridge_factory: Callable[[Options, MqttSettings], Bridge] = Bridge,
    ) -> None:
        self.options = options
        self.web_config = web
        self.bridge: Bridge | None = None
        self._broker = broker
        self._describe = describe
        self._bridge_factory = bridge_factory
        self._stop = asyncio.Event()
        #: Frames, events and power history for the web UI, fed by the bridge.
        self.hub = WebHub()
        self.hub.history_limit(options.poll_interval)
        self.web = WebServer(
            web.host,
            web.port,
            status=self.status,
            allowed_peers=web.allowed_peers,
            credentials=web.credentials,
            access_log=options.log_level == "debug",
            hub=self.hub,
            bridge=lambda: self.bridge,
        )

    def status(self) -> dict[str, Any]:
        return bridge_status(self.options, self.bridge)

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> int:
        """Run until stopped (returns 0) or until something fatal happens (returns 1)."""
        loop = asyncio.get_running_loop()
        handled: list[signal.Signals] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self._on_signal, sig)
                handled.append(sig)
        stop_task = asyncio.create_task(self._stop.wait(), name="service-stop-signal")
        try:
            try:
                await self.web.start()
            except OSError as err:
                _LOGGER.error(  # noqa: TRY400 - the reason is the message, not a traceback
                    "Cannot listen on %s:%d: %s",
                    self.web_config.host,
                    self.web_config.port,
                    err.strerror or err,
                )
                return EXIT_FAILED
            return await self._serve(stop_task)
        finally:
            stop_task.cancel()
            await asyncio.wait({stop_task})
            await self.web.stop()
            for sig in handled:
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        _LOGGER.info("Received %s, stopping", sig.name)
        self._stop.set()

    async def _serve(self, stop_task: asyncio.Task[bool]) -> int:
        broker_task = asyncio.create_task(self._broker(), name="service-resolve-broker")
        await asyncio.wait({broker_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        if not broker_task.done():
            broker_task.cancel()
            await asyncio.wait({broker_task})
            _LOGGER.info("Stopped before the broker was known")
            return EXIT_OK
        try:
            broker = broker_task.result()
        except SupervisorError as err:
            _LOGGER.error("%s", err)  # noqa: TRY400 - a sentence for the user, no traceback
            return EXIT_FAILED
        except HoymilesError as err:
            _LOGGER.error("Cannot reach the MQTT broker settings: %s", err)  # noqa: TRY400
            return EXIT_FAILED
        _LOGGER.info("%s\n  %s", self._describe(broker), self.web_config.describe())
        bridge = self._bridge_factory(self.options, broker)
        self.hub.attach(bridge)
        self.bridge = bridge
        bridge_task = asyncio.create_task(bridge.run(), name="service-bridge")
        await asyncio.wait({bridge_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        code = EXIT_OK
        if bridge_task.done():
            code = EXIT_FAILED
            error = None if bridge_task.cancelled() else bridge_task.exception()
            _LOGGER.error("The bridge stopped unexpectedly: %s", error or "cancelled")
        try:
            async with asyncio.timeout(_STOP_TIMEOUT):
                await bridge.stop()
        except TimeoutError:
            _LOGGER.warning("The MQTT goodbye took longer than %g s", _STOP_TIMEOUT)
        if not bridge_task.done():
            bridge_task.cancel()
            await asyncio.wait({bridge_task})
        if code == EXIT_OK:
            _LOGGER.info("Hoymiles DTU Bridge stopped")
        return code


async def run_service(
    options: Options,
    broker: BrokerSource,
    web: WebConfig,
    *,
    describe: Callable[[MqttSettings], str],
) -> int:
    """Run a :class:`Service` until SIGTERM/SIGINT; returns the process exit code."""
    return await Service(options, broker, web, describe=describe).run()


__all__ = [
    "INGRESS_PORT",
    "SUPERVISOR_INGRESS_PEER",
    "BrokerSource",
    "Service",
    "WebConfig",
    "addon_broker",
    "addon_web_config",
    "bridge_status",
    "fixed_broker",
    "run_service",
    "standalone_web_config",
]
