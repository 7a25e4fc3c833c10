"""Routes for the configuration page: api/config (options, validation, saving, restart).

Registered by :meth:`hoymiles_bridge.web.api.WebApi.register`. The options
come from the API's :class:`~hoymiles_bridge.config.store.ConfigStore`
(the Supervisor, a file, or read-only: the running bridge's options).

* ``GET api/config`` - ``{"mode", "source", "can_save", "can_restart",
  "restart_pending", "process_restart_pending", "bridge_running", "options",
  "errors", "sections", "fields"}``: the stored options with every default filled in and
  secrets masked, what is invalid about them (``errors``, path to message),
  and the form's description.
* ``POST api/config/validate`` ``{"options": {...}}`` - 200 ``{"ok": true}`` or
  422 ``{"error": "<sentence>", "fields": {path: message}}``.
* ``POST api/config`` ``{"options": {...}}`` - saves: 200 ``{"ok": true,
  "message", "restart_pending", "can_restart"}``; 422 as above; 409 when there
  is nowhere to save; 502 when the Supervisor refused or did not answer; 500
  when the file could not be written.
* ``POST api/restart`` - 202 ``{"ok": true, "message"}``; 409 when the bridge
  cannot restart itself, 422 when the stored options are invalid, 502 when the
  Supervisor refused.

A body that is not an object with ``options``, or that holds a number no
option can take (``NaN``, ``Infinity``, a whole number of more than
:data:`~hoymiles_bridge.web.common.MAX_DIGITS` digits), is answered 400 naming
the field, as is any other refusal of the options that is not an
:class:`~hoymiles_bridge.config.options.OptionsError` (422).

Secrets are masked in every answer and never logged.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from aiohttp import web

from hoymiles_bridge.config.options import (
    Options,
    OptionsError,
    form_description,
    from_clean,
    normalize,
)
from hoymiles_bridge.config.store import (
    ConfigStore,
    ConfigStoreError,
    ReadOnlyConfigStore,
    changed_keys,
    masked_values,
    options_document,
    prepare,
)
from hoymiles_bridge.errors import HoymilesError
from hoymiles_bridge.web.common import ApiContext, BadRequest, read_body

_LOGGER = logging.getLogger(__name__)


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def _invalid(err: OptionsError) -> web.Response:
    return _error(422, err.sentence(), fields=err.fields)


async def _submitted(request: web.Request) -> dict[str, Any]:
    """The body's ``options`` object; raises :class:`BadRequest`."""
    options = (await read_body(request)).get("options")
    if not isinstance(options, dict):
        raise BadRequest("The field 'options' must be an object of option values.")
    return options


class ConfigRoutes:
    """The handlers, bound to one API (its hub, bridge and config store)."""

    def __init__(self, api: ApiContext, store: ConfigStore | None) -> None:
        self.api = api
        self.store: ConfigStore = store if store is not None else ReadOnlyConfigStore(self.running)

    def running(self) -> Options | None:
        """The options the bridge runs with, or ``None`` while it is (re)starting."""
        try:
            return self.api.fleet.options
        except BadRequest:
            return None

    @property
    def addon(self) -> bool:
        return self.store.mode == "addon"

    def _pending(self, stored: Options | None) -> tuple[bool, bool]:
        """Whether the stored options wait for a restart of the bridge / of the process."""
        running = self.running()
        if stored is None or running is None:
            return False, False
        bridge = stored != running
        if self.store.process_web is not None:
            bridge = stored != _with_web(running, stored)
            return bridge, stored.web != self.store.process_web
        return bridge, False

    async def get(self, request: web.Request) -> web.Response:
        try:
            raw = await self.store.load()
        except ConfigStoreError as err:
            return _error(err.status, err.message)
        errors: dict[str, str] = {}
        stored: Options | None
        try:
            stored = from_clean(normalize(raw))
        except OptionsError as err:
            stored, errors = None, err.fields
        bridge_pending, process_pending = self._pending(stored)
        body = {
            "mode": self.store.mode,
            "source": self.store.source,
            "can_save": self.store.can_save,
            "can_restart": self.store.can_restart,
            "restart_pending": bridge_pending,
            "process_restart_pending": process_pending,
            "bridge_running": self.running() is not None,
            "options": masked_values(raw, addon=self.addon),
            "errors": errors,
            **form_description(addon=self.addon),
        }
        return web.json_response(body, headers={"Cache-Control": "no-store"})

    async def validate(self, request: web.Request) -> web.Response:
        submitted = await _submitted(request)
        try:
            stored: Any = await self.store.load()
        except ConfigStoreError:
            stored = {}  # only needed for masked secrets, which are valid text anyway
        try:
            prepare(submitted, stored)
        except OptionsError as err:
            return _invalid(err)
        except HoymilesError as err:
            return _error(400, str(err))
        return web.json_response({"ok": True})

    async def save(self, request: web.Request) -> web.Response:
        submitted = await _submitted(request)
        try:
            before: Any = await self.store.load()
        except ConfigStoreError:
            before = {}
        try:
            saved = await self.store.save(submitted)
        except OptionsError as err:
            return _invalid(err)
        except ConfigStoreError as err:
            self.api.hub.log("config", f"saving the options failed: {err.message}", level="error")
            return _error(err.status, err.message)
        except HoymilesError as err:  # any other refusal of the options is about the input
            return _error(400, str(err))
        changed = changed_keys(_known(before), options_document(saved))
        where = "the Supervisor" if self.addon else self.store.source
        self.api.hub.log(
            "config",
            f"config saved to {where}" + (f" ({', '.join(changed)})" if changed else ""),
            data={"changed": changed},
        )
        _LOGGER.info("Options saved to %s; changed: %s", where, ", ".join(changed) or "nothing")
        bridge_pending, process_pending = self._pending(saved)
        if bridge_pending:
            what = "the add-on" if self.addon else "the bridge"
            message = f"Saved. Restart {what} to apply the changes."
        else:
            message = "Saved; the bridge already runs with these options."
        if process_pending:
            message += " The web server's address changes only when the process restarts."
        return web.json_response(
            {
                "ok": True,
                "message": message,
                "restart_pending": bridge_pending,
                "process_restart_pending": process_pending,
                "can_restart": self.store.can_restart,
            }
        )

    async def restart(self, request: web.Request) -> web.Response:
        if not self.store.can_restart:
            return _error(409, "This bridge cannot restart itself.")
        try:
            await self.store.restart()
        except OptionsError as err:
            return _error(
                422, f"The stored options are invalid, so nothing restarted: {err.sentence()}"
            )
        except ConfigStoreError as err:
            self.api.hub.log("config", f"restart failed: {err.message}", level="error")
            return _error(err.status, err.message)
        if self.addon:
            message = "The Supervisor is restarting the add-on; this page reconnects by itself."
        else:
            message = "The bridge is restarting with the saved options."
        self.api.hub.log("config", "restart requested")
        _LOGGER.info("Restart requested from the web UI")
        return web.json_response({"ok": True, "message": message}, status=202)


def _known(raw: Any) -> dict[str, Any]:
    """``raw`` stored options as a document comparable with :func:`_document`."""
    try:
        return options_document(from_clean(normalize(raw)))
    except OptionsError:
        return raw if isinstance(raw, dict) else {}


def _with_web(running: Options, stored: Options) -> Options:
    """``running`` with the stored ``web`` options (compared separately)."""
    return dataclasses.replace(running, web=stored.web)


def register(app: web.Application, api: ApiContext) -> None:
    """Add this module's routes to ``app``."""
    routes = ConfigRoutes(api, api.config_store)
    router = app.router
    router.add_get("/api/config", routes.get)
    router.add_post("/api/config/validate", routes.validate)
    router.add_post("/api/config", routes.save)
    router.add_post("/api/restart", routes.restart)
