"""The bridge's HTTP side: ``/health`` and (later) the ingress web UI."""

from __future__ import annotations

from hoymiles_bridge.web.server import WebServer

__all__ = ["WebServer"]
