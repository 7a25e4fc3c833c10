"""Helpers for the browser tests: constants, the console-error collector, proxies.

Import from here in test modules; the fixtures themselves live in
tests/browser/fixtures.py, which a test module loads with
``pytest_plugins = ["tests.browser.fixtures"]`` and must not import itself
(pytest could not rewrite its asserts then).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final

import pytest

from tests.browser.ingress_proxy import IngressProxy

if TYPE_CHECKING:
    from playwright.async_api import ConsoleMessage, Error, Page

ROOT: Final = Path(__file__).resolve().parents[2]
SCREENSHOT_DIR: Final = ROOT / "tests" / "artifacts" / "screenshots"
#: Where the documentation's screenshots live (written only when asked, see fixtures.py).
DOCS_SCREENSHOT_DIR: Final = ROOT / "docs" / "screenshots"
CHROMIUM: Final = os.environ.get("HOYMILES_CHROMIUM", "/usr/bin/chromium")
#: Headless, no sandbox (root in a container), and no traffic of Chromium's own:
#: this machine's network is closed and refused connections slow every start.
CHROMIUM_ARGS: Final = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
VIEWPORT: Final = {"width": 1280, "height": 800}
#: Page timeout for Playwright actions and expectations, in milliseconds.
TIMEOUT_MS: Final = 10_000
_FAVICON: Final = re.compile(r"/favicon\.ico(\?|$)")


@dataclass
class ConsoleErrors:
    """Console errors and uncaught exceptions of the pages a test opened."""

    entries: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        """Accepts errors whose text (``"<type>: <text> @ <url>"``) matches ``pattern``."""
        self.allowed.append(re.compile(pattern))

    def watch(self, page: Page) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", self._on_page_error)

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type not in ("error", "assert"):
            return
        url = str(message.location.get("url", ""))
        if _FAVICON.search(url):
            return
        self.entries.append(f"console.{message.type}: {message.text} @ {url}")

    def _on_page_error(self, error: Error) -> None:
        self.entries.append(f"pageerror: {error.name}: {error.message}\n{error.stack or ''}")

    @property
    def unexpected(self) -> list[str]:
        return [e for e in self.entries if not any(p.search(e) for p in self.allowed)]

    def assert_none(self) -> None:
        found = self.unexpected
        assert not found, "the browser reported errors:\n" + "\n".join(found)


class IngressProxies:
    """The ``ingress_proxy`` fixture: ``await ingress_proxy(upstream_url)`` starts one."""

    def __init__(self) -> None:
        self.started: list[IngressProxy] = []

    async def __call__(self, upstream: str) -> IngressProxy:
        proxy = IngressProxy(upstream)
        await proxy.start()
        self.started.append(proxy)
        return proxy

    async def stop(self) -> None:
        for proxy in self.started:
            await proxy.stop()


def node_label(node: pytest.Item) -> str:
    """The test's name without a color-scheme parameter, safe as a file name."""
    name = node.name
    if "[" in name:
        base, _, params = name.partition("[")
        kept = [p for p in params.rstrip("]").split("-") if p not in ("light", "dark")]
        name = f"{base}[{'-'.join(kept)}]" if kept else base
    return re.sub(r"[^A-Za-z0-9_.\[\]-]+", "_", name).replace("[", "-").replace("]", "")


__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "SCREENSHOT_DIR",
    "TIMEOUT_MS",
    "VIEWPORT",
    "ConsoleErrors",
    "IngressProxies",
]
