"""A controller mode switched at run time survives a restart of the service.

Standalone (an options file, its state folder), against a real Mosquitto and a
simulated DTU: the mode is switched through the web API, the whole service
stops and starts again on the same files, and the controller carries on in
the switched mode. A changed ``controller.mode`` option then wins.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from hoymiles_bridge.simulator import DtuSimulator

from .conftest_mqtt import mosquitto_fixture  # noqa: F401
from .mosquitto import Mosquitto
from .service_env import running_service
from .waiting import until
from .web_client import WebClient


@contextlib.asynccontextmanager
async def _service(path: Path) -> AsyncIterator[WebClient]:
    """The service of ``path``, running, and a client of its web API; stopped on exit."""
    async with running_service(path) as service, aiohttp.ClientSession() as session:
        client = WebClient(session, f"http://127.0.0.1:{service.web.port}/")

        async def controller_up() -> bool:
            _, body = await client.get("api/controller")
            return bool(body.get("running"))

        await until(controller_up, "the controller")
        yield client


async def _mode(client: WebClient) -> Any:
    _, body = await client.get("api/controller")
    return body["mode"]


async def test_a_switched_mode_is_kept_across_a_restart_until_the_option_changes(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    path = tmp_path / "bridge.yaml"
    async with DtuSimulator(port=0) as sim:
        options: dict[str, Any] = {
            "dtus": [{"host": sim.host, "port": sim.port}],
            "mqtt": {"host": "127.0.0.1", "port": mosquitto.port},
            "controller": {"mode": "monitor"},
        }
        path.write_text(yaml.safe_dump(options))
        async with _service(path) as client:
            assert await _mode(client) == "monitor"
            code, body = await client.post("api/controller/mode", {"mode": "zero_export"})
            assert code == 200, body
            assert await _mode(client) == "zero_export"

        async with _service(path) as client:
            assert await _mode(client) == "zero_export"

        options["controller"]["mode"] = "off"
        path.write_text(yaml.safe_dump(options))
        async with _service(path) as client:
            assert await _mode(client) == "off"
