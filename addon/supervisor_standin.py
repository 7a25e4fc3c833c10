"""A stand-in for the Home Assistant Supervisor API, enough for the add-on.

Serves what the bridge uses, with the documented shapes (addon.md 3.1-3.3):

* ``GET /services/mqtt`` - ``{"result": "ok", "data": {host, port, ssl,
  protocol, username, password, addon}}``; the first ``not_ready`` requests
  get HTTP 400 ``{"result": "error", "message": "Service not enabled"}``, as
  while the Mosquitto add-on has not registered yet after a reboot.
* ``GET /addons/self/info`` - the add-on's description (ingress fields...).
* ``GET /addons/self/options/config`` (the Supervisor's read endpoint) and,
  for convenience, ``GET /addons/self/options`` - the stored options.
* ``POST /addons/self/options`` with ``{"options": {...}}`` - validated with
  the bridge's own schema and stored (400 with a message when invalid, or
  ``refuse_options`` when set, as the real Supervisor refuses what its own
  schema does not take). ``saved`` lists every stored options document.
* ``GET /network/info`` - ``network_info`` when set (an add-on with
  ``hassio_api: true``), else 403 like the real Supervisor for an add-on
  without it (this add-on does not ask for it).
* ``POST /addons/self/restart`` - recorded in ``restarts``. Nothing restarts
  unless the stand-in was given an ``options_file`` and/or an ``on_restart``
  hook: then, like the real Supervisor, it writes the stored options to the
  add-on's options file (``/data/options.json``) before the add-on starts
  again, awaits ``on_restart()`` (which restarts the add-on: the harness
  restarts the s6 service) and answers only once that is done. The caller,
  being the add-on, is usually stopped before the answer; the restart goes on
  regardless (``restart_tasks``; :meth:`SupervisorStandin.wait_restarts`).

Every request must carry the token (``Authorization: Bearer`` or
``X-Supervisor-Token``); others get 401. ``requests`` records, per path, how
many requests came, and ``bad_tokens`` how many had a wrong or no token.

Run alone: ``python addon/supervisor_standin.py --token T --mqtt-port 1883``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import os
import secrets
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from hoymiles_bridge import __version__
from hoymiles_bridge.config.options import OptionsError, validate

HOST = "127.0.0.1"

#: Restarts the add-on (stop, then start), for ``POST /addons/self/restart``.
RestartHook = Callable[[], Awaitable[None]]


@dataclass
class MqttService:
    """What the Mosquitto add-on registers (addon.md 3.2)."""

    host: str
    port: int
    username: str | None = "addons"
    password: str | None = field(default=None, repr=False)
    ssl: bool = False
    protocol: str = "3.1.1"
    addon: str = "core_mosquitto"

    def data(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "ssl": self.ssl,
            "protocol": self.protocol,
            "addon": self.addon,
        }
        if self.username is not None:
            data["username"] = self.username
        if self.password is not None:
            data["password"] = self.password
        return data


def _ok(data: Any = None) -> web.Response:
    return web.json_response({"result": "ok", "data": {} if data is None else data})


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"result": "error", "message": message}, status=status)


class SupervisorStandin:
    """The stand-in server. ``async with SupervisorStandin(...) as sup: sup.url``."""

    def __init__(
        self,
        token: str,
        mqtt: MqttService | None,
        *,
        not_ready: int = 0,
        options: dict[str, Any] | None = None,
        host: str = HOST,
        port: int = 0,
        options_file: Path | None = None,
        on_restart: RestartHook | None = None,
    ) -> None:
        self.token = token
        self.mqtt = mqtt
        self.not_ready = not_ready
        self.options: dict[str, Any] = dict(options or {})
        self.host = host
        self.port = port
        self.requests: Counter[str] = Counter()
        self.bad_tokens = 0
        self.service_answers: list[int] = []
        #: Every options document that POST /addons/self/options stored, in order.
        self.saved: list[dict[str, Any]] = []
        #: When set, POST /addons/self/options answers 400 with this message.
        self.refuse_options: str | None = None
        #: How many times POST /addons/self/restart was asked.
        self.restarts = 0
        #: What GET /network/info answers; None: 403, the add-on has no hassio_api.
        self.network_info: dict[str, Any] | None = None
        #: Where a restart writes the stored options (the add-on's /data/options.json).
        self.options_file = options_file
        #: Restarts the add-on after the options file was written.
        self.on_restart = on_restart
        #: One task per restart that did something (options file or hook), in order.
        self.restart_tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def __aenter__(self) -> SupervisorStandin:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        app = web.Application(middlewares=[self._auth])
        app.router.add_get("/services/mqtt", self._services_mqtt)
        app.router.add_get("/addons/self/info", self._info)
        app.router.add_get("/addons/self/options/config", self._get_options)
        app.router.add_get("/addons/self/options", self._get_options)
        app.router.add_post("/addons/self/options", self._set_options)
        app.router.add_post("/addons/self/restart", self._restart)
        app.router.add_get("/network/info", self._network_info)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        address = runner.addresses[0]
        self.port = int(address[1])

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
        pending = [task for task in self.restart_tasks if not task.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    async def wait_restarts(self, timeout: float) -> None:
        """Wait for every restart so far to finish; re-raises what a restart raised."""
        async with asyncio.timeout(timeout):
            for task in list(self.restart_tasks):
                await task

    def write_options_file(self) -> None:
        """Write the stored options to ``options_file`` in one step (as the Supervisor does)."""
        if self.options_file is None:
            return
        text = json.dumps(self.options, indent=2) + "\n"
        handle, temp = tempfile.mkstemp(
            prefix=f".{self.options_file.name}.", dir=self.options_file.parent
        )
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(temp, self.options_file)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)

    def _token_ok(self, request: web.Request) -> bool:
        scheme, _, bearer = request.headers.get("Authorization", "").partition(" ")
        given = (
            bearer if scheme.lower() == "bearer" else request.headers.get("X-Supervisor-Token", "")
        )
        return hmac.compare_digest(given.encode(), self.token.encode())

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests[request.path] += 1
        if not self._token_ok(request):
            self.bad_tokens += 1
            return _error(401, "Unauthorized")
        response: web.StreamResponse = await handler(request)
        return response

    async def _services_mqtt(self, request: web.Request) -> web.Response:
        if self.mqtt is None or self.requests[request.path] <= self.not_ready:
            self.service_answers.append(400)
            return _error(400, "Service not enabled")
        self.service_answers.append(200)
        return _ok(self.mqtt.data())

    async def _info(self, request: web.Request) -> web.Response:
        ingress_id = "standin-ingress-id"
        return _ok(
            {
                "name": "Hoymiles DTU Bridge",
                "slug": "local_hoymiles_bridge",
                "hostname": "local-hoymiles-bridge",
                "version": __version__,
                "version_latest": __version__,
                "state": "started",
                "boot": "auto",
                "ip_address": "172.30.33.5",
                "ingress": True,
                "ingress_entry": f"/api/hassio_ingress/{ingress_id}",
                "ingress_url": f"/api/hassio_ingress/{ingress_id}/",
                "ingress_port": 8099,
                "ingress_panel": True,
                "options": self.options,
                "services_role": ["mqtt:need"],
                "watchdog": False,
                "rating": 8,
            }
        )

    async def _network_info(self, request: web.Request) -> web.Response:
        if self.network_info is None:
            return _error(403, "Forbidden: /network/info needs hassio_api")
        return _ok(self.network_info)

    async def _get_options(self, request: web.Request) -> web.Response:
        return _ok(self.options)

    async def _set_options(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "Invalid JSON body")
        if not isinstance(body, dict) or not isinstance(body.get("options"), dict):
            return _error(400, "Missing option 'options'")
        if self.refuse_options is not None:
            return _error(400, self.refuse_options)
        try:
            validate(body["options"])
        except OptionsError as err:
            return _error(400, f"Invalid options: {err}")
        self.options = body["options"]
        self.saved.append(body["options"])
        return _ok()

    async def _restart(self, request: web.Request) -> web.Response:
        self.restarts += 1
        if self.options_file is None and self.on_restart is None:
            return _ok()
        task = asyncio.create_task(self._restart_addon(), name="standin-restart-addon")
        self.restart_tasks.append(task)
        # asyncio.wait neither raises nor cancels the task when this request goes
        # away: the restart stops the add-on, which is the one asking.
        await asyncio.wait({task})
        if task.cancelled() or task.exception() is not None:
            return _error(500, "The add-on did not restart")
        return _ok()

    async def _restart_addon(self) -> None:
        # The real Supervisor stops the add-on, writes /data/options.json and
        # starts it; here the options are written first, so that they are in
        # place whenever the hook's restart starts the add-on again.
        self.write_options_file()
        if self.on_restart is not None:
            await self.on_restart()


async def _main(args: argparse.Namespace) -> None:
    mqtt = MqttService(
        args.mqtt_host, args.mqtt_port, username=args.mqtt_username, password=args.mqtt_password
    )
    async with SupervisorStandin(
        args.token, mqtt, not_ready=args.not_ready, port=args.port
    ) as standin:
        print(f"stand-in Supervisor on {standin.url}", flush=True)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--token", default=None, help="expected token (default: random)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--not-ready", type=int, default=2, help="answer 400 this many times")
    parser.add_argument("--mqtt-host", default=HOST)
    parser.add_argument("--mqtt-port", type=int, default=1883)
    parser.add_argument("--mqtt-username", default=None)
    parser.add_argument("--mqtt-password", default=None)
    args = parser.parse_args()
    if args.token is None:
        args.token = secrets.token_hex(16)
        print(json.dumps({"token": args.token}), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
