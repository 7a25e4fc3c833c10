"""A simulated MS-A2 / HiBattery system that talks MQTT like the real firmware.

Each unit is its own MQTT client of the broker (as a real battery is). On
every connect it publishes the chosen firmware's discovery configs, broken as
they are in the field (msa2.md 1.4): the command-less switch (V0.3), the
select without ``state_topic``, ``soc``/``bat_p`` without ``unique_id``, the
asymmetric ``power_ctrl`` range of FW 01.06.03, and V0.3's leftover retained
``text`` configs. Then ``quick`` every second, ``device`` and ``system``
every five minutes (both cadences configurable for tests), numbers as strings
when asked.

It obeys the EMS mode, the power setpoint (only in ``mqtt_ctrl``; forgotten
60-90 s after the last one, when the unit falls back to ``general``), TOU
day/week plans with their acks and error codes, plan reads, and the V0.5.1
reboot, output power, phase output power and switch. SOC and the energy
counters follow a simple model.

The topics and checks here are written from the reference on purpose, not
taken from :mod:`hoymiles_bridge.protocol.battery`: a bug there must not hide
in both the bridge and its test partner.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import aiomqtt

from hoymiles_bridge.errors import InvalidArgumentError

_LOGGER = logging.getLogger(__name__)

#: Model name, serial prefix, rated power per unit (W), capacity per unit (Wh).
BATTERY_MODELS: Final[dict[str, tuple[str, str, float, float]]] = {
    "ms-a2": ("MS-A2", "2800", 1000.0, 2240.0),
    "1920ac": ("HiBattery 1920 AC", "2806", 1000.0, 1920.0),
    "4020x": ("HiBattery 4020 X", "2805", 2000.0, 4020.0),
}
FIRMWARES: Final = ("v0.3", "v0.5")
EMS_MODES: Final = ("general", "mqtt_ctrl", "tou_plan")
WEEK: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
#: The firmware's software version shown in its discovery.
_SW: Final = {"v0.3": "V01.06.03", "v0.5": "V01.07.01"}


@dataclass
class UnitState:
    """One simulated unit: identity, what it was told, and its physics."""

    dev_id: str
    serial: str
    master: bool
    soc: float = 62.0
    mode: str = "general"
    setpoint: float | None = None
    setpoint_at: float = 0.0
    forget_after: float = 75.0
    power: float = 0.0
    day_plans: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    week_plan: dict[str, int] = field(default_factory=dict)
    chg_e: float = 0.0
    dchg_e: float = 0.0
    etin: float = 125_000.0
    etout: float = 118_000.0
    asleep: bool = False
    output_power: int | None = None
    phase_output_power: dict[str, int] | None = None
    reboots: int = 0
    #: Publishing stopped (a test makes the unit silent).
    silent: bool = False


@dataclass(frozen=True)
class Received:
    """A command the simulator took (its simulated time, topic and payload)."""

    at: float
    topic: str
    payload: str


class BatterySimulator:
    """One battery system of ``units`` units (the first the master) on an MQTT broker."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        model: str = "ms-a2",
        firmware: str = "v0.5",
        strings: bool = False,
        units: int = 1,
        prefix: str = "homeassistant",
        client_prefix: str = "MSA",
        quick_interval: float = 1.0,
        slow_interval: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        forget_range: tuple[float, float] = (60.0, 90.0),
        serial_base: int = 24_370_560,
        seed: int = 1,
        jitter: float = 0.0,
    ) -> None:
        if model not in BATTERY_MODELS:
            raise InvalidArgumentError(f"model must be one of {', '.join(BATTERY_MODELS)}")
        if firmware not in FIRMWARES:
            raise InvalidArgumentError(f"firmware must be one of {', '.join(FIRMWARES)}")
        if not 1 <= units <= 6:
            raise InvalidArgumentError("a system has 1 to 6 units")
        self.host, self.port = host, port
        self.model, self.firmware, self.strings = model, firmware, strings
        self.prefix = prefix
        self.quick_interval, self.slow_interval = quick_interval, slow_interval
        self.clock = clock
        self._random = random.Random(seed)
        #: W of noise on the powers the quick topic reports (0: exact).
        self.jitter = jitter
        self._forget_range = forget_range
        name, serial_prefix, self.rated, self.capacity = BATTERY_MODELS[model]
        self.model_name = name
        self.units: list[UnitState] = []
        for n in range(units):
            serial = f"{serial_prefix}{serial_base + n:08d}"
            self.units.append(UnitState(f"{client_prefix}-{serial}", serial, master=n == 0))
        self.received: list[Received] = []
        #: The next ack on a kind ("day", "week", "plan") answers with this status.
        self.forced_status: dict[str, int] = {}
        self.connects = 0
        self._clients: dict[str, aiomqtt.Client] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._reboot: dict[str, asyncio.Event] = {}

    def __repr__(self) -> str:
        return f"BatterySimulator({self.model_name} x{len(self.units)}, {self.firmware})"

    @property
    def master(self) -> UnitState:
        return self.units[0]

    # --- running -------------------------------------------------------------------------

    async def run(self) -> None:
        """Run every unit until cancelled; each reconnects after a broker loss."""
        async with asyncio.TaskGroup() as group:
            for unit in self.units:
                group.create_task(self._unit_forever(unit), name=f"battery-sim-{unit.dev_id}")

    async def _unit_forever(self, unit: UnitState) -> None:
        while True:
            reboot = self._reboot.setdefault(unit.dev_id, asyncio.Event())
            reboot.clear()
            try:
                await self._unit_session(unit, reboot)
            except* aiomqtt.MqttError as group:
                _LOGGER.debug("battery %s: broker lost (%s)", unit.dev_id, group.exceptions[0])
            _raise_if_cancelling()
            await asyncio.sleep(0.2)

    async def _unit_session(self, unit: UnitState, reboot: asyncio.Event) -> None:
        client = aiomqtt.Client(self.host, self.port, identifier=unit.dev_id, keepalive=10)
        async with client:
            self._clients[unit.dev_id] = client
            self.connects += 1
            try:
                for topic in self._command_topics(unit):
                    await client.subscribe(topic, qos=1)
                for topic, payload in self.discovery(unit):
                    await client.publish(topic, payload, qos=1, retain=True)
                async with asyncio.TaskGroup() as group:
                    reader = group.create_task(
                        self._read(client, unit), name=f"battery-sim-read-{unit.dev_id}"
                    )
                    writer = group.create_task(
                        self._publish_loop(client, unit), name=f"battery-sim-write-{unit.dev_id}"
                    )
                    await reboot.wait()
                    reader.cancel()
                    writer.cancel()
            finally:
                self._clients.pop(unit.dev_id, None)

    async def _read(self, client: aiomqtt.Client, unit: UnitState) -> None:
        async for message in client.messages:
            _raise_if_cancelling()
            payload = message.payload
            text = bytes(payload).decode("utf-8", "replace") if isinstance(payload, bytes) else ""
            await self._command(client, unit, message.topic.value, text)

    async def _publish_loop(self, client: aiomqtt.Client, unit: UnitState) -> None:
        last_slow = -float("inf")
        last_step = self.clock()
        while True:
            _raise_if_cancelling()
            now = self.clock()
            self._step(unit, now - last_step, now)
            last_step = now
            if not unit.silent:
                await client.publish(self._state_topic(unit, "quick"), self._quick(unit), qos=0)
                if time.monotonic() - last_slow >= self.slow_interval:
                    last_slow = time.monotonic()
                    await client.publish(
                        self._state_topic(unit, "device"), self._device(unit), qos=1
                    )
                    if unit.master:
                        await client.publish(
                            self._state_topic(unit, "system"), self._system(), qos=1
                        )
            await asyncio.sleep(self.quick_interval)

    async def publish_raw(self, topic: str, payload: bytes | str, *, unit: int = 0) -> None:
        """Publish anything as a unit (bad input for tests)."""
        client = self._clients.get(self.units[unit].dev_id)
        if client is None:
            raise InvalidArgumentError("that unit is not connected")
        await client.publish(topic, payload, qos=1)

    async def publish_states(self, *, unit: int = 0) -> None:
        """Publish ``device`` and ``system`` now (tests need no five-minute wait)."""
        state = self.units[unit]
        client = self._clients.get(state.dev_id)
        if client is None:
            raise InvalidArgumentError("that unit is not connected")
        await client.publish(self._state_topic(state, "device"), self._device(state), qos=1)
        if state.master:
            await client.publish(self._state_topic(state, "system"), self._system(), qos=1)

    def reboot(self, unit: int = 0) -> None:
        """Drop the unit's connection and connect again (discovery is published again)."""
        event = self._reboot.get(self.units[unit].dev_id)
        if event is not None:
            event.set()

    # --- topics and payloads ----------------------------------------------------------

    def _state_topic(self, unit: UnitState, name: str) -> str:
        return f"{self.prefix}/sensor/{unit.dev_id}/{name}/state"

    def _command_topics(self, unit: UnitState) -> list[str]:
        p, d = self.prefix, unit.dev_id
        topics = []
        if unit.master:
            topics += [
                f"{p}/select/{d}/ems_mode/command",
                f"{p}/number/{d}/power_ctrl/set",
                f"{p}/sensor/{d}/tou_day_plan/set",
                f"{p}/sensor/{d}/tou_week_plan/set",
                f"{p}/sensor/{d}/tou_plan/get",
            ]
        if self.firmware == "v0.5":
            topics += [
                f"{p}/switch/{d}/set",
                f"{p}/button/{d}/reboot/trigger",
                f"{p}/number/{d}/output_power/set",
                f"{p}/number/{d}/phase_output_power/set",
            ]
        return topics

    def _n(self, value: float, digits: int = 1) -> Any:
        rounded = round(value, digits)
        return str(rounded) if self.strings else rounded

    def _device_block(self, unit: UnitState) -> dict[str, Any]:
        return {
            "identifiers": [unit.serial],
            "name": f"{self.model_name} {unit.serial}",
            "manufacturer": "Hoymiles",
            "model": self.model_name,
            "sw_version": _SW[self.firmware],
        }

    def discovery(self, unit: UnitState) -> list[tuple[str, str]]:
        """The firmware's own (broken) discovery configs, as it publishes them on connect."""
        p, d, v05 = self.prefix, unit.dev_id, self.firmware == "v0.5"
        device = self._device_block(unit)

        def uid(key: str) -> str:
            return f"{d}_{key}" if v05 else d  # V0.3: one unique_id for all three

        switch: dict[str, Any] = {
            "name": "Power",
            "unique_id": uid("switch"),
            "state_topic": f"{p}/sensor/{d}/device/state",
            "json_attributes_topic": f"{p}/sensor/{d}/attributes",
            "device": device,
        }
        if v05:
            switch["command_topic"] = f"{p}/switch/{d}/set"
        configs: list[tuple[str, dict[str, Any]]] = [(f"{p}/switch/{d}/config", switch)]
        if unit.master:
            configs.append(
                (
                    f"{p}/select/{d}/ems_mode/config",
                    {
                        "name": "EMS Mode",
                        "unique_id": uid("ems_mode"),
                        "command_topic": f"{p}/select/{d}/ems_mode/command",
                        "options": list(EMS_MODES),
                        "device": device,
                    },
                )
            )
            configs.append(
                (
                    f"{p}/number/{d}/power_ctrl/config",
                    {
                        "name": "Power Control",
                        "unique_id": uid("power_ctrl"),
                        "command_topic": f"{p}/number/{d}/power_ctrl/set",
                        # FW 01.06.03's asymmetric range for a 1 kW unit.
                        "min": -self.rated,
                        "max": 2 * self.rated,
                        "step": 0.1,
                        "unit_of_measurement": "w",
                        "device": device,
                    },
                )
            )
        for key, unit_of_measurement in (("soc", "%"), ("bat_p", "W")):
            configs.append(
                (
                    f"{p}/sensor/{d}/{key}/config",
                    {
                        "name": key,
                        "state_topic": f"{p}/sensor/{d}/quick/state",
                        "value_template": f"{{{{ value_json.{key} }}}}",
                        "unit_of_measurement": unit_of_measurement,
                        "device": device,
                    },
                )
            )
        if v05:
            configs.extend(
                (
                    f"{p}/number/{d}/{key}/config",
                    {
                        "name": key,
                        "unique_id": uid(key),
                        "command_topic": f"{p}/number/{d}/{key}/set",
                        "device": device,
                    },
                )
                for key in ("output_power", "phase_output_power")
            )
            configs.append(
                (
                    f"{p}/button/{d}/reboot/config",
                    {
                        "name": "Reboot",
                        "unique_id": uid("reboot"),
                        "command_topic": f"{p}/button/{d}/reboot/trigger",
                        "payload_press": "RESTART",
                        "device": device,
                    },
                )
            )
        else:  # leftovers of older firmware, still retained on the broker
            configs.extend(
                (
                    f"{p}/text/{d}/{key}/config",
                    {"name": key, "mode": "textarea", "command_topic": f"{p}/text/{d}/{key}"},
                )
                for key in (*(f"tou_day{n}" for n in range(1, 9)), "tou_week_plan")
            )
        supported = ["quick_state", "device_state", "system_state", "ems_mode", "power_ctrl"]
        if v05:
            supported += ["output_power", "phase_output_power", "reboot", "switch"]
        configs.append(
            (
                f"{p}/sensor/{d}/attributes",
                {"supported_topics": {name: True for name in supported}},
            )
        )
        return [(t, json.dumps(body, separators=(",", ":"))) for t, body in configs]

    def _status(self, unit: UnitState) -> str:
        if unit.asleep:
            return "standby"
        if unit.power > 0.5:
            return "discharge"
        if unit.power < -0.5:
            return "charge"
        return "standby"

    def _quick(self, unit: UnitState) -> str:
        n = self._n
        power = unit.power + (self._random.uniform(-self.jitter, self.jitter) if self.jitter else 0)
        body: dict[str, Any] = {
            "grid_on_p": n(power),
            "grid_off_p": n(0.0),
            "bat_sts": self._status(unit),
            "bat_p": n(power),
            "soc": n(unit.soc, 2),
            "heat": False,
        }
        if self.model == "4020x":
            body["pv_p"] = n(320.0)
        if unit.master:
            total = sum(u.power for u in self.units)
            soc = sum(u.soc for u in self.units) / len(self.units)
            body.update(
                sys_pv_p=n(350.0),
                sys_pv2_p=n(0.0),
                sys_plug_p=n(0.0),
                sys_sp_p=n(0.0),
                sys_bat_p=n(total),
                sys_grid_p=n(420.0 - total - 350.0),
                sys_load_p=n(420.0),
                sys_eps_p=n(0.0),
                sys_soc=n(soc, 2),
                sys_heat=False,
            )
        return json.dumps(body, separators=(",", ":"))

    def _device(self, unit: UnitState) -> str:
        n = self._n
        voltage = 51.2 + unit.soc / 100 * 3
        grid = [
            {"type": "inv", "v": n(230.1), "i": n(unit.power / 230, 2), "p": n(unit.power),
             "q": n(0.0), "ein": n(0.0), "eout": n(0.0), "etin": n(0.0), "etout": n(0.0)},
            {"type": "grid_on", "v": n(230.4), "i": n(unit.power / 230, 2), "f": n(50.01, 2),
             "p": n(unit.power), "q": n(12.0), "ein": n(unit.chg_e), "eout": n(unit.dchg_e),
             "etin": n(unit.etin), "etout": n(unit.etout)},
            {"type": "grid_off", "v": n(0.0), "i": n(0.0), "f": n(0.0, 2), "p": n(0.0),
             "q": n(0.0), "ein": n(0.0), "eout": n(0.0), "etin": n(0.0), "etout": n(0.0)},
        ]  # fmt: skip
        body: dict[str, Any] = {
            "grid": grid,  # not in the order the guide lists: match on type
            "bat_v": n(voltage, 2),
            "bat_i": n(unit.power / voltage, 2),
            "bat_p": n(unit.power),
            "bat_temp": n(24.5),
            "soc": n(unit.soc, 2),
            "bat_sts": self._status(unit),
            "rssi": n(-61.0, 0),
        }
        if self.model == "4020x":
            body.update(
                pv_num=2,
                pvs=[{"id": 1, "p": n(200.0)}, {"id": 2, "p": n(120.0)}],
                pack_num=2,
                packs=[
                    {"id": 1, "soc": n(unit.soc, 0), "temp": n(23.0), "heat": False},
                    {"id": 2, "soc": n(unit.soc, 0), "temp": n(22.5), "heat": False},
                ],
            )
        return json.dumps(body, separators=(",", ":"))

    def _system(self) -> str:
        n = self._n
        total = sum(u.power for u in self.units)
        body = {
            "pv_p": n(350.0),
            "pv2_p": n(0.0),
            "plug_p": n(0.0),
            "bat_p": n(total),
            "grid_p": n(420.0 - total - 350.0),
            "load_p": n(420.0),
            "sp_p": n(0.0),
            "eps_p": n(0.0),
            "soc": n(sum(u.soc for u in self.units) / len(self.units), 2),
            "pv_e": n(1800.0),
            "pv2_e": n(0.0),
            "chg_e": n(sum(u.chg_e for u in self.units)),
            "dchg_e": n(sum(u.dchg_e for u in self.units)),
            "plug_out_e": n(0.0),
            "plug_in_e": n(0.0),
            "ems_mode": self.master.mode,
        }
        return json.dumps(body, separators=(",", ":"))

    # --- physics -----------------------------------------------------------------------

    def _step(self, unit: UnitState, dt: float, now: float) -> None:
        master = self.master
        if master.setpoint is not None and now - master.setpoint_at > master.forget_after:
            # Not re-sent in time: the setpoint is forgotten, back to self-consumption.
            master.setpoint = None
            master.mode = "general"
        if unit.asleep:
            target = 0.0
        elif master.mode == "mqtt_ctrl" and master.setpoint is not None:
            target = master.setpoint / len(self.units)
        elif master.mode == "tou_plan":
            target = self._tou_power(now)
        else:
            target = 70.0  # self-consumption: cover a small base load
        if (target > 0 and unit.soc <= 10) or (target < 0 and unit.soc >= 100):
            target = 0.0
        unit.power = max(-self.rated, min(self.rated, target))
        wh = unit.power * max(0.0, dt) / 3600
        unit.soc = max(0.0, min(100.0, unit.soc - wh / self.capacity * 100))
        if wh > 0:
            unit.dchg_e += wh
            unit.etout += wh
        else:
            unit.chg_e -= wh
            unit.etin -= wh

    def _tou_power(self, now: float) -> float:
        day = WEEK[time.gmtime().tm_wday]
        plan = self.master.day_plans.get(self.master.week_plan.get(day, 0), [])
        slot = (time.gmtime().tm_hour * 60 + time.gmtime().tm_min) // 15
        for period in plan:
            if period["ts"] <= slot < period["te"]:
                return {1: -float(period["pc"]), 2: -200.0, 4: float(period["pd"])}.get(
                    period["mode"], 0.0
                )
        return 70.0

    # --- commands ------------------------------------------------------------------------

    async def _command(
        self, client: aiomqtt.Client, unit: UnitState, topic: str, text: str
    ) -> None:
        self.received.append(Received(self.clock(), topic, text))
        p, d = self.prefix, unit.dev_id
        if topic == f"{p}/select/{d}/ems_mode/command":
            if text in EMS_MODES:
                unit.mode = text
                if text != "mqtt_ctrl":
                    unit.setpoint = None
        elif topic == f"{p}/number/{d}/power_ctrl/set":
            try:
                watts = float(text)
            except ValueError:
                return
            if unit.mode == "mqtt_ctrl":
                unit.setpoint = max(-self.rated * len(self.units), min(self.rated * 2, watts))
                unit.setpoint_at = self.clock()
                unit.forget_after = self._random.uniform(*self._forget_range)
        elif topic == f"{p}/sensor/{d}/tou_day_plan/set":
            status = self.forced_status.pop("day", None)
            if status is None:
                status = self._day_plan(unit, text)
            await self._ack(client, f"{p}/sensor/{d}/tou_day_plan/ack", status)
        elif topic == f"{p}/sensor/{d}/tou_week_plan/set":
            status = self.forced_status.pop("week", None)
            if status is None:
                status = self._week_plan(unit, text)
            await self._ack(client, f"{p}/sensor/{d}/tou_week_plan/ack", status)
        elif topic == f"{p}/sensor/{d}/tou_plan/get":
            await self._plan_status(client, unit, text)
        elif topic == f"{p}/switch/{d}/set":
            unit.asleep = text.strip().upper() == "OFF"
        elif topic == f"{p}/button/{d}/reboot/trigger" and text == "RESTART":
            unit.reboots += 1
            self.reboot(self.units.index(unit))
        elif topic == f"{p}/number/{d}/output_power/set":
            with contextlib.suppress(ValueError):
                unit.output_power = int(float(text))
        elif topic == f"{p}/number/{d}/phase_output_power/set":
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                data = json.loads(text)
                unit.phase_output_power = {
                    k: int(data[k]) for k in ("phase_a", "phase_b", "phase_c")
                }

    async def _ack(self, client: aiomqtt.Client, topic: str, status: int) -> None:
        body = {"status": status, "err_msg": "" if status == 0 else f"error {status}"}
        await client.publish(topic, json.dumps(body), qos=1)

    def _day_plan(self, unit: UnitState, text: str) -> int:
        try:
            data = json.loads(text)
            idx, plan = data["day_idx"], data["day_plan"]
        except (ValueError, KeyError, TypeError):
            return 1
        if not isinstance(idx, int) or not 1 <= idx <= 8:
            return 8
        if not isinstance(plan, list):
            return 1
        if len(plan) > 12:
            return 2
        top = 1000 * len(self.units)
        spans = []
        for period in plan:
            try:
                mode, ts, te = period["mode"], period["ts"], period["te"]
                sh, sl, pc, pd = period["sh"], period["sl"], period["pc"], period["pd"]
            except (KeyError, TypeError):
                return 1
            if mode not in (1, 2, 4):
                return 4
            if not (0 <= ts <= 96 and 0 <= te <= 96):
                return 5
            if ts > te:
                return 9
            if not (10 <= sh <= 100 and 10 <= sl <= 100):
                return 6
            if not (100 <= pc <= top and 100 <= pd <= top):
                return 7
            spans.append((ts, te))
        spans.sort()
        if any(b[0] < a[1] for a, b in itertools.pairwise(spans)):
            return 3
        if unit.mode != "tou_plan":
            return 10
        unit.day_plans[idx] = plan
        return 0

    def _week_plan(self, unit: UnitState, text: str) -> int:
        try:
            items = json.loads(text)["week_plan"]
        except (ValueError, KeyError, TypeError):
            return 1
        seen: set[str] = set()
        week: dict[str, int] = {}
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("week"), list):
                return 2
            idx = item.get("day_idx")
            if not isinstance(idx, int) or not 1 <= idx <= 8:
                return 4
            if idx not in unit.day_plans:
                return 5
            for day in item["week"]:
                if day not in WEEK:
                    return 2
                if day in seen:
                    return 3
                seen.add(day)
                week[day] = idx
        if unit.mode != "tou_plan":
            return 6
        unit.week_plan = week
        return 0

    async def _plan_status(self, client: aiomqtt.Client, unit: UnitState, text: str) -> None:
        topic = f"{self.prefix}/sensor/{unit.dev_id}/tou_plan/status"
        try:
            day = json.loads(text)["week"]
        except (ValueError, KeyError, TypeError):
            day = None
        forced = self.forced_status.pop("plan", None)
        idx = unit.week_plan.get(day, 0) if isinstance(day, str) else 0
        if forced is not None or idx not in unit.day_plans:
            status = forced if forced is not None else (1 if day is None else 2)
            body: dict[str, Any] = {"week": day, "status": status, "err_msg": "no plan"}
        else:
            body = {"week": day, "day_idx": idx, "day_plan": unit.day_plans[idx], "status": 0}
        await client.publish(topic, json.dumps(body), qos=1)


def _raise_if_cancelling() -> None:
    """aiomqtt may take a cancellation for a lost connection and carry on: honour it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def run_battery_simulator(simulator: BatterySimulator) -> None:
    """Run ``simulator`` until cancelled (the CLI's entry point)."""
    await simulator.run()


__all__ = [
    "BATTERY_MODELS",
    "FIRMWARES",
    "BatterySimulator",
    "Received",
    "UnitState",
    "run_battery_simulator",
]
