"""Typed answers of the Hoymiles cloud, parsed without trusting them.

The cloud sends numbers as numbers or as text (``"10.0"``), sometimes ``"-"``
or nothing, and may change its shapes at any time. Every ``parse_*`` function
here takes whatever JSON arrived: a value it cannot read becomes ``None``
(unknown), never a crash; only an answer without the one thing it is for (a
station without an id) raises :class:`~hoymiles_bridge.errors.CloudResponseError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from hoymiles_bridge.cloud import facts
from hoymiles_bridge.errors import CloudResponseError
from hoymiles_bridge.protocol.numbers import number

#: The deepest device tree and the most devices read from one station.
MAX_TREE_DEPTH: Final = 8
MAX_DEVICES: Final = 256
#: Text from the cloud (names, serials) is cut to this many characters.
MAX_TEXT: Final = 128
#: The largest station id or device id taken (ids are positive whole numbers).
MAX_ID: Final = 2**53


def whole(value: Any) -> int | None:
    """A whole number from a number or a text of one; ``None`` for anything else."""
    found = number(value)
    if found is None or not found.is_integer() or abs(found) > MAX_ID:
        return None
    return int(found)


def identifier(value: Any) -> int | None:
    """A positive id (a station's ``sid``, a device's ``id``), or ``None``."""
    found = whole(value)
    return found if found is not None and found > 0 else None


def text(value: Any) -> str:
    """Printable text from the cloud, shortened; empty for anything but text or a number."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return ""
    raw = str(value)[:MAX_TEXT]
    return "".join(c for c in raw if c.isprintable()).strip()


def mapping(value: Any) -> dict[str, Any]:
    """``value`` when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True, slots=True)
class Device:
    """A device in a station's tree: ``kind`` 1 DTU, 6 battery inverter, 16 meter."""

    id: int | None
    serial: str
    kind: int | None
    connected: bool | None
    children: tuple[Device, ...] = ()

    def walk(self) -> tuple[Device, ...]:
        """This device and every device under it, depth first."""
        found: list[Device] = [self]
        for child in self.children:
            found += child.walk()
        return tuple(found)


@dataclass(frozen=True, slots=True)
class Station:
    """A station (``sid``) of the account, with its device tree."""

    sid: int
    name: str
    devices: tuple[Device, ...] = ()

    def all_devices(self) -> tuple[Device, ...]:
        return tuple(d for top in self.devices for d in top.walk())

    def battery_inverters(self) -> tuple[Device, ...]:
        """The devices with ``bms_*`` data (type 6) that have an id."""
        return tuple(
            d
            for d in self.all_devices()
            if d.kind == facts.DEVICE_BATTERY_INVERTER and d.id is not None
        )


def _devices(value: Any, depth: int, budget: list[int]) -> tuple[Device, ...]:
    if depth >= MAX_TREE_DEPTH or not isinstance(value, list):
        return ()
    found: list[Device] = []
    for item in value:
        if not isinstance(item, dict) or budget[0] <= 0:
            continue
        budget[0] -= 1
        warn = mapping(item.get("warn_data"))
        connect = warn.get("connect")
        found.append(
            Device(
                id=identifier(item.get("id")),
                serial=text(item.get("sn")),
                kind=whole(item.get("type")),
                connected=connect if isinstance(connect, bool) else None,
                children=_devices(item.get("devices"), depth + 1, budget),
            )
        )
    return tuple(found)


def parse_station(value: Any) -> Station:
    """One item of select_by_page_c's ``list``."""
    item = mapping(value)
    sid = identifier(item.get("sid", item.get("id")))
    if sid is None:
        raise CloudResponseError("a station in the cloud's list has no station id")
    name = text(item.get("name")) or f"Station {sid}"
    return Station(sid, name, _devices(item.get("devices"), 0, [MAX_DEVICES]))


def parse_station_page(data: Any) -> tuple[tuple[Station, ...], int | None]:
    """The stations of one page of select_by_page_c, and the total the cloud announces."""
    page = mapping(data)
    items = page.get("list")
    if not isinstance(items, list):
        raise CloudResponseError("the cloud's station list has no 'list'")
    stations = []
    for item in items:
        try:
            stations.append(parse_station(item))
        except CloudResponseError:
            continue  # one unreadable station does not hide the others
    return tuple(stations), whole(page.get("total"))


@dataclass(frozen=True, slots=True)
class Flow:
    """The live power flow of a station from its burst URI (W, % and ms).

    ``battery`` is positive while the battery discharges and negative while
    it charges; ``grid`` is negative while feeding in (as the cloud sends them).
    ``expired`` says the live session ended (no ``flow``, ``dly`` or ``power``):
    ask for a new burst URI.
    """

    soc: float | None
    pv: float | None
    battery: float | None
    grid: float | None
    load: float | None
    smart_plug: float | None
    delay_ms: int | None
    connected: bool | None
    expired: bool = False

    @property
    def all_zero(self) -> bool:
        """PV, battery, grid and load all exactly 0 (the cloud's 2026-09 fault)."""
        powers = (self.pv, self.battery, self.grid, self.load)
        return all(p is not None and p == 0 for p in powers)

    @property
    def usable(self) -> bool:
        """Whether the flow carries any value at all."""
        return not self.expired and any(
            v is not None for v in (self.soc, self.pv, self.battery, self.grid, self.load)
        )


def parse_flow(data: Any) -> Flow:
    """The data of a burst answer."""
    body = mapping(data)
    power = body.get("power")
    expired = not isinstance(power, dict) or "flow" not in body or "dly" not in body
    values = mapping(power)
    delay = whole(body.get("dly"))
    con = whole(body.get("con"))
    soc = number(body.get("soc"))
    return Flow(
        soc=soc if soc is not None and 0 <= soc <= 100 else None,
        pv=number(values.get("pv")),
        battery=number(values.get("bat")),
        grid=number(values.get("grid")),
        load=number(values.get("load")),
        smart_plug=number(values.get("sp")),
        delay_ms=delay if delay is not None and delay > 0 else None,
        connected=None if con is None else con == 1,
        expired=expired,
    )


@dataclass(frozen=True, slots=True)
class StationData:
    """real_g_c: the station's energy (Wh) and its slow-changing values.

    ``today``/``month``/``year``/``total`` are the station's produced energy,
    ``battery_in``/``battery_out`` today's charge and discharge; the powers
    (W) are what the cloud computed last, at ``data_time`` (its local time,
    as text).
    """

    today: float | None
    month: float | None
    year: float | None
    total: float | None
    power: float | None
    data_time: str
    pv_power: float | None
    grid_power: float | None
    load_power: float | None
    battery_power: float | None
    soc: float | None
    battery_in: float | None
    battery_out: float | None

    @property
    def powers_all_zero(self) -> bool:
        powers = (self.pv_power, self.grid_power, self.load_power, self.battery_power)
        return all(p is not None and p == 0 for p in powers)


def _energy(value: Any) -> float | None:
    found = number(value)
    return found if found is not None and found >= 0 else None


def parse_station_data(data: Any) -> StationData:
    """The data of real_g_c."""
    body = mapping(data)
    reflux = mapping(body.get("reflux_station_data"))
    soc = number(reflux.get("bms_soc"))
    return StationData(
        today=_energy(body.get("today_eq")),
        month=_energy(body.get("month_eq")),
        year=_energy(body.get("year_eq")),
        total=_energy(body.get("total_eq")),
        power=number(body.get("real_power")),
        data_time=text(body.get("data_time")),
        pv_power=number(reflux.get("pv_power")),
        grid_power=number(reflux.get("grid_power")),
        load_power=number(reflux.get("load_power")),
        battery_power=number(reflux.get("bms_power")),
        soc=soc if soc is not None and 0 <= soc <= 100 else None,
        battery_in=_energy(reflux.get("bms_in_eq")),
        battery_out=_energy(reflux.get("bms_out_eq")),
    )


@dataclass(frozen=True, slots=True)
class BatteryInfo:
    """inverter/find_c: the battery's state of charge (%), temperature (°C) and state code."""

    device_id: int
    serial: str
    soc: float | None
    temperature: float | None
    state: int | None
    connected: bool | None


def parse_battery(device_id: int, data: Any) -> BatteryInfo:
    """The data of inverter/find_c."""
    body = mapping(data)
    real = mapping(body.get("real_data"))
    soc = number(real.get("bms_soc"))
    temperature = number(real.get("bms_temp"))
    connect = mapping(body.get("warn_data")).get("connect")
    return BatteryInfo(
        device_id=device_id,
        serial=text(body.get("sn")),
        soc=soc if soc is not None and 0 <= soc <= 100 else None,
        temperature=temperature if temperature is not None and -60 <= temperature <= 150 else None,
        state=whole(real.get("bms_state")),
        connected=connect if isinstance(connect, bool) else None,
    )


@dataclass(frozen=True, slots=True)
class SettingResult:
    """What a settings job of ``action`` answered: its values (empty when it gave none)."""

    action: int
    values: dict[str, Any]


__all__ = [
    "MAX_DEVICES",
    "MAX_TREE_DEPTH",
    "BatteryInfo",
    "Device",
    "Flow",
    "SettingResult",
    "Station",
    "StationData",
    "identifier",
    "mapping",
    "number",
    "parse_battery",
    "parse_flow",
    "parse_station",
    "parse_station_data",
    "parse_station_page",
    "text",
    "whole",
]
