"""MQTT command topics: which topic names which command of the registry.

``<base>/<inverter serial>/cmd/<name>`` and ``<base>/dtu/cmd/<name>`` (with
several DTUs ``<base>/dtu/<dtu serial>/cmd/<name>``) become a
:class:`~hoymiles_bridge.core.commands.CommandRequest`; the registry
(:mod:`hoymiles_bridge.core.commands`) checks the name and the payload, the
fleet runs it, and the outcome goes back to ``<topic>/status``.
"""

from __future__ import annotations

from hoymiles_bridge.core.commands import CommandRequest, Target


def split_topic(base: str, topic: str) -> tuple[Target, str, str] | None:
    """``(target, serial, name)`` of a command topic, None if it is not one."""
    if not topic.startswith(base + "/"):
        return None
    parts = topic[len(base) + 1 :].split("/")
    if len(parts) == 3 and parts[1] == "cmd":
        if parts[0] == "dtu":
            return Target.DTU, "", parts[2]
        return Target.INVERTER, parts[0].upper(), parts[2]
    if len(parts) == 4 and parts[0] == "dtu" and parts[2] == "cmd":
        return Target.DTU, parts[1].upper(), parts[3]
    return None


def request_for(base: str, topic: str, payload: bytes, *, retained: bool) -> CommandRequest | None:
    """The command a message on ``topic`` asks for; None when ``topic`` is no command topic."""
    where = split_topic(base, topic)
    if where is None:
        return None
    target, serial, name = where
    return CommandRequest(target, serial, name, payload, retained=retained, origin=topic)


__all__ = ["request_for", "split_topic"]
