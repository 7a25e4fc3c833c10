"""``hoymiles-bridge controller mode MODE``: switch a running bridge's power controller.

It publishes the mode on ``<base>/controller/cmd/mode`` of the bridge's broker
and prints the bridge's answer (``.../cmd/mode/status``): ``ok`` or why it
refused. Exit 0 when the bridge took it, 1 when it refused or did not answer.
"""

from __future__ import annotations

import argparse
import asyncio

from hoymiles_bridge.cli.common import MQTT_PORT, broker_address
from hoymiles_bridge.core.controller import MODES

#: Seconds to wait for the bridge's answer.
ANSWER_TIMEOUT = 10.0


async def _switch(host: str, port: int, base: str, mode: str, timeout: float) -> tuple[bool, str]:
    import aiomqtt

    topic = f"{base.strip('/')}/controller/cmd/mode"
    async with aiomqtt.Client(host, port) as client:
        await client.subscribe(f"{topic}/status", qos=1)
        await client.publish(topic, mode, qos=1)
        try:
            async with asyncio.timeout(timeout):
                async for message in client.messages:
                    payload = message.payload
                    text = (
                        bytes(payload).decode("utf-8", "replace")
                        if isinstance(payload, bytes | bytearray)
                        else ""
                    )
                    return text == "ok", text
        except TimeoutError:
            return (
                False,
                f"no answer on {topic}/status within {timeout:g} s (is the bridge running?)",
            )
    return False, "the broker closed the connection"


def run(args: argparse.Namespace) -> int:
    host, port = args.mqtt
    import aiomqtt

    try:
        ok, text = asyncio.run(_switch(host, port, args.base_topic, args.mode, args.timeout))
    except aiomqtt.MqttError as err:
        print(f"error: cannot reach the broker {host}:{port} ({err})")
        return 1
    print(text)
    return 0 if ok else 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "controller",
        help="switch the power controller of a running bridge",
        description="Switch a running bridge's power controller through its MQTT broker.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    mode = actions.add_parser("mode", help="switch the mode")
    mode.add_argument("mode", choices=MODES, help="the new mode")
    mode.add_argument(
        "--mqtt",
        type=broker_address,
        default=("127.0.0.1", MQTT_PORT),
        metavar="HOST[:PORT]",
        help="the bridge's broker (default 127.0.0.1:1883)",
    )
    mode.add_argument("--base-topic", default="solar", help="the bridge's base_topic (solar)")
    mode.add_argument("--timeout", type=float, default=ANSWER_TIMEOUT, help="seconds to wait")
    mode.set_defaults(func=run)
