"""CPU per published message: paho through aiomqtt (the link's client before
issue 15) against gmqtt (its client since).

The publishing-cost issue asked whether a maintained asyncio MQTT client is
measurably cheaper per message. This publishes ``--messages`` retained
messages (QoS 0, then QoS 1) to a private Mosquitto with each client, the way
``MqttLink.publish_many`` handed a poll to paho, and prints the client's CPU
per message beside Mosquitto's for the same messages::

    python benchmarks/bench_mqtt_clients.py

gmqtt is the link's client; aiomqtt and paho-mqtt are still installed (the
battery simulator's client).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import resource
import sys
from collections.abc import Awaitable, Callable

import aiomqtt

import bench_bridge
from hoymiles_bridge.mqtt.local_broker import LocalBroker

BATCH = 170  # about one fresh poll of a DTU with four inverters


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def topics(count: int) -> list[str]:
    return [f"bench/{1000 + i % 800}/0/power" for i in range(count)]


async def paho_run(port: int, count: int, qos: int) -> None:
    async with aiomqtt.Client("127.0.0.1", port, max_inflight_messages=0) as client:
        paho = client._client  # what MqttLink.publish_many uses
        pending = client._pending_publishes
        waits: list[asyncio.Event] = []
        last = None
        for index, topic in enumerate(topics(count)):
            last = paho.publish(topic, b"123.4", qos, True)
            if qos:
                event = asyncio.Event()
                pending[last.mid] = event
                waits.append(event)
            if index % BATCH == BATCH - 1:
                await asyncio.sleep(0)
        if last is not None and not qos and not last.is_published():
            written = asyncio.Event()  # aiomqtt sets it once paho wrote the message
            pending[last.mid] = written
            waits.append(written)
        for event in waits:
            await event.wait()


async def gmqtt_run(port: int, count: int, qos: int) -> None:
    import gmqtt  # optional: see the module's docstring

    client = gmqtt.Client("bench-gmqtt")
    acked = asyncio.Event()
    room = asyncio.Event()  # its message ids are 16 bits: keep under 5,000 unacknowledged
    outstanding = 0

    def on_publish(_client: object, _mid: int) -> None:
        nonlocal outstanding
        outstanding -= 1
        if outstanding < 1000:
            room.set()
        if outstanding == 0:
            acked.set()

    client.on_message = lambda *_: 0
    if qos:
        client.on_publish = on_publish
    # MQTT 3.1.1 as the link speaks it (with 5 the broker's receive maximum caps ids at 20)
    await client.connect("127.0.0.1", port, version=gmqtt.constants.MQTTv311)
    for index, topic in enumerate(topics(count)):
        client.publish(topic, b"123.4", qos=qos, retain=True)
        outstanding += qos
        if index % BATCH == BATCH - 1:
            await asyncio.sleep(0)
            if qos and outstanding > 5000:
                room.clear()
                await room.wait()
    if qos and outstanding:
        await acked.wait()
    await client.disconnect()


async def measure(
    name: str,
    run: Callable[[int, int, int], Awaitable[None]],
    count: int,
    levels: tuple[int, ...] = (0, 1),
) -> list[str]:
    lines = []
    for qos in levels:
        broker = LocalBroker()
        await broker.start()
        try:
            pids = bench_bridge.child_pids("mosquitto")
            broker_cpu0 = bench_bridge.proc_cpu_seconds(pids[0]) if len(pids) == 1 else None
            own0 = cpu()
            await run(broker.port, count, qos)
            own = cpu() - own0
            await asyncio.sleep(0.2)  # the broker finishes what it received
            broker_cpu1 = bench_bridge.proc_cpu_seconds(pids[0]) if len(pids) == 1 else None
        finally:
            await broker.stop()
        broker_us = (
            1e6 * (broker_cpu1 - broker_cpu0) / count
            if broker_cpu0 is not None and broker_cpu1 is not None
            else float("nan")
        )
        lines.append(
            f"| {name} | {qos} | {1e6 * own / count:.1f} | {broker_us:.1f} "
            f"| {own * 1e6 / count / broker_us:.1f}x |"
        )
    return lines


async def main_async(count: int) -> None:
    rows = [
        "| client | QoS | client µs/msg | Mosquitto µs/msg | ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    rows += await measure(f"paho-mqtt {bench_bridge.package_version('paho-mqtt')}", paho_run, count)
    if importlib.util.find_spec("gmqtt") is not None:
        # QoS 0 only: with QoS 1 its on_publish did not come back here (an open question).
        rows += await measure(
            f"gmqtt {bench_bridge.package_version('gmqtt')}", gmqtt_run, count, levels=(0,)
        )
    else:
        rows.append("| gmqtt | - | not installed | | |")
    print(bench_bridge.machine_line(bench_bridge.environment()))
    print()
    print("\n".join(rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    args = parser.parse_args(argv)
    asyncio.run(main_async(args.messages))
    return 0


if __name__ == "__main__":
    sys.exit(main())
