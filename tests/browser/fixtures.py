"""Browser-test fixtures: Debian's Chromium driven by Playwright's async API.

A test module loads them with::

    pytest_plugins = ["tests.browser.fixtures"]

(a test module may name plugins; a conftest below ``tests/`` may not). They are
async fixtures for pytest-asyncio's per-test event loop, so a test can run the
bridge, the simulator, the web server and the browser in one loop.

- ``browser_page``: a Playwright ``Page`` in a fresh Chromium with an empty,
  temporary profile. Its colour scheme is the ``color_scheme`` fixture
  (``"light"`` unless a test parametrizes ``color_scheme``);
  ``await page.emulate_media(color_scheme="dark")`` switches it on the fly.
- ``console_errors``: what the page logged as an error and every uncaught page
  error. Any of them fails the test (favicon 404s aside);
  ``console_errors.allow(r"regex")`` accepts an expected one, for example the
  "Failed to load resource: ... 422" Chromium logs for every HTTP error a
  ``fetch`` gets.
- ``ingress_proxy``: ``proxy = await ingress_proxy("http://127.0.0.1:port")``
  starts an :class:`~tests.browser.ingress_proxy.IngressProxy`; an absolute
  redirect or a request outside the prefix fails the test.
- ``screenshot``: ``await screenshot(page, "overview")`` saves
  ``tests/artifacts/screenshots/<test>-overview-<light|dark>.png`` (the label is
  optional; the scheme is read from the page itself). With
  ``HOYMILES_DOCS_SCREENSHOTS=1`` in the environment, a labelled screenshot is
  also written to ``docs/screenshots/<label>-<light|dark>.png``, the pictures
  DOCS.md and the README show (``bash scripts/screenshots.sh`` refreshes them).

Playwright never downloads a browser here: ``PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD``
is set and Chromium is launched from ``executable_path`` (``/usr/bin/chromium``,
or ``$HOYMILES_CHROMIUM``). Never run ``playwright install``. Without that
executable the browser tests are skipped, with the reason.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

from playwright.async_api import (
    BrowserContext,
    Page,
    async_playwright,
)

from tests.browser.helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DOCS_SCREENSHOT_DIR,
    SCREENSHOT_DIR,
    TIMEOUT_MS,
    VIEWPORT,
    ConsoleErrors,
    IngressProxies,
    node_label,
)

# --- fixtures -------------------------------------------------------------------


@pytest.fixture
def color_scheme() -> str:
    """The page's ``prefers-color-scheme``; parametrize ``color_scheme`` to change it."""
    return "light"


@pytest.fixture
def chromium_executable() -> str:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"{CHROMIUM} not found: apt-get install chromium (scripts/test.sh does)")
    return CHROMIUM


@pytest.fixture
def console_errors() -> ConsoleErrors:
    return ConsoleErrors()


@pytest_asyncio.fixture
async def browser_context(
    chromium_executable: str,
    color_scheme: str,
    tmp_path: Path,
    pytestconfig: pytest.Config,
) -> AsyncIterator[BrowserContext]:
    """A Chromium with an empty profile in ``tmp_path``, closed after the test."""
    headed = bool(pytestconfig.getoption("--headed", default=False))
    slow_mo = float(pytestconfig.getoption("--slowmo", default=0) or 0)
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=chromium_executable,
            headless=not headed,
            args=list(CHROMIUM_ARGS),
            slow_mo=slow_mo,
            color_scheme=color_scheme,  # type: ignore[arg-type]
            viewport=VIEWPORT,  # type: ignore[arg-type]
            locale="en-US",
            timezone_id="UTC",
            service_workers="block",
        )
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context
        finally:
            await context.close()


@pytest_asyncio.fixture
async def browser_page(
    browser_context: BrowserContext, console_errors: ConsoleErrors
) -> AsyncIterator[Page]:
    """The context's page, watched for console errors (see ``console_errors``)."""
    context = browser_context
    context.on("page", console_errors.watch)  # pages the test opens later, popups too
    page = context.pages[0] if context.pages else await context.new_page()
    console_errors.watch(page)
    yield page


@pytest_asyncio.fixture
async def ingress_proxy() -> AsyncIterator[IngressProxies]:
    """``await ingress_proxy(upstream_url)``: a started proxy, stopped after the test."""
    proxies = IngressProxies()
    try:
        yield proxies
    finally:
        await proxies.stop()


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Callable[..., Awaitable[Path]]:
    """``await screenshot(page, label=None)``: a full-page PNG under tests/artifacts/screenshots."""
    label = node_label(request.node)

    async def save(page: Page, name: str | None = None) -> Path:
        dark = await page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
        parts = [label, *([re.sub(r"[^A-Za-z0-9_.-]+", "_", name)] if name else [])]
        parts.append("dark" if dark else "light")
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOT_DIR / ("-".join(parts) + ".png")
        await page.screenshot(path=str(path), full_page=True, animations="disabled")
        if name and os.environ.get("HOYMILES_DOCS_SCREENSHOTS") == "1":
            DOCS_SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
            docs = DOCS_SCREENSHOT_DIR / f"{parts[1]}-{parts[-1]}.png"
            docs.write_bytes(path.read_bytes())
        return path

    return save


# --- failing the test ------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    """A test that passed fails after all when the browser or the proxy saw a problem."""
    result = yield
    funcargs: dict[str, Any] = getattr(item, "funcargs", {})
    problems: list[str] = []
    errors = funcargs.get("console_errors")
    if isinstance(errors, ConsoleErrors) and errors.unexpected:
        problems.append("the browser reported errors:")
        problems.extend(f"  {e}" for e in errors.unexpected)
    proxies = funcargs.get("ingress_proxy")
    if isinstance(proxies, IngressProxies):
        for proxy in proxies.started:
            problems.extend(f"ingress: {p}" for p in proxy.problems())
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
    return result
