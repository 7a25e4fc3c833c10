"""Running the real bridge against simulators and a real Mosquitto, for tests."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from hoymiles_bridge.addon.bridge import Bridge
from hoymiles_bridge.cli.run import mqtt_settings
from hoymiles_bridge.config.options import validate
from hoymiles_bridge.core.fleet import build_client_factory
from hoymiles_bridge.dtu.policy import PollPolicy
from hoymiles_bridge.simulator import DtuSimulator, SimClock

from .mosquitto import Mosquitto

#: Fast retries so fault tests finish in seconds.
TEST_POLICY = PollPolicy(
    interval=1,
    min_interval=1,
    release_socket_after=0,
    retry_initial=0.2,
    retry_max=1.0,
    displaced_initial=0.5,
    displaced_max=2.0,
    info_interval=600,
    frozen_after=50,
)


@dataclass
class Env:
    bridge: Bridge
    sims: list[DtuSimulator]
    task: asyncio.Task[None]

    @property
    def base(self) -> str:
        return self.bridge.layout.base

    def topic(self, *parts: str) -> str:
        return "/".join((self.base, *parts))


@contextlib.asynccontextmanager
async def running_bridge(
    broker: Mosquitto,
    sims: list[DtuSimulator],
    *,
    clock: SimClock | None = None,
    policy: PollPolicy = TEST_POLICY,
    **options: Any,
) -> AsyncIterator[Env]:
    doc: dict[str, Any] = {
        "dtus": [{"host": s.host, "port": s.port} for s in sims],
        "poll_interval": 1,
        "min_poll_interval": 1,
        "limit_interval": 0,
        "mqtt": {"host": "127.0.0.1", "port": broker.port},
    }
    doc.update(options)
    bridge = Bridge(
        validate(doc),
        mqtt_settings(validate(doc)),
        client_factory=build_client_factory(min_spacing=0.0, request_timeout=1.0),
        clock=clock.now if clock is not None else time.time,
        announce_delay=0.0,
        policy=policy,
        mqtt_backoff=0.1,  # reconnect fast after a broker restart
    )
    task = asyncio.create_task(bridge.run(), name="bridge-under-test")
    try:
        yield Env(bridge, sims, task)
    finally:
        await asyncio.wait_for(bridge.stop(), 15)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
