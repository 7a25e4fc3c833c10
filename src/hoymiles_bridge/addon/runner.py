"""Running the bridge and the web server together, until SIGTERM.

Used by ``hoymiles-bridge run`` in both modes:

* add-on (``--addon``): the web server listens on the ingress port for the
  Supervisor's ingress proxy only, and the broker comes from the options'
  ``mqtt.host`` or else from the Supervisor's MQTT service;
* standalone (``--config``): the web server listens where ``web`` says, and
  answers to the extra host names in ``HOYMILES_BRIDGE_WEB_HOSTS`` too.

The web server starts first, so ``/health`` answers while the bridge waits
for the Supervisor's broker. SIGTERM (``docker stop``, s6) or SIGINT stop
everything cleanly: the bridge says goodbye on MQTT, the server closes, and
:func:`run_service` returns 0.

The web UI's configuration page saves the options through a
:class:`~hoymiles_bridge.config.store.ConfigStore`. In the add-on the
Supervisor restarts the container to apply them. Standalone (``config_file``)
the service restarts the bridge in-process (:meth:`Service.restart_bridge`):
it reloads and validates the file first, stops the bridge cleanly and starts a
new one on the same hub and web server, so the frames and events survive. The
web server keeps its address: ``web.*`` changes need a restart of the process.

Setup mode: with no DTU configured the service runs all the same. The web UI
is served, the bridge publishes its MQTT availability (the fleet has no
sessions), and the overview asks for a first DTU. Saving options that add the
first DTU applies them at once, in both modes (:class:`SetupApplyingStore`):
the bridge restarts in-process with the saved options, so polling starts
without a restart of the process or of the add-on. In the add-on the
Supervisor keeps the saved options, so the next start reads them too.
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
from pathlib import Path
from typing import Any, Final

from hoymiles_bridge.addon.bridge import Bridge, tune_garbage_collector
from hoymiles_bridge.addon.supervisor import SupervisorClient, SupervisorError
from hoymiles_bridge.config.options import Options, WebOptions, load_options
from hoymiles_bridge.config.store import ConfigStore, ConfigStoreError, FileConfigStore, Mode
from hoymiles_bridge.errors import HoymilesError, InvalidArgumentError
from hoymiles_bridge.mqtt.link import MqttSettings
from hoymiles_bridge.web.hub import WebHub
from hoymiles_bridge.web.server import WebServer, normalize_address
from hoymiles_bridge.web.setup_api import NetworkHints
from hoymiles_bridge.web.store import state_dir_for

_LOGGER = logging.getLogger("hoymiles_bridge")

#: The Supervisor, the only peer of the ingress port (addon.md 4.1).
SUPERVISOR_INGRESS_PEER: Final = "172.30.32.2"
INGRESS_HOST: Final = "0.0.0.0"  # noqa: S104 - the ingress port must face the hassio network
INGRESS_PORT: Final = 8099
#: How long a clean stop waits for the bridge's MQTT goodbye.
_STOP_TIMEOUT: Final = 10.0
#: How long saving the first DTU waits for the new bridge before it answers.
SETUP_APPLY_WAIT: Final = 10.0

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
    #: Host names the server answers to besides its defaults (standalone only).
    hosts: tuple[str, ...] = ()
    #: Serves the add-on's ingress panel (the devices link to it, see configuration_url).
    ingress: bool = False

    async def configuration_url(self) -> str | None:
        """Where Home Assistant's devices link to: the ingress panel, else this server."""
        if self.ingress:
            try:
                async with SupervisorClient(request_timeout=5.0) as supervisor:
                    return await supervisor.ingress_panel_url()
            except SupervisorError:
                return None  # no token: outside the add-on
        host = self.hosts[0] if self.hosts else self.host
        if host in ("", "0.0.0.0", "::") or _is_loopback(host):  # noqa: S104
            return None  # no address another machine could open
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"

    def describe(self) -> str:
        who = (
            "any peer"
            if self.allowed_peers is None
            else "ingress from " + ", ".join(sorted(self.allowed_peers))
        )
        if self.hosts:
            who += ", also as " + ", ".join(self.hosts)
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
    return WebConfig(INGRESS_HOST, port, allowed_peers=peers, ingress=True)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def standalone_web_config(options: Options, environ: Mapping[str, str] | None = None) -> WebConfig:
    """``options.web``; basic auth whenever ``web.username`` or ``web.password`` is set.

    Loopback is no exception: other users and programs of the machine reach
    127.0.0.1 too, and whoever configured credentials expects them asked for.
    With only one of the two set, the other is asked for empty (and a warning
    says so).

    ``HOYMILES_BRIDGE_WEB_HOSTS`` (comma-separated) names the extra host names
    the web UI is opened as, for example a DNS name of the machine.
    """
    env = os.environ if environ is None else environ
    hosts = tuple(
        h.strip() for h in env.get("HOYMILES_BRIDGE_WEB_HOSTS", "").split(",") if h.strip()
    )
    web = options.web
    credentials = None
    if web.username or web.password:
        credentials = (web.username or "", web.password or "")
        if not web.password:
            _LOGGER.warning(
                "web.username is set without web.password: the web UI asks for an empty password"
            )
        elif not web.username:
            _LOGGER.warning(
                "web.password is set without web.username: the web UI asks for an empty user name"
            )
    elif not _is_loopback(web.host):
        _LOGGER.warning(
            "The web server listens on %s without web.username/web.password: "
            "anyone who can reach it sees the bridge's state",
            web.host,
        )
    return WebConfig(web.host, web.port, allowed_peers=None, credentials=credentials, hosts=hosts)


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
                "host": dtu.session.target.host,
                "serial": dtu.serial,
                "state": dtu.session.state.value,
            }
            for dtu in bridge.fleet.dtus
        ],
    }


class SetupApplyingStore:
    """A config store that applies the first DTU at once (see the module docs).

    Everything is the wrapped store's, except that a save which gives a
    bridge without DTUs its first one hands the saved options to
    :meth:`Service.apply_options` before it answers.
    """

    def __init__(self, inner: ConfigStore, service: Service) -> None:
        self.inner = inner
        self._service = service

    def __repr__(self) -> str:
        return f"SetupApplyingStore({self.inner!r})"

    @property
    def mode(self) -> Mode:
        return self.inner.mode

    @property
    def source(self) -> str:
        return self.inner.source

    @property
    def can_save(self) -> bool:
        return self.inner.can_save

    @property
    def can_restart(self) -> bool:
        return self.inner.can_restart

    @property
    def process_web(self) -> WebOptions | None:
        return self.inner.process_web

    async def load(self) -> dict[str, Any]:
        return await self.inner.load()

    async def save(self, submitted: dict[str, Any]) -> Options:
        options = await self.inner.save(submitted)
        if not self._service.options.dtus and options.dtus:
            await self._service.apply_options(options)
        return options

    async def restart(self) -> None:
        await self.inner.restart()

    async def close(self) -> None:
        await self.inner.close()

    async def local_networks(self) -> list[str]:
        """The host's networks, from the wrapped store when it knows them (the add-on's)."""
        if isinstance(self.inner, NetworkHints):
            return await self.inner.local_networks()
        return []


class Service:
    """The bridge plus the web server, run by :meth:`run` until :meth:`request_stop`.

    ``summary(options, broker)`` is the start-up block logged once the broker
    is known (with the options of each start, so it also fits a restart).
    ``config_store`` is where the web UI saves the options; with
    ``config_file`` instead the service saves to that file and restarts the
    bridge in-process, getting the new broker from ``broker_for(options)``
    (default: the same broker).
    """

    def __init__(
        self,
        options: Options,
        broker: BrokerSource,
        web: WebConfig,
        *,
        summary: Callable[[Options, MqttSettings], str] | None = None,
        bridge_factory: Callable[[Options, MqttSettings], Bridge] = Bridge,
        config_store: ConfigStore | None = None,
        config_file: str | Path | None = None,
        broker_for: Callable[[Options], BrokerSource] | None = None,
        state_dir: str | Path | None = None,
    ) -> None:
        if config_store is not None and config_file is not None:
            raise ValueError("give either config_store or config_file")
        self.options = options
        self.web_config = web
        self.bridge: Bridge | None = None
        self.config_file = None if config_file is None else Path(config_file)
        self._broker = broker
        self._broker_for = broker_for
        self._summary = summary
        self._bridge_factory = bridge_factory
        self._stop = asyncio.Event()
        self._restart = asyncio.Event()
        #: Set while a bridge runs (cleared by a restart until the next one runs).
        self._bridge_up = asyncio.Event()
        self._next_options: Options | None = None
        #: How many times the bridge was restarted in-process.
        self.restarts = 0
        #: Frames, events and power history for the web UI, fed by the bridge.
        self.hub = WebHub()
        self.hub.history_limit(options.poll_interval)
        #: Where the hub keeps its history across restarts (None: memory only).
        self.state_dir = state_dir
        if self.config_file is not None:
            config_store = FileConfigStore(
                self.config_file, restart=self.restart_bridge, web=options.web
            )
        if config_store is not None:
            config_store = SetupApplyingStore(config_store, self)
        self.config_store = config_store
        self.web = WebServer(
            web.host,
            web.port,
            status=self.status,
            allowed_peers=web.allowed_peers,
            credentials=web.credentials,
            access_log=options.log_level == "debug",
            hub=self.hub,
            fleet=lambda: self.bridge.fleet if self.bridge is not None else None,
            config_store=config_store,
            cloud=lambda: self.bridge.cloud if self.bridge is not None else None,
            controller=lambda: self.bridge.controller if self.bridge is not None else None,
            allowed_hosts=web.hosts,
        )

    def status(self) -> dict[str, Any]:
        return bridge_status(self.options, self.bridge)

    def request_stop(self) -> None:
        self._stop.set()

    async def restart_bridge(self) -> None:
        """Restart the bridge with the options file's current content (in-process).

        The file is read and validated first: invalid options raise
        :class:`~hoymiles_bridge.config.options.OptionsError` and the running
        bridge carries on. The restart itself happens in :meth:`run`.
        """
        if self.config_file is None:
            raise ConfigStoreError("This bridge has no options file to restart from.", status=409)
        self._next_options = await asyncio.to_thread(load_options, self.config_file)
        self._restart.set()

    @property
    def setup_mode(self) -> bool:
        """No DTU is configured: the service waits for the first one."""
        return not self.options.dtus

    async def apply_options(self, options: Options, *, wait: float = SETUP_APPLY_WAIT) -> None:
        """Restart the bridge in-process with ``options`` (already validated and saved).

        Waits up to ``wait`` seconds for the new bridge, so that an answer to
        the web UI sees it running.
        """
        self._next_options = options
        self._bridge_up.clear()
        self._restart.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._bridge_up.wait()

    async def run(self) -> int:
        """Run until stopped (returns 0) or until something fatal happens (returns 1)."""
        loop = asyncio.get_running_loop()
        handled: list[signal.Signals] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self._on_signal, sig)
                handled.append(sig)
        stop_task = asyncio.create_task(self._stop.wait(), name="service-stop-signal")
        tune_garbage_collector()
        try:
            await self.hub.open_store(self.state_dir)
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
            await self.hub.close_store()
            if self.config_store is not None:
                await self.config_store.close()
            for sig in handled:
                loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        _LOGGER.info("Received %s, stopping", sig.name)
        self._stop.set()

    async def _serve(self, stop_task: asyncio.Task[bool]) -> int:
        while True:
            code = await self._serve_once(stop_task)
            if code is not None:
                return code
            self._apply_restart()

    def _apply_restart(self) -> None:
        """Take the reloaded options for the next bridge."""
        self._restart.clear()
        options, self._next_options = self._next_options, None
        if options is None:  # pragma: no cover - restart_bridge always sets them
            return
        old, self.options = self.options, options
        self.restarts += 1
        if self._broker_for is not None:
            self._broker = self._broker_for(options)
        self.hub.history_limit(options.poll_interval)
        if options.log_level != old.log_level:
            logging.getLogger().setLevel(getattr(logging, options.log_level.upper()))
        text = "bridge restarted with the saved options"
        if not old.dtus and options.dtus:
            text = "first DTU saved: the bridge starts polling"
            _LOGGER.info("First DTU saved: restarting the bridge to poll it")
        else:
            _LOGGER.info(
                "Restarting the bridge with the options from %s",
                self.config_file or "the Supervisor",
            )
        process_web = None if self.config_store is None else self.config_store.process_web
        if process_web is not None and options.web != process_web:
            text += "; the web.* options apply only when the process restarts"
            _LOGGER.warning("The web.* options apply only when the process restarts")
        self.hub.log("config", text)

    async def _serve_once(self, stop_task: asyncio.Task[bool]) -> int | None:
        """One bridge's life: the exit code, or ``None`` to restart with new options."""
        restart_task = asyncio.create_task(self._restart.wait(), name="service-restart-signal")
        try:
            return await self._run_bridge(stop_task, restart_task)
        finally:
            restart_task.cancel()
            await asyncio.wait({restart_task})

    async def _run_bridge(
        self, stop_task: asyncio.Task[bool], restart_task: asyncio.Task[bool]
    ) -> int | None:
        broker_task = asyncio.create_task(self._broker(), name="service-resolve-broker")
        await asyncio.wait(
            {broker_task, stop_task, restart_task}, return_when=asyncio.FIRST_COMPLETED
        )
        if not broker_task.done():
            broker_task.cancel()
            await asyncio.wait({broker_task})
            if not stop_task.done():
                return None  # a restart before the broker was known
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
        _LOGGER.info("%s\n  %s", self._start_block(broker), self.web_config.describe())
        if self.setup_mode:
            _LOGGER.warning(
                "No DTU configured: setup mode (batteries on the broker and the cloud "
                "are served meanwhile). Open the web UI, add a DTU "
                "(Configuration: Find DTUs, Test connection) and save"
            )
        bridge = self._bridge_factory(self.options, broker)
        bridge.mqtt.configuration_url = await self.web_config.configuration_url()
        bridge.batteries.configuration_url = bridge.mqtt.configuration_url
        self.hub.attach(bridge.fleet)
        if bridge.cloud is not None:
            bridge.cloud.watch(self.hub.state_changed)  # the overview's cloud card
            if self.state_dir is not None:
                bridge.cloud.keep_token_in(Path(self.state_dir))
        if self.state_dir is not None:
            bridge.controller.keep_mode_in(Path(self.state_dir))
        self.bridge = bridge
        self._bridge_up.set()
        bridge_task = asyncio.create_task(bridge.run(), name="service-bridge")
        await asyncio.wait(
            {bridge_task, stop_task, restart_task}, return_when=asyncio.FIRST_COMPLETED
        )
        restart = restart_task.done() and not stop_task.done() and not bridge_task.done()
        code: int | None = None if restart else EXIT_OK
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
        if restart:
            self.bridge = None  # the API says "starting" until the new bridge is there
            self._bridge_up.clear()
        elif code == EXIT_OK:
            _LOGGER.info("Hoymiles DTU Bridge stopped")
        return code

    def _start_block(self, broker: MqttSettings) -> str:
        if self._summary is not None:
            return self._summary(self.options, broker)
        return f"Hoymiles DTU Bridge: broker {broker.host}:{broker.port}"


async def run_service(
    options: Options,
    broker: BrokerSource,
    web: WebConfig,
    *,
    summary: Callable[[Options, MqttSettings], str] | None = None,
    config_store: ConfigStore | None = None,
    config_file: str | Path | None = None,
    broker_for: Callable[[Options], BrokerSource] | None = None,
) -> int:
    """Run a :class:`Service` until SIGTERM/SIGINT; returns the process exit code.

    The history is kept next to ``config_file`` (standalone) or else in the
    add-on's data directory, the one holding its options file (``/data``).
    """
    options_file = os.environ.get("HOYMILES_BRIDGE_OPTIONS") or "/data/options.json"
    state = state_dir_for(config_file) if config_file is not None else Path(options_file).parent
    service = Service(
        options,
        broker,
        web,
        summary=summary,
        config_store=config_store,
        config_file=config_file,
        broker_for=broker_for,
        state_dir=state,
    )
    return await service.run()


__all__ = [
    "INGRESS_PORT",
    "SETUP_APPLY_WAIT",
    "SUPERVISOR_INGRESS_PEER",
    "BrokerSource",
    "Service",
    "SetupApplyingStore",
    "WebConfig",
    "addon_broker",
    "addon_web_config",
    "bridge_status",
    "fixed_broker",
    "run_service",
    "standalone_web_config",
]
