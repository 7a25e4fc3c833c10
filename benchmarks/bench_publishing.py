"""Publishing cost: every target of the publishing-cost issue, measured and judged.

Run from the repository root, inside the venv::

    python benchmarks/bench_publishing.py            # every row (about 6 minutes)
    python benchmarks/bench_publishing.py --quick    # shorter windows, for a first look

Rows (each printed with met / not met, and written to
``benchmarks/results/publishing-latest.json``):

* **per message**: the bridge's CPU per published message against
  Mosquitto's CPU per message, both read from ``/proc`` in the same 200-DTU
  run (target: at most 2x);
* **200 DTUs x 4 inverters every 5 s**, default options (discovery and the
  OpenDTU topics on): CPU of one core, p99 from a DTU's reply to the last
  message of its poll reaching the broker (the PUBACK at QoS 1, the socket
  write at QoS 0), event-loop lag p99 and peak RSS (``bench_bridge.py`` does
  the run);
* **1,000 DTUs x 4 inverters every 35 s**: CPU, and polls missed (a DTU whose
  data came more than 1.5 intervals after its previous poll);
* **time to first data**: from starting ``hoymiles-bridge run`` (a new
  process, web UI on) to the first ``<serial>/0/power`` on the broker, one
  simulated DTU with four inverters; the median of three starts;
* **idle RSS**: that process's RSS after it ran ``IDLE_SECONDS`` with one
  DTU and the web UI on;
* **battery stream**: the battery companion's 1 s messages from six units,
  as CPU of one core (reported as not measured while there is no battery
  companion in the package).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt

import bench_bridge
from _process import stop_child
from hoymiles_bridge.mqtt.local_broker import LocalBroker, find_mosquitto
from hoymiles_bridge.simulator.physics import local_midnight

HERE = Path(__file__).resolve().parent
RESULTS_PATH = HERE / "results" / "publishing-latest.json"

PER_MESSAGE_RATIO = 2.0
CPU_PERCENT = 30.0
P99_MS = 20.0
LAG_P99_MS = 10.0
RSS_MB = 100.0
FIRST_DATA_S = 1.5
IDLE_RSS_MB = 45.0
#: The battery row: units in the simulated system, and the seconds each bridge
#: runs before its CPU is read.
BATTERY_UNITS = 6
BATTERY_WARMUP = 15.0
#: How long the started bridge runs before its idle RSS is read.
IDLE_SECONDS = 30.0
STARTS = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def bridge_command() -> list[str]:
    script = Path(sys.executable).with_name("hoymiles-bridge")
    if script.exists():
        return [str(script)]
    return [
        sys.executable,
        "-c",
        "import sys; from hoymiles_bridge.cli.main import main; sys.exit(main())",
    ]


async def start_once(
    workdir: Path, sim_port: int, broker: LocalBroker, idle: float
) -> dict[str, float]:
    """Start ``hoymiles-bridge run``; time the first ``0/power``; read its RSS after ``idle``."""
    config = workdir / "bridge.yaml"
    config.write_text(
        json.dumps(
            {
                "dtus": [{"host": "127.0.0.1", "port": sim_port}],
                "mqtt": {"host": "127.0.0.1", "port": broker.port},
                "web": {"host": "127.0.0.1", "port": free_port()},
                "log_level": "warning",
            }
        ),
        encoding="utf-8",
    )
    first: float | None = None
    async with aiomqtt.Client("127.0.0.1", broker.port) as sub:
        await sub.subscribe("solar/+/0/power")
        with (workdir / "bridge.log").open("ab") as log:
            started = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                *bridge_command(),
                "run",
                "--config",
                str(config),
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        try:
            async with asyncio.timeout(30):
                async for message in sub.messages:
                    if not message.retain:
                        first = time.monotonic() - started
                        break
            await asyncio.sleep(max(0.0, idle - (time.monotonic() - started)))
            rss = bench_bridge.proc_status_kb(proc.pid, "VmRSS") / 1024
            peak = bench_bridge.proc_status_kb(proc.pid, "VmHWM") / 1024
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            await stop_child(proc, 10)
    # The retained topics of this start must not answer the next one.
    await clear_retained(broker.port)
    return {
        "first_data_s": first if first is not None else float("inf"),
        "rss_mb": rss,
        "rss_peak_mb": peak,
    }


async def clear_retained(port: int) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe("#")
        topics: set[str] = set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                async for message in client.messages:
                    if message.retain:
                        topics.add(message.topic.value)
        for topic in topics:
            await client.publish(topic, b"", retain=True, qos=1)


async def startup(idle: float, starts: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    fleet = work / "fleet.json"
    fleet.write_text(json.dumps(bench_bridge.fleet_document(1, 4)), encoding="utf-8")
    sims = await bench_bridge.Child.start(
        "simulators",
        [
            "_sims",
            str(fleet),
            "1",
            str(local_midnight(time.time()) + bench_bridge.SIM_START_HOUR * 3600),
            str(starts * (idle + 40) + 60),
        ],
        work / "sims.log",
    )
    broker: LocalBroker | None = None
    try:
        ready = await sims.event(timeout=60)
        broker = LocalBroker()  # its port is picked now, with the simulator's taken
        await broker.start()
        runs = [await start_once(work, ready["ports"][0], broker, idle) for _ in range(starts)]
    finally:
        await sims.close()
        if broker is not None:
            await broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    return {
        "starts": runs,
        "first_data_s": statistics.median(r["first_data_s"] for r in runs),
        "idle_rss_mb": statistics.median(r["rss_mb"] for r in runs),
        "idle_seconds": idle,
    }


def load_run(dtus: int, interval: int, duration: float, sim_speed: float) -> dict[str, Any]:
    args = argparse.Namespace(
        inverters=4,
        interval=interval,
        duration=duration,
        sim_speed=sim_speed,
        warmup_timeout=None,
        profile=False,
        mqtt_inflight=None,
        mqtt_max_calls=None,
        tcp_nodelay=False,
        broker_nodelay=False,
        options=None,
        default_gc=False,
    )
    work = Path(tempfile.mkdtemp(prefix="bench-publishing-"))
    try:
        return asyncio.run(bench_bridge.run_one(dtus, args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def bridge_cpu(
    work: Path, sim_port: int, broker: LocalBroker, window: float
) -> tuple[float, float]:
    """CPU % of one core of ``hoymiles-bridge run`` (one DTU) over ``window`` after a
    warm-up, and the messages per second it published on ``solar/battery/#``."""
    config = work / "battery-bridge.yaml"
    config.write_text(
        json.dumps(
            {
                "dtus": [{"host": "127.0.0.1", "port": sim_port}],
                "mqtt": {"host": "127.0.0.1", "port": broker.port},
                "web": {"host": "127.0.0.1", "port": free_port()},
                "log_level": "warning",
            }
        ),
        encoding="utf-8",
    )
    with (work / "battery-bridge.log").open("ab") as log:
        proc = await asyncio.create_subprocess_exec(
            *bridge_command(),
            "run",
            "--config",
            str(config),
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    seen = 0
    try:
        await asyncio.sleep(BATTERY_WARMUP)
        async with aiomqtt.Client("127.0.0.1", broker.port) as sub:
            await sub.subscribe("solar/battery/#")
            cpu0, t0 = bench_bridge.proc_cpu_seconds(proc.pid), time.monotonic()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(window):
                    async for message in sub.messages:
                        seen += not message.retain
            cpu1, t1 = bench_bridge.proc_cpu_seconds(proc.pid), time.monotonic()
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        await stop_child(proc, 10)
    await clear_retained(broker.port)
    if cpu0 is None or cpu1 is None:
        return float("nan"), 0.0
    return 100 * (cpu1 - cpu0) / (t1 - t0), seen / (t1 - t0)


async def battery_stream(window: float) -> dict[str, Any]:
    """The bridge's CPU with six battery units sending every second, and without them."""
    if importlib.util.find_spec("hoymiles_bridge.simulator.battery") is None:
        return {"measured": False, "why": "no battery companion in this build (the battery issue)"}
    work = Path(tempfile.mkdtemp(prefix="bench-battery-"))
    fleet = work / "fleet.json"
    fleet.write_text(json.dumps(bench_bridge.fleet_document(1, 4)), encoding="utf-8")
    start = local_midnight(time.time()) + bench_bridge.SIM_START_HOUR * 3600
    sims = await bench_bridge.Child.start(
        "simulators",
        ["_sims", str(fleet), "1", str(start), str(4 * (window + BATTERY_WARMUP) + 60)],
        work / "sims.log",
    )
    broker: LocalBroker | None = None
    batteries: asyncio.subprocess.Process | None = None
    try:
        ready = await sims.event(timeout=60)
        broker = LocalBroker()  # its port is picked now, with the simulator's taken
        await broker.start()
        port = ready["ports"][0]
        without, _ = await bridge_cpu(work, port, broker, window)
        with (work / "batteries.log").open("ab") as log:
            batteries = await asyncio.create_subprocess_exec(
                *bridge_command(),
                "simulate-battery",
                "--mqtt",
                f"127.0.0.1:{broker.port}",
                "--units",
                str(BATTERY_UNITS),
                "--jitter",
                "5",  # a real unit's powers wander: every quick message brings news
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        with_batteries, rate = await bridge_cpu(work, port, broker, window)
    finally:
        if batteries is not None:
            with contextlib.suppress(ProcessLookupError):
                batteries.terminate()
            await stop_child(batteries, 10)
        await sims.close()
        if broker is not None:
            await broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    return {
        "measured": True,
        "units": BATTERY_UNITS,
        "window_s": window,
        "cpu_percent": with_batteries - without,
        "cpu_percent_with": with_batteries,
        "cpu_percent_without": without,
        "battery_messages_per_s": rate,
    }


def rows(result: dict[str, Any]) -> list[tuple[str, str, str, bool | None]]:
    """(target, threshold, measured, met) for every target."""
    big, huge, start = result["200"], result["1000"], result["startup"]
    proc = big["cpu_percent_from_proc"]
    published = max(big["published"], 1)
    bridge_us = 1e6 * big["cpu_s"] / published
    broker_us = 1e6 * proc.get("mosquitto", 0.0) / 100 * big["wall_s"] / published
    ratio = bridge_us / broker_us if broker_us else float("inf")
    result["per_message"] = {"bridge_us": bridge_us, "mosquitto_us": broker_us, "ratio": ratio}
    battery = result["battery"]
    return [
        (
            "CPU per published message, bridge / Mosquitto (200 DTUs)",
            f"<= {PER_MESSAGE_RATIO:g}x",
            f"{ratio:.1f}x ({bridge_us:.1f} / {broker_us:.1f} us)",
            ratio <= PER_MESSAGE_RATIO,
        ),
        (
            "200 DTUs x 4 @ 5 s: CPU of one core",
            f"< {CPU_PERCENT:g} %",
            f"{big['cpu_percent']:.1f} %",
            big["cpu_percent"] < CPU_PERCENT,
        ),
        (
            "200 DTUs: p99 reply to broker",
            f"< {P99_MS:g} ms",
            f"{big['latency_ms']['p99']:.1f} ms",
            big["latency_ms"]["p99"] < P99_MS,
        ),
        (
            "200 DTUs: event-loop lag p99",
            f"< {LAG_P99_MS:g} ms",
            f"{big['loop_lag_ms']['p99']:.1f} ms",
            big["loop_lag_ms"]["p99"] < LAG_P99_MS,
        ),
        (
            "200 DTUs: RSS (peak)",
            f"< {RSS_MB:g} MB",
            f"{big['rss_peak_mb']:.1f} MB",
            big["rss_peak_mb"] < RSS_MB,
        ),
        (
            "1,000 DTUs x 4 @ 35 s: CPU of one core",
            f"< {CPU_PERCENT:g} %",
            f"{huge['cpu_percent']:.1f} %",
            huge["cpu_percent"] < CPU_PERCENT,
        ),
        (
            "1,000 DTUs: polls missed",
            "0",
            f"{huge['late_polls']} of {huge['real_data_calls']}",
            huge["late_polls"] == 0 and huge["warmed"],
        ),
        (
            "Time to first data (1 DTU, new process)",
            f"< {FIRST_DATA_S:g} s",
            f"{start['first_data_s']:.2f} s",
            start["first_data_s"] < FIRST_DATA_S,
        ),
        (
            "Idle RSS (1 DTU, web UI on)",
            f"< {IDLE_RSS_MB:g} MB",
            f"{start['idle_rss_mb']:.1f} MB",
            start["idle_rss_mb"] < IDLE_RSS_MB,
        ),
        (
            "Battery 1 s stream, 6 units: CPU of one core",
            "reported",
            (
                f"{battery['cpu_percent']:.1f} % ({battery['cpu_percent_with']:.1f} % with, "
                f"{battery['cpu_percent_without']:.1f} % without, one DTU polled; "
                f"{battery['battery_messages_per_s']:.0f} battery messages/s published)"
            )
            if battery.get("measured")
            else f"not measured: {battery['why']}",
            None,
        ),
    ]


def table(result: dict[str, Any]) -> str:
    lines = ["| target | goal | measured | |", "|---|---:|---:|---|"]
    for name, goal, measured, met in rows(result):
        verdict = "reported" if met is None else "met" if met else "**not met**"
        lines.append(f"| {name} | {goal} | {measured} | {verdict} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter windows (a first look)")
    parser.add_argument("--skip-1000", action="store_true", help="leave out the 1,000-DTU run")
    args = parser.parse_args(argv)
    if find_mosquitto() is None:
        parser.error("Mosquitto is not installed (apt-get install mosquitto)")
    os.environ.setdefault("BENCH_BRIDGE_LOG_LEVEL", "warning")
    env = bench_bridge.environment()
    result: dict[str, Any] = {"benchmark": "publishing", "environment": env}
    print("200 DTUs x 4 inverters every 5 s ...", file=sys.stderr)
    result["200"] = load_run(200, 5, 20.0 if args.quick else 60.0, 8.0)
    if args.skip_1000:
        result["1000"] = {
            "cpu_percent": float("nan"),
            "late_polls": -1,
            "real_data_calls": 0,
            "warmed": False,
        }
    else:
        print("1,000 DTUs x 4 inverters every 35 s ...", file=sys.stderr)
        result["1000"] = load_run(1000, 35, 70.0 if args.quick else 140.0, 1.0)
    print("time to first data and idle RSS ...", file=sys.stderr)
    result["startup"] = asyncio.run(startup(10.0 if args.quick else IDLE_SECONDS, STARTS))
    print("battery stream (6 units) ...", file=sys.stderr)
    result["battery"] = asyncio.run(battery_stream(20.0 if args.quick else 60.0))
    report = table(result)
    print(bench_bridge.machine_line(env))
    print()
    print(report)
    result["table"] = report
    result["command"] = "python benchmarks/bench_publishing.py" + (" --quick" if args.quick else "")
    result["unix_time"] = int(time.time())
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"\nwrote {RESULTS_PATH}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
