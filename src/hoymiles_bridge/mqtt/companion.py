"""What rides along on the bridge's broker link: the port a companion adapter implements.

A companion (the batteries' adapter, :mod:`hoymiles_bridge.mqtt.battery`, and the
power controller's, :mod:`hoymiles_bridge.mqtt.controller`)
shares :class:`~hoymiles_bridge.mqtt.bridge.MqttBridge`'s one broker
connection: its subscriptions join the link's, it sees every incoming message
before the bridge does, and it hears the link's connects and disconnects.
"""

from __future__ import annotations

from typing import Protocol

from hoymiles_bridge.mqtt.link import MqttLink, MqttMessage


class LinkCompanion(Protocol):
    @property
    def subscriptions(self) -> tuple[str, ...]: ...

    def bind(self, link: MqttLink) -> None:
        """The link it publishes on (called once, before the link runs)."""

    async def handle(self, message: MqttMessage) -> bool:
        """True when the message was the companion's (the bridge then ignores it)."""

    async def on_connect(self) -> None:
        """After each (re)connect and each re-announce for Home Assistant."""

    def on_disconnect(self) -> None:
        """A broker session ended (synchronous, must not block)."""


__all__ = ["LinkCompanion"]
