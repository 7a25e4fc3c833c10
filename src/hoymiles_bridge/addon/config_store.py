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

    async def local_networks(self) -> list[str]:
        """The host's IPv4 networks from the Supervisor (``GET /network/info``), add-on only.

        The call needs ``hassio_api: true`` in config.yaml, which this add-on
        does not ask for (least privilege): the Supervisor answers 403 and the
        web UI falls back to other hints. ``[]`` whenever it gives none.
        """
        try:
            data = await self.client.request("GET", "/network/info")
        except SupervisorError as err:
            _LOGGER.debug("No network info from the Supervisor: %s", err)
            return []
        return network_addresses(data)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))
        await self.client.close()


def network_addresses(data: Any) -> list[str]:
    """``address/prefix`` of each interface in the Supervisor's network info, primary first.

    Takes today's shape (``interfaces`` a list, ``ipv4.address`` a list) and
    the older one (``interfaces`` a mapping, ``ip_address`` a string); ignores
    anything else.
    """
    interfaces = data.get("interfaces") if isinstance(data, dict) else None
    if isinstance(interfaces, dict):
        interfaces = list(interfaces.values())
    if not isinstance(interfaces, list):
        return []
    found: list[tuple[bool, str]] = []
    for iface in interfaces:
        if not isinstance(iface, dict):
            continue
        ipv4 = iface.get("ipv4")
        addresses = ipv4.get("address") if isinstance(ipv4, dict) else iface.get("ip_address")
        if isinstance(addresses, str):
            addresses = [addresses]
        if not isinstance(addresses, list):
            continue
        primary = iface.get("primary") is True
        found += [(not primary, a) for a in addresses if isinstance(a, str) and "/" in a]
    return [address for _, address in sorted(found, key=lambda item: item[0])]


__all__ = ["RESTART_ANSWER_WAIT", "SupervisorConfigStore", "network_addresses"]
