"""Which DTUs and inverters the simulator serves, and the JSON file that lists them.

A fleet file::

    {
      "dtus": [
        {
          "serial": "10F872226797",        # 12 hex digits (required)
          "model": "DTU-Pro",              # default: from the serial prefix
          "firmware": 520,                 # raw dtu_sw, or "V00.02.08"; default 4097
          "hardware": 256,                 # raw dtu_hw; default 256
          "port": 10081,                   # default: listen port + index
          "pushes": false,                 # unsolicited 0x2202 heartbeats
          "inverters": [
            {"serial": "116172207281"},    # ports/rated_power/phases/model from the prefix
            {"serial": "141293320732", "rated_power": 1000, "model": "HMS-1000W-2T"}
          ]
        }
      ]
    }

Every problem raises :class:`FleetError` with one sentence naming the field.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final

from hoymiles_bridge.errors import InvalidArgumentError
from hoymiles_bridge.protocol import devices

DEFAULT_FIRMWARE: Final = 4097  # V01.00.01
DEFAULT_HARDWARE: Final = 256
_SERIAL_RE: Final = re.compile(r"^[0-9A-Fa-f]{12}$")
_VERSION_RE: Final = re.compile(r"^[Vv](\d{1,2})\.(\d{1,2})\.(\d{1,3})$")
_DTU_KEYS: Final = frozenset(
    {"serial", "model", "firmware", "hardware", "port", "pushes", "inverters"}
)
_INVERTER_KEYS: Final = frozenset({"serial", "ports", "rated_power", "phases", "model"})
MAX_PORTS: Final = 8
MAX_RATED_POWER: Final = 10_000


class FleetError(InvalidArgumentError):
    """A fleet file or fleet description is wrong; the message names the field."""


@dataclass(frozen=True, slots=True)
class InverterSpec:
    serial: str  # 12 hex digits, upper case
    ports: int
    rated_power: int  # W
    phases: int  # 1 or 3
    model: str

    @property
    def serial_int(self) -> int:
        return int(self.serial, 16)


@dataclass(frozen=True, slots=True)
class DtuSpec:
    serial: str
    model: str
    firmware: int  # raw dtu_sw (4097 = V01.00.01)
    hardware: int
    inverters: list[InverterSpec]
    port: int | None = None
    pushes: bool = False

    @property
    def serial_int(self) -> int:
        return int(self.serial, 16)

    @property
    def firmware_version(self) -> str:
        return devices.dtu_version(self.firmware)


@dataclass(frozen=True, slots=True)
class Fleet:
    dtus: list[DtuSpec] = field(default_factory=list)


def inverter_spec(
    serial: str,
    *,
    ports: int | None = None,
    rated_power: int | None = None,
    phases: int | None = None,
    model: str | None = None,
    where: str = "inverter",
) -> InverterSpec:
    """Build an InverterSpec, filling what is omitted from the serial prefix."""
    if not _SERIAL_RE.match(serial):
        raise FleetError(f"{where}.serial: {json.dumps(serial)} is not 12 hex digits")
    serial = serial.upper()
    kind = devices.inverter_type(int(serial, 16))
    if ports is None:
        if kind.ports == 0:
            raise FleetError(
                f"{where}.ports: missing, and serial {serial} does not tell the number of ports"
            )
        ports = kind.ports
    if rated_power is None:
        if kind.rated_power == 0:
            raise FleetError(
                f"{where}.rated_power: missing, and serial {serial} does not tell the rated power"
            )
        rated_power = kind.rated_power
    if phases is None:
        phases = kind.phases
    if model is None:
        model = kind.model
    if not 1 <= ports <= MAX_PORTS:
        raise FleetError(f"{where}.ports: {ports} is not between 1 and {MAX_PORTS}")
    if not 1 <= rated_power <= MAX_RATED_POWER:
        raise FleetError(
            f"{where}.rated_power: {rated_power} is not between 1 and {MAX_RATED_POWER} W"
        )
    if phases not in (1, 3):
        raise FleetError(f"{where}.phases: {phases} is neither 1 nor 3")
    return InverterSpec(serial, ports, rated_power, phases, model)


def default_fleet() -> Fleet:
    """One HMS-800W-2T with its built-in DTU (the same as fleets/hms-800w-2t.json)."""
    inverter = inverter_spec("141293320732")
    dtu_serial = devices.built_in_dtu_serial(inverter.serial_int)
    return Fleet([DtuSpec(dtu_serial, "DTUBI", DEFAULT_FIRMWARE, DEFAULT_HARDWARE, [inverter])])


# --- loading ----------------------------------------------------------------


def _int_field(obj: dict[str, Any], key: str, where: str) -> int | None:
    value: object = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise FleetError(f"{where}.{key}: {json.dumps(value)} is not a whole number")
    return value


def _str_field(obj: dict[str, Any], key: str, where: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise FleetError(f"{where}.{key}: {json.dumps(value)} is not a non-empty string")
    return value.strip()


def _check_keys(obj: object, allowed: frozenset[str], where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise FleetError(f"{where}: expected an object, not {json.dumps(obj)[:40]}")
    for key in obj:
        if key not in allowed:
            allowed_text = ", ".join(sorted(allowed))
            raise FleetError(f"{where}.{key}: unknown field (allowed: {allowed_text})")
    return obj


def _firmware(obj: dict[str, Any], key: str, where: str, default: int) -> int:
    value: object = obj.get(key)
    if value is None:
        return default
    if isinstance(value, str):
        match = _VERSION_RE.match(value.strip())
        if match is None:
            raise FleetError(
                f"{where}.{key}: {json.dumps(value)} is neither a number nor like 'V01.00.01'"
            )
        major, minor, patch = (int(part) for part in match.groups())
        if minor > 15 or patch > 255:
            raise FleetError(
                f"{where}.{key}: {json.dumps(value)} has a minor above 15 or a patch above 255"
            )
        return major * 4096 + minor * 256 + patch
    if isinstance(value, bool) or not isinstance(value, int):
        raise FleetError(f"{where}.{key}: {json.dumps(value)} is not a whole number")
    number = value
    if not 0 <= number <= 0x7FFFFFFF:
        raise FleetError(f"{where}.{key}: {number} is not between 0 and 2147483647")
    return number


def _parse_inverter(obj: object, where: str) -> InverterSpec:
    data = _check_keys(obj, _INVERTER_KEYS, where)
    serial = data.get("serial")
    if not isinstance(serial, str):
        raise FleetError(f"{where}.serial: missing or not a string of 12 hex digits")
    return inverter_spec(
        serial,
        ports=_int_field(data, "ports", where),
        rated_power=_int_field(data, "rated_power", where),
        phases=_int_field(data, "phases", where),
        model=_str_field(data, "model", where),
        where=where,
    )


def _parse_dtu(obj: object, where: str) -> DtuSpec:
    data = _check_keys(obj, _DTU_KEYS, where)
    serial = data.get("serial")
    if not isinstance(serial, str) or not _SERIAL_RE.match(serial):
        shown = json.dumps(serial) if serial is not None else "missing"
        raise FleetError(f"{where}.serial: {shown} is not 12 hex digits")
    serial = serial.upper()
    model = _str_field(data, "model", where) or devices.dtu_model(serial)
    port = _int_field(data, "port", where)
    if port is not None and not 0 <= port <= 65535:
        raise FleetError(f"{where}.port: {port} is not between 0 and 65535")
    pushes = data.get("pushes", False)
    if not isinstance(pushes, bool):
        raise FleetError(f"{where}.pushes: {json.dumps(pushes)} is not true or false")
    raw_inverters = data.get("inverters")
    if not isinstance(raw_inverters, list) or not raw_inverters:
        raise FleetError(f"{where}.inverters: must be a list with at least one inverter")
    inverters = [
        _parse_inverter(item, f"{where}.inverters[{index}]")
        for index, item in enumerate(raw_inverters)
    ]
    return DtuSpec(
        serial=serial,
        model=model,
        firmware=_firmware(data, "firmware", where, DEFAULT_FIRMWARE),
        hardware=_firmware(data, "hardware", where, DEFAULT_HARDWARE),
        inverters=inverters,
        port=port,
        pushes=pushes,
    )


def parse_fleet(data: object) -> Fleet:
    """Validate an already-decoded JSON document."""
    root = _check_keys(data, frozenset({"dtus"}), "fleet")
    raw_dtus = root.get("dtus")
    if not isinstance(raw_dtus, list) or not raw_dtus:
        raise FleetError("dtus: must be a list with at least one DTU")
    dtus = [_parse_dtu(item, f"dtus[{index}]") for index, item in enumerate(raw_dtus)]
    seen_serials: dict[str, str] = {}
    seen_ports: dict[int, int] = {}
    for d_index, dtu in enumerate(dtus):
        where = f"dtus[{d_index}]"
        if dtu.serial in seen_serials:
            raise FleetError(
                f"{where}.serial: {dtu.serial} is already used by {seen_serials[dtu.serial]}"
            )
        seen_serials[dtu.serial] = where
        if dtu.port:
            if dtu.port in seen_ports:
                raise FleetError(
                    f"{where}.port: {dtu.port} is already used by dtus[{seen_ports[dtu.port]}]"
                )
            seen_ports[dtu.port] = d_index
        for i_index, inverter in enumerate(dtu.inverters):
            inv_where = f"{where}.inverters[{i_index}]"
            if inverter.serial in seen_serials:
                raise FleetError(
                    f"{inv_where}.serial: {inverter.serial} is already used by "
                    f"{seen_serials[inverter.serial]}"
                )
            seen_serials[inverter.serial] = inv_where
    return Fleet(dtus)


def load_fleet(path: str | Path) -> Fleet:
    """Read and validate a fleet JSON file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FleetError(f"fleet file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise FleetError(f"fleet file {path} cannot be read ({err})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise FleetError(
            f"fleet file {path} is not valid JSON "
            f"(line {err.lineno}, column {err.colno}: {err.msg})"
        ) from None
    return parse_fleet(data)


def bundled_fleets() -> dict[str, Path]:
    """The example fleets shipped with the package, by name (``"dtu-pro"``)."""
    folder = resources.files("hoymiles_bridge.simulator") / "fleets"
    found: dict[str, Path] = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".json"):
            found[entry.name.removesuffix(".json")] = Path(str(entry))
    return dict(sorted(found.items()))


def resolve_fleet(name_or_path: str) -> Path:
    """A path as given, or the bundled fleet of that name (``dtu-pro``)."""
    path = Path(name_or_path)
    if path.exists():
        return path
    bundled = bundled_fleets().get(name_or_path.removesuffix(".json"))
    if bundled is not None:
        return bundled
    known = ", ".join(bundled_fleets())
    raise FleetError(f"fleet file {name_or_path} does not exist (bundled fleets: {known})")


__all__ = [
    "DtuSpec",
    "Fleet",
    "FleetError",
    "InverterSpec",
    "bundled_fleets",
    "default_fleet",
    "inverter_spec",
    "load_fleet",
    "parse_fleet",
    "resolve_fleet",
]
