"""A DTU that speaks the real local protocol over TCP.

Used by the tests, by people without hardware, and as executable
documentation of how a real DTU behaves (one client at a time, the 30-second
data cadence, performance mode, encryption, reboots, night shutdown of
PV-powered DTUs). Modules:

* :mod:`.clock` - simulated time with speed-up and ``advance()``
* :mod:`.fleet` - which DTUs/inverters to serve, and the JSON fleet files
* :mod:`.physics` - a deterministic solar day and energy counters
* :mod:`.state` - DTU/inverter state and what commands do
* :mod:`.handlers` - one reply builder per request message
* :mod:`.faults` - injected transport faults
* :mod:`.server` - the TCP server(s)

Example::

    async with DtuSimulator(encrypt=True) as sim:
        print(sim.host, sim.port, sim.dtu.serial)
"""

from __future__ import annotations

from hoymiles_bridge.simulator.clock import SimClock
from hoymiles_bridge.simulator.faults import Faults
from hoymiles_bridge.simulator.fleet import (
    DtuSpec,
    Fleet,
    FleetError,
    InverterSpec,
    bundled_fleets,
    default_fleet,
    load_fleet,
    resolve_fleet,
)
from hoymiles_bridge.simulator.server import DtuSimulator, SimulatorGroup, run_simulator
from hoymiles_bridge.simulator.state import SimulatedDtu, SimulatedInverter

__all__ = [
    "DtuSimulator",
    "DtuSpec",
    "Faults",
    "Fleet",
    "FleetError",
    "InverterSpec",
    "SimClock",
    "SimulatedDtu",
    "SimulatedInverter",
    "SimulatorGroup",
    "bundled_fleets",
    "default_fleet",
    "load_fleet",
    "resolve_fleet",
    "run_simulator",
]
