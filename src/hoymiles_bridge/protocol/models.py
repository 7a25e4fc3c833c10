"""Typed, immutable views of what the DTU reports, in SI units.

Each model has ``from_pb`` (protobuf -> model) and ``to_dict`` (model -> the
JSON shape the CLI prints and other tools rely on). Raw protocol integers are
scaled here and only here (protocol.md section 4.2): voltage 0.1 V, current
0.01 A, power 0.1 W, frequency 0.01 Hz, power factor 0.001, temperature
0.1 degC, energy Wh.

Serials are checked here too: a DTU serial string that breaks
:data:`~hoymiles_bridge.protocol.devices.SERIAL_PATTERN` makes ``from_pb``
raise :class:`~hoymiles_bridge.errors.InvalidSerialError`, and int64 serials
are printed by :func:`~hoymiles_bridge.protocol.devices.format_serial`, so
every serial a model holds follows the rule. The identity replies (app info,
real data) must carry a serial; in the others an empty one means the DTU left
the field out, and stays empty.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Final

from google.protobuf.message import Message

from hoymiles_bridge.protocol.devices import (
    check_serial,
    dtu_model,
    dtu_version,
    format_serial,
    inverter_hw_version,
    inverter_model,
    inverter_sw_version,
)
from hoymiles_bridge.protocol.pb import (
    appinfo_pb2,
    command_pb2,
    config_pb2,
    heartbeat_pb2,
    history_pb2,
    network_pb2,
    realdata_pb2,
    warn_pb2,
)
from hoymiles_bridge.protocol.secrets import MASK

# --- scale factors: raw integer x factor = SI value --------------------------
VOLTAGE: Final = 0.1
CURRENT: Final = 0.01
POWER: Final = 0.1
FREQUENCY: Final = 0.01
POWER_FACTOR: Final = 0.001
TEMPERATURE: Final = 0.1
LIMIT: Final = 0.1  # power limit, 0.1 % per unit
#: Meter scaling is uncertain (protocol.md section 4.2: one user report).
METER_POWER: Final = 10.0
METER_ENERGY: Final = 10.0
METER_VOLTAGE: Final = 0.01
METER_CURRENT: Final = 0.01

#: dfs bit that says the DTU requires encrypted payloads.
DFS_ENCRYPTION_BIT: Final = 25

_JSON = dict[str, Any]


def _r(value: float, digits: int = 3) -> float:
    return round(value, digits)


# Hot path (real data, several times a second per DTU): for an int32 raw value
# and a factor of 10**-k with k <= 3, ``raw / round(1 / factor)`` is exactly the
# float ``_r(raw * factor)`` gives (the product is within 1e-7 of the decimal
# raw / 10**k, and both sides are the double nearest to that decimal), at a
# fraction of the cost of round(). Used for int32 protobuf fields only.
_VOLTAGE_DIV: Final = round(1 / VOLTAGE)
_CURRENT_DIV: Final = round(1 / CURRENT)
_POWER_DIV: Final = round(1 / POWER)
_FREQUENCY_DIV: Final = round(1 / FREQUENCY)
_POWER_FACTOR_DIV: Final = round(1 / POWER_FACTOR)
_TEMPERATURE_DIV: Final = round(1 / TEMPERATURE)
_LIMIT_DIV: Final = round(1 / LIMIT)


@dataclass(frozen=True, slots=True)
class PortData:
    """One PV input of an inverter (DC side)."""

    port: int
    voltage: float
    current: float
    power: float
    energy_total: int
    energy_daily: int
    error_code: int

    @classmethod
    def from_pb(cls, pv: realdata_pb2.PvData) -> PortData:
        # Same values as _r(pv.v * VOLTAGE) etc., see _VOLTAGE_DIV.
        return cls(
            pv.pi,
            pv.v / _VOLTAGE_DIV,
            pv.i / _CURRENT_DIV,
            pv.p / _POWER_DIV,
            pv.et,
            pv.ed,
            pv.code,
        )

    def to_dict(self) -> _JSON:
        return {
            "port": self.port,
            "voltage": self.voltage,
            "current": self.current,
            "power": self.power,
            "energy_total": self.energy_total,
            "energy_daily": self.energy_daily,
            "error_code": self.error_code,
        }


_port_number = attrgetter("port")


@dataclass(frozen=True, slots=True)
class PhaseData:
    """One phase of a three-phase inverter."""

    phase: str
    voltage: float
    current: float
    line_voltage: float

    def to_dict(self) -> _JSON:
        return {
            "phase": self.phase,
            "voltage": self.voltage,
            "current": self.current,
            "line_voltage": self.line_voltage,
        }


@dataclass(frozen=True, slots=True)
class InverterData:
    """The AC side of one inverter plus its ports.

    ``power_limit`` is the applied limit in percent when the DTU reports it
    (``p_lim``, newer firmware), else None. ``phases`` is empty for
    single-phase inverters.
    """

    serial: str
    model: str
    voltage: float
    current: float
    power: float
    reactive_power: float
    frequency: float
    power_factor: float
    temperature: float
    warning_count: int
    link_status: int
    ports: tuple[PortData, ...] = ()
    power_limit: float | None = None
    phases: tuple[PhaseData, ...] = ()

    @property
    def reachable(self) -> bool:
        return self.link_status != 0

    @property
    def dc_power(self) -> float:
        return _r(sum(p.power for p in self.ports))

    @property
    def energy_daily(self) -> int:
        return sum(p.energy_daily for p in self.ports)

    @property
    def energy_total(self) -> int:
        return sum(p.energy_total for p in self.ports)

    def to_dict(self) -> _JSON:
        out: _JSON = {
            "serial": self.serial,
            "model": self.model,
            "voltage": self.voltage,
            "current": self.current,
            "power": self.power,
            "reactive_power": self.reactive_power,
            "frequency": self.frequency,
            "power_factor": self.power_factor,
            "temperature": self.temperature,
            "warning_count": self.warning_count,
            "link_status": self.link_status,
            "ports": [p.to_dict() for p in self.ports],
        }
        if self.phases:
            out["phases"] = [p.to_dict() for p in self.phases]
        return out


def _sgs_to_model(sgs: realdata_pb2.SgsData, ports: tuple[PortData, ...]) -> InverterData:
    # Same values as _r(sgs.v * VOLTAGE) etc., see _VOLTAGE_DIV.
    sn = sgs.sn
    p_lim = sgs.p_lim
    power_div = _POWER_DIV
    return InverterData(
        format_serial(sn),
        inverter_model(sn),
        sgs.v / _VOLTAGE_DIV,
        sgs.i / _CURRENT_DIV,
        sgs.p / power_div,
        sgs.q / power_div,
        sgs.freq / _FREQUENCY_DIV,
        sgs.pf / _POWER_FACTOR_DIV,
        sgs.temp / _TEMPERATURE_DIV,
        sgs.wnum,
        sgs.link,
        ports,
        p_lim / _LIMIT_DIV if p_lim else None,
    )


def _tgs_to_model(tgs: realdata_pb2.TgsData, ports: tuple[PortData, ...]) -> InverterData:
    phases = (
        PhaseData("a", _r(tgs.v_a * VOLTAGE), _r(tgs.i_a * CURRENT), _r(tgs.v_ab * VOLTAGE)),
        PhaseData("b", _r(tgs.v_b * VOLTAGE), _r(tgs.i_b * CURRENT), _r(tgs.v_bc * VOLTAGE)),
        PhaseData("c", _r(tgs.v_c * VOLTAGE), _r(tgs.i_c * CURRENT), _r(tgs.v_ca * VOLTAGE)),
    )
    return InverterData(
        format_serial(tgs.sn),
        inverter_model(tgs.sn),
        _r(sum(p.voltage for p in phases) / 3, 1),
        _r(sum(p.current for p in phases)),
        _r(tgs.p * POWER),
        _r(tgs.q * POWER),
        _r(tgs.freq * FREQUENCY),
        _r(tgs.pf * POWER_FACTOR),
        _r(tgs.temp * TEMPERATURE),
        tgs.wnum,
        tgs.link,
        ports,
        None,
        phases,
    )


@dataclass(frozen=True, slots=True)
class MeterData:
    """An energy meter on the DTU (scaling uncertain, see METER_* above)."""

    serial: str
    meter_type: int
    power: float
    power_phases: tuple[float, float, float]
    power_factor: float
    energy_produced: float
    energy_consumed: float
    voltage_phases: tuple[float, float, float]
    current_phases: tuple[float, float, float]
    fault: int

    @classmethod
    def from_pb(cls, m: realdata_pb2.MeterData) -> MeterData:
        return cls(
            serial=format_serial(m.sn),
            meter_type=m.type,
            power=_r(m.p_tt * METER_POWER),
            power_phases=(m.p_tta * METER_POWER, m.p_ttb * METER_POWER, m.p_ttc * METER_POWER),
            power_factor=_r(m.pf_tt * POWER_FACTOR),
            energy_produced=_r(m.ep_tt * METER_ENERGY),
            energy_consumed=_r(m.en_tt * METER_ENERGY),
            voltage_phases=(
                _r(m.u_a * METER_VOLTAGE),
                _r(m.u_b * METER_VOLTAGE),
                _r(m.u_c * METER_VOLTAGE),
            ),
            current_phases=(
                _r(m.i_a * METER_CURRENT),
                _r(m.i_b * METER_CURRENT),
                _r(m.i_c * METER_CURRENT),
            ),
            fault=m.fault,
        )

    def to_dict(self) -> _JSON:
        return {
            "serial": self.serial,
            "type": self.meter_type,
            "power": self.power,
            "power_phases": list(self.power_phases),
            "power_factor": self.power_factor,
            "energy_produced": self.energy_produced,
            "energy_consumed": self.energy_consumed,
            "voltage_phases": list(self.voltage_phases),
            "current_phases": list(self.current_phases),
            "fault": self.fault,
        }


def _build_inverters(
    pages: tuple[realdata_pb2.RealDataNewFromDtu, ...],
) -> tuple[tuple[InverterData, ...], tuple[MeterData, ...]]:
    """Turn the protobuf pages into models (the costly part of a decode)."""
    by_serial: dict[int, list[PortData]] = {}
    ac: list[realdata_pb2.SgsData | realdata_pb2.TgsData] = []
    meters: list[MeterData] = []
    # PortData.from_pb inlined (the loop runs for every port of every poll).
    new_port = PortData
    v_div, i_div, p_div = _VOLTAGE_DIV, _CURRENT_DIV, _POWER_DIV
    for page in pages:
        for pv in page.pv_datas:
            port = new_port(pv.pi, pv.v / v_div, pv.i / i_div, pv.p / p_div, pv.et, pv.ed, pv.code)
            owner = by_serial.get(pv.sn)
            if owner is None:
                by_serial[pv.sn] = [port]
            else:
                owner.append(port)
        ac.extend(page.sgs_datas)
        ac.extend(page.tgs_datas)
        if page.meter_datas:
            meters.extend(MeterData.from_pb(m) for m in page.meter_datas)
    inverters = []
    sgs_type = realdata_pb2.SgsData
    for unit in ac:
        unit_ports = by_serial.get(unit.sn)
        ports = tuple(sorted(unit_ports, key=_port_number)) if unit_ports else ()
        if isinstance(unit, sgs_type):
            inverters.append(_sgs_to_model(unit, ports))
        else:
            inverters.append(_tgs_to_model(unit, ports))
    return tuple(inverters), tuple(meters)


class RealData:
    """One snapshot of every inverter behind a DTU (all pages merged). Immutable.

    ``from_pb`` keeps the protobuf pages and builds the inverter and meter
    models the first time they are read. A poller that only compares
    ``timestamp`` with the previous snapshot (the DTU repeats old data when
    asked too often) never pays for models it would throw away.
    """

    __slots__ = ("_cache", "_pages", "dtu_serial", "timestamp")

    dtu_serial: str
    timestamp: int
    _pages: tuple[realdata_pb2.RealDataNewFromDtu, ...]
    _cache: list[Any]

    def __init__(
        self,
        dtu_serial: str,
        timestamp: int,
        inverters: tuple[InverterData, ...] = (),
        meters: tuple[MeterData, ...] = (),
        dtu_power: float | None = None,
        dtu_energy_daily: int | None = None,
    ) -> None:
        object.__setattr__(self, "dtu_serial", dtu_serial)
        object.__setattr__(self, "timestamp", timestamp)
        object.__setattr__(self, "_pages", ())
        if dtu_power is None:
            dtu_power = _r(sum(i.power for i in inverters))
        if dtu_energy_daily is None:
            dtu_energy_daily = sum(i.energy_daily for i in inverters)
        object.__setattr__(self, "_cache", [inverters, meters, dtu_power, dtu_energy_daily])

    @classmethod
    def from_pb(cls, *pages: realdata_pb2.RealDataNewFromDtu) -> RealData:
        """Merge one or more pages into one snapshot (models are built on first read)."""
        self = cls.__new__(cls)
        first = pages[0]
        object.__setattr__(self, "dtu_serial", check_serial(first.sn, "RealDataNewFromDtu.sn"))
        object.__setattr__(self, "timestamp", first.time)
        object.__setattr__(self, "_pages", pages)
        object.__setattr__(self, "_cache", [])
        return self

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"RealData is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"RealData is immutable; cannot delete {name!r}")

    def _materialise(self) -> list[Any]:
        cache: list[Any] = self._cache
        if not cache:
            pages = self._pages
            inverters, meters = _build_inverters(pages)
            dtu_p = max(p.dtu_p for p in pages)
            dtu_ed = max(p.dtu_ed for p in pages)
            # DTU-Pro firmware 2.08 sends neither total; add up the inverters then.
            power = _r(dtu_p * POWER) if dtu_p else _r(sum(i.power for i in inverters))
            energy = dtu_ed or sum(i.energy_daily for i in inverters)
            cache.extend((inverters, meters, power, energy))
        return cache

    @property
    def inverters(self) -> tuple[InverterData, ...]:
        inverters: tuple[InverterData, ...] = self._materialise()[0]
        return inverters

    @property
    def meters(self) -> tuple[MeterData, ...]:
        meters: tuple[MeterData, ...] = self._materialise()[1]
        return meters

    @property
    def dtu_power(self) -> float:
        """Total AC power in W."""
        power: float = self._materialise()[2]
        return power

    @property
    def dtu_energy_daily(self) -> int:
        """Today's energy of all inverters in Wh."""
        energy: int = self._materialise()[3]
        return energy

    def _key(self) -> tuple[object, ...]:
        return (
            self.dtu_serial,
            self.timestamp,
            self.inverters,
            self.meters,
            self.dtu_power,
            self.dtu_energy_daily,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RealData):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"RealData(dtu_serial={self.dtu_serial!r}, timestamp={self.timestamp}, "
            f"inverters={self.inverters!r}, meters={self.meters!r}, "
            f"dtu_power={self.dtu_power!r}, dtu_energy_daily={self.dtu_energy_daily!r})"
        )

    def inverter(self, serial: str) -> InverterData | None:
        return next((i for i in self.inverters if i.serial == serial.upper()), None)

    def to_dict(self) -> _JSON:
        return {
            "dtu_serial": self.dtu_serial,
            "timestamp": self.timestamp,
            "inverters": [i.to_dict() for i in self.inverters],
            "meters": [m.to_dict() for m in self.meters],
            "dtu_power": self.dtu_power,
            "dtu_energy_daily": self.dtu_energy_daily,
        }


@dataclass(frozen=True, slots=True)
class InverterInfo:
    """Versions of one inverter, from app info."""

    serial: str
    model: str
    firmware: str
    hardware: str
    hardware_part_number: int
    grid_profile_code: int
    grid_profile_version: int

    def to_dict(self) -> _JSON:
        return {
            "serial": self.serial,
            "model": self.model,
            "firmware": self.firmware,
            "hardware": self.hardware,
            "hardware_part_number": self.hardware_part_number,
            "grid_profile_code": self.grid_profile_code,
            "grid_profile_version": self.grid_profile_version,
        }


@dataclass(frozen=True, slots=True)
class AppInfo:
    """DTU identity, versions, inverters and whether the DTU encrypts.

    ``enc_rand`` is a secret: it is left out of the repr and of ``to_dict``.
    """

    dtu_serial: str
    dtu_model: str
    timestamp: int
    dtu_firmware: str
    dtu_hardware: str
    dtu_firmware_raw: int
    signal_strength: int
    access_model: int
    device_count: int
    pv_count: int
    feature_flags: int
    encrypted: bool
    inverters: tuple[InverterInfo, ...]
    features: dict[int, str] = field(default_factory=dict)
    enc_rand: bytes = field(default=b"", repr=False)

    @classmethod
    def from_pb(cls, msg: appinfo_pb2.AppInfoFromDtu) -> AppInfo:
        info = msg.dtu_info
        serial = check_serial(msg.dtu_sn, "AppInfoFromDtu.dtu_sn")
        return cls(
            dtu_serial=serial,
            dtu_model=dtu_model(serial),
            timestamp=msg.time,
            dtu_firmware=dtu_version(info.dtu_sw),
            dtu_hardware=dtu_version(info.dtu_hw),
            dtu_firmware_raw=info.dtu_sw,
            signal_strength=info.signal_strength,
            access_model=info.access_model,
            device_count=msg.device_nub,
            pv_count=msg.pv_nub,
            feature_flags=info.dfs,
            encrypted=bool(info.dfs >> DFS_ENCRYPTION_BIT & 1),
            inverters=tuple(
                InverterInfo(
                    serial=format_serial(pv.pv_sn),
                    model=inverter_model(pv.pv_sn),
                    firmware=inverter_sw_version(pv.pv_sw),
                    hardware=inverter_hw_version(pv.pv_hw),
                    hardware_part_number=pv.pv_hw_pn,
                    grid_profile_code=pv.pv_gpf_code,
                    grid_profile_version=pv.pv_gpf,
                )
                for pv in msg.pv_info
            ),
            features={f.key: f.value for f in msg.app_features},
            enc_rand=info.enc_rand,
        )

    def to_dict(self) -> _JSON:
        return {
            "dtu_serial": self.dtu_serial,
            "dtu_model": self.dtu_model,
            "timestamp": self.timestamp,
            "dtu_firmware": self.dtu_firmware,
            "dtu_hardware": self.dtu_hardware,
            "signal_strength": self.signal_strength,
            "access_model": self.access_model,
            "device_count": self.device_count,
            "pv_count": self.pv_count,
            "feature_flags": self.feature_flags,
            "encrypted": self.encrypted,
            "inverters": [i.to_dict() for i in self.inverters],
            "features": {str(k): v for k, v in self.features.items()},
        }


@dataclass(frozen=True, slots=True)
class Heartbeat:
    dtu_serial: str
    timestamp: int
    signal: int

    @classmethod
    def from_pb(cls, msg: heartbeat_pb2.HeartbeatFromDtu) -> Heartbeat:
        return cls(
            check_serial(msg.dtu_sn, "HeartbeatFromDtu.dtu_sn", optional=True), msg.time, msg.csq
        )

    def to_dict(self) -> _JSON:
        return {"dtu_serial": self.dtu_serial, "timestamp": self.timestamp, "signal": self.signal}


def _ip(parts: tuple[int, int, int, int]) -> str:
    return ".".join(str(p & 0xFF) for p in parts)


@dataclass(frozen=True, slots=True)
class DtuConfig:
    """The DTU's configuration (GetConfig). ``raw`` keeps every field, secrets included."""

    dtu_serial: str
    power_limit: float
    cloud_upload_minutes: int
    wifi_rssi: int
    wifi_ssid: str
    server_domain: str
    server_port: int
    netmode: int
    access_model: int
    dhcp: bool
    ip_address: str
    wifi_ip_address: str
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    @classmethod
    def from_pb(cls, msg: config_pb2.GetConfigFromDtu) -> DtuConfig:
        raw = {f.name: v for f, v in msg.ListFields()}
        return cls(
            dtu_serial=check_serial(msg.dtu_sn, "GetConfigFromDtu.dtu_sn", optional=True),
            power_limit=_r(msg.limit_power_mypower * LIMIT),
            cloud_upload_minutes=msg.server_send_time,
            wifi_rssi=msg.wifi_rssi,
            wifi_ssid=msg.wifi_ssid,
            server_domain=msg.server_domain_name,
            server_port=msg.serverport,
            netmode=msg.netmode_select,
            access_model=msg.access_model,
            dhcp=bool(msg.dhcp_switch),
            ip_address=_ip((msg.ip_addr_0, msg.ip_addr_1, msg.ip_addr_2, msg.ip_addr_3)),
            wifi_ip_address=_ip(
                (msg.wifi_ip_addr_0, msg.wifi_ip_addr_1, msg.wifi_ip_addr_2, msg.wifi_ip_addr_3)
            ),
            raw=raw,
        )

    def to_dict(self) -> _JSON:
        return {
            "dtu_serial": self.dtu_serial,
            "power_limit": self.power_limit,
            "cloud_upload_minutes": self.cloud_upload_minutes,
            "wifi_rssi": self.wifi_rssi,
            "wifi_ssid": self.wifi_ssid,
            "wifi_password": MASK if self.raw.get("wifi_passward") else "",
            "server_domain": self.server_domain,
            "server_port": self.server_port,
            "netmode": self.netmode,
            "access_model": self.access_model,
            "dhcp": self.dhcp,
            "ip_address": self.ip_address,
            "wifi_ip_address": self.wifi_ip_address,
        }


@dataclass(frozen=True, slots=True)
class NetworkInfo:
    dtu_serial: str
    timestamp: int
    signal: int
    values: dict[str, int]

    @classmethod
    def from_pb(cls, msg: network_pb2.NetworkInfoFromDtu) -> NetworkInfo:
        values = {f.name: v for f, v in msg.ListFields() if f.name not in {"dtu_sn", "time"}}
        serial = check_serial(msg.dtu_sn, "NetworkInfoFromDtu.dtu_sn", optional=True)
        return cls(serial, msg.time, msg.csq, values)

    def to_dict(self) -> _JSON:
        return {
            "dtu_serial": self.dtu_serial,
            "timestamp": self.timestamp,
            "signal": self.signal,
            **self.values,
        }


@dataclass(frozen=True, slots=True)
class WarningEntry:
    """One alarm/warning of an inverter. ``end`` is None while it is active."""

    inverter_serial: str
    code: int
    start: int
    end: int | None

    @property
    def active(self) -> bool:
        return self.end is None

    def to_dict(self) -> _JSON:
        return {
            "inverter_serial": self.inverter_serial,
            "code": self.code,
            "start": self.start,
            "end": self.end,
        }


@dataclass(frozen=True, slots=True)
class Warnings:
    dtu_serial: str
    warnings: tuple[WarningEntry, ...]

    @classmethod
    def from_pb(cls, *pages: warn_pb2.WarnFromDtu) -> Warnings:
        entries = tuple(
            WarningEntry(format_serial(w.pv_sn), w.code, w.s_time, w.e_time or None)
            for page in pages
            for w in page.warns
        )
        serial = check_serial(pages[0].dtu_sn, "WarnFromDtu.dtu_sn", optional=True) if pages else ""
        return cls(serial, entries)

    def to_dict(self) -> _JSON:
        return {"dtu_serial": self.dtu_serial, "warnings": [w.to_dict() for w in self.warnings]}


@dataclass(frozen=True, slots=True)
class CommandAck:
    """The DTU's immediate answer to a command (accepted when ``err_code`` is 0)."""

    dtu_serial: str
    action: int
    err_code: int
    tid: int

    @classmethod
    def from_pb(cls, msg: command_pb2.CommandFromDtu) -> CommandAck:
        serial = check_serial(msg.dtu_sn, "CommandFromDtu.dtu_sn", optional=True)
        return cls(serial, msg.action, msg.err_code, msg.tid)

    def to_dict(self) -> _JSON:
        return {
            "dtu_serial": self.dtu_serial,
            "action": self.action,
            "err_code": self.err_code,
            "tid": self.tid,
        }


@dataclass(frozen=True, slots=True)
class CommandStatus:
    """Progress of a command across the inverters it targets."""

    action: int
    tid: int
    succeeded: tuple[str, ...]
    failed: tuple[str, ...]
    running: tuple[str, ...]
    errors: dict[str, int]

    @property
    def done(self) -> bool:
        return not self.running

    @property
    def ok(self) -> bool:
        return self.done and not self.failed and not self.errors

    @classmethod
    def from_pb(cls, msg: command_pb2.CommandStatusFromDtu) -> CommandStatus:
        return cls(
            action=msg.action,
            tid=msg.tid,
            succeeded=tuple(format_serial(s) for s in msg.mi_sns_sucs),
            failed=tuple(format_serial(s) for s in msg.mi_sns_failds),
            running=tuple(format_serial(s.mi_sn) for s in msg.mi_m_operating_status),
            errors={format_serial(e.mi_sn): e.error_code for e in msg.mi_m_error_status},
        )

    def to_dict(self) -> _JSON:
        return {
            "action": self.action,
            "tid": self.tid,
            "succeeded": list(self.succeeded),
            "failed": list(self.failed),
            "running": list(self.running),
            "errors": self.errors,
        }


@dataclass(frozen=True, slots=True)
class HistoryPower:
    """Today's power curve: ``samples`` in W, one every ``step_seconds`` from ``start``."""

    serial: str
    start: int
    step_seconds: int
    samples: tuple[float, ...]
    energy_total: int
    energy_daily: int

    @classmethod
    def from_pb(cls, *pages: history_pb2.HistPowerFromDtu) -> HistoryPower:
        first = pages[0]
        return cls(
            serial=format_serial(first.sn),
            start=first.abs_time_start,
            step_seconds=first.step_time,
            samples=tuple(_r(p * POWER) for page in pages for p in page.p),
            energy_total=first.et,
            energy_daily=first.ed,
        )

    def to_dict(self) -> _JSON:
        return {
            "serial": self.serial,
            "start": self.start,
            "step_seconds": self.step_seconds,
            "samples": list(self.samples),
            "energy_total": self.energy_total,
            "energy_daily": self.energy_daily,
        }


def now() -> int:
    """Unix time for request fields (wrapped so tests and the simulator agree)."""
    return int(time.time())


# --- which model describes which reply ------------------------------------------

_Model = (
    RealData
    | AppInfo
    | Heartbeat
    | DtuConfig
    | NetworkInfo
    | Warnings
    | CommandAck
    | CommandStatus
    | HistoryPower
)


#: The replies that have a typed model, and how each is built (what
#: :func:`model_for` uses, and what the fuzzers cover).
MODELS: Final[dict[type[Message], Callable[[Any], _Model]]] = {
    realdata_pb2.RealDataNewFromDtu: RealData.from_pb,
    appinfo_pb2.AppInfoFromDtu: AppInfo.from_pb,
    heartbeat_pb2.HeartbeatFromDtu: Heartbeat.from_pb,
    config_pb2.GetConfigFromDtu: DtuConfig.from_pb,
    network_pb2.NetworkInfoFromDtu: NetworkInfo.from_pb,
    warn_pb2.WarnFromDtu: Warnings.from_pb,
    command_pb2.CommandFromDtu: CommandAck.from_pb,
    command_pb2.CommandStatusFromDtu: CommandStatus.from_pb,
    history_pb2.HistPowerFromDtu: HistoryPower.from_pb,
}


def model_for(message: object) -> _Model | None:
    """The typed model of a decoded reply, or None for requests and unmodelled messages.

    Raises :class:`~hoymiles_bridge.errors.InvalidSerialError` for a reply
    whose DTU serial breaks the serial rule.
    """
    build = MODELS.get(type(message))  # type: ignore[arg-type]
    return build(message) if build is not None else None


__all__ = [
    "MODELS",
    "AppInfo",
    "CommandAck",
    "CommandStatus",
    "DtuConfig",
    "Heartbeat",
    "HistoryPower",
    "InverterData",
    "InverterInfo",
    "MeterData",
    "NetworkInfo",
    "PhaseData",
    "PortData",
    "RealData",
    "WarningEntry",
    "Warnings",
    "model_for",
]
