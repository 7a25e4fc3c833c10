"""The web UI's test environment: a simulated DTU, a real bridge and Mosquitto, the web server.

A test module uses it with::

    from .conftest_mqtt import mosquitto_fixture  # noqa: F401
    from .web_env import Ui, ui_fixture  # noqa: F401
    pytest_plugins = ["tests.browser.fixtures"]

and asks for ``ui``: ``ui.proxy.url`` is the UI under a random ingress prefix,
``ui.sim`` the simulated DTU (``ui.sim.dtu`` its state), ``ui.clock`` the
simulated clock (``ui.clock.advance(s)`` moves the sun), ``ui.server`` the
web server and ``ui.bridge`` the bridge. The bridge's MQTT options carry
:data:`MQTT_PASSWORD` (the broker ignores it), so tests can check it never leaks.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest_asyncio

from hoymiles_bridge.addon.bridge import Bridge
from hoymiles_bridge.simulator import DtuSimulator, SimClock, default_fleet
from hoymiles_bridge.web.hub import WebHub
from hoymiles_bridge.web.server import WebServer
from tests.browser.helpers import IngressProxies
from tests.browser.ingress_proxy import IngressProxy

from .bridge_env import running_bridge
from .interop_helpers import noon_today
from .mosquitto import Mosquitto

#: The test bridge's MQTT password: no page, API answer or download may show it.
MQTT_PASSWORD = "ui-mqtt-secret-4711"


@dataclass
class Ui:
    proxy: IngressProxy
    sim: DtuSimulator
    clock: SimClock
    server: WebServer
    bridge: Bridge


@pytest_asyncio.fixture(name="ui")
async def ui_fixture(mosquitto: Mosquitto, ingress_proxy: IngressProxies) -> AsyncIterator[Ui]:
    clock = SimClock(start=noon_today())
    spec = default_fleet().dtus[0]
    async with (
        DtuSimulator(spec, port=0, clock=clock) as sim,  # type: ignore[arg-type]
        running_bridge(
            mosquitto,
            [sim],
            clock=clock,
            mqtt={"host": "127.0.0.1", "port": mosquitto.port, "password": MQTT_PASSWORD},
        ) as env,
    ):
        # the bridge's clock: last_poll is in simulated time
        async with serving(env.bridge, clock=clock.now) as server:
            proxy = await ingress_proxy(f"http://127.0.0.1:{server.port}")
            yield Ui(proxy, sim, clock, server, env.bridge)


@contextlib.asynccontextmanager
async def serving(bridge: Bridge, **options: Any) -> AsyncIterator[WebServer]:
    """``bridge``'s web server on a free loopback port, open to any peer, with a hub of
    its own fed by the fleet (and the cloud, when the bridge uses it, as the service
    does); ``options`` go to :class:`WebServer`. Stopped on exit."""
    hub = WebHub()
    hub.attach(bridge.fleet)
    if bridge.cloud is not None:
        bridge.cloud.watch(hub.state_changed)
    server = WebServer(
        "127.0.0.1", 0, status=dict, allowed_peers=None, hub=hub, fleet=bridge.fleet, **options
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
