"""Routes for the web UI's command console page: api/commands (what the console can send).

Registered by :meth:`hoymiles_bridge.web.api.WebApi.register`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from hoymiles_bridge.web.api import WebApi


def register(app: web.Application, api: WebApi) -> None:
    """Add this module's routes to ``app``."""
