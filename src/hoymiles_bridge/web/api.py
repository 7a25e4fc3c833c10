"""The JSON API behind the web UI, under the relative prefix ``api/`` (see DOCS.md, "Web API").

Every route is relative to where the app is mounted, so it works under the
ingress prefix. GETs have no side effects. Every POST must be same-origin: an
``Origin`` header, when present, must name the request's host, and the custom
header ``X-Requested-With: hoymiles-bridge`` is required (a cross-site form
cannot set it). The websocket ``api/ws`` has the same ``Origin`` rule: browsers
let any page open a websocket to any address, and only the ``Origin`` tells
another site's page from this bridge's. A bad request is answered 4xx with
``{"error": "<sentence>"}`` naming the field. No response or websocket message
carries a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import WSMsgType, web
from yarl import URL

from hoymiles_bridge import __version__
from hoymiles_bridge.config.store import ConfigStore
from hoymiles_bridge.core.battery import offered_commands
from hoymiles_bridge.core.cloud import CloudSource
from hoymiles_bridge.core.commands import (
    CommandOutcome,
    CommandRequest,
    Target,
    ValueKind,
    known_names,
    lookup,
)
from hoymiles_bridge.core.controller_service import ControllerService
from hoymiles_bridge.core.fleet import Fleet
from hoymiles_bridge.core.state import DtuState, InverterState
from hoymiles_bridge.dtu.connection import FrameEvent
from hoymiles_bridge.errors import (
    DtuConnectionError,
    DtuRejectedError,
    DtuTimeoutError,
    HoymilesError,
    InvalidArgumentError,
    ProtocolError,
)
from hoymiles_bridge.protocol.battery import is_dev_id
from hoymiles_bridge.protocol.codec import decode_frame
from hoymiles_bridge.protocol.records import clean_hex, frame_record, split_frames
from hoymiles_bridge.protocol.registry import Direction
from hoymiles_bridge.protocol.requests import READ_REQUESTS
from hoymiles_bridge.protocol.secrets import mask_secrets, masked_copy
from hoymiles_bridge.web import config_api, console_api, history_api, setup_api
from hoymiles_bridge.web.common import (
    MAX_DIGITS,
    BadRequest,
    error,
    json_data,
    json_text,
    read_body,
    text_field,
)
from hoymiles_bridge.web.hub import Encoded, WebHub, encode, safe_hex

CSRF_HEADER: Final = "X-Requested-With"
CSRF_VALUE: Final = "hoymiles-bridge"
DEFAULT_FRAME_LIMIT: Final = 200
WEBSOCKET_PATH: Final = "/api/ws"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _process() -> dict[str, Any]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    rss_kib = None
    with (
        contextlib.suppress(OSError, ValueError),
        open("/proc/self/status", encoding="ascii", errors="replace") as status,
    ):
        for line in status:
            if line.startswith("VmRSS:"):
                rss_kib = int(line.split()[1])
    return {
        "pid": os.getpid(),
        "rss_bytes": rss_kib * 1024 if rss_kib is not None else usage.ru_maxrss * 1024,
        "max_rss_bytes": usage.ru_maxrss * 1024,
        "cpu_user_s": round(usage.ru_utime, 3),
        "cpu_system_s": round(usage.ru_stime, 3),
    }


def _count(text: str) -> int | None:
    """A query's whole number (ASCII digits, at most MAX_DIGITS), or ``None``."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > MAX_DIGITS:
        return None
    return int(text)


def _percentiles(samples: list[float]) -> dict[str, float | int | None]:
    if not samples:
        return {"count": 0, "p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(samples)

    def at(share: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000, 3)

    return {
        "count": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p90_ms": at(0.9),
        "p99_ms": at(0.99),
        "max_ms": round(ordered[-1] * 1000, 3),
    }


class WebApi:
    """The ``api/...`` routes for one bridge and hub."""

    def __init__(
        self,
        hub: WebHub,
        fleet: Fleet | Callable[[], Fleet | None],
        *,
        trust_forwarded_host: bool = False,
        clock: Callable[[], float] = time.time,
        config_store: ConfigStore | None = None,
        cloud: Callable[[], CloudSource | None] | None = None,
        controller: Callable[[], ControllerService | None] | None = None,
    ) -> None:
        self.hub = hub
        #: The power controller, once the bridge runs.
        self._controller = controller
        self._fleet = fleet
        #: The cloud's stations, when the bridge uses the cloud.
        self._cloud = cloud
        #: Where the configuration page reads and saves the options (None: read-only).
        self.config_store = config_store
        self.trust_forwarded_host = trust_forwarded_host
        self._clock = clock
        self._sockets: set[web.WebSocketResponse] = set()
        hub.status_source = self.status

    @property
    def fleet(self) -> Fleet:
        """The fleet; answers 503 while the service is still starting it."""
        fleet = self._fleet if isinstance(self._fleet, Fleet) else self._fleet()
        if fleet is None:
            raise BadRequest("the bridge is still starting; try again shortly", status=503)
        return fleet

    def clock(self) -> float:
        return self._clock()

    def __repr__(self) -> str:
        return f"WebApi(clients={self.hub.clients})"

    def register(self, app: web.Application) -> None:
        router = app.router
        router.add_get("/api/status", self._status)
        router.add_get("/api/frames", self._frames)
        router.add_get("/api/frames.jsonl", self._frames_jsonl)
        router.add_post("/api/decode", self._decode)
        router.add_get("/api/events", self._events)
        router.add_get("/api/diagnostics", self._diagnostics)
        router.add_get("/api/diagnostics/download", self._diagnostics_download)
        router.add_post("/api/command", self._command)
        router.add_post("/api/read", self._read)
        router.add_get("/api/cloud", self._cloud_route)
        router.add_get("/api/controller", self._controller_route)
        router.add_post("/api/controller/mode", self._controller_mode)
        router.add_get("/api/battery-messages", self._battery_messages)
        router.add_get("/api/battery-messages.jsonl", self._battery_messages_jsonl)
        router.add_get(WEBSOCKET_PATH, self._websocket)
        # Each page's own routes live next to this module (web/common.py is what they see).
        for module in (config_api, console_api, history_api, setup_api):
            module.register(app, self)
        app.middlewares.append(self._same_origin)
        app.on_shutdown.append(self._close_sockets)

    # --- guards ---------------------------------------------------------------

    @web.middleware
    async def _same_origin(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/api/"):
            problem = None
            if request.method not in {"GET", "HEAD", "OPTIONS"}:
                problem = self._cross_site(request)
            elif request.path == WEBSOCKET_PATH:
                problem = self._foreign_origin(request)
            if problem is not None:
                return error(403, problem)
            try:
                return await handler(request)
            except BadRequest as err:
                return error(err.status, err.message)
        return await handler(request)

    def _cross_site(self, request: web.Request) -> str | None:
        """Why a POST is refused as cross-site, or ``None`` (see the module docs)."""
        if request.headers.get(CSRF_HEADER, "").strip().lower() != CSRF_VALUE:
            return f"the {CSRF_HEADER}: {CSRF_VALUE} header is required"
        return self._foreign_origin(request)

    def _foreign_origin(self, request: web.Request) -> str | None:
        """Why the request's ``Origin`` is not this bridge, or ``None`` (none sent: no browser)."""
        origin = request.headers.get("Origin")
        if origin is None:
            return None
        hosts = {request.headers.get("Host", "").strip().lower()}
        forwarded = request.headers.get("X-Forwarded-Host")
        if self.trust_forwarded_host and forwarded:
            hosts.add(forwarded.split(",")[0].strip().lower())
        try:
            url = URL(origin)
            origin_host = url.raw_authority.lower() if url.absolute else ""
        except ValueError:
            origin_host = ""
        if not origin_host or origin_host not in hosts:
            return "the request's Origin is not this bridge"
        return None

    async def _close_sockets(self, _app: web.Application) -> None:
        for socket in list(self._sockets):
            await socket.close()

    # --- helpers --------------------------------------------------------------

    def dtu(self, name: str | None, *, what: str = "field") -> DtuState:
        """The DTU named by label, serial or host (optional with one DTU).

        ``what`` names where ``name`` came from in the error (a body "field" or
        a query "parameter"); raises :class:`BadRequest`.
        """
        dtus = self.fleet.dtus
        if not name:
            if len(dtus) == 1:
                return dtus[0]
            raise BadRequest(f"the {what} 'dtu' is required when there are several DTUs")
        for dtu in dtus:
            if name in {dtu.serial, dtu.label, dtu.session.target.host}:
                return dtu
        raise BadRequest(f"the {what} 'dtu' names no known DTU ({name!r})", status=404)

    # --- status ---------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The overview: every DTU, its inverters, the totals (no secrets)."""
        now = self._clock()
        try:
            fleet = self.fleet
        except BadRequest:
            return {"time": now, "version": __version__, "starting": True, "dtus": []}
        dtus = []
        for dtu in fleet.dtus:
            session = dtu.session
            info = session.app_info
            last = session.last_poll
            stale = last is None or now - last > 2 * session.interval
            dtus.append(
                {
                    "label": dtu.label,
                    "name": session.target.name,
                    "host": session.target.host,
                    "port": session.target.port,
                    "serial": dtu.serial,
                    "state": session.state.value,
                    "state_reason": session.state_reason,
                    "available": dtu.available,
                    "model": info.dtu_model if info else None,
                    "firmware": info.dtu_firmware if info else None,
                    "hardware": info.dtu_hardware if info else None,
                    "encrypted": session.client.encrypted,
                    "rssi": info.signal_strength if info else None,
                    "last_poll": last,
                    "next_poll": session.next_poll,
                    "rtt_ms": round(session.rtt * 1000) if session.rtt is not None else None,
                    "interval": session.interval,
                    "policy": fleet.policy.describe(info.dtu_firmware_raw if info else None),
                    "performance_mode": session.performance_mode,
                    "stale": stale,
                    "inverters": [
                        self._inverter_status(fleet, inverter, stale)
                        for inverter in dtu.inverters.values()
                    ],
                }
            )
        totals = fleet.totals()
        cloud = self.cloud_source()
        return {
            "time": now,
            "version": __version__,
            "mqtt": {"connected": bool(fleet.stats().get("mqtt", {}).get("connected"))},
            "cloud": cloud.describe() if cloud is not None else None,
            "controller": self._controller_status(),
            "dtus": dtus,
            # MS-A2 / HiBattery units on the broker (core/battery.py), by dev_id.
            "batteries": [
                {**b.to_dict(), "commands": list(offered_commands(b))}
                for b in fleet.batteries.batteries.values()
            ],
            "totals": {
                "ac_power": totals.ac_power,
                "ac_yieldday": totals.yield_day,
                "ac_yieldtotal": totals.yield_total,
                "dc_power": totals.dc_power,
                "dc_irradiation": totals.irradiation,
                "valid": totals.valid,
            },
        }

    def controller(self) -> ControllerService | None:
        return self._controller() if self._controller is not None else None

    def _controller_status(self) -> dict[str, Any] | None:
        service = self.controller()
        return service.status() if service is not None else None

    async def _controller_route(self, _request: web.Request) -> web.Response:
        """``api/controller``: the controller card's data with the last 15 minutes.

        ``{"running": false}`` while the bridge (re)starts: the card keeps asking
        every few seconds, and an error status would be a console error each time.
        """
        service = self.controller()
        if service is None:
            return json_data({"running": False})
        return json_data(service.status(history=True))

    async def _controller_mode(self, request: web.Request) -> web.Response:
        """``POST api/controller/mode`` ``{"mode": "zero_export"}``: switch the controller."""
        body = await read_body(request)
        mode = text_field(body, "mode")
        assert mode is not None
        service = self.controller()
        if service is None:
            raise BadRequest("the bridge is still starting; try again shortly", status=503)
        command = CommandRequest(Target.CONTROLLER, "", "controller_mode", mode.encode()[:64])
        outcome = await self.fleet.submit(command)  # through the registry, as MQTT's
        if outcome is None or outcome.status != "ok":
            raise BadRequest(outcome.message if outcome is not None else "ignored")
        return json_data({"ok": True, "mode": service.law.mode.value})

    def cloud_source(self) -> CloudSource | None:
        """The bridge's cloud stations, or ``None`` when the cloud is not used."""
        return self._cloud() if self._cloud is not None else None

    async def _cloud_route(self, _request: web.Request) -> web.Response:
        """``api/cloud``: the cloud card and the last cloud requests (masked) for the inspector."""
        cloud = self.cloud_source()
        if cloud is None:
            return json_data({"enabled": False})
        return json_data({"enabled": True, **cloud.describe(), "exchanges": cloud.inspector()})

    @staticmethod
    def _inverter_status(fleet: Fleet, inverter: InverterState, stale: bool) -> dict[str, Any]:
        device, values = inverter.device, inverter.values
        return {
            "serial": device.serial,
            "name": device.name,
            "model": device.model,
            "firmware": device.firmware,
            "rated_power": device.rated_power,
            "ports_count": device.ports,
            "port_names": {str(p): device.port_name(p) for p in range(1, device.ports + 1)},
            "values": dict(values.values) if values else {},
            "ports": {str(p): dict(f) for p, f in values.ports.items()} if values else {},
            "reachable": values.reachable if values else None,
            "producing": values.producing if values else None,
            "limit_applied": inverter.limit,
            "limit_requested": fleet.requested_limit(device.serial),
            "last_update": (
                float(int(inverter.last_update)) if inverter.last_update is not None else None
            ),
            "alarms": [a.to_dict() for a in inverter.active_alarms],
            "stale": stale,
        }

    async def _status(self, request: web.Request) -> web.Response:
        return json_text(encode(self.status()))

    # --- frames ---------------------------------------------------------------

    def _frame_query(
        self, request: web.Request, default_limit: int | None = DEFAULT_FRAME_LIMIT
    ) -> list[Encoded]:
        query = request.query
        direction = query.get("direction") or None
        if direction not in {None, "to_dtu", "from_dtu"}:
            raise BadRequest("the parameter 'direction' must be 'to_dtu' or 'from_dtu'")
        limit = default_limit
        if "limit" in query:
            limit = _count(query["limit"])
            if limit is None or limit < 1:
                raise BadRequest("the parameter 'limit' must be a whole number above 0")
        since = None
        if "since" in query:
            since = _count(query["since"])
            if since is None:
                raise BadRequest("the parameter 'since' must be a frame id")
        return self.hub.frame_records(
            dtu=query.get("dtu") or None,
            direction=direction,
            message=query.get("message") or None,
            since=since,
            limit=limit,
        )

    async def _frames(self, request: web.Request) -> web.Response:
        items = self._frame_query(request)
        return json_text('{"frames":[' + ",".join(i.json for i in items) + "]}")

    def _battery_message_query(self, request: web.Request) -> list[dict[str, Any]]:
        """The batteries' last MQTT messages, oldest first; ``dev_id`` and ``direction`` filter."""
        dev_id = request.query.get("dev_id") or None
        if dev_id is not None and not is_dev_id(dev_id):
            raise BadRequest("the parameter 'dev_id' is not a battery's MQTT id")
        direction = request.query.get("direction") or None
        if direction not in (None, "in", "out"):
            raise BadRequest("the parameter 'direction' must be 'in' or 'out'")
        return [
            mask_secrets(m.to_dict())
            for m in self.fleet.batteries.messages
            if (dev_id is None or m.dev_id == dev_id)
            and (direction is None or m.direction == direction)
        ]

    async def _battery_messages(self, request: web.Request) -> web.Response:
        """``api/battery-messages``: what the batteries sent and the bridge sent them."""
        return json_data({"messages": self._battery_message_query(request)})

    async def _battery_messages_jsonl(self, request: web.Request) -> web.Response:
        body = "".join(
            json.dumps(m, separators=(",", ":")) + "\n"
            for m in self._battery_message_query(request)
        )
        return web.Response(
            text=body,
            content_type="application/x-ndjson",
            headers={"Content-Disposition": 'attachment; filename="battery-messages.jsonl"'},
        )

    async def _frames_jsonl(self, request: web.Request) -> web.Response:
        items = self._frame_query(request, default_limit=None)
        body = "".join(i.json + "\n" for i in items)
        return web.Response(
            text=body,
            content_type="application/x-ndjson",
            headers={"Content-Disposition": 'attachment; filename="frames.jsonl"'},
        )

    async def _decode(self, request: web.Request) -> web.Response:
        body = await read_body(request)
        text = text_field(body, "hex")
        assert text is not None
        try:
            frames = split_frames(clean_hex(text), None)
            records = []
            for frame in frames:
                decoded = decode_frame(frame, None)
                if decoded.message is not None:
                    decoded = decoded._replace(message=masked_copy(decoded.message))
                records.append(mask_secrets(frame_record(decoded)))
        except ValueError as err:
            raise BadRequest(f"the field 'hex' cannot be decoded: {err}") from None
        except HoymilesError as err:
            raise BadRequest(f"the field 'hex' cannot be decoded: {err}") from None
        if len(records) == 1:
            return json_text(encode(records[0]))
        return json_text(encode({"frames": records}))

    # --- events, history ------------------------------------------------------

    async def _events(self, request: web.Request) -> web.Response:
        return json_text('{"events":[' + ",".join(i.json for i in self.hub.events) + "]}")

    # --- diagnostics, config ----------------------------------------------------

    def diagnostics(self) -> dict[str, Any]:
        fleet, hub = self.fleet, self.hub
        sessions = [d.session for d in fleet.dtus]
        stats = fleet.stats()
        return {
            "version": __version__,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            # started_at is wall-clock time (the API clock may be a simulated one)
            "uptime_s": round(time.time() - fleet.started_at, 1),
            "process": _process(),
            "poll_latency": _percentiles(list(fleet.latencies)),
            "mqtt": stats.get("mqtt", {}),
            "counters": {
                "frames": hub.frame_count,
                "frame_errors": hub.frame_errors,
                "reconnects": sum(s.client.reconnects for s in sessions),
                "displacements": hub.displacements,
                "stale_replies": sum(
                    s.client.connection.stale_replies
                    for s in sessions
                    if s.client.connection is not None
                ),
                "commands_done": fleet.commands_done,
                "commands_failed": fleet.commands_failed,
                "websocket_clients": hub.clients,
                "websocket_dropped": hub.dropped,
            },
            "dtus": [
                {
                    "label": d.label,
                    "serial": d.serial,
                    "state": d.session.state.value,
                    "polls": d.session.polls,
                    "failures": d.session.failures,
                }
                for d in fleet.dtus
            ],
            "options": self.config(),
        }

    async def _diagnostics(self, request: web.Request) -> web.Response:
        return json_text(encode(mask_secrets(self.diagnostics())))

    async def _diagnostics_download(self, request: web.Request) -> web.Response:
        name = time.strftime("hoymiles-bridge-diagnostics-%Y%m%d-%H%M%S.json")
        return json_text(
            json.dumps(mask_secrets(self.diagnostics()), indent=2, ensure_ascii=False),
            **{"Content-Disposition": f'attachment; filename="{name}"'},
        )

    def config(self) -> dict[str, Any]:
        """The effective options, secrets masked."""
        data: dict[str, Any] = mask_secrets(dataclasses.asdict(self.fleet.options))
        return data

    # --- commands and reads -----------------------------------------------------

    async def _command(self, request: web.Request) -> web.Response:
        body = await read_body(request)
        name = text_field(body, "command")
        assert name is not None
        serial = text_field(body, "serial", required=False) or ""
        dtu = text_field(body, "dtu", required=False)
        value = body.get("value")
        try:
            spec = lookup(name)
        except InvalidArgumentError:
            raise BadRequest(f"the field 'command' must be one of: {known_names()}") from None
        if isinstance(value, bool):
            if spec.value is ValueKind.NUMBER:
                raise BadRequest(f"the field 'value' must be a number for the command {name!r}")
            payload = "1" if value else "0"
        elif isinstance(value, int | float | str):
            payload = str(value)  # read_body() let only finite numbers of few digits through
        elif value is None:
            raise BadRequest("the field 'value' is required")
        else:
            raise BadRequest("the field 'value' must be a number, text or true/false")
        if spec.target is Target.INVERTER:
            if not serial:
                known = [i.serial for i in self.fleet.inverters()]
                if len(known) != 1:
                    raise BadRequest("the field 'serial' is required (the inverter's serial)")
                serial = known[0]
        elif dtu and not serial:
            serial = self.dtu(dtu).serial or ""
        outcome: CommandOutcome | None
        battery = spec.target is Target.BATTERY
        if serial and not (is_dev_id(serial) if battery else serial.isalnum()):
            outcome = CommandOutcome("refused", f"{serial!r} is not a serial number")
        else:
            # A battery's id keeps its case (MSA-280024370560); serials are upper case.
            device = serial if battery else serial.upper()
            outcome = await self.fleet.submit(
                CommandRequest(spec.target, device, name, payload.encode("utf-8", "replace"))
            )
        if outcome is None:  # only a retained message is ignored; the API sends none
            raise BadRequest(f"the command {name!r} was ignored")
        result = {"status": outcome.status, "message": outcome.message, "text": outcome.text}
        if outcome.status == "refused":
            return web.json_response({"error": outcome.message, **result}, status=400)
        if outcome.status == "failed":
            return web.json_response({"error": outcome.message, **result}, status=502)
        return web.json_response(result)

    async def _read(self, request: web.Request) -> web.Response:
        body = await read_body(request)
        name = text_field(body, "request")
        assert name is not None
        builder = READ_REQUESTS.get(name)
        if builder is None:
            raise BadRequest(f"the field 'request' must be one of: {', '.join(READ_REQUESTS)}")
        view = self.dtu(text_field(body, "dtu", required=False))
        client = view.session.client
        try:
            decoded = await client.raw_request(builder(int(self._clock())))
        except (DtuConnectionError, DtuTimeoutError, DtuRejectedError, ProtocolError) as err:
            return error(502, f"the DTU did not answer the read: {err}")
        # The reply's hex as the inspector shows it (a secret-bearing reply redacted).
        wire = FrameEvent(
            self._clock(), Direction.FROM_DTU, decoded.frame.to_bytes(), decoded.frame, decoded
        )
        hex_text, redacted = safe_hex(wire)
        if decoded.message is not None:
            decoded = decoded._replace(message=masked_copy(decoded.message))
        try:
            record = mask_secrets(frame_record(decoded))
        except ProtocolError as err:  # e.g. a reply whose serial is not a serial
            return error(502, f"the DTU's answer to the read is not valid: {err}")
        record.update(hex=hex_text, redacted=redacted, encrypted=decoded.frame.encrypted)
        return json_text(encode(record))

    # --- live -----------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(max_msg_size=64 * 1024)
        await socket.prepare(request)
        subscription = self.hub.subscribe()
        self._sockets.add(socket)
        sender = asyncio.create_task(self._send_loop(socket, subscription), name="web-ws-sender")
        try:
            first = self.hub.state_message()
            if first is not None:
                subscription.offer(first)
            async for message in socket:
                if message.type in {WSMsgType.ERROR, WSMsgType.CLOSE}:
                    break
        finally:
            subscription.close()
            sender.cancel()
            await asyncio.wait({sender})
            self._sockets.discard(socket)
            await socket.close()
        return socket

    @staticmethod
    async def _send_loop(socket: web.WebSocketResponse, subscription: Any) -> None:
        while not socket.closed:
            message = await subscription.get()
            try:
                await socket.send_str(message)
            except (ConnectionError, RuntimeError):
                return


__all__ = ["CSRF_HEADER", "CSRF_VALUE", "WebApi"]
