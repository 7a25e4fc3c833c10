"""Load benchmark of the MQTT bridge: N simulated DTUs, a private Mosquitto, the real Bridge.

Run from the repository root, inside the venv::

    python benchmarks/bench_bridge.py                     # 50 and 200 DTUs, 60 s each
    python benchmarks/bench_bridge.py --dtus 20 --duration 20
    python benchmarks/bench_bridge.py --json              # also writes results/bridge-latest.json
    python benchmarks/bench_bridge.py --profile           # cProfile of the bridge, per DTU count

For each DTU count three processes run, all on 127.0.0.1:

* the simulators: one ``SimulatorGroup`` serving N DTU-Pro (``10F8...``) with
  ``--inverters`` HM-1500 (``1161...``) each. Its clock runs ``--sim-speed``
  times faster than real time (8 by default), so more than the DTU's 30 s data
  cadence passes between two polls and every poll gets fresh data;
* Mosquitto (``LocalBroker``, a child of this process);
* the bridge: the real ``Bridge`` with ``poll_interval`` = ``min_poll_interval``
  = ``--interval``, ``release_socket_after: 0`` (the socket stays open) and
  discovery on, and the production client settings (1 s request spacing, 10 s
  timeout).

The bridge process measures itself: after the warm-up (every DTU has been polled
and published once, the MQTT queue is empty) it runs ``--duration`` seconds and
reports the CPU time it used (``getrusage``) over that wall time, its RSS
(``VmRSS``, and the peak ``VmHWM``), and ``Bridge.latencies``: per poll, the time
from entering ``on_real_data`` (the DTU reply decoded) until every QoS 1 publish
of that poll got its PUBACK. This process reads the simulators' and Mosquitto's
CPU from ``/proc`` over the same window, for reference.

Internal modes (started by the benchmark itself)::

    python benchmarks/bench_bridge.py _sims FLEET.json SPEED START LIFETIME
    python benchmarks/bench_bridge.py _bridge CONFIG.json

Children are started in their own session and leave when their stdin closes,
so neither Ctrl-C nor a killed parent leaves them behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import json
import logging
import math
import os
import platform
import pstats
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from _process import stop_child
from hoymiles_bridge.addon.bridge import Bridge, tune_garbage_collector
from hoymiles_bridge.config.options import validate
from hoymiles_bridge.core.events import Event, RealDataReceived, StateChanged
from hoymiles_bridge.core.fleet import build_client_factory
from hoymiles_bridge.dtu.session import SessionState
from hoymiles_bridge.mqtt.link import MqttSettings
from hoymiles_bridge.mqtt.local_broker import LocalBroker, find_mosquitto
from hoymiles_bridge.simulator import SimClock, SimulatorGroup
from hoymiles_bridge.simulator.fleet import parse_fleet
from hoymiles_bridge.simulator.physics import local_midnight

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
RESULTS_PATH = RESULTS_DIR / "bridge-latest.json"

#: Targets the brief states, checked for the TARGET_DTUS run.
TARGET_DTUS = 200
TARGET_CPU_PERCENT = 30.0
TARGET_RSS_MB = 120.0
TARGET_P99_MS = 20.0

#: The simulated day starts here (local time), so the sun is up for the whole run.
SIM_START_HOUR = 11
#: Seconds between two drains of Bridge.latencies (it keeps 4096 samples).
DRAIN_PERIOD = 0.5
#: Period of the event-loop lag probe in the bridge process.
LAG_PERIOD = 0.1
#: A poll that comes more than this many intervals after the one before was missed.
LATE_FACTOR = 1.5
#: Seconds a child gets to leave after its stdin closed.
CHILD_EXIT_TIMEOUT = 15.0

_LOG = logging.getLogger("bench_bridge")


# --- helpers shared by every process ----------------------------------------------------------


def proc_status_kb(pid: int | str, key: str) -> int:
    """A ``kB`` field of ``/proc/<pid>/status`` (VmRSS, VmHWM), 0 if missing."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process from ``/proc/<pid>/stat``."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            text = fh.read()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def stdin_closed() -> None:
    """Return when the parent closes our stdin (or dies)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.read(4096):
        pass


def emit(event: str, **data: Any) -> None:
    """One JSON line to the parent."""
    sys.stdout.write(json.dumps({"event": event, **data}) + "\n")
    sys.stdout.flush()


# --- the fleet -------------------------------------------------------------------------------


def fleet_document(dtus: int, inverters: int) -> dict[str, Any]:
    """N DTU-Pro (serial 10F8...), each with ``inverters`` HM-1500 (1161...), all unique."""
    return {
        "dtus": [
            {
                "serial": f"10F8{0x70000000 + d:08X}",
                "model": "DTU-Pro",
                "firmware": 520,  # V00.02.08, as in the bundled dtu-pro fleet
                "inverters": [
                    {"serial": f"1161{0x72000000 + d * inverters + i:08X}"}
                    for i in range(inverters)
                ],
            }
            for d in range(dtus)
        ]
    }


# --- child: the simulators ----------------------------------------------------------------


async def serve_simulators(fleet_path: str, speed: float, start: float, lifetime: float) -> None:
    fleet = parse_fleet(json.loads(Path(fleet_path).read_text(encoding="utf-8")))
    group = SimulatorGroup(fleet, host="127.0.0.1", port=0, clock=SimClock(speed, start))
    async with group:
        emit("ready", ports=[sim.port for sim in group.simulators], pid=os.getpid())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(lifetime):
                await stdin_closed()


# --- child: the bridge -----------------------------------------------------------------------


class MeteredBridge(Bridge):
    """The real Bridge, counting what the benchmark reports from the fleet's events."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bench_seen: set[int] = set()
        self.bench_calls = 0
        self.bench_fresh = 0
        self.bench_bad_states: dict[str, int] = {}
        #: Per DTU: when its last poll's data arrived; polls that came later than
        #: LATE_FACTOR x the interval after the one before count as late (missed).
        self.bench_last: dict[int, float] = {}
        self.bench_late = 0
        self.bench_interval = float("inf")
        self.fleet.subscribe(self._count)

    async def _count(self, event: Event) -> None:
        if isinstance(event, RealDataReceived):
            now = time.monotonic()
            key = id(event.dtu)
            before = self.bench_last.get(key)
            if before is not None and now - before > LATE_FACTOR * self.bench_interval:
                self.bench_late += 1
            self.bench_last[key] = now
            self.bench_seen.add(key)
            self.bench_calls += 1
            self.bench_fresh += event.fresh
        elif isinstance(event, StateChanged):
            state = event.dtu.session.state
            if state is not SessionState.CONNECTED and state is not SessionState.STARTING:
                self.bench_bad_states[state.value] = self.bench_bad_states.get(state.value, 0) + 1


class GcPauses:
    """Durations of the garbage collector's runs, per generation (a source of loop lag)."""

    def __init__(self) -> None:
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses[info["generation"]].append(time.perf_counter() - self._started)

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            f"gen{gen}": {
                "runs": len(runs),
                "max_ms": 1000 * max(runs, default=0.0),
                "total_ms": 1000 * sum(runs),
            }
            for gen, runs in self.pauses.items()
        }


async def _sample_lag(samples: list[float]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        before = loop.time()
        await asyncio.sleep(LAG_PERIOD)
        samples.append(loop.time() - before - LAG_PERIOD)


async def _drain(bridge: Bridge, samples: list[float]) -> None:
    while True:
        await asyncio.sleep(DRAIN_PERIOD)
        latencies = bridge.fleet.latencies
        while latencies:
            samples.append(latencies.popleft())


async def measure_bridge(cfg: dict[str, Any]) -> None:
    rss_base_kb = proc_status_kb("self", "VmRSS")
    interval = cfg["interval"]
    document: dict[str, Any] = {
        "dtus": [{"host": "127.0.0.1", "port": port} for port in cfg["ports"]],
        "poll_interval": interval,
        "min_poll_interval": interval,
        "release_socket_after": 0,
        "discovery": True,
        "mqtt": {"host": "127.0.0.1", "port": cfg["mqtt_port"]},
    }
    for key, value in (cfg.get("options") or {}).items():
        if isinstance(value, dict):
            document.setdefault(key, {}).update(value)
        else:
            document[key] = value
    options = validate(document)
    settings = MqttSettings(host="127.0.0.1", port=cfg["mqtt_port"], client_id="bench-bridge")
    bridge = MeteredBridge(options, settings, client_factory=build_client_factory())
    if not cfg.get("default_gc"):
        tune_garbage_collector()  # as the service (addon/runner.py) does at start
    sessions = [view.session for view in bridge.fleet.dtus]
    started = time.monotonic()
    task = asyncio.create_task(bridge.run(), name="bridge")
    try:
        # Warm-up: every DTU polled and published once, nothing left in the offline queue.
        next_report = started + 10
        warmed = True
        try:
            async with asyncio.timeout(cfg["warmup_timeout"]):
                while (
                    len(bridge.bench_seen) < len(sessions)
                    or not bridge.link.connected
                    or bridge.link.queued
                ):
                    if task.done():
                        task.result()
                    if time.monotonic() >= next_report:
                        next_report += 10
                        emit(
                            "progress",
                            polled=len(bridge.bench_seen),
                            connected=sum(s.state is SessionState.CONNECTED for s in sessions),
                            published=bridge.link.published,
                            queued=bridge.link.queued,
                        )
                    await asyncio.sleep(0.05)
        except TimeoutError:
            warmed = False  # measure anyway: the report says the bridge never settled
        warmup = time.monotonic() - started
        emit("warm", warmup_s=warmup, warmed=warmed)

        latencies: list[float] = []
        lags: list[float] = []
        bridge.fleet.latencies.clear()
        polls0 = sum(s.polls for s in sessions)
        calls0, fresh0 = bridge.bench_calls, bridge.bench_fresh
        published0 = bridge.link.published
        bridge.bench_bad_states.clear()
        bridge.bench_late = 0
        bridge.bench_interval = interval
        profiler = cProfile.Profile() if cfg.get("profile") else None
        helpers = [
            asyncio.create_task(_drain(bridge, latencies)),
            asyncio.create_task(_sample_lag(lags)),
        ]
        gc_pauses = GcPauses()
        gc.callbacks.append(gc_pauses)
        cpu0, wall0 = own_cpu_seconds(), time.monotonic()
        if profiler is not None:
            profiler.enable()
        await asyncio.sleep(cfg["duration"])
        if profiler is not None:
            profiler.disable()
        cpu1, wall1 = own_cpu_seconds(), time.monotonic()
        gc.callbacks.remove(gc_pauses)
        for helper in helpers:
            helper.cancel()
        latencies.extend(bridge.fleet.latencies)
        bridge.fleet.latencies.clear()

        wall = wall1 - wall0
        latencies.sort()
        lags.sort()
        states: dict[str, int] = {}
        for session in sessions:
            states[session.state.value] = states.get(session.state.value, 0) + 1
        result = {
            "wall_s": wall,
            "cpu_s": cpu1 - cpu0,
            "cpu_percent": 100 * (cpu1 - cpu0) / wall,
            "rss_base_mb": rss_base_kb / 1024,
            "rss_end_mb": proc_status_kb("self", "VmRSS") / 1024,
            "rss_peak_mb": proc_status_kb("self", "VmHWM") / 1024,
            "latency_samples": len(latencies),
            "latency_ms": {
                "p50": 1000 * percentile(latencies, 0.50),
                "p90": 1000 * percentile(latencies, 0.90),
                "p99": 1000 * percentile(latencies, 0.99),
                "max": 1000 * (latencies[-1] if latencies else 0.0),
                "mean": 1000 * (sum(latencies) / len(latencies) if latencies else 0.0),
            },
            "loop_lag_ms": {
                "p50": 1000 * percentile(lags, 0.50),
                "p99": 1000 * percentile(lags, 0.99),
                "max": 1000 * (lags[-1] if lags else 0.0),
            },
            "polls_done": sum(s.polls for s in sessions) - polls0,
            "real_data_calls": bridge.bench_calls - calls0,
            "fresh_polls": bridge.bench_fresh - fresh0,
            "late_polls": bridge.bench_late,
            "gc": gc_pauses.summary(),
            "published": bridge.link.published - published0,
            "topics_known": len(bridge.mqtt._published),  # memory footprint (private, read only)
            "state_changes_not_connected": dict(bridge.bench_bad_states),
            "states_at_end": states,
            "sessions_failing_at_end": sum(1 for s in sessions if s.failures),
            "mqtt": {
                "dropped": bridge.link.dropped,
                "queued": bridge.link.queued,
                "disconnects": bridge.link.disconnects,
            },
            "warmup_s": warmup,
            "warmed": warmed,
            "polled_once": len(bridge.bench_seen),
        }
        if profiler is not None:
            result["profile"] = write_profile(profiler, cfg["profile"])
        emit("result", **result)
    finally:
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(bridge.stop(), 10)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def write_profile(profiler: cProfile.Profile, stem: str) -> dict[str, str]:
    """Dump the stats and a readable top list; return both paths."""
    prof_path = Path(stem + ".prof")
    text_path = Path(stem + ".txt")
    profiler.dump_stats(prof_path)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats(pstats.SortKey.TIME).print_stats(40)
    stats.sort_stats(pstats.SortKey.CUMULATIVE).print_stats(60)
    text_path.write_text(out.getvalue(), encoding="utf-8")
    return {"stats": str(prof_path), "text": str(text_path)}


async def bridge_child(config_path: str) -> None:
    cfg = json.loads(Path(config_path).read_text(encoding="utf-8"))
    work = asyncio.create_task(measure_bridge(cfg))
    watch = asyncio.create_task(stdin_closed())
    try:
        async with asyncio.timeout(cfg["warmup_timeout"] + cfg["duration"] + 60):
            await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not work.done():
            work.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await work  # re-raises a failure of the measurement


# --- the parent ------------------------------------------------------------------------------


class Child:
    """A child process of this script that speaks JSON lines on stdout."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process) -> None:
        self.name = name
        self.proc = proc

    @classmethod
    async def start(cls, name: str, args: list[str], log: Path) -> Child:
        with log.open("ab") as stderr:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(Path(__file__).resolve()),
                *args,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,  # Ctrl-C reaches us; we stop the children in order
                limit=1 << 20,
            )
        return cls(name, proc)

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def event(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout):
            line = await self.proc.stdout.readline()
        if not line:
            code = await self.proc.wait()
            raise RuntimeError(f"the {self.name} process ended (exit code {code}) early")
        event: dict[str, Any] = json.loads(line)
        return event

    async def close(self) -> None:
        """Close stdin (the child leaves by itself), then terminate, then kill."""
        await stop_child(self.proc, CHILD_EXIT_TIMEOUT)


class NoDelayBroker(LocalBroker):
    """Experiment only: LocalBroker's Mosquitto with ``set_tcp_nodelay true``."""

    def __init__(self) -> None:
        super().__init__()
        self._nodelay_dir: tempfile.TemporaryDirectory[str] | None = None
        self._nodelay_proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        binary = find_mosquitto()
        if binary is None:
            raise RuntimeError("Mosquitto is not installed")
        self._nodelay_dir = tempfile.TemporaryDirectory(prefix="bench-mosquitto-")
        conf = Path(self._nodelay_dir.name) / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} {self.host}\nallow_anonymous true\npersistence false\n"
            "set_tcp_nodelay true\n",
            encoding="utf-8",
        )
        self._nodelay_proc = await asyncio.create_subprocess_exec(
            binary,
            "-c",
            str(conf),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        async with asyncio.timeout(10):
            while True:
                try:
                    _, writer = await asyncio.open_connection(self.host, self.port)
                except OSError:
                    await asyncio.sleep(0.05)
                else:
                    writer.close()
                    return

    async def stop(self) -> None:
        proc, self._nodelay_proc = self._nodelay_proc, None
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._nodelay_dir is not None:
            self._nodelay_dir.cleanup()
            self._nodelay_dir = None


def child_pids(name: str) -> list[int]:
    """Direct children of this process whose command name is ``name``."""
    found = []
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                text = fh.read()
        except OSError:
            continue
        comm = text[text.find("(") + 1 : text.rfind(")")]
        ppid = text.rsplit(")", 1)[1].split()[1]
        if ppid == me and comm == name:
            found.append(int(entry))
    return found


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float | None]:
    return {name: proc_cpu_seconds(pid) for name, pid in pids.items()}


async def run_one(dtus: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    fleet_path = workdir / f"fleet-{dtus}.json"
    fleet_path.write_text(json.dumps(fleet_document(dtus, args.inverters)), encoding="utf-8")
    log = workdir / f"children-{dtus}.log"
    warmup_timeout = args.warmup_timeout or max(60.0, 3 * args.interval + 0.3 * dtus)
    lifetime = warmup_timeout + args.duration + 120
    start = local_midnight(time.time()) + SIM_START_HOUR * 3600
    children: list[Child] = []
    broker: LocalBroker | None = None
    try:
        sims = await Child.start(
            "simulators",
            ["_sims", str(fleet_path), str(args.sim_speed), str(start), str(lifetime)],
            log,
        )
        children.append(sims)
        ready = await sims.event(timeout=60 + dtus * 0.2)
        # The broker picks its free port now, with every simulator's port taken:
        # picked earlier, a simulator could take it first.
        broker = NoDelayBroker() if args.broker_nodelay else LocalBroker()
        await broker.start()
        brokers = child_pids("mosquitto")
        profile_stem = str(RESULTS_DIR / f"bridge-{dtus}-profile") if args.profile else None
        if profile_stem:
            RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        config = {
            "ports": ready["ports"],
            "mqtt_port": broker.port,
            "interval": args.interval,
            "duration": args.duration,
            "warmup_timeout": warmup_timeout,
            "profile": profile_stem,
            "options": getattr(args, "options", None),
            "default_gc": getattr(args, "default_gc", False),
        }
        config_path = workdir / f"bridge-{dtus}.json"
        config_path.write_text(json.dumps(config), encoding="utf-8")
        bridge = await Child.start("bridge", ["_bridge", str(config_path)], log)
        children.append(bridge)
        pids = {"bridge": bridge.pid, "simulators": sims.pid}
        if len(brokers) == 1:
            pids["mosquitto"] = brokers[0]
        print(
            f"[{dtus} DTUs] simulators pid {sims.pid}, mosquitto :{broker.port}, "
            f"bridge pid {bridge.pid}; warming up...",
            file=sys.stderr,
        )
        deadline = time.monotonic() + warmup_timeout + 30
        while (warm := await bridge.event(timeout=deadline - time.monotonic()))["event"] != "warm":
            print(
                f"[{dtus} DTUs] warming up: {warm['polled']} polled, {warm['connected']} "
                f"connected, {warm['published']:,} published, {warm['queued']} queued",
                file=sys.stderr,
            )
        before, t0 = cpu_snapshot(pids), time.monotonic()
        print(
            f"[{dtus} DTUs] "
            + ("warm after" if warm["warmed"] else "NOT settled (see the report) after")
            + f" {warm['warmup_s']:.1f} s; measuring {args.duration:g} s...",
            file=sys.stderr,
        )
        result = await bridge.event(timeout=args.duration + 120)
        after, t1 = cpu_snapshot(pids), time.monotonic()
        result.pop("event", None)
        others: dict[str, float] = {}
        for name in pids:
            b, a = before[name], after[name]
            if a is not None and b is not None:
                others[name] = 100 * (a - b) / (t1 - t0)
        result.update(
            dtus=dtus,
            inverters=dtus * args.inverters,
            inverters_per_dtu=args.inverters,
            interval_s=args.interval,
            duration_s=args.duration,
            sim_speed=args.sim_speed,
            polls_expected=round(dtus * args.duration / args.interval),
            publishes_per_s=result["published"] / result["wall_s"],
            cpu_percent_from_proc=others,
            experiments=["broker set_tcp_nodelay true"] if args.broker_nodelay else [],
            warnings_logged=count_warnings(log),
        )
        return result
    finally:
        for child in reversed(children):
            await child.close()
        if broker is not None:
            await broker.stop()


def count_warnings(log: Path) -> int:
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return 0
    return sum(1 for line in text.splitlines() if " WARNING " in line or " ERROR " in line)


# --- report ----------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def mosquitto_version() -> str:
    binary = find_mosquitto()
    if binary is None:
        return "not installed"
    try:
        out = subprocess.run(
            [binary, "-h"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    first = out.splitlines()[0] if out else ""
    return first.removeprefix("mosquitto version ").strip() or "?"


def environment() -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "gmqtt": package_version("gmqtt"),
        "protobuf": package_version("protobuf"),
        "mosquitto": mosquitto_version(),
        "platform": platform.platform(),
    }


def markdown(run: dict[str, Any]) -> str:
    lat = run["latency_ms"]
    lag = run["loop_lag_ms"]
    others = run["cpu_percent_from_proc"]
    bad = run["state_changes_not_connected"]
    per_dtu_kb = 1024 * (run["rss_end_mb"] - run["rss_base_mb"]) / run["dtus"]
    lines = [
        f"### {run['dtus']} DTUs x {run['inverters_per_dtu']} inverters, "
        f"poll every {run['interval_s']:g} s, {run['wall_s']:.0f} s measured",
        "",
    ]
    if run.get("experiments"):
        lines += [f"Experiment: {', '.join(run['experiments'])}", ""]
    if not run["warmed"]:
        lines += [
            f"**The bridge never settled**: after {run['warmup_s']:.0f} s of warm-up "
            f"{run['polled_once']} of {run['dtus']} DTUs had published once and the MQTT "
            "link still had messages in its offline queue; measured anyway.",
            "",
        ]
    lines += [
        "| DTUs | inverters | interval | CPU % (1 core) | RSS MB (end / peak) "
        "| p50 / p99 ms | polls done / expected | publishes/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {run['dtus']} | {run['inverters']} | {run['interval_s']:g} s "
        f"| {run['cpu_percent']:.1f} | {run['rss_end_mb']:.1f} / {run['rss_peak_mb']:.1f} "
        f"| {lat['p50']:.1f} / {lat['p99']:.1f} "
        f"| {run['polls_done']} / {run['polls_expected']} | {run['publishes_per_s']:,.0f} |",
        "",
        f"- latency (on_real_data -> last PUBACK): mean {lat['mean']:.1f}, "
        f"p90 {lat['p90']:.1f}, max {lat['max']:.1f} ms over {run['latency_samples']} polls; "
        f"event-loop lag p99 {lag['p99']:.1f}, max {lag['max']:.1f} ms",
        f"- fresh polls {run['fresh_polls']} of {run['real_data_calls']}; "
        f"{run['published']:,} messages published "
        f"({run['published'] / max(run['real_data_calls'], 1):.0f} per poll)",
        f"- errors: {sum(bad.values())} changes to a state other than connected "
        f"{bad or ''}; sessions failing at the end: {run['sessions_failing_at_end']}; "
        f"states at the end: {run['states_at_end']}; MQTT dropped {run['mqtt']['dropped']}, "
        f"disconnects {run['mqtt']['disconnects']}; warnings logged: {run['warnings_logged']}",
        f"- RSS before the bridge started {run['rss_base_mb']:.1f} MB "
        f"(~{per_dtu_kb:.0f} kB per DTU after it); {run['topics_known']:,} retained topics "
        f"tracked; warm-up {run['warmup_s']:.1f} s",
        f"- MQTT link at the end: {run['mqtt']['queued']:,} messages in the offline queue",
        "- garbage collector: "
        + ", ".join(
            f"{gen} {g['runs']} runs, max {g['max_ms']:.1f} ms" for gen, g in run["gc"].items()
        ),
        "- CPU % from /proc over the same window: "
        + ", ".join(f"{name} {value:.1f}" for name, value in others.items()),
    ]
    if "profile" in run:
        lines.append(
            f"- cProfile (inflates CPU and latency): {run['profile']['text']}, "
            f"{run['profile']['stats']}"
        )
    return "\n".join(lines)


def targets(run: dict[str, Any]) -> str:
    def verdict(ok: bool) -> str:
        return "met" if ok else "**NOT met**"

    cpu, rss, p99 = run["cpu_percent"], run["rss_peak_mb"], run["latency_ms"]["p99"]
    return "\n".join(
        [
            f"Targets ({run['dtus']} DTUs):",
            "",
            "| target | measured | |",
            "|---|---:|---|",
            f"| CPU < {TARGET_CPU_PERCENT:g} % of one core | {cpu:.1f} % "
            f"| {verdict(cpu < TARGET_CPU_PERCENT)} |",
            f"| RSS < {TARGET_RSS_MB:g} MB (peak) | {rss:.1f} MB "
            f"| {verdict(rss < TARGET_RSS_MB)} |",
            f"| p99 latency < {TARGET_P99_MS:g} ms | {p99:.1f} ms "
            f"| {verdict(p99 < TARGET_P99_MS)} |",
        ]
    )


def machine_line(env: dict[str, Any]) -> str:
    return (
        f"Machine: {env['cpu']}, {env['cores']} cores ({env['cores_usable']} usable); "
        f"Python {env['python']}, gmqtt {env.get('gmqtt')}, "
        f"protobuf {env['protobuf']}, Mosquitto {env['mosquitto']}"
    )


async def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One run per DTU count; a failed run is reported and the next one still runs."""
    runs: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-bridge-"))
    keep = False
    try:
        for dtus in args.dtus:
            log = tmp / f"children-{dtus}.log"
            try:
                runs.append(await run_one(dtus, args, tmp))
            except (RuntimeError, TimeoutError, OSError) as err:
                keep = True
                tail = log.read_text(errors="replace").splitlines()[-20:] if log.exists() else []
                print(f"[{dtus} DTUs] FAILED: {err!r}", file=sys.stderr)
                print("\n".join(tail), file=sys.stderr)
                print(f"[{dtus} DTUs] the children's log: {log}", file=sys.stderr)
                runs.append({"dtus": dtus, "failed": repr(err), "log": str(log)})
            else:
                keep = keep or args.keep_logs
                if args.keep_logs:
                    print(f"[{dtus} DTUs] the children's log: {log}", file=sys.stderr)
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return runs


async def parent(args: argparse.Namespace) -> list[dict[str, Any]]:
    main_task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if main_task is not None:
        loop.add_signal_handler(signal.SIGTERM, main_task.cancel)
    return await run_all(args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("_sims", "_bridge"):
        level = os.environ.get("BENCH_BRIDGE_LOG_LEVEL", "warning").upper()
        logging.basicConfig(
            level=getattr(logging, level, logging.WARNING),
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s (%(name)s) %(message)s",
            force=True,
        )
    if argv and argv[0] == "_sims":
        fleet, speed, start, lifetime = argv[1:5]
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve_simulators(fleet, float(speed), float(start), float(lifetime)))
        return 0
    if argv and argv[0] == "_bridge":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(bridge_child(argv[1]))
        return 0

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtus", type=int, nargs="+", default=[50, 200], help="DTU counts")
    parser.add_argument("--inverters", type=int, default=4, help="inverters per DTU")
    parser.add_argument("--interval", type=int, default=5, help="poll interval, seconds")
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds per run")
    parser.add_argument(
        "--sim-speed",
        type=float,
        default=8.0,
        help="simulated seconds per real second (>= 30/interval + margin for fresh data)",
    )
    parser.add_argument("--warmup-timeout", type=float, default=None, help="seconds (auto)")
    parser.add_argument("--profile", action="store_true", help="cProfile the measured window")
    parser.add_argument("--json", action="store_true", help=f"also write {RESULTS_PATH}")
    parser.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning"], help="children's"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the children's logs")
    experiments = parser.add_argument_group(
        "experiments", "not the shipped configuration: what a proposed change would give"
    )
    experiments.add_argument(
        "--broker-nodelay", action="store_true", help="Mosquitto with set_tcp_nodelay true"
    )
    experiments.add_argument(
        "--default-gc",
        action="store_true",
        help="Python's garbage collector settings, not the service's (tune_garbage_collector)",
    )
    parser.add_argument(
        "--options",
        type=json.loads,
        default=None,
        help='bridge options over the defaults, as JSON (\'{"mqtt": {"qos": 1}}\')',
    )
    args = parser.parse_args(argv)
    if args.sim_speed * args.interval <= 30:
        parser.error("--sim-speed x --interval must exceed the DTU's 30 s data cadence")
    if find_mosquitto() is None:
        parser.error("Mosquitto is not installed (apt-get install mosquitto)")

    os.environ["BENCH_BRIDGE_LOG_LEVEL"] = args.log_level  # the children read it
    env = environment()
    try:
        runs = asyncio.run(parent(args))
    except KeyboardInterrupt:
        print("interrupted; children stopped", file=sys.stderr)
        return 130
    print(machine_line(env))
    print()
    for run in runs:
        failed = run.get("failed")
        print(f"### {run['dtus']} DTUs: FAILED ({failed})" if failed else markdown(run))
        print()
    done = [run for run in runs if "failed" not in run]
    for run in [run for run in done if run["dtus"] == TARGET_DTUS] or done[-1:]:
        print(targets(run))
    if args.json:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        document = {
            "benchmark": "bridge_load",
            "environment": env,
            "targets": {
                "dtus": TARGET_DTUS,
                "cpu_percent": TARGET_CPU_PERCENT,
                "rss_mb": TARGET_RSS_MB,
                "p99_ms": TARGET_P99_MS,
            },
            "runs": runs,
            "unix_time": int(time.time()),
        }
        RESULTS_PATH.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {RESULTS_PATH}", file=sys.stderr)
    return 1 if len(done) < len(runs) else 0


if __name__ == "__main__":
    sys.exit(main())
