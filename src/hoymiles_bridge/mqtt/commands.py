"""MQTT command topics: which topic names which command of the registry, and how
the commands that arrive on them run.

``<base>/<inverter serial>/cmd/<name>``, ``<base>/dtu/cmd/<name>`` (with
several DTUs ``<base>/dtu/<dtu serial>/cmd/<name>``), a battery's
``<base>/battery/<dev_id>/cmd/<name>`` and a cloud station's
``<base>/cloud/<station id>/cmd/<name>`` become a
:class:`~hoymiles_bridge.core.commands.CommandRequest`; the registry
(:mod:`hoymiles_bridge.core.commands`) checks the name and the payload, the
fleet runs it, and the outcome goes back to ``<topic>/status``.

:class:`CommandRunner` runs them: one at a time per command topic, the newest
waiting one replacing an older one, and a bounded number at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from hoymiles_bridge.core.commands import CommandOutcome, CommandRequest, Target

#: Commands running at once (one per command topic).
MAX_COMMANDS_IN_FLIGHT: Final = 16
#: Tighter bounds for some targets: a battery's TOU command waits for its ack, a cloud
#: setting is a settings job in the cloud.
MAX_IN_FLIGHT_BY_TARGET: Final[Mapping[Target, int]] = {Target.BATTERY: 8, Target.CLOUD: 4}

_Key = tuple[Target | None, str, str]


def split_topic(base: str, topic: str) -> tuple[Target, str, str] | None:
    """``(target, serial, name)`` of a command topic, None if it is not one.

    A battery's id keeps its case (``MSA-280024370560``) and a cloud station's
    "serial" is its id, as sent (the registry checks both).
    """
    if not topic.startswith(base + "/"):
        return None
    parts = topic[len(base) + 1 :].split("/")
    if len(parts) == 3 and parts[1] == "cmd":
        if parts[0] == "dtu":
            return Target.DTU, "", parts[2]
        return Target.INVERTER, parts[0].upper(), parts[2]
    if len(parts) == 4 and parts[2] == "cmd":
        if parts[0] == "dtu":
            return Target.DTU, parts[1].upper(), parts[3]
        if parts[0] == "battery":
            return Target.BATTERY, parts[1][:64], parts[3]
        if parts[0] == "cloud":
            return Target.CLOUD, parts[1][:24], parts[3]
    return None


def request_for(base: str, topic: str, payload: bytes, *, retained: bool) -> CommandRequest | None:
    """The command a message on ``topic`` asks for; None when ``topic`` is no command topic."""
    where = split_topic(base, topic)
    if where is None:
        return None
    target, serial, name = where
    return CommandRequest(target, serial, name, payload, retained=retained, origin=topic)


class CommandRunner:
    """Runs commands in tasks of their own: one at a time per topic (target, device and
    name), the newest waiting one replacing an older one, so the latest wins.

    At most :data:`MAX_COMMANDS_IN_FLIGHT` run at once, and fewer of a target in
    :data:`MAX_IN_FLIGHT_BY_TARGET`; :meth:`queue` refuses one more in a sentence.
    """

    def __init__(
        self,
        submit: Callable[[CommandRequest], Awaitable[CommandOutcome | None]],
        *,
        max_in_flight: int = MAX_COMMANDS_IN_FLIGHT,
        by_target: Mapping[Target, int] = MAX_IN_FLIGHT_BY_TARGET,
    ) -> None:
        self._submit = submit
        self._max = max_in_flight
        self._by_target = by_target
        self._waiting: dict[_Key, CommandRequest] = {}
        self._running: dict[_Key, asyncio.Task[None]] = {}
        self._stopped = False

    def __repr__(self) -> str:
        return f"CommandRunner(running={len(self._running)})"

    @property
    def running(self) -> int:
        return len(self._running)

    def queue(self, request: CommandRequest) -> str | None:
        """Run ``request`` (or let it wait for its topic's running one); the reason in
        words when too many run at once, None when it was taken (after :meth:`stop`,
        nothing is run)."""
        if self._stopped:
            return None
        key: _Key = (request.target, request.serial, request.name)
        if key in self._running:
            self._waiting[key] = request  # the latest wins
            return None
        if len(self._running) >= self._max:
            return f"more than {self._max} commands at once; send it again"
        target = request.target
        bound = self._by_target.get(target) if target is not None else None
        busy = bound is not None and sum(k[0] is target for k in self._running) >= bound
        if busy and target is not None:
            return f"more than {bound} {target.value} commands at once; send it again"
        self._waiting[key] = request
        task = asyncio.create_task(self._run(key), name=f"command-{request.name[:32]}")
        self._running[key] = task
        return None

    async def _run(self, key: _Key) -> None:
        try:
            while (request := self._waiting.pop(key, None)) is not None:
                await self._submit(request)
        finally:
            # At once, in the same step: a request for this topic that comes later
            # starts a new task instead of waiting behind one that has ended.
            self._running.pop(key, None)

    async def stop(self) -> None:
        """End the running commands and take no more (the bridge stops)."""
        self._stopped = True
        self._waiting.clear()
        tasks = list(self._running.values())
        self._running.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


__all__ = [
    "MAX_COMMANDS_IN_FLIGHT",
    "MAX_IN_FLIGHT_BY_TARGET",
    "CommandRunner",
    "request_for",
    "split_topic",
]
