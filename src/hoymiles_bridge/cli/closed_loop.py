"""The power controller's law closed around the simulated household, in virtual time.

:class:`ClosedLoop` feeds a :class:`~hoymiles_bridge.core.controller.PowerController`
the meter readings of a :class:`~hoymiles_bridge.simulator.household.Household`
and what its batteries and inverters report, and carries the actuations out on
them, as the bridge's registry would: a setpoint selects ``mqtt_ctrl`` first
and is kept alive every :data:`KEEPALIVE` s (what the battery hub does). The
tests, the benchmark and ``hoymiles-bridge demo --controller`` run it; it lives
in the CLI because only the CLI starts simulators.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from hoymiles_bridge.core.controller import (
    Actuation,
    BatteryUnit,
    ControllerConfig,
    InverterUnit,
    Kind,
    Mode,
    PowerController,
)
from hoymiles_bridge.simulator.household import Household

#: Seconds between two sends of a held setpoint (the battery hub's keep-alive).
KEEPALIVE: Final = 25.0
#: How often the inverters' power reaches the bridge (a DTU poll), s.
POLL: Final = 35.0


@dataclass
class Sample:
    """One second of the loop, for charts and checks."""

    t: float
    grid: float
    load: float
    pv: float
    battery: float
    setpoint: float
    target: float


@dataclass
class ClosedLoop:
    """A household and a controller stepping together (see the module docs)."""

    house: Household
    controller: PowerController
    dt: float = 0.5
    #: Record a :class:`Sample` every this many seconds (0: none).
    record_every: float = 1.0
    samples: list[Sample] = field(default_factory=list)
    actuations: list[tuple[float, Actuation]] = field(default_factory=list)
    _held: dict[str, tuple[float, float]] = field(default_factory=dict)
    _polled_at: float = -1e18
    _polled: dict[str, float] = field(default_factory=dict)
    _next_sample: float = 0.0
    stopped: bool = False
    #: When each battery last reported (a silent one stops counting).
    _seen: dict[str, float] = field(default_factory=dict)

    @classmethod
    def build(
        cls, house: Household, config: ControllerConfig | None = None, *, dt: float = 0.5
    ) -> ClosedLoop:
        config = config or ControllerConfig(mode=Mode.ZERO_EXPORT)
        return cls(house, PowerController(config, now=house.now), dt=dt)

    def batteries(self) -> list[BatteryUnit]:
        return [
            BatteryUnit(
                b.dev_id,
                soc=b.soc,
                charge_max=b.charge_max,
                discharge_max=b.discharge_max,
                power=b.power,
                seen_at=self.house.now if b.reporting else self._seen.get(b.dev_id),
                available=True,
            )
            for b in self.house.batteries
        ]

    def inverters(self) -> list[InverterUnit]:
        now = self.house.now
        if now - self._polled_at >= POLL:
            self._polled_at = now
            self._polled = {i.serial: i.power for i in self.house.inverters}
        return [
            InverterUnit(
                i.serial,
                rated_power=i.rated,
                ac_power=self._polled.get(i.serial, i.power),
                controllable=True,
                limit=i.limit if i.limit is not None else i.rated,
            )
            for i in self.house.inverters
        ]

    def run(self, seconds: float) -> None:
        """Step the loop for ``seconds`` of virtual time."""
        end = self.house.now + seconds
        house, controller = self.house, self.controller
        while house.now < end - 1e-9:
            readings = house.advance(self.dt, controller.config.grid_setpoint)
            now = house.now
            for battery in house.batteries:
                if battery.reporting:
                    self._seen[battery.dev_id] = now
            for watts, _measured in readings:
                controller.meter(watts, now)
            if self.stopped:
                self._record(now)
                continue
            actions = controller.step(now, self.batteries(), self.inverters())
            if controller.mode.active:
                for action in actions:
                    self.apply(action, now)
                self._keep_alive(now)
            self._record(now)

    def apply(self, action: Actuation, now: float) -> None:
        """Carry one actuation out on the household (as the registry would)."""
        self.actuations.append((now, action))
        if action.kind is Kind.LIMIT:
            assert isinstance(action.value, float)
            inverter = next(i for i in self.house.inverters if i.serial == action.device)
            inverter.set_limit(action.value, now)
            return
        battery = next(b for b in self.house.batteries if b.dev_id == action.device)
        if action.kind is Kind.EMS_MODE:
            assert isinstance(action.value, str)
            battery.command_mode(action.value, now)
            self._held.pop(action.device, None)
            return
        assert isinstance(action.value, float)
        if battery.mode != "mqtt_ctrl":
            battery.command_mode("mqtt_ctrl", now)
        battery.command_setpoint(action.value, now)
        self._held[action.device] = (action.value, now)

    def _keep_alive(self, now: float) -> None:
        for dev_id, (watts, sent) in list(self._held.items()):
            if now - sent >= KEEPALIVE:
                battery = next(b for b in self.house.batteries if b.dev_id == dev_id)
                battery.command_setpoint(watts + 0.1, now)
                self._held[dev_id] = (watts, now)

    def stop(self) -> None:
        """The bridge stops: the controller releases everything and steps no more."""
        now = self.house.now
        self.stopped = True
        for action in self.controller.release("bridge stopped", now):
            self.apply(action, now)

    def _record(self, now: float) -> None:
        if not self.record_every or now + 1e-9 < self._next_sample:
            return
        self._next_sample = now + self.record_every
        house = self.house
        self.samples.append(
            Sample(
                now,
                house.grid,
                house.load_at(),
                house.pv_power,
                house.battery_power,
                self.controller.battery_output,
                self.controller.config.grid_setpoint,
            )
        )


__all__ = ["KEEPALIVE", "POLL", "ClosedLoop", "Sample"]
