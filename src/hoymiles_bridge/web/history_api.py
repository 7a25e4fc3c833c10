"""Routes for the charts page: api/history (power ring buffer, daily yields, DTU history).

Registered by :meth:`hoymiles_bridge.web.api.WebApi.register`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from hoymiles_bridge.web.api import WebApi


def register(app: web.Application, api: WebApi) -> None:
    """Add this module's routes to ``app``."""
