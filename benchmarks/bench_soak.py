"""Soak benchmark: a compressed week of DTU faults, nights and broker restarts against the bridge.

Run from the repository root, inside the venv::

    python benchmarks/bench_soak.py                 # warm-up + 7 simulated days (~9 min)
    python benchmarks/bench_soak.py --days 1        # warm-up + 1 simulated day (~4.5 min)
    python benchmarks/bench_soak.py --json          # also writes results/soak-latest.json

Two processes and Mosquitto, all on 127.0.0.1:

* this one: three simulated DTUs on one simulated clock (a DTU-Pro with five
  inverters; an HMS-800W-2T and an encrypting HMS-2000DW-4T, whose built-in
  DTUs switch off at night as PV-powered DTUs do), the fault injector, a
  private Mosquitto (``LocalBroker``) that it restarts twice, an MQTT
  subscriber that records every ``.../yieldtotal``, and a websocket client of
  the web UI (``api/ws``, plus ``api/status`` every 10 s);
* the bridge: the real ``Bridge`` (a ``Fleet`` and its ``MqttBridge``) and the
  real ``WebServer`` with a ``WebHub`` attached to the fleet, as the add-on's
  service wires them. It tells this process about every poll, state change and
  MQTT (re)connect, and at the end what its log said.

Time. The simulators' and the bridge's clock is a simulated one that runs
``--speed`` times faster than real time (2000x: a day in about 50 s),
except from six minutes before sunset to one minute after it, where it runs
``--dusk-speed`` times faster (90x). With a poll every ``--interval`` seconds
(2 s) the last poll before a PV-powered DTU switches off is then at most a few
simulated minutes before sunset, so the bridge can tell nightfall from a fault
as it does at real speed. Both processes compute the same clock from the
system's monotonic clock, so they agree on the simulated time.

The bridge's timing runs in real time, scaled to the poll interval: request
timeout a quarter of it, request spacing a fortieth, the retry back-off from a
tenth up to a quarter, the back-off after a displacement from a quarter up to
a half. So a recovery later than one poll interval means the bridge missed a
chance to reconnect, not that its policy told it to wait.

Faults. Each DTU gets one fault at a time, 1 to 3 poll intervals after the
bridge has polled it again, kinds drawn from a shuffled deck so each comes up
as often: every counter fault of ``simulator/faults.py`` (1 to 3 replies),
``delay`` (slower than the timeout or not), a dropped connection with new
ones refused for a while, a DTU reboot, and displacement by another client
that holds the DTU for a while. The PV-powered DTUs' nights are recorded as
faults too. A fault ends when the simulator has used it up (the counter is
back at 0, the refusal or delay is lifted, the DTU listens again after its
reboot or at sunrise, the other client is gone); its recovery is the time
from then until the reply to the bridge's next successful poll of that DTU.

Warm-up and measurement. The warm-up lasts until every DTU has been polled,
the websocket client is connected and the web UI's frame ring (its largest
bounded buffer: 2,000 frames or 8 MiB) is full: about 3.5 minutes, whatever the speed. The
bridge's RSS (``VmRSS``) is read then, at the end of each simulated day, and
at the end; Mosquitto is restarted (down ``--broker-down`` seconds) at one
third and two thirds of the measured days. Everything else counts from the
start: faults and recoveries, polls, publishes, websocket messages, what the
bridge logged, and every ``.../yieldtotal`` the subscriber saw.

Internal mode (started by the benchmark itself)::

    python benchmarks/bench_soak.py _bridge CONFIG.json

The bridge process is started in its own session and stops when told on its
stdin, when its stdin closes, or at the end of its lifetime.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import gc
import itertools
import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp
import aiomqtt

from _process import stop_child
from bench_bridge import emit, environment, machine_line, proc_status_kb
from hoymiles_bridge.addon.bridge import Bridge
from hoymiles_bridge.cli.run import mqtt_settings
from hoymiles_bridge.config.options import validate
from hoymiles_bridge.core.events import Event, RealDataReceived, StateChanged
from hoymiles_bridge.core.fleet import build_client_factory
from hoymiles_bridge.dtu.policy import PollPolicy
from hoymiles_bridge.errors import InvalidArgumentError
from hoymiles_bridge.mqtt.local_broker import LocalBroker, find_mosquitto
from hoymiles_bridge.simulator import DtuSimulator, SimClock, load_fleet, resolve_fleet
from hoymiles_bridge.simulator.fleet import DtuSpec, parse_fleet
from hoymiles_bridge.simulator.physics import (
    SUNSET_HOUR,
    is_daylight,
    local_midnight,
    next_local_midnight,
)
from hoymiles_bridge.web.hub import WebHub
from hoymiles_bridge.web.server import WebServer

HERE = Path(__file__).resolve().parent
RESULTS_PATH = HERE / "results" / "soak-latest.json"

#: Targets from issue #10.
TARGET_RSS_GROWTH_MB: Final = 5.0

DAY: Final = 86400.0
DEFAULT_SPEED: Final = 2000.0
#: The simulated run starts at this local hour, with the sun up.
SIM_START_HOUR: Final = 10.0
#: The clock runs at the dusk speed from this long before sunset to this long after it.
DUSK_BEFORE: Final = 360.0
DUSK_AFTER: Final = 60.0
#: The bridge's timing as shares of the poll interval (see the module docs).
TIMEOUT_SHARE: Final = 0.25
SPACING_SHARE: Final = 0.025
RETRY_INITIAL_SHARE: Final = 0.1
RETRY_MAX_SHARE: Final = 0.25
DISPLACED_INITIAL_SHARE: Final = 0.25
DISPLACED_MAX_SHARE: Final = 0.5
#: Gap between a recovery and the next fault on the same DTU, in poll intervals.
GAP_INTERVALS: Final = (1.0, 3.0)
#: Counter faults use up this many replies.
COUNT_RANGE: Final = (1, 3)
#: No fault is injected into a PV-powered DTU this close (simulated s) to sunset.
NIGHT_MARGIN: Final = 1800.0
#: Real seconds an armed fault may wait to be used up before it is disarmed.
FAULT_END_TIMEOUT: Final = 30.0
#: Poll intervals the injector waits for a recovery before it moves on.
RECOVERY_WAIT_INTERVALS: Final = 15
#: A gap between two polls of a DTU longer than this many intervals is called a stall.
STALL_INTERVALS: Final = 5
#: How often faults' ends and the nights are checked (real seconds).
WATCH_PERIOD: Final = 0.01
RSS_PERIOD: Final = 2.0
STATUS_PERIOD: Final = 10.0
#: Seconds the bridge process gets to stop and report.
STOP_TIMEOUT: Final = 60.0

COUNTER_FAULTS: Final = (
    "drop_replies",
    "truncate_replies",
    "corrupt_crc",
    "garbage_before",
    "wrong_sequence",
    "close_mid_frame",
    "stale_reply",
)
INJECTED: Final = (*COUNTER_FAULTS, "delay", "refuse_connections", "reboot", "displaced")
#: Every kind in the report, in this order ("night" is not injected: the sun sets).
KINDS: Final = (*INJECTED, "night")


# --- the simulated clock ------------------------------------------------------------------


@dataclass(frozen=True)
class ClockParams:
    """Everything both processes need to compute the same simulated time."""

    start: float  # simulated Unix time at ``mono0``
    mono0: float  # time.monotonic() (system-wide) at which the simulated time is ``start``
    speed: float
    dusk_speed: float
    until: float  # the schedule covers up to this simulated time (then: ``speed``)

    def segment(self, t: float) -> tuple[float, float]:
        """The speed at simulated time ``t`` and the simulated time at which it changes."""
        sunset = local_midnight(t) + SUNSET_HOUR * 3600
        if t < sunset - DUSK_BEFORE:
            return self.speed, sunset - DUSK_BEFORE
        if t < sunset + DUSK_AFTER:
            return self.dusk_speed, sunset + DUSK_AFTER
        return self.speed, next_local_midnight(t)


class WarpClock(SimClock):
    """A :class:`SimClock` whose speed depends on the simulated time of day (slow at dusk)."""

    __slots__ = ("_mono0", "_reals", "_rows", "_sims")

    def __init__(self, params: ClockParams) -> None:
        super().__init__(params.speed, params.start)
        self._mono0 = params.mono0
        rows: list[tuple[float, float, float]] = []  # (real offset, simulated time, speed)
        sim, real = params.start, 0.0
        while sim < params.until:
            speed, change = params.segment(sim)
            rows.append((real, sim, speed))
            real += (change - sim) / speed
            sim = change
        rows.append((real, sim, params.speed))
        self._rows = rows
        self._reals = [row[0] for row in rows]
        self._sims = [row[1] for row in rows]

    def _row(self, elapsed: float) -> tuple[float, float, float]:
        return self._rows[max(0, bisect.bisect_right(self._reals, elapsed) - 1)]

    def now(self) -> float:
        elapsed = time.monotonic() - self._mono0
        real, sim, speed = self._row(elapsed)
        return sim + (elapsed - real) * speed

    @property
    def speed(self) -> float:
        return self._row(time.monotonic() - self._mono0)[2]

    def real_seconds(self, sim_seconds: float) -> float:
        return sim_seconds / self.speed

    def advance(self, seconds: float) -> None:
        raise InvalidArgumentError("the soak clock cannot jump: the bridge process shares it")

    def mono_at(self, sim_time: float) -> float:
        """The time.monotonic() at which the simulated time reaches ``sim_time``."""
        real, sim, speed = self._rows[max(0, bisect.bisect_right(self._sims, sim_time) - 1)]
        return self._mono0 + real + (sim_time - sim) / speed


def dusk_window() -> float:
    return DUSK_BEFORE + DUSK_AFTER


def wall_per_day(speed: float, dusk_speed: float) -> float:
    return (DAY - dusk_window()) / speed + dusk_window() / dusk_speed


# --- the fleet --------------------------------------------------------------------------------


@dataclass
class SoakDtu:
    name: str
    spec: DtuSpec
    night_off: bool
    encrypt: bool
    sim: DtuSimulator | None = None

    @property
    def simulator(self) -> DtuSimulator:
        assert self.sim is not None
        return self.sim


def soak_fleet() -> list[SoakDtu]:
    """A DTU-Pro with five inverters and two PV-powered HMS-W built-in DTUs (one encrypting)."""
    pro = load_fleet(resolve_fleet("dtu-pro")).dtus[0]
    built_in = parse_fleet(
        {
            "dtus": [
                {
                    "serial": "414393320732",
                    "model": "DTUBI",
                    "firmware": "V01.00.01",
                    "inverters": [{"serial": "141293320732"}],
                },
                {
                    "serial": "414195201099",
                    "model": "DTUBI",
                    "firmware": "V01.01.00",
                    "inverters": [{"serial": "122295201099"}],
                },
            ]
        }
    ).dtus
    return [
        SoakDtu("dtu-pro", pro, night_off=False, encrypt=False),
        SoakDtu("hms-800w", built_in[0], night_off=True, encrypt=False),
        SoakDtu("hms-2000dw", built_in[1], night_off=True, encrypt=True),
    ]


def soak_policy(interval: float) -> PollPolicy:
    return PollPolicy(
        interval=interval,
        min_interval=interval,
        release_socket_after=0,
        retry_initial=interval * RETRY_INITIAL_SHARE,
        retry_max=interval * RETRY_MAX_SHARE,
        displaced_initial=interval * DISPLACED_INITIAL_SHARE,
        displaced_max=interval * DISPLACED_MAX_SHARE,
    )


# --- child: the bridge ---------------------------------------------------------------------


_NUMBERS: Final = re.compile(r"\d+(?:\.\d+)?")


class LogTally(logging.Handler):
    """Counts WARNING+ records by kind and keeps the text of unhandled exceptions and errors.

    An unhandled exception is a record with a traceback, anything asyncio's
    exception handler reports ("Task exception was never retrieved", ...), an
    unraisable exception, or a problem the bridge's process noticed itself
    (its task ended). Other ERROR records are kept apart, as errors.
    """

    KEEP: Final = 50

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s (%(name)s) %(message)s"))
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self.examples: dict[tuple[str, str, str], str] = {}
        self.exceptions: list[str] = []
        self.exception_count = 0
        self.errors: list[str] = []
        self.error_count = 0
        self.loop_handler_calls = 0
        self.unraisable = 0

    def emit(self, record: logging.LogRecord) -> None:
        # One kind per message with its numbers left out (the session's messages
        # share one format string).
        key = (record.levelname, record.name, _NUMBERS.sub("#", record.getMessage())[:90])
        self.counts[key] += 1
        if key not in self.examples:
            self.examples[key] = record.getMessage()[:300]
        if record.exc_info or (record.name == "asyncio" and record.levelno >= logging.ERROR):
            self.exception(self.format(record))
        elif record.levelno >= logging.ERROR:
            self.error_count += 1
            if len(self.errors) < self.KEEP:
                self.errors.append(self.format(record))

    def exception(self, text: str) -> None:
        self.exception_count += 1
        if len(self.exceptions) < self.KEEP:
            self.exceptions.append(text)

    def on_loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """asyncio's exception handler ("Task exception was never retrieved", ...)."""
        self.loop_handler_calls += 1
        loop.default_exception_handler(context)  # logs at ERROR on "asyncio": counted there

    def on_unraisable(self, unraisable: Any) -> None:
        self.unraisable += 1
        self.exception(f"unraisable exception {unraisable.exc_value!r} in {unraisable.object!r}")

    def summary(self) -> dict[str, Any]:
        kinds = [
            {"level": k[0], "logger": k[1], "count": n, "example": self.examples[k]}
            for k, n in self.counts.most_common()
        ]
        return {
            "records": sum(self.counts.values()),
            "by_message": kinds,
            "exceptions": self.exception_count,
            "exception_texts": self.exceptions,
            "errors": self.error_count,
            "error_texts": self.errors,
            "loop_handler_calls": self.loop_handler_calls,
            "unraisable": self.unraisable,
        }


class Reporter:
    """Tells the benchmark about every poll and state change, as they happen.

    A poll's time is when its reply arrived (``RealDataReceived.time``, the
    bridge's simulated clock, turned back into ``time.monotonic()``), not when
    the event reached this last subscriber after MQTT and the web hub.
    """

    def __init__(self, clock: WarpClock) -> None:
        self.clock = clock
        self.polls = 0
        self.fresh = 0
        self.states: Counter[str] = Counter()

    async def on_event(self, event: Event) -> None:
        if isinstance(event, RealDataReceived):
            self.polls += 1
            self.fresh += event.fresh
            emit("poll", dtu=event.dtu.label, t=self.clock.mono_at(event.time))
        elif isinstance(event, StateChanged):
            session = event.dtu.session
            self.states[session.state.value] += 1
            emit(
                "state",
                dtu=event.dtu.label,
                t=time.monotonic(),
                state=session.state.value,
                reason=session.state_reason,
            )


async def _watch_link(bridge: Bridge) -> None:
    connected = False
    while True:
        await asyncio.sleep(0.05)
        if bridge.link.connected != connected:
            connected = bridge.link.connected
            emit("mqtt", connected=connected, t=time.monotonic())


async def _watch_frames(hub: WebHub) -> None:
    while True:
        # full: at its frame count, or near its byte budget (whichever comes first)
        if len(hub.frames) >= hub.frame_limit or hub.frame_bytes >= 0.9 * hub.frame_budget:
            emit("frames_full", t=time.monotonic())
            return
        await asyncio.sleep(0.5)


async def _stop_requested() -> None:
    """Return when the benchmark writes a line to our stdin or closes it."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    await reader.readline()


async def run_bridge(cfg: dict[str, Any]) -> None:
    tally = LogTally()
    logging.getLogger().addHandler(tally)
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(tally.on_loop_exception)
    sys.unraisablehook = tally.on_unraisable
    clock = WarpClock(ClockParams(**cfg["clock"]))
    interval = float(cfg["interval"])
    options = validate(
        {
            "dtus": cfg["dtus"],
            "poll_interval": max(1, round(interval)),
            "min_poll_interval": max(1, round(interval)),
            "release_socket_after": 0,
            "mqtt": {"host": "127.0.0.1", "port": cfg["mqtt_port"]},
            "log_level": cfg["log_level"],
        }
    )
    bridge = Bridge(
        options,
        mqtt_settings(options),
        client_factory=build_client_factory(
            min_spacing=interval * SPACING_SHARE, request_timeout=interval * TIMEOUT_SHARE
        ),
        clock=clock.now,
        policy=soak_policy(interval),
    )
    hub = WebHub(clock=clock.now)
    hub.history_limit(options.poll_interval)
    hub.attach(bridge.fleet)
    server = WebServer(
        "127.0.0.1",
        0,
        status=dict,
        allowed_peers=None,
        hub=hub,
        fleet=bridge.fleet,
        clock=clock.now,
    )
    reporter = Reporter(clock)
    bridge.fleet.subscribe(reporter.on_event)
    await server.start()
    task = asyncio.create_task(bridge.run(), name="soak-bridge")
    helpers = [
        asyncio.create_task(_watch_link(bridge), name="soak-watch-link"),
        asyncio.create_task(_watch_frames(hub), name="soak-watch-frames"),
    ]
    emit("ready", web_port=server.port, pid=os.getpid())
    told = asyncio.create_task(_stop_requested(), name="soak-stdin")
    try:
        async with asyncio.timeout(cfg["lifetime"]):
            await asyncio.wait({task, told}, return_when=asyncio.FIRST_COMPLETED)
    except TimeoutError:
        tally.exception("the bridge process reached its lifetime before it was told to stop")
    told.cancel()
    ended_early = task.done()
    rss_kb = proc_status_kb("self", "VmRSS")
    try:
        async with asyncio.timeout(10):
            await bridge.stop()
    except TimeoutError:
        tally.exception("Bridge.stop() took longer than 10 s")
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        if ended_early:
            tally.exception("the bridge's task was cancelled while it ran")
    except Exception:
        logging.getLogger("bench_soak").exception("the bridge's task failed")
    else:
        if ended_early:
            tally.exception("the bridge's task returned while it should have run on")
    for helper in helpers:
        helper.cancel()
    await asyncio.wait([*helpers, told])
    await server.stop()
    # Tasks nobody awaited report their exception when they are collected.
    gc.collect()
    await asyncio.sleep(0.1)
    gc.collect()
    guards = [inverter.guard for inverter in bridge.fleet.inverters()]
    link = bridge.link
    emit(
        "result",
        rss_kb_at_stop=rss_kb,
        hwm_kb=proc_status_kb("self", "VmHWM"),
        polls=reporter.polls,
        fresh=reporter.fresh,
        session_polls={dtu.label: dtu.session.polls for dtu in bridge.fleet.dtus},
        state_changes=dict(reporter.states),
        published=link.published,
        dropped=link.dropped,
        queued=link.queued,
        mqtt_connects=link.connects,
        mqtt_disconnects=link.disconnects,
        held_totals=sum(guard.held_totals for guard in guards),
        implausible_dropped=sum(guard.dropped for guard in guards),
        hub={
            "frames": hub.frame_count,
            "frame_errors": hub.frame_errors,
            "frames_kept": len(hub.frames),
            "events_kept": len(hub.events),
            "client_drops": hub.dropped,
            "displacements": hub.displacements,
        },
        log=tally.summary(),
    )


def bridge_process(config_path: str) -> int:
    cfg = json.loads(Path(config_path).read_text(encoding="utf-8"))
    logging.basicConfig(
        level=getattr(logging, cfg["log_level"].upper(), logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s (%(name)s) %(message)s",
        force=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_bridge(cfg))
    return 0


class BridgeProcess:
    """The bridge's process: JSON lines on its stdout, a line on its stdin stops it."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, config_path: Path, log_path: Path) -> BridgeProcess:
        with log_path.open("ab") as stderr:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                str(Path(__file__).resolve()),
                "_bridge",
                str(config_path),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,  # Ctrl-C reaches us; we stop it in order
                limit=1 << 20,
            )
        return cls(proc)

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def event(self) -> dict[str, Any] | None:
        """The next event, or None when the process closed its stdout."""
        assert self.proc.stdout is not None
        line = await self.proc.stdout.readline()
        if not line:
            return None
        event: dict[str, Any] = json.loads(line)
        return event

    def request_stop(self) -> None:
        stdin = self.proc.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.write(b"stop\n")

    async def close(self) -> None:
        """Close stdin (the child leaves by itself), then terminate, then kill."""
        await stop_child(self.proc, STOP_TIMEOUT)


# --- the benchmark: what it saw --------------------------------------------------------------


@dataclass
class Fault:
    dtu: str
    kind: str
    detail: str
    start: float  # time.monotonic()
    sim_time: float
    end: float | None = None
    recovered: float | None = None
    note: str = ""
    left_connected: bool = False  # the bridge reported a state other than connected

    @property
    def recovery(self) -> float | None:
        if self.end is None or self.recovered is None:
            return None
        return self.recovered - self.end


@dataclass
class RunState:
    """What the benchmark learnt from the bridge's process and its own watchers."""

    polls: dict[str, list[float]] = field(default_factory=dict)
    states: dict[str, list[tuple[float, str, str]]] = field(default_factory=dict)
    mqtt: list[tuple[float, bool]] = field(default_factory=list)
    frames_full: float | None = None
    result: dict[str, Any] | None = None
    faults: list[Fault] = field(default_factory=list)
    dark: dict[str, bool] = field(default_factory=dict)
    restarts: list[dict[str, float]] = field(default_factory=list)
    rss: list[tuple[float, float, int]] = field(default_factory=list)  # (mono, sim, kB)
    stopping: bool = False
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    def last_poll(self, dtu: str) -> float:
        polls = self.polls.get(dtu)
        return polls[-1] if polls else -float("inf")

    def first_poll_after(self, dtu: str, when: float) -> float | None:
        polls = self.polls.get(dtu, [])
        index = bisect.bisect_right(polls, when)
        return polls[index] if index < len(polls) else None

    def states_between(self, dtu: str, start: float, end: float) -> list[str]:
        return [state for t, state, _ in self.states.get(dtu, []) if start <= t <= end]


async def read_bridge(child: BridgeProcess, run: RunState) -> None:
    while (event := await child.event()) is not None:
        kind = event["event"]
        if kind == "poll":
            run.polls.setdefault(event["dtu"], []).append(event["t"])
        elif kind == "state":
            run.states.setdefault(event["dtu"], []).append(
                (event["t"], event["state"], event["reason"])
            )
        elif kind == "mqtt":
            run.mqtt.append((event["t"], event["connected"]))
        elif kind == "frames_full":
            run.frames_full = event["t"]
        elif kind == "result":
            run.result = event
    run.ended.set()


class TotalsWatch:
    """An MQTT subscriber to ``#`` that counts every time a ``.../yieldtotal`` went down."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.last: dict[str, float] = {}
        self.decreases: list[dict[str, Any]] = []
        self.unparsable: list[str] = []
        self.values = 0
        self.messages = 0
        self.connects = 0

    def on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        self.messages += 1
        if not topic.endswith("/yieldtotal"):
            return
        try:
            value = float(payload)
        except ValueError:
            self.unparsable.append(f"{topic}: {payload[:40]!r}")
            return
        self.values += 1
        before = self.last.get(topic)
        if before is not None and value < before:
            self.decreases.append(
                {"topic": topic, "from": before, "to": value, "retained": retained}
            )
        self.last[topic] = value

    async def run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                    "127.0.0.1", self.port, identifier="bench-soak-watch"
                ) as client:
                    self.connects += 1
                    await client.subscribe("#", qos=1)
                    async for message in client.messages:
                        payload = message.payload
                        data = (
                            bytes(payload)
                            if isinstance(payload, bytes | bytearray)
                            else str(payload).encode()
                        )
                        self.on_message(message.topic.value, data, message.retain)
            except aiomqtt.MqttError:
                await asyncio.sleep(0.2)  # the broker is restarting


class WebWatch:
    """One websocket client of the web UI, and ``api/status`` every STATUS_PERIOD seconds."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.messages: Counter[str] = Counter()
        self.connects = 0
        self.errors: list[str] = []
        self.status_ok = 0
        self.status_failed = 0

    @property
    def connected(self) -> bool:
        return self.connects > 0

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            poller = asyncio.create_task(self._poll_status(session), name="soak-api-status")
            try:
                while True:
                    try:
                        async with session.ws_connect(self.base + "/api/ws") as socket:
                            self.connects += 1
                            async for message in socket:
                                if message.type is aiohttp.WSMsgType.TEXT:
                                    kind = json.loads(message.data).get("type", "?")
                                    self.messages[str(kind)] += 1
                    except aiohttp.ClientError as err:
                        self.errors.append(repr(err))
                    await asyncio.sleep(0.5)
            finally:
                poller.cancel()
                await asyncio.wait({poller})

    async def _poll_status(self, session: aiohttp.ClientSession) -> None:
        while True:
            await asyncio.sleep(STATUS_PERIOD)
            try:
                async with session.get(self.base + "/api/status") as response:
                    await response.read()
                    ok = response.status == 200
            except aiohttp.ClientError:
                ok = False
            self.status_ok += ok
            self.status_failed += not ok


async def sample_rss(pid: int, run: RunState, clock: WarpClock) -> None:
    while True:
        run.rss.append((time.monotonic(), clock.now(), proc_status_kb(pid, "VmRSS")))
        await asyncio.sleep(RSS_PERIOD)


async def watch_nights(dtu: SoakDtu, run: RunState, clock: WarpClock) -> None:
    """Record each night of a PV-powered DTU as a fault that ends when it listens again."""
    sim = dtu.simulator
    night: Fault | None = None
    while True:
        await asyncio.sleep(WATCH_PERIOD)
        if night is None:
            if not sim.listening and not sim.rebooting and not is_daylight(clock.now()):
                night = Fault(dtu.name, "night", "DTU off", time.monotonic(), clock.now())
                run.dark[dtu.name] = True
        elif sim.listening:
            night.end = time.monotonic()
            run.faults.append(night)
            run.dark[dtu.name] = False
            night = None


async def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(WATCH_PERIOD)
    return True


async def occupy(host: str, port: int, hold: float) -> str:
    """Another client (the S-Miles app) takes the DTU for ``hold`` seconds at most."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as err:
        return f"the other client could not connect: {err}"
    try:
        async with asyncio.timeout(hold):
            while await reader.read(4096):
                pass
    except TimeoutError:
        how = "left"
    except OSError:
        how = "was cut off"
    else:
        how = "was displaced by the bridge"
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return f"the other client held the DTU for up to {hold:.2f} s and {how}"


class Injector:
    """One fault at a time into one DTU, each kind as often as the others."""

    def __init__(
        self, dtu: SoakDtu, run: RunState, clock: WarpClock, interval: float, seed: int
    ) -> None:
        self.dtu = dtu
        self.run_state = run
        self.clock = clock
        self.interval = interval
        self.timeout = interval * TIMEOUT_SHARE
        self.rng = random.Random(seed)
        self.deck: list[str] = []

    def _eligible(self) -> bool:
        sim = self.dtu.simulator
        if not sim.listening or sim.rebooting or self.run_state.dark.get(self.dtu.name):
            return False
        if self.dtu.night_off:
            now = self.clock.now()
            if not (is_daylight(now) and is_daylight(now + NIGHT_MARGIN)):
                return False
        # The bridge is polling it (again).
        return self.run_state.last_poll(self.dtu.name) > time.monotonic() - 2 * self.interval

    async def run(self) -> None:
        while not self.run_state.stopping:
            await asyncio.sleep(self.rng.uniform(*GAP_INTERVALS) * self.interval)
            if self.run_state.stopping or not self._eligible():
                continue
            if not self.deck:
                self.deck = list(INJECTED)
                self.rng.shuffle(self.deck)
            fault = await self._inject(self.deck.pop())
            self.run_state.faults.append(fault)
            await self._recovered(fault)

    async def _recovered(self, fault: Fault) -> None:
        """Wait (bounded) until the bridge polled the DTU after the fault ended."""
        ended = fault.end or 0.0
        await wait_until(
            lambda: self.run_state.first_poll_after(fault.dtu, ended) is not None,
            RECOVERY_WAIT_INTERVALS * self.interval,
        )

    async def _inject(self, kind: str) -> Fault:
        sim = self.dtu.simulator
        faults = sim.faults
        rng = self.rng
        fault = Fault(self.dtu.name, kind, "", time.monotonic(), self.clock.now())
        used_up = True
        if kind in COUNTER_FAULTS:
            count = rng.randint(*COUNT_RANGE)
            setattr(faults, kind, count)
            fault.detail = f"{count} repl{'y' if count == 1 else 'ies'}"
            used_up = await wait_until(lambda: getattr(faults, kind) == 0, FAULT_END_TIMEOUT)
        elif kind == "delay":
            delay = self.timeout * rng.choice((0.4, 1.6))
            hold = self.interval * rng.uniform(1.0, 3.0)
            fault.detail = f"{delay:.2f} s before each reply for {hold:.1f} s"
            faults.delay = delay
            await asyncio.sleep(hold)
            faults.delay = 0.0
        elif kind == "refuse_connections":
            hold = self.interval * rng.uniform(0.5, 2.0)
            fault.detail = f"connection cut, new ones refused for {hold:.1f} s"
            faults.close_mid_frame = 1
            faults.refuse_connections = True
            await asyncio.sleep(hold)
            faults.refuse_connections = False
            used_up = await wait_until(lambda: faults.close_mid_frame == 0, FAULT_END_TIMEOUT)
        elif kind == "reboot":
            before = sim.reboots_total
            fault.detail = "after its next reply"
            sim.dtu.reboot_requested = True
            used_up = await wait_until(
                lambda: sim.reboots_total > before and not sim.rebooting and sim.listening,
                FAULT_END_TIMEOUT,
            )
        elif kind == "displaced":
            hold = self.interval * rng.uniform(0.25, 1.0)
            fault.detail = await occupy(sim.host, sim.port, hold)
        else:
            raise ValueError(f"unknown fault {kind!r}")
        if not used_up:
            faults.clear()
            sim.dtu.reboot_requested = False
            fault.note = f"not used up within {FAULT_END_TIMEOUT:g} s; disarmed"
        fault.end = time.monotonic()
        return fault


async def restart_broker(
    broker: LocalBroker, run: RunState, clock: WarpClock, at: list[float], down: float
) -> None:
    for sim_time in at:
        await asyncio.sleep(max(0.0, clock.mono_at(sim_time) - time.monotonic()))
        stopped = time.monotonic()
        await broker.restart(down_for=down)
        run.restarts.append({"sim_time": sim_time, "stopped": stopped, "up": time.monotonic()})
        print(f"  broker restarted (down {time.monotonic() - stopped:.1f} s)", file=sys.stderr)


def quiet_port() -> int:
    """A free port below Linux's ephemeral range (32768-60999).

    A DTU or broker that stops listening for a while (reboot, night, restart)
    binds its port again; on an ephemeral port a client's own outgoing
    connection may hold it by then (EADDRINUSE).
    """
    for port in random.sample(range(20000, 32000), 200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 20000 and 32000")


def sim_label(sim_time: float, first_day: float) -> str:
    day = int((local_midnight(sim_time) - first_day) // DAY + 0.5)
    return f"day {day} {time.strftime('%H:%M', time.localtime(sim_time))}"


# --- the benchmark: running it ----------------------------------------------------------------


async def soak(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    interval = args.interval
    mono0 = time.monotonic()
    wall0 = time.time() - mono0  # turns a time.monotonic() into a wall-clock time
    start = local_midnight(time.time()) + SIM_START_HOUR * 3600
    params = ClockParams(
        start=start,
        mono0=mono0,
        speed=args.speed,
        dusk_speed=args.dusk_speed,
        # The warm-up may take up to its timeout at full speed, then a day to midnight.
        until=start + (args.days + 3) * DAY + args.warmup_timeout * args.speed,
    )
    clock = WarpClock(params)
    first_day = local_midnight(start)
    dtus = soak_fleet()
    run = RunState()
    tasks: list[asyncio.Task[Any]] = []
    injectors: list[asyncio.Task[None]] = []
    async with contextlib.AsyncExitStack() as stack:
        broker = await stack.enter_async_context(LocalBroker(port=quiet_port()))
        for index, dtu in enumerate(dtus):
            dtu.sim = DtuSimulator(
                dtu.spec,
                port=quiet_port(),
                clock=clock,
                encrypt=dtu.encrypt,
                night_off=dtu.night_off,
                fault_seed=args.seed + index,
            )
            await stack.enter_async_context(dtu.sim)
        config = {
            "dtus": [
                {"host": "127.0.0.1", "port": dtu.simulator.port, "name": dtu.name} for dtu in dtus
            ],
            "mqtt_port": broker.port,
            "interval": interval,
            "clock": asdict(params),
            "log_level": args.log_level,
            "lifetime": args.warmup_timeout
            + wall_per_day(args.speed, args.dusk_speed) * (args.days + 2)
            + 300,
        }
        config_path = workdir / "bridge.json"
        config_path.write_text(json.dumps(config), encoding="utf-8")
        child = await BridgeProcess.start(config_path, workdir / "bridge.log")
        stack.push_async_callback(child.close)
        try:
            ready = await asyncio.wait_for(child.event(), 60)
            if ready is None or ready["event"] != "ready":
                raise RuntimeError(f"the bridge process did not start: {ready!r}")
            totals = TotalsWatch(broker.port)
            web = WebWatch(ready["web_port"])
            tasks += [
                asyncio.create_task(read_bridge(child, run), name="soak-read-bridge"),
                asyncio.create_task(totals.run(), name="soak-totals"),
                asyncio.create_task(web.run(), name="soak-web"),
                asyncio.create_task(sample_rss(child.pid, run, clock), name="soak-rss"),
            ]
            night_watchers = [
                asyncio.create_task(watch_nights(dtu, run, clock), name=f"soak-night-{dtu.name}")
                for dtu in dtus
                if dtu.night_off
            ]
            tasks += night_watchers
            injectors += [
                asyncio.create_task(
                    Injector(dtu, run, clock, interval, args.seed * 100 + index).run(),
                    name=f"soak-inject-{dtu.name}",
                )
                for index, dtu in enumerate(dtus)
            ]
            print(
                f"bridge pid {child.pid}, web :{ready['web_port']}, mosquitto :{broker.port}; "
                "warming up...",
                file=sys.stderr,
            )

            # Warm-up: every DTU polled, the websocket open, the inspector's frame ring
            # (the largest of the web UI's bounded buffers) full.
            warmed = await wait_until(
                lambda: len(run.polls) == len(dtus)
                and web.connected
                and run.frames_full is not None,
                args.warmup_timeout,
            )
            measured_from = clock.now()
            rss_start = proc_status_kb(child.pid, "VmRSS")
            measured_start = time.monotonic()
            print(
                f"warm-up done after {measured_start - mono0:.0f} s "
                f"({'settled' if warmed else 'NOT settled'}); RSS {rss_start / 1024:.1f} MB; "
                f"measuring {args.days:g} simulated days...",
                file=sys.stderr,
            )
            measured_to = measured_from + args.days * DAY
            restarts_at = [
                measured_from + args.days * DAY * (k + 1) / (args.broker_restarts + 1)
                for k in range(args.broker_restarts)
            ]
            tasks.append(
                asyncio.create_task(
                    restart_broker(broker, run, clock, restarts_at, args.broker_down),
                    name="soak-broker",
                )
            )
            day_ends = [measured_from + (d + 1) * DAY for d in range(int(args.days))]
            rss_days: list[float] = []
            for number, day_end in enumerate(day_ends, start=1):
                await asyncio.sleep(max(0.0, clock.mono_at(day_end) - time.monotonic()))
                rss_days.append(proc_status_kb(child.pid, "VmRSS") / 1024)
                print(
                    f"  day {number}/{len(day_ends)}: {len(run.faults)} faults so far, "
                    f"RSS {rss_days[-1]:.1f} MB, {time.monotonic() - mono0:.0f} s",
                    file=sys.stderr,
                )
            await asyncio.sleep(max(0.0, clock.mono_at(measured_to) - time.monotonic()))
            rss_end = proc_status_kb(child.pid, "VmRSS")
            measured_end = time.monotonic()

            # No new faults (a night that ends from now on is not counted); let the
            # faults in progress end and recover, then stop the bridge.
            run.stopping = True
            for task in night_watchers:
                task.cancel()
            await asyncio.wait(injectors, timeout=FAULT_END_TIMEOUT + 20 * interval)
            for task in injectors:
                task.cancel()
            await wait_until(
                lambda: all(
                    run.first_poll_after(f.dtu, f.end) is not None
                    for f in run.faults
                    if f.end is not None
                ),
                RECOVERY_WAIT_INTERVALS * interval,
            )
            stopped_at = time.monotonic()
            child.request_stop()
            await asyncio.wait_for(run.ended.wait(), STOP_TIMEOUT)
            failures = [
                f"{task.get_name()}: {task.exception()!r}"
                for task in [*tasks, *injectors]
                if task.done() and not task.cancelled() and task.exception() is not None
            ]
        finally:
            for task in [*tasks, *injectors]:
                task.cancel()
            await asyncio.gather(*tasks, *injectors, return_exceptions=True)

    measured = [(t, s, kb) for t, s, kb in run.rss if measured_start <= t <= measured_end]
    return {
        "run": run,
        "wall0": wall0,
        "stopped_at": stopped_at,
        "first_day": first_day,
        "warmed": warmed,
        "warmup_s": measured_start - mono0,
        "measured_s": measured_end - measured_start,
        "wall_s": time.monotonic() - mono0,
        "rss_start_kb": rss_start,
        "rss_end_kb": rss_end,
        "rss_peak_kb": max([kb for _, _, kb in measured] + [rss_start, rss_end]),
        "rss_days_mb": rss_days,
        "totals": totals,
        "web": web,
        "task_failures": failures,
        "dtus": dtus,
    }


# --- the report -----------------------------------------------------------------------------


def settle_recoveries(run: RunState) -> None:
    for fault in run.faults:
        if fault.end is None:
            continue
        if fault.recovered is None:
            fault.recovered = run.first_poll_after(fault.dtu, fault.end)
        until = fault.recovered if fault.recovered is not None else float("inf")
        states = run.states_between(fault.dtu, fault.start, until)
        fault.left_connected = any(state != "connected" for state in states)
        if fault.kind == "night":
            fault.note = "the bridge said " + ("night" if "night" in states else "/".join(states))


def summarize(outcome: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    run: RunState = outcome["run"]
    first_day = outcome["first_day"]
    settle_recoveries(run)
    result = run.result or {}
    interval = args.interval
    faults = sorted((f for f in run.faults if f.end is not None), key=lambda f: f.start)
    by_kind: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        chosen = [f for f in faults if f.kind == kind]
        times = [f.recovery for f in chosen if f.recovery is not None]
        by_kind[kind] = {
            "injected": len(chosen),
            "in_time": sum(1 for t in times if t <= interval),
            "median_s": statistics.median(times) if times else None,
            "max_s": max(times) if times else None,
            "left_connected": sum(f.left_connected for f in chosen),
        }
    late = [f for f in faults if f.recovery is None or f.recovery > interval]
    recoveries = [f.recovery for f in faults if f.recovery is not None]
    totals: TotalsWatch = outcome["totals"]
    web: WebWatch = outcome["web"]
    log = result.get("log", {})
    mqtt_back = []
    for restart in run.restarts:
        back = next((t for t, up in run.mqtt if up and t >= restart["up"]), None)
        mqtt_back.append(None if back is None else back - restart["up"])
    nights = [f for f in faults if f.kind == "night"]
    growth_mb = (outcome["rss_end_kb"] - outcome["rss_start_kb"]) / 1024
    # The bridge's process not reporting at all counts as one unhandled exception.
    exceptions = log.get("exceptions", 0) + (0 if run.result is not None else 1)
    wall0 = outcome["wall0"]

    def clock_text(mono: float | None) -> str | None:
        if mono is None:
            return None
        wall = wall0 + mono
        return time.strftime("%H:%M:%S", time.localtime(wall)) + f".{int(wall % 1 * 1000):03d}"

    gaps = {}
    for name, polls in run.polls.items():
        dark = [(f.start, f.end or f.start) for f in faults if f.kind == "night" and f.dtu == name]
        # Up to the end too, unless the DTU was off then: a session that stalled
        # for good has no next poll.
        ends = [] if run.dark.get(name) else [outcome["stopped_at"]]
        longest, at = 0.0, None
        for before, after in itertools.pairwise([*polls, *ends]):
            if any(before < end and after > start for start, end in dark):
                continue
            if after - before > longest:
                longest, at = after - before, before
        gaps[name] = {"longest_s": longest, "after_poll_at": clock_text(at)}
    return {
        "days": args.days,
        "dtus": len(outcome["dtus"]),
        "inverters": sum(len(d.spec.inverters) for d in outcome["dtus"]),
        "interval_s": interval,
        "request_timeout_s": interval * TIMEOUT_SHARE,
        "speed": args.speed,
        "dusk_speed": args.dusk_speed,
        "seed": args.seed,
        "warmed": outcome["warmed"],
        "warmup_s": outcome["warmup_s"],
        "measured_s": outcome["measured_s"],
        "wall_s": outcome["wall_s"],
        "rss": {
            "start_mb": outcome["rss_start_kb"] / 1024,
            "end_mb": outcome["rss_end_kb"] / 1024,
            "growth_mb": growth_mb,
            "peak_mb": outcome["rss_peak_kb"] / 1024,
            "per_day_mb": outcome["rss_days_mb"],
            "hwm_mb": result.get("hwm_kb", 0) / 1024,
            # (seconds since the start, MB), every RSS_PERIOD seconds from the start
            "timeline": [
                (round(t - run.rss[0][0], 1), round(kb / 1024, 2)) for t, _, kb in run.rss
            ],
        },
        "totals": {
            "topics": len(totals.last),
            "values": totals.values,
            "decreases": totals.decreases,
            "unparsable": totals.unparsable,
            "messages_received": totals.messages,
            "subscriber_connects": totals.connects,
        },
        "exceptions": {
            "count": exceptions,
            "texts": log.get("exception_texts", []),
            "loop_handler_calls": log.get("loop_handler_calls", 0),
            "unraisable": log.get("unraisable", 0),
            "bridge_reported": run.result is not None,
        },
        "errors": {"count": log.get("errors", 0), "texts": log.get("error_texts", [])},
        "benchmark_failures": outcome["task_failures"],
        "poll_gaps": gaps,
        "recoveries": {
            "count": len(recoveries),
            "faults": len(faults),
            "in_time": sum(1 for t in recoveries if t <= interval),
            "median_s": statistics.median(recoveries) if recoveries else None,
            "max_s": max(recoveries) if recoveries else None,
            "late": [
                {
                    "dtu": f.dtu,
                    "kind": f.kind,
                    "detail": f.detail,
                    "when": sim_label(f.sim_time, first_day),
                    "clock": clock_text(f.start),
                    "recovery_s": f.recovery,
                    "note": f.note,
                }
                for f in late
            ],
        },
        "by_kind": by_kind,
        "nights": {
            "count": len(nights),
            "said_night": sum(1 for f in nights if f.note == "the bridge said night"),
        },
        "polls": result.get("polls", 0),
        "fresh_polls": result.get("fresh", 0),
        "session_polls": result.get("session_polls", {}),
        "state_changes": result.get("state_changes", {}),
        "published": result.get("published", 0),
        "mqtt": {
            "dropped": result.get("dropped", 0),
            "queued_at_end": result.get("queued", 0),
            "connects": result.get("mqtt_connects", 0),
            "disconnects": result.get("mqtt_disconnects", 0),
        },
        "broker_restarts": len(run.restarts),
        "broker_down_s": args.broker_down,
        "mqtt_back_after_s": mqtt_back,
        "held_totals": result.get("held_totals", 0),
        "implausible_dropped": result.get("implausible_dropped", 0),
        "hub": result.get("hub", {}),
        "websocket": {
            "messages": sum(web.messages.values()),
            "by_type": dict(web.messages),
            "connects": web.connects,
            "errors": web.errors,
            "status_ok": web.status_ok,
            "status_failed": web.status_failed,
        },
        "warnings": log.get("by_message", []),
        "faults": [
            {
                **asdict(f),
                "recovery_s": f.recovery,
                "when": sim_label(f.sim_time, first_day),
                "clock": [clock_text(f.start), clock_text(f.end), clock_text(f.recovered)],
            }
            for f in faults
        ],
    }


def verdict(ok: bool) -> str:
    return "met" if ok else "**NOT met**"


def targets_met(s: dict[str, Any]) -> dict[str, bool]:
    rec = s["recoveries"]
    return {
        "rss": s["rss"]["growth_mb"] <= TARGET_RSS_GROWTH_MB,
        "totals": not s["totals"]["decreases"],
        "exceptions": s["exceptions"]["count"] == 0,
        "recoveries": rec["in_time"] == rec["faults"],
    }


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def gap_text(dtu: str, gap: dict[str, Any], interval: float) -> str:
    text = f"{dtu} {gap['longest_s']:.1f} s"
    if gap["longest_s"] > STALL_INTERVALS * interval:
        text += f" (**a stall**, after the poll at {gap['after_poll_at']})"
    return text


def markdown(s: dict[str, Any]) -> str:
    met = targets_met(s)
    rss, rec, tot, ws = s["rss"], s["recoveries"], s["totals"], s["websocket"]
    interval = s["interval_s"]
    lines = [
        f"### Soak: {s['days']:g} simulated days, {s['dtus']} DTUs ({s['inverters']} inverters), "
        f"{s['measured_s'] / 60:.1f} min measured after a {s['warmup_s']:.0f} s warm-up",
        "",
        f"Poll every {interval:g} s (request timeout {s['request_timeout_s']:g} s); simulated "
        f"clock {s['speed']:g}x ({s['dusk_speed']:g}x around sunset); Mosquitto restarted "
        f"{s['broker_restarts']}x; one websocket client; seed {s['seed']}.",
    ]
    if not s["warmed"]:
        lines += ["", "**The warm-up never settled** (see the log); measured anyway."]
    lines += [
        "",
        "| target | measured | |",
        "|---|---|---|",
        f"| RSS growth after warm-up <= {TARGET_RSS_GROWTH_MB:g} MB "
        f"| {rss['start_mb']:.1f} -> {rss['end_mb']:.1f} MB ({rss['growth_mb']:+.1f} MB; "
        f"peak {rss['peak_mb']:.1f} MB) | {verdict(met['rss'])} |",
        f"| yield totals that went down: 0 | {len(tot['decreases'])} in {tot['values']:,} "
        f"values on {tot['topics']} topics | {verdict(met['totals'])} |",
        f"| unhandled exceptions in the bridge's log: 0 | {s['exceptions']['count']} "
        f"| {verdict(met['exceptions'])} |",
        f"| recoveries within one poll interval ({interval:g} s) | {rec['in_time']} of "
        f"{rec['faults']} (median {seconds(rec['median_s'])} s, max {seconds(rec['max_s'])} s) "
        f"| {verdict(met['recoveries'])} |",
        "",
        f"| fault | count | recovered <= {interval:g} s | median / max s "
        "| bridge left `connected` |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind, row in s["by_kind"].items():
        lines.append(
            f"| {kind} | {row['injected']} | {row['in_time']} | {seconds(row['median_s'])} / "
            f"{seconds(row['max_s'])} | {row['left_connected']} |"
        )
    back = ", ".join(seconds(t) for t in s["mqtt_back_after_s"]) or "-"
    by_type = ", ".join(f"{k} {v:,}" for k, v in sorted(ws["by_type"].items()))
    warnings = s["warnings"]
    top = "; ".join(f"{w['count']}x \"{w['example'][:70]}\"" for w in warnings[:3])
    lines += [
        "",
        f"- polls: {s['polls']:,} ({s['fresh_polls']:,} fresh); the bridge published "
        f"{s['published']:,} MQTT messages (dropped {s['mqtt']['dropped']}, queued at the end "
        f"{s['mqtt']['queued_at_end']}), the subscriber received {tot['messages_received']:,}",
        f"- broker restarts: {s['broker_restarts']} (down {s['broker_down_s']:g} s each); "
        f"the bridge was back on MQTT {back} s after the broker",
        f"- nights of the PV-powered DTUs: {s['nights']['count']}, the bridge said `night` in "
        f"{s['nights']['said_night']}",
        f"- websocket: {ws['messages']:,} messages ({by_type}), {ws['connects']} connection(s); "
        f"`api/status` {ws['status_ok']} answered, {ws['status_failed']} failed",
        f"- the bridge's log: {sum(w['count'] for w in warnings):,} warnings and errors "
        f"({len(warnings)} kinds); most: {top or '-'}",
        f"- errors logged without a traceback: {s['errors']['count']}"
        + "".join(f"; `{t.split(' ', 2)[-1][:90]}`" for t in s["errors"]["texts"][:3]),
        "- longest gap between two polls of a DTU (nights left out): "
        + ", ".join(gap_text(name, gap, interval) for name, gap in s["poll_gaps"].items()),
        f"- totals held back by the value guard: {s['held_totals']}; implausible values "
        f"dropped: {s['implausible_dropped']}; warnings in the simulators' and the "
        f"benchmark's own log: {s.get('harness_log', {}).get('records', 0)}",
        "- RSS at the end of each simulated day (MB): "
        + ", ".join(f"{mb:.1f}" for mb in rss["per_day_mb"]),
    ]
    if rec["late"]:
        lines += ["", "Recoveries later than one poll interval (or none):", ""]
        lines += [
            f"- {f['dtu']} {f['kind']} ({f['detail']}) at {f['when']} ({f['clock']} in the "
            "bridge's log): "
            f"{seconds(f['recovery_s'])} s {f['note']}".rstrip()
            for f in rec["late"][:20]
        ]
    if tot["decreases"]:
        lines += ["", "Totals that went down:", ""]
        lines += [
            f"- {d['topic']}: {d['from']} -> {d['to']}{' (retained)' if d['retained'] else ''}"
            for d in tot["decreases"][:20]
        ]
    if s["exceptions"]["texts"]:
        lines += ["", "Unhandled exceptions:", "", "```"]
        lines += [t[:2000] for t in s["exceptions"]["texts"][:10]]
        lines += ["```"]
    if s["benchmark_failures"]:
        lines += ["", "**The benchmark itself failed** (its figures are incomplete):", "", "```"]
        lines += s["benchmark_failures"]
        lines += ["```"]
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------------------


async def parent(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    main_task = asyncio.current_task()
    if main_task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    budget = args.warmup_timeout + wall_per_day(args.speed, args.dusk_speed) * (args.days + 2)
    async with asyncio.timeout(budget + 300):
        return await soak(args, workdir)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_bridge":
        return bridge_process(argv[1])

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=7.0, help="simulated days measured")
    parser.add_argument("--interval", type=float, default=2.0, help="poll interval, real seconds")
    speed = parser.add_mutually_exclusive_group()
    speed.add_argument(
        "--speed", type=float, default=None, help="simulated seconds per real second (2000)"
    )
    speed.add_argument(
        "--wall-seconds",
        type=float,
        default=None,
        help="choose --speed so that the measured days take about this long",
    )
    parser.add_argument(
        "--dusk-speed", type=float, default=90.0, help="the clock's speed around sunset"
    )
    parser.add_argument("--broker-restarts", type=int, default=2)
    parser.add_argument("--broker-down", type=float, default=2.0, help="seconds per restart")
    parser.add_argument("--seed", type=int, default=1, help="of the fault injector")
    parser.add_argument("--warmup-timeout", type=float, default=300.0, help="seconds")
    parser.add_argument("--json", action="store_true", help=f"also write {RESULTS_PATH}")
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning"], help="the bridge's"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the bridge's log")
    args = parser.parse_args(argv)
    if args.wall_seconds is not None:
        per_day = args.wall_seconds / args.days - dusk_window() / args.dusk_speed
        if per_day <= 0:
            parser.error("--wall-seconds is too short for the dusk at --dusk-speed")
        args.speed = (DAY - dusk_window()) / per_day
    elif args.speed is None:
        args.speed = DEFAULT_SPEED
    if args.days <= 0 or args.interval <= 0 or args.speed <= 0 or args.dusk_speed <= 0:
        parser.error("--days, --interval and the speeds must be positive")
    if find_mosquitto() is None:
        parser.error("Mosquitto is not installed (apt-get install mosquitto)")

    env = environment()
    print(
        f"soak: {args.days:g} simulated days at {args.speed:.0f}x "
        f"({args.dusk_speed:g}x at dusk): about "
        f"{wall_per_day(args.speed, args.dusk_speed) * args.days / 60:.1f} min plus the warm-up",
        file=sys.stderr,
    )
    workdir = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    log = workdir / "bridge.log"
    keep = args.keep_logs
    # This process's own log (simulators, the subscriber's MQTT client) goes to a file.
    logging.basicConfig(
        level=logging.WARNING,
        filename=workdir / "harness.log",
        format="%(asctime)s %(levelname)s (%(name)s) %(message)s",
        force=True,
    )
    harness_log = LogTally()
    logging.getLogger().addHandler(harness_log)
    try:
        try:
            outcome = asyncio.run(parent(args, workdir))
        except KeyboardInterrupt:
            keep = True
            print(f"interrupted; everything stopped. The bridge's log: {log}", file=sys.stderr)
            return 130
        except (RuntimeError, TimeoutError, OSError) as err:
            keep = True
            print(f"FAILED: {err!r}", file=sys.stderr)
            traceback.print_exc()
            print(f"the bridge's log: {log}", file=sys.stderr)
            return 1
        summary = summarize(outcome, args)
        summary["harness_log"] = harness_log.summary()
        met = targets_met(summary)
        keep = keep or not all(met.values())
        print(machine_line(env))
        print()
        print(markdown(summary))
        if keep:
            print(f"\nthe bridge's log: {log}", file=sys.stderr)
        if args.json:
            RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
            document = {
                "benchmark": "soak",
                "environment": env,
                "targets": {"rss_growth_mb": TARGET_RSS_GROWTH_MB, "met": met},
                "run": summary,
                "unix_time": int(time.time()),
            }
            RESULTS_PATH.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
            print(f"wrote {RESULTS_PATH}", file=sys.stderr)
        return 0 if all(met.values()) and not summary["benchmark_failures"] else 1
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
