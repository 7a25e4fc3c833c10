"""Printing results: readable text for people, ``--json`` for scripts."""

from __future__ import annotations

import json
import sys
from typing import Any

from hoymiles_bridge.protocol.models import RealData
from hoymiles_bridge.protocol.records import Result, as_json_data


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, separators=(",", ":"), ensure_ascii=False) + "\n")


def _lines(data: Any, indent: int = 0) -> list[str]:
    pad = "  " * indent
    out: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(value, dict | list) and value:
                out.append(f"{pad}{key}:")
                out.extend(_lines(value, indent + 1))
            else:
                out.append(f"{pad}{key}: {value if value != [] else '-'}")
    elif isinstance(data, list):
        for item in data:
            sub = _lines(item, indent + 1)
            if sub:
                out.append(f"{pad}- {sub[0].strip()}")
                out.extend(sub[1:])
    else:
        out.append(f"{pad}{data}")
    return out


def real_data_text(data: RealData) -> str:
    rows = [
        f"DTU {data.dtu_serial}  time {data.timestamp}  "
        f"power {data.dtu_power:.1f} W  today {data.dtu_energy_daily} Wh"
    ]
    for inv in data.inverters:
        state = "reachable" if inv.reachable else "NOT reachable"
        rows.append(
            f"  {inv.serial} {inv.model:<16} {inv.power:7.1f} W  {inv.voltage:5.1f} V  "
            f"{inv.current:5.2f} A  {inv.frequency:5.2f} Hz  pf {inv.power_factor:.3f}  "
            f"{inv.temperature:4.1f} °C  {state}"
        )
        rows.extend(
            f"      port {port.port}: {port.power:6.1f} W  {port.voltage:5.1f} V  "
            f"{port.current:5.2f} A  today {port.energy_daily} Wh  total {port.energy_total} Wh"
            for port in inv.ports
        )
    return "\n".join(rows)


def print_result(result: Result, *, as_json: bool) -> None:
    if as_json:
        print_json(as_json_data(result))
    elif isinstance(result, RealData):
        print(real_data_text(result))
    elif result is None:
        print("done")
    else:
        print("\n".join(_lines(as_json_data(result))))
