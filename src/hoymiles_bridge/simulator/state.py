"""State of a simulated DTU and its inverters, and what commands do to it.

Nothing here does I/O: :mod:`.handlers` turns this state into protobuf replies
and :mod:`.server` moves them over TCP.
"""

from __future__ import annotations

import logging
import os
import random
import re
from dataclasses import dataclass
from typing import Final

from hoymiles_bridge.protocol.actions import TEMPORARY_LIMIT_FIRMWARE, Action
from hoymiles_bridge.protocol.crypto import PayloadCipher
from hoymiles_bridge.simulator.clock import SimClock
from hoymiles_bridge.simulator.fleet import DtuSpec, InverterSpec
from hoymiles_bridge.simulator.physics import (
    GRID_FREQUENCY,
    GRID_VOLTAGE,
    EnergyCounters,
    SolarModel,
    local_midnight,
)

_LOG = logging.getLogger(__name__)

#: Without performance mode the served snapshot refreshes this often (sim s).
REFRESH_INTERVAL: Final = 30.0
#: With performance mode: at most once per sim-second.
PERFORMANCE_REFRESH: Final = 1.0
#: How long an inverter restart keeps it off the radio link (sim s).
INVERTER_RESTART_SECONDS: Final = 60.0
#: How long command status reports the targets as still operating (sim s).
COMMAND_BUSY_SECONDS: Final = 1.0
#: Warning code the DTU reports after a remote shutdown (alarm id 124).
WARN_REMOTE_SHUTDOWN: Final = 124
#: First AppInfo reply sequence (the capture shows 903).
APP_INFO_SEQ_START: Final = 903
#: Unknown CRC value real inverters report (probably the grid profile CRC).
GRID_PROFILE_CRC: Final = 28864


#: The actions the simulated DTU carries out; anything else gets err_code 1.
KNOWN_ACTIONS: Final = frozenset(
    {
        Action.DTU_REBOOT,
        Action.MI_REBOOT,
        Action.MI_START,
        Action.MI_SHUTDOWN,
        Action.LIMIT_POWER,
        Action.POLL_ALL,
        Action.GRID_FILE_READ,
        Action.CLEAR_ALARM,
        Action.ALARM_LIST,
        Action.ALARM_SINGLE,
        Action.LIMIT_POWER_TEMPORARY,
        Action.INV_BOOT_UP,
        Action.INV_SHUTDOWN,
        Action.INV_REBOOT,
    }
)
_LIMIT_RE: Final = re.compile(r"^\s*A:(\d{1,5})(?:,.*)?$", re.DOTALL)
_TEMPORARY_LIMIT_RE: Final = re.compile(r"^\s*S:1,P:(\d{1,5})\s*$")

# --- readings ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PortReading:
    port: int  # 1-based
    voltage: float  # V
    current: float  # A
    power: float  # W
    energy_total: int  # Wh
    energy_daily: int  # Wh


@dataclass(frozen=True, slots=True)
class InverterReading:
    serial: int
    phases: int
    link: bool
    ac_power: float = 0.0  # W
    ac_voltage: float = 0.0  # V (per phase)
    frequency: float = 0.0  # Hz
    power_factor: float = 0.0
    reactive_power: float = 0.0  # var
    temperature: float = 0.0  # degC
    wnum: int = 0
    limit_permille: int = 1000
    ports: tuple[PortReading, ...] = ()

    @property
    def power(self) -> float:
        """AC power in W (alias of ``ac_power``)."""
        return self.ac_power


@dataclass(frozen=True, slots=True)
class DataSnapshot:
    """What real-data requests serve until the next refresh."""

    time: int
    inverters: tuple[InverterReading, ...]

    @property
    def total_power(self) -> float:
        return sum(inv.ac_power for inv in self.inverters)

    @property
    def total_daily_energy(self) -> int:
        return sum(port.energy_daily for inv in self.inverters for port in inv.ports)


@dataclass(slots=True)
class WarningEntry:
    code: int
    num: int
    start: int
    end: int = 0  # 0 while active
    data1: int = 0
    data2: int = 0


@dataclass(frozen=True, slots=True)
class CommandRecord:
    tid: int
    action: int
    time: float  # sim time it was accepted
    targets: tuple[int, ...]
    failed: tuple[int, ...] = ()


@dataclass(slots=True)
class DtuConfig:
    """The settings GetConfig reports and SetConfig changes."""

    wifi_ssid: str = "SimulatedWiFi"
    wifi_password: str = "sim-secret-password"  # noqa: S105 - a simulated secret
    server_domain_name: str = "dataeu.hoymiles.com"
    server_port: int = 10081
    server_send_time: int = 15
    dhcp: bool = True
    ip: tuple[int, int, int, int] = (192, 168, 1, 77)
    netmask: tuple[int, int, int, int] = (255, 255, 255, 0)
    gateway: tuple[int, int, int, int] = (192, 168, 1, 1)
    dns: tuple[int, int, int, int] = (192, 168, 1, 1)
    mac: tuple[int, ...] = (0x48, 0xE7, 0x29, 0x10, 0x20, 0x30)
    ap_password: str = "sim-ap-password"  # noqa: S105 - a simulated secret


# --- inverter ------------------------------------------------------------------


class SimulatedInverter:
    """One inverter: switched on/off, limited, restarting, with warnings and energy."""

    def __init__(self, spec: InverterSpec, now: float) -> None:
        self.spec = spec
        self.serial = spec.serial_int
        self.model = SolarModel(self.serial, spec.ports, spec.rated_power, spec.phases)
        self.on = True
        self.limit_permille = 1000
        #: Non-persistent limit in W (action 211); lost on restart.
        self.temporary_limit_w: float | None = None
        self.unreachable_until = 0.0
        self.warnings: list[WarningEntry] = []
        self.wnum = 0
        rng = random.Random(self.serial)
        lifetime_hours = rng.uniform(300, 1500)  # full-load hours before the simulation
        per_port = spec.rated_power * lifetime_hours / spec.ports
        midnight = local_midnight(now)
        self.energy = EnergyCounters(
            et=[per_port * rng.uniform(0.9, 1.0) for _ in range(spec.ports)],
            ed=[0.0] * spec.ports,
            last=midnight,
        )
        # Today's energy so far, as if the inverter had been running since midnight.
        self.energy.integrate(now, self.port_power)

    def reachable(self, t: float) -> bool:
        return t >= self.unreachable_until

    @property
    def effective_permille(self) -> int:
        """The limit in force: the persistent one, or a lower temporary one."""
        if self.temporary_limit_w is None or self.spec.rated_power <= 0:
            return self.limit_permille
        temporary = round(self.temporary_limit_w * 1000 / self.spec.rated_power)
        return min(self.limit_permille, temporary)

    def port_power(self, t: float) -> list[float]:
        """DC power per port (W) with the current switch state and limit."""
        if not self.reachable(t):
            return [0.0] * self.spec.ports
        dc, _ = self.model.limited(self.model.available_dc(t), self.effective_permille, self.on)
        return dc

    def update_energy(self, t: float) -> None:
        self.energy.integrate(t, self.port_power)

    def add_warning(self, code: int, t: float) -> None:
        self.wnum += 1
        self.warnings.append(WarningEntry(code=code, num=self.wnum, start=int(t)))

    def end_warnings(self, code: int, t: float) -> None:
        for warning in self.warnings:
            if warning.code == code and warning.end == 0:
                warning.end = int(t)

    def reading(self, t: float) -> InverterReading:
        """Measured values at ``t`` (call :meth:`update_energy` first)."""
        et = [int(value) for value in self.energy.et]
        ed = [int(value) for value in self.energy.ed]
        if not self.reachable(t):
            ports = tuple(
                PortReading(i + 1, 0.0, 0.0, 0.0, et[i], ed[i]) for i in range(self.spec.ports)
            )
            return InverterReading(self.serial, self.spec.phases, link=False, ports=ports)
        rng = self.model.noise(t)
        irr = self.model.irradiance(t)
        available = self.model.available_dc(t)
        dc, ac = self.model.limited(available, self.effective_permille, self.on)
        capped = self.on and sum(dc) < sum(available) * 0.999
        ports_list: list[PortReading] = []
        for index, power in enumerate(dc):
            if irr <= 0:
                volts = 0.0
            else:
                volts = 28.0 + 10.0 * min(1.0, irr * 1.6) + rng.uniform(-0.4, 0.4)
                if capped or not self.on:
                    volts += 1.5  # MPPT moves towards open-circuit voltage
                volts = min(40.0, max(28.0, volts))
            power = power * (1 + rng.uniform(-0.005, 0.005)) if power > 0 else 0.0
            current = power / volts if volts > 0 else 0.0
            ports_list.append(PortReading(index + 1, volts, current, power, et[index], ed[index]))
        producing = ac > 0
        ambient = 12.0 + 10.0 * irr
        return InverterReading(
            serial=self.serial,
            phases=self.spec.phases,
            link=True,
            ac_power=ac,
            ac_voltage=GRID_VOLTAGE + rng.uniform(-3.0, 3.0),
            frequency=GRID_FREQUENCY + rng.uniform(-0.02, 0.02),
            power_factor=1.0 - (rng.uniform(0.0, 0.05) if producing else 0.0),
            reactive_power=rng.uniform(-0.02, 0.02) * ac if producing else 0.0,
            temperature=ambient + 25.0 * ac / self.spec.rated_power,
            wnum=self.wnum,
            limit_permille=self.effective_permille,
            ports=tuple(ports_list),
        )


# --- DTU -----------------------------------------------------------------------


def _new_enc_rand() -> bytes:
    return os.urandom(16)


class SimulatedDtu:
    """The DTU: its inverters, data snapshot, commands, config and encryption key."""

    def __init__(
        self,
        spec: DtuSpec,
        clock: SimClock,
        *,
        encrypt: bool = False,
        countdown_reset: bool = False,
    ) -> None:
        self.spec = spec
        self.clock = clock
        self.encrypt = encrypt
        self.countdown_reset = countdown_reset
        now = clock.now()
        self.inverters = [SimulatedInverter(inv, now) for inv in spec.inverters]
        self._by_serial = {inv.serial: inv for inv in self.inverters}
        self.enc_rand = _new_enc_rand() if encrypt else b""
        self._cipher: PayloadCipher | None = PayloadCipher(self.enc_rand) if encrypt else None
        self.performance_mode = False
        self.limit_power_mypower = 1000
        self.config = DtuConfig()
        self.signal_strength = 74
        self.boot_count = 0
        self.boot_time = now
        self._snapshot: DataSnapshot | None = None
        self._snapshot_at = 0.0
        self._window_start = 0.0
        self._app_info_seq = APP_INFO_SEQ_START - 1
        self._push_seq = 433
        self.commands: dict[int, CommandRecord] = {}
        self.last_command: CommandRecord | None = None
        self.reboot_requested = False

    # -- basics ------------------------------------------------------------

    @property
    def serial(self) -> str:
        return self.spec.serial

    def now(self) -> float:
        return self.clock.now()

    @property
    def cipher(self) -> PayloadCipher | None:
        return self._cipher

    def inverter(self, serial: int) -> SimulatedInverter | None:
        return self._by_serial.get(serial)

    def next_app_info_sequence(self) -> int:
        """The DTU's own counter used for AppInfo replies (not the request's)."""
        self._app_info_seq = (self._app_info_seq + 1) & 0xFFFF
        return self._app_info_seq

    def next_push_sequence(self) -> int:
        self._push_seq = (self._push_seq + 1) & 0xFFFF
        return self._push_seq

    def update_energy(self) -> float:
        now = self.now()
        for inverter in self.inverters:
            inverter.update_energy(now)
        return now

    # -- real data cadence (protocol.md 5.2) ---------------------------------

    @property
    def snapshot_time(self) -> float | None:
        return self._snapshot_at if self._snapshot is not None else None

    def _refresh(self, now: float) -> DataSnapshot:
        for inverter in self.inverters:
            inverter.update_energy(now)
        self._snapshot = DataSnapshot(
            time=int(now), inverters=tuple(inv.reading(now) for inv in self.inverters)
        )
        self._snapshot_at = now
        self._window_start = now
        return self._snapshot

    def snapshot(self) -> DataSnapshot:
        """The data a real-data request gets now, refreshing it when due."""
        now = self.now()
        current = self._snapshot
        if current is None:
            return self._refresh(now)
        if self.performance_mode:
            if now - self._snapshot_at >= PERFORMANCE_REFRESH:
                return self._refresh(now)
            return current
        if now - self._window_start >= REFRESH_INTERVAL:
            return self._refresh(now)
        if self.countdown_reset:
            self._window_start = now  # a request inside the window restarts it
        return current

    def live_readings(self) -> list[InverterReading]:
        """Fresh readings (for history and status), not the served snapshot."""
        now = self.update_energy()
        return [inv.reading(now) for inv in self.inverters]

    # -- commands (protocol.md 4.5, 5.5) -----------------------------------------

    def execute(self, action: int, data: str, targets: list[int], tid: int) -> int:
        """Carry out a command; returns the err_code of the reply (0 = accepted)."""
        if action not in KNOWN_ACTIONS:
            _LOG.debug("DTU %s: unknown action %d", self.serial, action)
            return 1
        now = self.update_energy()
        chosen = [inv for inv in self.inverters if not targets or inv.serial in targets]
        failed = tuple(sn for sn in targets if sn not in self._by_serial)
        if action == Action.LIMIT_POWER:
            match = _LIMIT_RE.match(data)
            if match is None or int(match.group(1)) > 1000:
                _LOG.debug("DTU %s: bad limit data %r", self.serial, data)
                return 1
            permille = int(match.group(1))
            for inverter in chosen:
                inverter.limit_permille = permille
            self.limit_power_mypower = permille
        elif action == Action.LIMIT_POWER_TEMPORARY:
            temporary = _TEMPORARY_LIMIT_RE.match(data)
            if self.spec.firmware < TEMPORARY_LIMIT_FIRMWARE or temporary is None:
                _LOG.debug("DTU %s: temporary limit refused (%r)", self.serial, data)
                return 1
            for inverter in chosen:
                inverter.temporary_limit_w = int(temporary.group(1)) / 10
        elif action in (Action.MI_SHUTDOWN, Action.INV_SHUTDOWN):
            for inverter in chosen:
                if inverter.on:
                    inverter.on = False
                    inverter.add_warning(WARN_REMOTE_SHUTDOWN, now)
        elif action in (Action.MI_START, Action.INV_BOOT_UP):
            for inverter in chosen:
                inverter.on = True
                inverter.end_warnings(WARN_REMOTE_SHUTDOWN, now)
        elif action in (Action.MI_REBOOT, Action.INV_REBOOT):
            for inverter in chosen:
                inverter.unreachable_until = now + INVERTER_RESTART_SECONDS
                inverter.temporary_limit_w = None
                # An inverter keeps its lifetime energy but starts today's count
                # again after a restart (what the bridge's yield-day correction fixes).
                inverter.energy.ed = [0.0] * len(inverter.energy.ed)
        elif action == Action.POLL_ALL:
            self.performance_mode = True
        elif action == Action.CLEAR_ALARM:
            for inverter in chosen:
                inverter.warnings = [w for w in inverter.warnings if w.end == 0]
        elif action == Action.DTU_REBOOT:
            self.reboot_requested = True
            chosen = []
        record = CommandRecord(
            tid=tid,
            action=action,
            time=now,
            targets=tuple(inv.serial for inv in chosen),
            failed=failed,
        )
        self.commands[tid] = record
        self.last_command = record
        return 0

    def command_status(self, tid: int) -> tuple[CommandRecord | None, bool]:
        """The command with ``tid`` (else the last one) and whether it is still running."""
        record = self.commands.get(tid, self.last_command)
        if record is None:
            return None, False
        return record, self.now() - record.time < COMMAND_BUSY_SECONDS

    # -- reboot -----------------------------------------------------------

    def reboot(self) -> None:
        """What a DTU restart forgets (protocol.md 2.6, 4.6, 5.5)."""
        self.update_energy()
        self.reboot_requested = False
        self.boot_count += 1
        self.boot_time = self.now()
        self.performance_mode = False
        self.limit_power_mypower = 0  # reads 0 until a limit is set again
        for inverter in self.inverters:
            inverter.temporary_limit_w = None
        self._snapshot = None
        self._app_info_seq = APP_INFO_SEQ_START - 1
        if self.encrypt:
            self.enc_rand = _new_enc_rand()
            self._cipher = PayloadCipher(self.enc_rand)


__all__ = [
    "KNOWN_ACTIONS",
    "Action",
    "CommandRecord",
    "DataSnapshot",
    "DtuConfig",
    "InverterReading",
    "PortReading",
    "SimulatedDtu",
    "SimulatedInverter",
    "WarningEntry",
]
