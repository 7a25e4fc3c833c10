"""The power controller against two baselines over one simulated day.

Run from the repository root, inside the venv::

    python benchmarks/bench_controller.py          # Markdown table on stdout
    python benchmarks/bench_controller.py --json   # also writes the results JSON
    # (benchmarks/results/controller-latest.json)

The household (``simulator/household.py``, ``Household.balcony``): two 800 W
inverters on 1.8 kWp, two MS-A2 units (2.24 kWh, 1 kW each, SOC 60 % and
45 % at midnight), a load of 180 W base with noise, a fridge, an evening
rise, kettle, oven, washing machine and dishwasher steps; a meter every 1 s,
0.3-0.5 s late. Three ways to run it through the same day, in virtual time
(0.5 s steps):

* ``no control``: the batteries idle (standby, 0 W), the inverters unlimited;
* ``battery's own mode``: the batteries run their self-consumption mode
  (``general``), modelled as a slower step response (a new target every 5 s
  from the meter, 8 s time constant);
* ``controller``: this bridge's controller in ``zero_export``, default
  tuning, target 0 W, the keep-alive every 25 s.

Reported: energy imported and exported (Wh), PV curtailed by the inverter
limits (Wh), the share of time within +/-30 W of the target, the settling
time after a 2 kW load step (a separate run at 09:00 without appliance steps
and with 5 W of load noise: the time until the grid's 3 s average stays within
+/-30 W of the target; also for batteries answering in 1 to 5 s), actuations per
hour (commands the controller sends; keep-alive repeats not counted) and the
controller's CPU cost (process time spent in the control law per step, and
per simulated day).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hoymiles_bridge.cli.closed_loop import ClosedLoop
from hoymiles_bridge.core.controller import ControllerConfig, Mode
from hoymiles_bridge.simulator.household import DAY, Household

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "controller-latest.json"
BAND = 30.0
STEP_W = 2000.0
STEP_AT = 9 * 3600.0
SETTLE_WINDOW = 60.0
#: The settling check averages the grid over this many seconds (the meter's noise).
AVERAGE_S = 3.0
#: Battery time constants of the sensitivity table, s (the simulator's default is 2 s).
TAUS = (1.0, 2.0, 3.0, 5.0)


@dataclass
class Row:
    name: str
    imported_wh: float
    exported_wh: float
    curtailed_wh: float
    within_band: float
    settling_s: float | None
    actuations_per_hour: float | None
    cpu_us_per_step: float | None
    cpu_s_per_day: float | None


def _house(baseline: str, seed: int) -> Household:
    house = Household.balcony(batteries=2, seed=seed)
    if baseline == "none":
        for battery in house.batteries:
            battery.mode = "standby"
    return house


def _loop(house: Household, baseline: str, dt: float) -> ClosedLoop:
    mode = Mode.ZERO_EXPORT if baseline == "controller" else Mode.OFF
    loop = ClosedLoop.build(house, ControllerConfig(mode=mode), dt=dt)
    loop.record_every = 0
    return loop


def _day(baseline: str, seed: int, dt: float) -> tuple[Household, ClosedLoop, float, int]:
    house = _house(baseline, seed)
    loop = _loop(house, baseline, dt)
    law, cpu, steps = loop.controller, 0.0, 0
    original = law.step

    def timed(*args: Any, **kwargs: Any) -> Any:
        nonlocal cpu, steps
        started = time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            cpu += time.process_time() - started
            steps += 1

    law.step = timed  # type: ignore[method-assign]
    loop.run(DAY)
    return house, loop, cpu, steps


def _settling(baseline: str, seed: int, dt: float, tau: float = 2.0) -> float | None:
    """Seconds from a +2 kW step until the grid's 3 s average stays within the band."""
    house = _house(baseline, seed)
    for battery in house.batteries:
        battery.tau = tau
    house.now = STEP_AT
    house.meter._next = STEP_AT
    house.load.steps = []
    house.load.noise = 5.0  # the step, not the noise, is what is timed
    loop = _loop(house, baseline, dt)
    loop.record_every = dt
    loop.run(300)  # settle first
    house.extra = STEP_W
    start = house.now
    loop.run(SETTLE_WINDOW)
    after = [s for s in loop.samples if s.t > start]
    width = max(1, round(AVERAGE_S / dt))
    outside = []
    for index, sample in enumerate(after):
        window = after[max(0, index - width + 1) : index + 1]
        mean = sum(s.grid - s.target for s in window) / len(window)
        if abs(mean) > BAND:
            outside.append(sample.t)
    if not outside:
        return 0.0
    last = max(outside)
    if last >= house.now - 5.0:
        return None  # never settled within the window
    return round(last - start, 1)


def sensitivity(seed: int, dt: float) -> dict[str, dict[str, float | None]]:
    """Settling after the step for batteries that answer faster or slower (time constant)."""
    return {
        name: {f"{tau:g}": _settling(baseline, seed, dt, tau) for tau in TAUS}
        for baseline, name in (("own", "battery's own mode"), ("controller", "controller"))
    }


def run(seed: int, dt: float) -> list[Row]:
    rows = []
    names = {"none": "no control", "own": "battery's own mode", "controller": "controller"}
    for baseline, name in names.items():
        house, loop, cpu, steps = _day(baseline, seed, dt)
        totals = house.totals
        sent = len(loop.actuations)
        control = baseline == "controller"
        rows.append(
            Row(
                name=name,
                imported_wh=round(totals.imported),
                exported_wh=round(totals.exported),
                curtailed_wh=round(totals.pv_available - totals.pv_fed),
                within_band=round(totals.within / totals.seconds, 3),
                settling_s=_settling(baseline, seed, dt),
                actuations_per_hour=round(sent / (DAY / 3600), 1) if control else None,
                cpu_us_per_step=round(cpu / steps * 1e6, 1) if control and steps else None,
                cpu_s_per_day=round(cpu, 2) if control else None,
            )
        )
    return rows


def _cell(value: object, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and unit == "%":
        return f"{value * 100:.1f} %"
    return f"{value}{unit}"


def table(rows: list[Row]) -> str:
    lines = [
        "| run | imported (Wh) | exported (Wh) | PV curtailed (Wh) | within ±30 W | "
        "settling after +2 kW | actuations/h | CPU per step | CPU per day |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        settle = "never" if row.settling_s is None else f"{row.settling_s} s"
        lines.append(
            f"| {row.name} | {row.imported_wh:.0f} | {row.exported_wh:.0f} | "
            f"{row.curtailed_wh:.0f} | {_cell(row.within_band, '%')} | {settle} | "
            f"{_cell(row.actuations_per_hour)} | {_cell(row.cpu_us_per_step, ' µs')} | "
            f"{_cell(row.cpu_s_per_day, ' s')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help=f"also write {RESULTS_PATH.name}")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dt", type=float, default=0.5, help="virtual step, s")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = run(args.seed, args.dt)
    print(table(rows))
    spread = sensitivity(args.seed, args.dt)
    print(
        "\n| settling after +2 kW, battery time constant | "
        + " | ".join(f"{t:g} s" for t in TAUS)
        + " |"
    )
    print("| --- |" + " ---: |" * len(TAUS))
    for name, by_tau in spread.items():
        cells = " | ".join("never" if v is None else f"{v} s" for v in by_tau.values())
        print(f"| {name} | {cells} |")
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    took = time.perf_counter() - started
    print(f"\n{machine}; seed {args.seed}, step {args.dt} s; ran in {took:.0f} s")
    if args.json:
        RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
        document = {
            "benchmark": "controller",
            "machine": machine,
            "processor": platform.processor() or platform.machine(),
            "seed": args.seed,
            "step_s": args.dt,
            "band_w": BAND,
            "step_w": STEP_W,
            "rows": [row.__dict__ for row in rows],
            "settling_by_battery_tau": spread,
        }
        RESULTS_PATH.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
