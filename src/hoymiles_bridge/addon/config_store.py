"""The add-on's options store: the Supervisor keeps them.

:class:`SupervisorConfigStore` reads the options (``GET /addons/self/info``),
saves them (``POST /addons/self/options``) and restarts the add-on
(``POST /addons/self/restart``). The validation, masking and merging of
secrets are the same as for every store (:mod:`hoymiles_bridge.config.store`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from hoymiles_bridge.addon.supervisor import (
    SupervisorApiError,
    SupervisorClient,
    SupervisorError,
)
from hoymiles_bridge.config.options import Options, WebOptions, storable
from hoymiles_bridge.config.store import (
    ConfigStoreError,
    Mode,
    prepare,
    scrub,
    secret_values,
)

_LOGGER = logging.getLogger(__name__)

#: How long a restart request waits for the Supervisor's answer before it
#: counts as under way. The real Supervisor answers only after the restart,
#: which stops this process first: stay well below the web server's 2 s grace
#: for open requests, so the page gets its 202 before the stop.
RESTART_ANSWER_WAIT: Final = 1.0


class SupervisorConfigStore:
    """The add-on's options, kept by the Supervisor."""

    mode: Mode = "addon"
    source = "the Home Assistant Supervisor (the add-on's options)"
    can_save = True
    can_restart = True
    process_web: WebOptions | None = None

    def __init__(
        self, client: SupervisorClient, *, restart_wait: float = RESTART_ANSWER_WAIT
    ) -> None:
        self.client = client
        self.restart_wait = restart_wait
        self._tasks: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"SupervisorConfigStore({self.client!r})"

    async def load(self) -> dict[str, Any]:
        try:
            info = await self.client.addon_info()
        except SupervisorError:
            raise ConfigStoreError(
                "The Supervisor did not give the add-on's options; try again shortly.",
                status=502,
            ) from None
        options = info.get("options")
        return options if isinstance(options, dict) else {}

    async def save(self, submitted: dict[str, Any]) -> Options:
        stored = await self.load()
        clean, options = prepare(submitted, stored)
        document = storable(clean, addon=True)
        try:
            await self.client.set_options(document)
        except SupervisorApiError as err:
            reason = scrub(err.reason, secret_values(document) + secret_values(stored))
            raise ConfigStoreError(
                f"The Supervisor refused the options: {reason.rstrip('.')}.", status=502
            ) from None
        except SupervisorError:
            raise ConfigStoreError(
                "The Supervisor did not answer, so the options were not saved.", status=502
            ) from None
        return options

    async def restart(self) -> None:
        task = asyncio.create_task(self.client.restart(), name="supervisor-restart-addon")
        self._tasks.add(task)
        task.add_done_callback(self._forget)
        done, _ = await asyncio.wait({task}, timeout=self.restart_wait)
        if task not in done:
            # Normal with the real Supervisor: it answers once we have been restarted.
            _LOGGER.debug("The Supervisor is restarting the add-on")
            return
        try:
            task.result()
        except SupervisorApiError as err:
            raise ConfigStoreError(
                f"The Supervisor refused to restart the add-on: {err.reason.rstrip('.')}.",
                status=502,
            ) from None
        except SupervisorError:
            raise ConfigStoreError(
                "The Supervisor did not answer, so the add-on was not restarted.", status=502
            ) from None

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _LOGGER.debug("The restart request ended with: %s", task.exception())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        await self.client.close()


__all__ = ["RESTART_ANSWER_WAIT", "SupervisorConfigStore"]
