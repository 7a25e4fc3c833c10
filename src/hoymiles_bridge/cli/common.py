"""Small helpers shared by the sub-commands."""

from __future__ import annotations

import argparse

from hoymiles_bridge.dtu.connection import DEFAULT_PORT


def host_port(text: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT`` or ``[v6]:PORT`` -> (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    if not host:
        raise argparse.ArgumentTypeError(f"{text!r} has no host name")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise argparse.ArgumentTypeError(f"port {port_text!r} is not a number from 0 to 65535")
    return host, int(port_text)


#: MQTT's port, where a broker address names none.
MQTT_PORT = 1883


def broker_address(text: str) -> tuple[str, int]:
    """An MQTT broker's ``HOST[:PORT]`` (port 1883 by default) -> (host, port)."""
    return host_port(text, default_port=MQTT_PORT)


def enc_rand_hex(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError("--enc-rand must be hexadecimal (32 hex digits)") from None
    if not raw:
        raise argparse.ArgumentTypeError("--enc-rand must not be empty")
    return raw
