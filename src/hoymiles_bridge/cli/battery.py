"""``hoymiles-bridge battery``: talk to an MS-A2 / HiBattery through its own MQTT topics.

Like ``hoymiles-bridge dtu``, this goes to the device itself, not through a
running bridge: it reads the firmware's state topics and publishes to its
command topics, with the same rules as the bridge (setpoint range, TOU plan
checks before anything is sent, acks mapped to readable outcomes).

    hoymiles-bridge battery --mqtt HOST:PORT list
    hoymiles-bridge battery --mqtt HOST:PORT status [--battery DEV_ID]
    hoymiles-bridge battery --mqtt HOST:PORT mode general|mqtt_ctrl|tou_plan
    hoymiles-bridge battery --mqtt HOST:PORT setpoint W [--hold S]
    hoymiles-bridge battery --mqtt HOST:PORT tou-get Mon
    hoymiles-bridge battery --mqtt HOST:PORT tou-set plan.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import aiomqtt

from hoymiles_bridge.cli.common import MQTT_PORT, broker_address
from hoymiles_bridge.core.battery import ACK_TIMEOUT, KEEPALIVE_INTERVAL
from hoymiles_bridge.errors import InvalidArgumentError
from hoymiles_bridge.protocol import battery as fw
from hoymiles_bridge.protocol.battery import FirmwareTopics, Inbound, Outbound, Source

EXIT_FAILED = 1
#: The largest TOU file read.
_MAX_FILE: Final = 64 * 1024


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "battery",
        help="read or command an MS-A2 / HiBattery through its MQTT topics",
        description="Talk to a battery's own MQTT topics (no running bridge needed).",
    )
    parser.add_argument(
        "--mqtt", type=broker_address, default=("127.0.0.1", MQTT_PORT), metavar="HOST:PORT"
    )
    parser.add_argument("--prefix", default="homeassistant", help="the discovery prefix")
    parser.add_argument("--battery", metavar="DEV_ID", help="which battery (default: the only one)")
    parser.add_argument(
        "--wait", type=float, default=3.0, help="seconds to listen for batteries (list, status)"
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="the batteries publishing on the broker")
    sub.add_parser("status", help="one battery's values, decoded")
    mode = sub.add_parser("mode", help="set the EMS mode")
    mode.add_argument("mode", choices=fw.EMS_MODES)
    setpoint = sub.add_parser("setpoint", help="battery power in W: + discharge, - charge")
    setpoint.add_argument("watts", type=float)
    setpoint.add_argument(
        "--hold", type=float, default=0.0, metavar="S", help="keep it alive for S seconds, then 0 W"
    )
    get = sub.add_parser("tou-get", help="the TOU plan of one weekday")
    get.add_argument("day", choices=fw.WEEKDAYS)
    put = sub.add_parser("tou-set", help="send TOU day plans and a week plan from a JSON file")
    put.add_argument("file", type=Path)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_main(args))
    except aiomqtt.MqttError as err:
        print(f"error: MQTT broker {args.mqtt[0]}:{args.mqtt[1]}: {err}", file=sys.stderr)
        return EXIT_FAILED


async def _main(args: argparse.Namespace) -> int:
    host, port = args.mqtt
    async with aiomqtt.Client(host, port, identifier=f"hoymiles-cli-{time.time_ns()}") as client:
        await client.subscribe(f"{args.prefix}/sensor/+/quick/state", qos=0)
        if args.action == "status":
            await client.subscribe(f"{args.prefix}/sensor/+/device/state", qos=0)
            await client.subscribe(f"{args.prefix}/sensor/+/system/state", qos=0)
        await client.subscribe(f"{args.prefix}/sensor/+/+/ack", qos=1)
        await client.subscribe(f"{args.prefix}/sensor/+/tou_plan/status", qos=1)
        session = _Session(client, args.prefix)
        if args.action == "list":
            found = await session.listen(args.wait)
            for dev_id, values in sorted(found.items()):
                soc, power = values.get("soc", "?"), values.get("battery_power", "?")
                print(f"{dev_id}  soc {soc} %  power {power} W")
            return 0 if found else EXIT_FAILED
        dev_id = args.battery or await session.only_one(args.wait)
        fw.check_dev_id(dev_id)
        topics = FirmwareTopics(args.prefix, dev_id)
        if args.action == "status":
            values, sources = await session.status(args.wait, dev_id)
            print(json.dumps({"dev_id": dev_id, "sources": sources, **values}, indent=2))
            return 0 if sources else EXIT_FAILED
        if args.action == "mode":
            await client.publish(topics.command(Outbound.EMS_MODE), args.mode, qos=1)
            print(f"sent {args.mode}; the battery reports its mode within 5 minutes")
            return 0
        if args.action == "setpoint":
            return await session.setpoint(topics, dev_id, args.watts, args.hold)
        if args.action == "tou-get":
            ack = await session.ask(
                topics, Outbound.TOU_GET, Inbound.PLAN_STATUS, fw.plan_request(args.day)
            )
            print(json.dumps(ack.body, indent=2) if ack.ok else ack.describe())
            return 0 if ack.ok else EXIT_FAILED
        return await session.tou_set(topics, args.file)


class _Session:
    def __init__(self, client: aiomqtt.Client, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    async def _messages(self, seconds: float) -> AsyncIterator[tuple[str, bytes]]:
        """Messages for ``seconds``; the timeout never spans a ``yield``."""
        deadline = time.monotonic() + seconds
        incoming = aiter(self.client.messages)
        while (left := deadline - time.monotonic()) > 0:
            try:
                async with asyncio.timeout(left):
                    message = await anext(incoming)
            except TimeoutError:
                return
            payload = message.payload
            yield message.topic.value, bytes(payload) if isinstance(payload, bytes) else b""

    async def listen(self, seconds: float, only: str | None = None) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        async for topic, payload in self._messages(seconds):
            match = fw.parse_topic(self.prefix, topic)
            if match is None or match.kind is not Inbound.QUICK:
                continue
            if only is not None and match.dev_id != only:
                continue
            try:
                found[match.dev_id] = fw.parse_state(Source.QUICK, payload).values
            except fw.BatteryPayloadError:
                continue
            if only is not None:
                break
        return found

    async def status(self, seconds: float, dev_id: str) -> tuple[dict[str, Any], list[str]]:
        """One battery's values from ``quick``, ``device`` and ``system`` (those that came
        within ``seconds``: the last two come every 5 minutes), and which came."""
        values: dict[str, Any] = {}
        sources: list[str] = []
        async for topic, payload in self._messages(seconds):
            match = fw.parse_topic(self.prefix, topic)
            if match is None or match.dev_id != dev_id:
                continue
            try:
                source = Source(match.kind.value)
                values.update(fw.parse_state(source, payload).values)
            except (ValueError, fw.BatteryPayloadError):
                continue
            if source.value not in sources:
                sources.append(source.value)
            if len(sources) == len(Source):
                break
        return values, sources

    async def only_one(self, seconds: float) -> str:
        found = await self.listen(seconds)
        if len(found) != 1:
            names = ", ".join(sorted(found)) or "none"
            raise InvalidArgumentError(f"name the battery with --battery (found: {names})")
        return next(iter(found))

    async def ask(
        self, topics: FirmwareTopics, what: Outbound, answer: Inbound, payload: str
    ) -> fw.Ack:
        await self.client.publish(topics.command(what), payload, qos=1)
        async for topic, body in self._messages(ACK_TIMEOUT):
            if topic == topics.inbound(answer):
                return fw.parse_ack(answer, body)
        raise InvalidArgumentError(f"no answer on {answer.value} within {ACK_TIMEOUT:g} s")

    async def setpoint(self, topics: FirmwareTopics, dev_id: str, watts: float, hold: float) -> int:
        serial = dev_id.rsplit("-", 1)[-1]
        rated = fw.profile_for(None, serial).rated_power
        low, high = -rated, rated
        if not low <= watts <= high:
            raise InvalidArgumentError(f"setpoint {watts:g} W is outside {low:g}..{high:g} W")
        await self.client.publish(topics.command(Outbound.EMS_MODE), "mqtt_ctrl", qos=1)
        await self.client.publish(
            topics.command(Outbound.SETPOINT), fw.setpoint_payload(watts), qos=1
        )
        print(f"sent mqtt_ctrl and {watts:g} W")
        if hold <= 0:
            print("the battery forgets it after about a minute; use --hold to keep it")
            return 0
        end = time.monotonic() + hold
        count = 0
        while (left := end - time.monotonic()) > 0:
            await asyncio.sleep(min(KEEPALIVE_INTERVAL, left))
            if time.monotonic() >= end:
                break
            value = fw.perturbed(watts, count, low, high)
            count += 1
            await self.client.publish(
                topics.command(Outbound.SETPOINT), fw.setpoint_payload(value), qos=1
            )
        await self.client.publish(
            topics.command(Outbound.SETPOINT), fw.setpoint_payload(0.0), qos=1
        )
        print(f"held {hold:g} s ({count} re-sends), then 0 W")
        return 0

    async def tou_set(self, topics: FirmwareTopics, path: Path) -> int:
        if path.stat().st_size > _MAX_FILE:
            raise InvalidArgumentError(f"{path} is larger than {_MAX_FILE} bytes")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as err:
            raise InvalidArgumentError(f"{path} is not JSON: {err}") from None
        if not isinstance(data, dict):
            raise InvalidArgumentError(f"{path} holds no JSON object")
        days = data.get("day_plans", [data] if "day_plan" in data else [])
        if not isinstance(days, list):
            raise InvalidArgumentError("day_plans must be a list")
        plans = [fw.day_plan(day) for day in days]  # every rule checked before sending
        week = fw.week_plan(data) if "week_plan" in data else None
        failed = 0
        for plan in plans:
            ack = await self.ask(topics, Outbound.TOU_DAY, Inbound.DAY_ACK, plan.payload())
            print(f"day plan {plan.day_idx}: {ack.describe()}")
            failed += not ack.ok
        if week is not None:
            ack = await self.ask(topics, Outbound.TOU_WEEK, Inbound.WEEK_ACK, week.payload())
            print(f"week plan: {ack.describe()}")
            failed += not ack.ok
        return EXIT_FAILED if failed else 0


__all__ = ["register", "run"]
