"""Run the add-on's real s6 service scripts the way the container would, without Docker.

The harness lays out a temporary root like the add-on container's filesystem
and supervises the REAL ``rootfs/etc/s6-overlay/s6-rc.d/hoymiles-bridge/run``
and ``finish`` under Debian's s6 (``s6-svscan``), next to a stand-in
Supervisor (:mod:`supervisor_standin`), a real Mosquitto and a simulated DTU.
See addon/README.md for what is real and what is a stand-in, and for how the
scripts' ``/command/...`` and ``/run/...`` paths are mapped into the root.

Usage: ``python addon/run_harness.py [--keep DIR]``; exits 0 when every check
passed. Tests import :func:`run_harness` (tests/test_addon_harness.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import os
import secrets
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp

HERE: Final = Path(__file__).resolve().parent
REPO: Final = HERE.parent
if str(REPO) not in sys.path:  # the tests' Mosquitto helpers live in the repository
    sys.path.insert(0, str(REPO))
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from supervisor_standin import MqttService, SupervisorStandin  # noqa: E402
from tests.mosquitto import Mosquitto, Subscriber  # noqa: E402

from hoymiles_bridge.config.options import normalize  # noqa: E402
from hoymiles_bridge.mqtt.local_broker import free_port  # noqa: E402
from hoymiles_bridge.mqtt.topics import TopicLayout  # noqa: E402
from hoymiles_bridge.protocol.secrets import MASK  # noqa: E402
from hoymiles_bridge.simulator import DtuSimulator  # noqa: E402

SERVICE: Final = "hoymiles-bridge"
ROOTFS: Final = REPO / "rootfs"
SERVICE_SOURCE: Final = Path("etc/s6-overlay/s6-rc.d") / SERVICE
USER_BUNDLE_ENTRY: Final = Path("etc/s6-overlay/s6-rc.d/user/contents.d") / SERVICE
#: The peer the harness uses as "the Supervisor's ingress proxy" (really 172.30.32.2).
INGRESS_PEER: Final = "127.0.0.2"
OTHER_PEER: Final = "127.0.0.1"
#: The broker account the stand-in hands out, like the Mosquitto add-on's "addons" user.
BROKER_USER: Final = "addons"
#: The poll interval the Configuration page check saves (the harness starts with 1 s;
#: min_poll_interval is 1, so the bridge's effective interval is exactly this).
NEW_POLL_INTERVAL: Final = 7
S6_TOOLS: Final = ("s6-svscan", "s6-svscanctl", "s6-svc", "s6-svstat", "s6-envdir")


class HarnessError(AssertionError):
    """A check failed; the message says which and shows the container log's tail."""


def missing_tools() -> list[str]:
    return [tool for tool in S6_TOOLS if shutil.which(tool) is None]


def _shebang(script: Path) -> list[str]:
    first = script.read_text(encoding="utf-8").splitlines()[0]
    if not first.startswith("#!"):
        raise HarnessError(f"{script} has no shebang line")
    return first[2:].split()


def _write_script(path: Path, lines: list[str]) -> None:
    path.write_text("#!/bin/sh\n" + "\n".join(lines) + "\n", encoding="utf-8")
    path.chmod(0o755)


@dataclass
class Container:
    """One "container": a temporary root with the add-on's files and one s6-svscan.

    Layout under ``root`` (paths as inside the real container):

    * ``data/options.json`` - what the Supervisor writes before each start;
    * ``etc/s6-overlay/...`` - a copy of ``rootfs/`` (the Dockerfile's ``COPY rootfs /``);
    * ``command/with-contenv`` - stand-in: ``s6-envdir`` of the container environment;
    * ``run/s6/container_environment/`` - the container's environment, one file a variable;
    * ``run/s6/basedir/bin/halt`` - stand-in: notes the halt, stops the supervision tree;
    * ``run/s6-linux-init-container-results/`` - where ``finish`` records the exit code;
    * ``scan/hoymiles-bridge/{run,finish}`` - what s6 runs: two-line wrappers that do what
      the kernel does with the real scripts' shebang, with ``/command`` under ``root``.
    """

    root: Path
    options: dict[str, Any] | str
    environment: dict[str, str]
    process: asyncio.subprocess.Process | None = None
    service_pids: set[int] = field(default_factory=set)

    @property
    def scan(self) -> Path:
        return self.root / "scan"

    @property
    def service_dir(self) -> Path:
        return self.scan / SERVICE

    @property
    def log_path(self) -> Path:
        return self.root / "container.log"

    @property
    def halted_path(self) -> Path:
        return self.root / "halted"

    @property
    def exitcode_path(self) -> Path:
        return self.root / "run/s6-linux-init-container-results/exitcode"

    @property
    def options_path(self) -> Path:
        return self.root / "data/options.json"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def fail(self, message: str) -> HarnessError:
        tail = "\n".join(self.log().splitlines()[-40:])
        return HarnessError(f"{message}\n--- container log ({self.log_path}) ---\n{tail}")

    def layout(self) -> None:
        root = self.root
        root.mkdir(parents=True, exist_ok=True)
        shutil.copytree(ROOTFS, root, dirs_exist_ok=True, symlinks=True)
        (root / "data").mkdir(exist_ok=True)
        text = self.options if isinstance(self.options, str) else json.dumps(self.options)
        self.options_path.write_text(text, encoding="utf-8")
        env_dir = root / "run/s6/container_environment"
        env_dir.mkdir(parents=True, exist_ok=True)
        container_env = {
            **self.environment,
            "HOYMILES_BRIDGE_OPTIONS": str(self.options_path),
            "HOYMILES_BRIDGE_S6_ROOT": str(root),
        }
        for name, value in container_env.items():
            (env_dir / name).write_text(value, encoding="utf-8")
        self.exitcode_path.parent.mkdir(parents=True, exist_ok=True)
        (root / "command").mkdir(exist_ok=True)
        _write_script(
            root / "command/with-contenv",
            [
                "# Stand-in for s6-overlay's /command/with-contenv: add the container",
                "# environment to the supervision tree's, then exec the interpreter.",
                f'exec s6-envdir -Lfn -- {shlex.quote(str(env_dir))} "$@"',
            ],
        )
        (root / "run/s6/basedir/bin").mkdir(parents=True, exist_ok=True)
        _write_script(
            root / "run/s6/basedir/bin/halt",
            [
                "# Stand-in for s6-overlay's halt: note it, then stop the supervision tree.",
                f"echo halt >> {shlex.quote(str(self.halted_path))}",
                f"exec s6-svscanctl -t {shlex.quote(str(self.scan))}",
            ],
        )
        self.service_dir.mkdir(parents=True)
        for name in ("run", "finish"):
            real = root / SERVICE_SOURCE / name
            interpreter, *arguments = _shebang(real)
            mapped = root / interpreter.lstrip("/")
            if interpreter.startswith("/command/") and mapped.exists():
                interpreter = str(mapped)
            command = [interpreter, *arguments, str(real)]
            _write_script(
                self.service_dir / name,
                [
                    f"# {real.name}: what the kernel does with the real script's shebang.",
                    "exec " + " ".join(shlex.quote(part) for part in command) + ' "$@"',
                ],
            )

    async def start(self) -> None:
        log = self.log_path.open("ab")
        try:
            self.process = await asyncio.create_subprocess_exec(
                "s6-svscan",
                str(self.scan),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                # As under s6-overlay: services see only this minimal environment
                # unless their script goes through with-contenv.
                env={"PATH": "/usr/bin:/bin"},
                cwd=self.scan,
                start_new_session=True,
            )
        finally:
            log.close()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def _tool(self, *command: str) -> str:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await process.communicate()
        return out.decode(errors="replace").strip()

    async def status(self) -> dict[str, str]:
        if not (self.service_dir / "supervise").exists():
            return {}
        text = await self._tool("s6-svstat", "-o", "up,pid,exitcode,signum", str(self.service_dir))
        values = text.split()
        if len(values) != 4:
            return {}
        status = dict(zip(("up", "pid", "exitcode", "signum"), values, strict=True))
        if status["up"] == "true" and status["pid"].isdigit() and int(status["pid"]) > 0:
            self.service_pids.add(int(status["pid"]))
        return status

    async def wait_up(self, timeout: float, *, not_pid: int | None = None) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = await self.status()
            if status.get("up") == "true" and status["pid"].isdigit():
                pid = int(status["pid"])
                if pid > 0 and pid != not_pid:
                    return pid
            if not self.running:
                break
            await asyncio.sleep(0.1)
        raise self.fail(f"the service did not come up within {timeout} s")

    async def signal_service(self, option: str) -> None:
        await self._tool("s6-svc", option, str(self.service_dir))

    async def wait_exit(self, timeout: float) -> int:
        """Wait for s6-svscan (the "container") to end; its exit code."""
        if self.process is None:
            raise self.fail("the container was not started")
        try:
            async with asyncio.timeout(timeout):
                return await self.process.wait()
        except TimeoutError:
            raise self.fail(f"the container did not stop within {timeout} s") from None

    async def stop(self, timeout: float = 20.0) -> int:
        """What ``docker stop`` does to s6: bring the services down, then end."""
        await self._tool("s6-svscanctl", "-t", str(self.scan))
        return await self.wait_exit(timeout)

    async def cleanup(self) -> None:
        """End everything this container started, by process id; never fails."""
        if self.running:
            with contextlib.suppress(OSError):
                await self._tool("s6-svscanctl", "-t", str(self.scan))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await self.process.wait()  # type: ignore[union-attr]
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)  # our s6-svscan's own group
            await self.process.wait()
        for pid in self.service_pids:  # services run in sessions of their own
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


@dataclass
class Report:
    passed: list[str] = field(default_factory=list)
    workdir: Path | None = None

    def ok(self, what: str, say: Callable[[str], None]) -> None:
        self.passed.append(what)
        say(f"ok   {what}")


def check_layout() -> list[str]:
    """The s6-rc source files a real container needs, with the right types and modes."""
    problems = []
    service = ROOTFS / SERVICE_SOURCE
    type_file = service / "type"
    if not type_file.exists() or type_file.read_text().strip() != "longrun":
        problems.append(f"{type_file} must say 'longrun'")
    for name in ("run", "finish"):
        script = service / name
        if not script.exists() or not os.access(script, os.X_OK):
            problems.append(f"{script} must exist and be executable")
        elif _shebang(script)[0] not in ("/command/with-contenv", "/usr/bin/with-contenv"):
            problems.append(f"{script} must go through with-contenv (SUPERVISOR_TOKEN)")
    entry = ROOTFS / USER_BUNDLE_ENTRY
    if not entry.exists() or entry.stat().st_size:
        problems.append(f"{entry} must exist and be empty")
    return problems


async def _get(url: str, local_host: str) -> tuple[int, str]:
    connector = aiohttp.TCPConnector(local_addr=(local_host, 0), force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response,
    ):
        return response.status, await response.text()


#: What the web UI's pages send with every POST (the API's CSRF check).
UI_HEADERS: Final = {"X-Requested-With": "hoymiles-bridge", "Content-Type": "application/json"}


async def _call(method: str, url: str, local_host: str, body: object = None) -> tuple[int, Any]:
    """A web UI request from ``local_host``: the status and the JSON answer."""
    connector = aiohttp.TCPConnector(local_addr=(local_host, 0), force_close=True)
    data = None if body is None else json.dumps(body)
    headers = UI_HEADERS if method == "POST" else {}
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.request(
            method, url, data=data, headers=headers, timeout=aiohttp.ClientTimeout(total=15)
        ) as response,
    ):
        text = await response.text()
        try:
            return response.status, json.loads(text)
        except json.JSONDecodeError:
            return response.status, text


async def _wait_health(container: Container, url: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            status, text = await _get(url, OTHER_PEER)
        except (aiohttp.ClientError, TimeoutError) as err:
            last = err
        else:
            last = (status, text)
            if status == 200:
                body: dict[str, Any] = json.loads(text)
                if body.get("mqtt") is True:
                    return body
        await asyncio.sleep(0.2)
    raise container.fail(f"{url} did not report a connected bridge within {timeout} s: {last}")


async def _wait_topic(
    container: Container, sub: Subscriber, test: Callable[[str, bytes], bool], timeout: float
) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for topic, payload in list(sub.last.items()):
            if test(topic, payload):
                return topic
        await asyncio.sleep(0.1)
    raise container.fail(f"no matching MQTT message within {timeout} s")


async def _wait_interval(
    container: Container, base: str, interval: int, timeout: float
) -> dict[str, Any]:
    """``api/status`` (from the ingress peer) until its first DTU polls every ``interval`` s."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            status, body = await _call("GET", f"{base}/api/status", INGRESS_PEER)
        except (aiohttp.ClientError, TimeoutError) as err:
            last = err  # the restarted bridge is not listening yet
        else:
            last = (status, body)
            dtus = body.get("dtus") if status == 200 and isinstance(body, dict) else None
            if dtus and isinstance(dtus[0], dict) and dtus[0].get("interval") == interval:
                return dtus[0]
        await asyncio.sleep(0.2)
    raise container.fail(
        f"api/status did not show dtus[0].interval == {interval} within {timeout} s: "
        f"{str(last)[:300]}"
    )


async def _config_page_restart(
    container: Container,
    supervisor: SupervisorStandin,
    report: Report,
    say: Callable[[str], None],
    *,
    base: str,
    pid: int,
    mqtt_secret: str,
) -> int:
    """The Configuration page in the add-on: save ``poll_interval``, press "Restart now".

    ``POST api/config`` -> stand-in ``POST /addons/self/options`` -> ``POST
    api/restart`` -> stand-in ``POST /addons/self/restart`` (writes options.json,
    restarts the s6 service) -> the new bridge polls at the new interval.
    Returns the new bridge's pid.
    """
    config_url = f"{base}/api/config"
    status, config = await _call("GET", config_url, INGRESS_PEER)
    if status != 200 or not isinstance(config, dict):
        raise container.fail(f"GET api/config: {status} {str(config)[:300]}")
    options = config.get("options")
    head = (config.get("mode"), config.get("can_save"), config.get("can_restart"))
    if head != ("addon", True, True) or not isinstance(options, dict):
        raise container.fail(f"GET api/config: mode/can_save/can_restart {head}, {options!r}")
    old_interval = options.get("poll_interval")
    mqtt = options.get("mqtt")
    if old_interval == NEW_POLL_INTERVAL or not isinstance(mqtt, dict):
        raise container.fail(f"GET api/config: unexpected options {options!r}")
    if mqtt.get("password") != MASK or mqtt_secret in json.dumps(config):
        raise container.fail("GET api/config: mqtt.password is not masked")
    report.ok(
        f"GET api/config from {INGRESS_PEER}: add-on mode, the Supervisor's options "
        f"(poll_interval {old_interval}), mqtt.password masked",
        say,
    )

    stored_before = copy.deepcopy(supervisor.options)
    saved_before = len(supervisor.saved)
    option_requests = supervisor.requests["/addons/self/options"]
    file_before = container.options_path.read_text(encoding="utf-8")
    bad = {**options, "poll_interval": "abc"}
    status, answer = await _call("POST", config_url, INGRESS_PEER, {"options": bad})
    fields = answer.get("fields") if isinstance(answer, dict) else None
    message = fields.get("poll_interval") if isinstance(fields, dict) else None
    if status != 422 or not isinstance(message, str) or not message:
        raise container.fail(f"POST api/config with poll_interval 'abc': {status} {answer!r}")
    if (
        supervisor.options != stored_before
        or len(supervisor.saved) != saved_before
        or supervisor.requests["/addons/self/options"] != option_requests
    ):
        raise container.fail("an invalid poll_interval reached the stand-in Supervisor")
    report.ok(
        f"POST api/config with poll_interval 'abc': 422, fields.poll_interval {message!r}; "
        "the Supervisor's options unchanged",
        say,
    )

    changed = {**options, "poll_interval": NEW_POLL_INTERVAL}
    status, answer = await _call("POST", config_url, INGRESS_PEER, {"options": changed})
    if (
        status != 200
        or not isinstance(answer, dict)
        or answer.get("ok") is not True
        or answer.get("restart_pending") is not True
        or answer.get("can_restart") is not True
    ):
        raise container.fail(
            f"POST api/config with poll_interval {NEW_POLL_INTERVAL}: " f"{status} {answer!r}"
        )
    stored = supervisor.options
    expected = {**normalize(stored_before), "poll_interval": NEW_POLL_INTERVAL}
    if len(supervisor.saved) != saved_before + 1 or normalize(stored) != expected:
        raise container.fail(
            f"the stand-in Supervisor stored {stored!r}; expected the old options with "
            f"poll_interval {NEW_POLL_INTERVAL} and the same mqtt.password"
        )
    if container.options_path.read_text(encoding="utf-8") != file_before:
        raise container.fail("options.json changed before the restart")
    report.ok(
        f"POST api/config with poll_interval {NEW_POLL_INTERVAL}: 200, restart pending; the "
        "stand-in stored it, the masked mqtt.password kept, nothing else changed, "
        "options.json untouched until the restart",
        say,
    )

    mark = len(container.log())
    restarts = supervisor.restarts
    # The real Supervisor answers only after the restart, which stops the
    # bridge first; the bridge answers the page (202) before that happens.
    try:
        status, answer = await _call("POST", f"{base}/api/restart", INGRESS_PEER, {})
    except aiohttp.ClientConnectionError as err:
        raise container.fail(
            f"POST api/restart got no answer ({type(err).__name__}): the page would say "
            "the restart failed"
        ) from None
    if status != 202 or not isinstance(answer, dict) or answer.get("ok") is not True:
        raise container.fail(f"POST api/restart: {status} {answer!r}")
    outcome = "202"
    new_pid = await container.wait_up(60, not_pid=pid)
    try:
        await supervisor.wait_restarts(60)
    except TimeoutError:
        raise container.fail("the stand-in's restart did not finish within 60 s") from None
    if supervisor.restarts != restarts + 1:
        raise container.fail(
            f"expected one POST /addons/self/restart, got {supervisor.restarts - restarts}"
        )
    written = json.loads(container.options_path.read_text(encoding="utf-8"))
    if written != stored:
        raise container.fail(f"options.json after the restart: {written!r}, not {stored!r}")
    report.ok(
        f"POST api/restart: {outcome}; the stand-in wrote options.json and s6 restarted "
        f"the service (pid {pid} -> {new_pid})",
        say,
    )

    dtu = await _wait_interval(container, base, NEW_POLL_INTERVAL, 60)
    log = container.log()[mark:]
    if f"policy: poll every {NEW_POLL_INTERVAL} s" not in log:
        raise container.fail("the restarted bridge's start-up summary lacks the new interval")
    status, config = await _call("GET", config_url, INGRESS_PEER)
    if (
        status != 200
        or not isinstance(config, dict)
        or config.get("bridge_running") is not True
        or config.get("restart_pending") is not False
        or config.get("options", {}).get("poll_interval") != NEW_POLL_INTERVAL
    ):
        raise container.fail(f"GET api/config after the restart: {status} {str(config)[:300]}")
    report.ok(
        f"after the restart api/status shows dtus[0].interval {dtu['interval']} "
        f"(policy {dtu.get('policy')!r}); api/config: running, no restart pending",
        say,
    )
    return new_pid


async def _healthy_container(
    workdir: Path,
    report: Report,
    say: Callable[[str], None],
    *,
    sim: DtuSimulator,
    broker: Mosquitto,
    secrets_: tuple[str, str],
    environment: dict[str, str],
    ingress_port: int,
) -> None:
    token, broker_password = secrets_
    # A secret the bridge does not use (no mqtt.host: the broker comes from the
    # Supervisor), there to show that the Configuration page keeps it masked.
    mqtt_secret = secrets.token_hex(16)
    options = {
        "dtus": [{"host": sim.host, "port": sim.port, "name": "Harness DTU"}],
        "poll_interval": 1,
        "min_poll_interval": 1,
        "release_socket_after": 0,
        "limit_interval": 0,
        "log_level": "info",
        "mqtt": {"password": mqtt_secret},
    }
    mqtt = MqttService("127.0.0.1", broker.port, username=BROKER_USER, password=broker_password)
    layout = TopicLayout("solar", several_dtus=False)
    base = f"http://127.0.0.1:{ingress_port}"
    container = Container(workdir / "container", options, environment)

    async def restart_addon() -> None:
        """The stand-in Supervisor's restart: s6 restarts the service (SIGTERM, run again)."""
        status = await container.status()
        old = int(status["pid"]) if status.get("pid", "").isdigit() else None
        await container.signal_service("-r")
        await container.wait_up(60, not_pid=old)

    async with (
        SupervisorStandin(
            token,
            mqtt,
            not_ready=2,
            options=options,
            options_file=container.options_path,
            on_restart=restart_addon,
        ) as supervisor,
        Subscriber(broker.port, "#", username=BROKER_USER, password=broker_password) as sub,
    ):
        container.environment["HOYMILES_BRIDGE_SUPERVISOR_URL"] = supervisor.url
        container.layout()
        try:
            await container.start()
            pid = await container.wait_up(15)
            report.ok(f"s6 started the real run script (bridge pid {pid})", say)

            health = await _wait_health(container, f"{base}/health", 30)
            answers = supervisor.service_answers
            if answers[:3] != [400, 400, 200] or supervisor.bad_tokens:
                raise container.fail(
                    f"expected 400, 400, 200 from /services/mqtt with the right token; got "
                    f"{answers} and {supervisor.bad_tokens} bad tokens"
                )
            report.ok("broker from the stand-in Supervisor after two 'Service not enabled'", say)
            report.ok(f"/health from 127.0.0.1 (Docker HEALTHCHECK): {health}", say)

            topic = await _wait_topic(
                container,
                sub,
                lambda t, p: t.startswith("homeassistant/") and t.endswith("/config") and bool(p),
                30,
            )
            report.ok(f"discovery published to the real Mosquitto ({topic})", say)

            status, text = await _get(f"{base}/", INGRESS_PEER)
            if status != 200 or "Hoymiles DTU Bridge" not in text:
                raise container.fail(f"GET / from {INGRESS_PEER}: {status} {text[:200]!r}")
            report.ok(f"GET / from the ingress peer {INGRESS_PEER}: 200", say)
            status, text = await _get(f"{base}/", OTHER_PEER)
            if status != 403:
                raise container.fail(f"GET / from {OTHER_PEER}: {status}, expected 403")
            report.ok(f"GET / from {OTHER_PEER}: 403 {text.strip()!r}", say)

            log = container.log()
            if token in log or broker_password in log or mqtt_secret in log:
                raise container.fail("the container log shows the token or a password")
            if log.count("Hoymiles DTU Bridge 0") != 1 or "  MQTT: addons@127.0.0.1" not in log:
                raise container.fail("expected exactly one start-up summary naming the broker")
            report.ok("one start-up summary; no token or password in the log", say)

            pid = await _config_page_restart(
                container,
                supervisor,
                report,
                say,
                base=base,
                pid=pid,
                mqtt_secret=mqtt_secret,
            )
            if container.halted_path.exists() or mqtt_secret in container.log():
                raise container.fail("the restart halted the container or logged the secret")

            await container.signal_service("-k")
            new_pid = await container.wait_up(15, not_pid=pid)
            if container.halted_path.exists():
                raise container.fail("finish halted the container after a SIGKILL")
            recorded = container.exitcode_path.read_text().strip()
            if recorded != "137":
                raise container.fail(f"finish recorded {recorded!r} after SIGKILL, expected 137")
            report.ok(
                f"SIGKILL (finish gets 256, 9): recorded 137, no halt, s6 restarted it "
                f"(pid {new_pid})",
                say,
            )
            await _wait_health(container, f"{base}/health", 30)

            mark = len(container.log())  # the restart above logged an exit with code 0, too
            code = await container.stop()
            log = container.log()[mark:]
            expected = (
                "Received SIGTERM, stopping",
                "Hoymiles DTU Bridge stopped",
                "hoymiles-bridge exited with code 0",
            )
            missing = [line for line in expected if line not in log]
            if missing or container.halted_path.exists() or code != 0:
                raise container.fail(
                    f"clean stop: missing {missing}, halted={container.halted_path.exists()}, "
                    f"s6-svscan exit {code}"
                )
            for topic in (layout.will, layout.bridge_status):
                await _wait_topic(
                    container, sub, lambda t, p, w=topic: t == w and p == b"offline", 10
                )
            report.ok("SIGTERM: the bridge said 'offline' on MQTT and exited 0; no halt", say)
        finally:
            await container.cleanup()


async def _setup_container(
    workdir: Path,
    report: Report,
    say: Callable[[str], None],
    *,
    sim: DtuSimulator,
    broker: Mosquitto,
    secrets_: tuple[str, str],
    environment: dict[str, str],
    ingress_port: int,
) -> None:
    """Setup mode: ``dtus: []`` keeps the service up; saving the first DTU starts polling."""
    token, broker_password = secrets_
    options: dict[str, Any] = {"dtus": [], "log_level": "info"}
    mqtt = MqttService("127.0.0.1", broker.port, username=BROKER_USER, password=broker_password)
    layout = TopicLayout("solar", several_dtus=False)
    base = f"http://127.0.0.1:{ingress_port}"
    container = Container(workdir / "container-setup", options, environment)
    async with (
        SupervisorStandin(
            token, mqtt, options=options, options_file=container.options_path
        ) as supervisor,
        Subscriber(broker.port, "#", username=BROKER_USER, password=broker_password) as sub,
    ):
        container.environment["HOYMILES_BRIDGE_SUPERVISOR_URL"] = supervisor.url
        container.layout()
        try:
            await container.start()
            pid = await container.wait_up(15)
            await _wait_health(container, f"{base}/health", 30)
            await _wait_topic(
                container,
                sub,
                lambda t, p: t == layout.bridge_status and p == b"online",
                15,
            )
            status, text = await _get(f"{base}/", INGRESS_PEER)
            if status != 200 or "Hoymiles DTU Bridge" not in text:
                raise container.fail(f"setup mode: GET / answered {status}")
            status, body = await _call("GET", f"{base}/api/status", INGRESS_PEER)
            if status != 200 or body.get("dtus") != [] or body.get("starting"):
                raise container.fail(f"setup mode: api/status {status} {str(body)[:200]}")
            state = await container.status()
            if (
                state.get("pid") != str(pid)
                or container.halted_path.exists()
                or container.exitcode_path.exists()
            ):
                raise container.fail(f"setup mode: the service did not stay up ({state})")
            report.ok(
                "setup mode (dtus: []): the service stays up, serves the web UI and "
                "publishes 'online'",
                say,
            )
            dtu = {"host": sim.host, "port": sim.port, "name": "First DTU"}
            status, body = await _call(
                "POST", f"{base}/api/config", INGRESS_PEER, {"options": {**options, "dtus": [dtu]}}
            )
            if status != 200 or body.get("restart_pending"):
                raise container.fail(f"setup mode: saving the first DTU: {status} {body}")
            polled = await _wait_polled(container, base, 30)
            state = await container.status()
            if state.get("pid") != str(pid) or supervisor.restarts:
                raise container.fail("setup mode: saving the first DTU restarted the add-on")
            if supervisor.options.get("dtus") != [{**dtu, "port": sim.port}]:
                raise container.fail(f"setup mode: the Supervisor keeps {supervisor.options}")
            report.ok(
                f"setup mode: saving the first DTU polls it at once, without an add-on "
                f"restart (serial {polled.get('serial')})",
                say,
            )
        finally:
            await container.cleanup()


async def _wait_polled(container: Container, base: str, timeout: float) -> dict[str, Any]:
    """``api/status`` (from the ingress peer) until its first DTU has been polled."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            status, body = await _call("GET", f"{base}/api/status", INGRESS_PEER)
        except (aiohttp.ClientError, TimeoutError) as err:
            last = err
        else:
            last = (status, body)
            dtus = body.get("dtus") if status == 200 and isinstance(body, dict) else None
            if dtus and isinstance(dtus[0], dict) and dtus[0].get("last_poll"):
                return dtus[0]
        await asyncio.sleep(0.2)
    raise container.fail(f"api/status showed no polled DTU within {timeout} s: {str(last)[:300]}")


async def _crashing_container(
    workdir: Path, report: Report, say: Callable[[str], None], environment: dict[str, str]
) -> None:
    container = Container(
        workdir / "container-crash", {"dtus": [{"port": 1}], "poll_interval": 0}, dict(environment)
    )
    container.environment["HOYMILES_BRIDGE_SUPERVISOR_URL"] = "http://127.0.0.1:9"
    container.layout()
    try:
        await container.start()
        await container.wait_exit(30)
        log = container.log()
        recorded = (
            container.exitcode_path.read_text().strip() if container.exitcode_path.exists() else ""
        )
        wanted = (
            "ERROR: Invalid option dtus[0].host: required option is missing",
            "ERROR: Invalid option poll_interval:",
            "hoymiles-bridge exited with code 2; stopping the add-on",
        )
        missing = [line for line in wanted if line not in log]
        if missing or "Traceback" in log:
            raise container.fail(f"invalid options: missing log lines {missing} or a traceback")
        if recorded != "2" or not container.halted_path.exists():
            raise container.fail(
                f"invalid options: finish recorded {recorded!r} (want '2'), "
                f"halted={container.halted_path.exists()}"
            )
        report.ok(
            "invalid options: one log line per problem, exit 2, finish recorded 2 and "
            "halted the container",
            say,
        )
    finally:
        await container.cleanup()


async def run_harness(workdir: Path, *, say: Callable[[str], None] = print) -> Report:
    """Run every check in ``workdir``; raises :class:`HarnessError` at the first failure."""
    missing = missing_tools()
    if missing:
        raise HarnessError(f"missing {', '.join(missing)}: apt-get install s6")
    report = Report(workdir=workdir)
    problems = check_layout()
    if problems:
        raise HarnessError("; ".join(problems))
    report.ok("rootfs: longrun with executable run/finish via with-contenv, enabled in user", say)
    token = secrets.token_hex(56)  # what the Supervisor generates at each start
    broker_password = secrets.token_hex(32)
    ingress_port = free_port("0.0.0.0")  # noqa: S104 - checked where the ingress server binds
    venv_bin = Path(sys.executable).parent
    environment = {
        "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",
        # The code of this repository, not whatever copy the venv has installed.
        "PYTHONPATH": str(REPO / "src"),
        "SUPERVISOR_TOKEN": token,
        "HOYMILES_BRIDGE_INGRESS_PEER": INGRESS_PEER,
        "HOYMILES_BRIDGE_INGRESS_PORT": str(ingress_port),
        "TZ": "UTC",
    }
    broker = Mosquitto(
        _mkdir(workdir / "mosquitto"), username=BROKER_USER, password=broker_password
    )
    async with DtuSimulator() as sim:
        await broker.start()
        try:
            await _healthy_container(
                workdir,
                report,
                say,
                sim=sim,
                broker=broker,
                secrets_=(token, broker_password),
                environment=dict(environment),
                ingress_port=ingress_port,
            )
            await _setup_container(
                workdir,
                report,
                say,
                sim=sim,
                broker=broker,
                secrets_=(token, broker_password),
                environment=dict(environment),
                ingress_port=ingress_port,
            )
        finally:
            await broker.stop()
    await _crashing_container(workdir, report, say, environment)
    return report


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the add-on's s6 service locally.")
    parser.add_argument("--keep", type=Path, help="use (and keep) this work directory")
    args = parser.parse_args()
    try:
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            asyncio.run(run_harness(args.keep))
        else:
            with tempfile.TemporaryDirectory(prefix="hoymiles-addon-") as tmp:
                asyncio.run(run_harness(Path(tmp)))
    except HarnessError as err:
        print(f"FAILED: {err}", file=sys.stderr)
        return 1
    print("all add-on harness checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
