"""A standalone service (``hoymiles-bridge run --config FILE`` in-process) for tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from hoymiles_bridge.addon.runner import Service, WebConfig
from hoymiles_bridge.cli.run import standalone_broker, summary
from hoymiles_bridge.config.options import load_options
from hoymiles_bridge.web.store import state_dir_for

from .waiting import until


def standalone_service(path: Path, *, keep_state: bool = True) -> Service:
    """The service of the options file ``path``, web UI on a free loopback port.

    With ``keep_state`` its history and other state live in the state folder
    next to ``path``, as with ``run --config``; else in memory only.
    """
    options = load_options(path)
    return Service(
        options,
        standalone_broker(options),
        WebConfig("127.0.0.1", 0),
        summary=summary,
        config_file=path,
        broker_for=standalone_broker,
        state_dir=state_dir_for(path) if keep_state else None,
    )


@contextlib.asynccontextmanager
async def running_service(path: Path) -> AsyncIterator[Service]:
    """:func:`standalone_service` (state kept), its web server up; stopped on exit."""
    service = standalone_service(path)
    task = asyncio.create_task(service.run(), name="test-standalone-service")
    try:

        async def web_up() -> bool:
            return service.web.running

        await until(web_up, "the web server")
        yield service
    finally:
        service.request_stop()
        assert await asyncio.wait_for(task, 20) == 0
