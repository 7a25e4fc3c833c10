"""Batteries: every MS-A2 / HiBattery on the broker, their state, commands and keep-alive.

The battery speaks MQTT itself (:mod:`hoymiles_bridge.protocol.battery`); the
MQTT adapter hands each of its messages to :class:`BatteryHub` and carries
the hub's commands back through a small :class:`BatterySender` port, so this
module never imports MQTT.

The hub

* adopts batteries (every one with option ``batteries_auto``, else only the
  ``batteries`` listed; at most :data:`MAX_BATTERIES`) and keeps their typed
  :class:`BatteryState`: trusted values, identity, role (master/standalone or
  slave), what the firmware advertises, availability from silence;
* carries out the battery commands of the one registry
  (:mod:`hoymiles_bridge.core.commands`, target ``battery``), which
  :meth:`hoymiles_bridge.core.fleet.Fleet.submit` hands over;
* keeps a power setpoint alive: re-sent every :data:`KEEPALIVE_INTERVAL`
  while the mode is ``mqtt_ctrl`` and the broker is there, with the +0.1/+0.2 W
  perturbation; the firmware forgets it after a minute otherwise;
* announces what changed as :class:`~hoymiles_bridge.core.events.BatteryChanged`.

A battery's message never raises out of the hub: unreadable ones are logged at
debug and change nothing.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from hoymiles_bridge.config.options import Options
from hoymiles_bridge.core.commands import (
    Command,
    CommandError,
    CommandOutcome,
    Target,
    commands_for,
)
from hoymiles_bridge.core.events import BatteryChanged, Event
from hoymiles_bridge.core.state import BatteryState, Holding
from hoymiles_bridge.protocol import battery as fw
from hoymiles_bridge.protocol.battery import Inbound, Outbound, Source, Value

_LOGGER = logging.getLogger(__name__)

#: Batteries adopted at most (six units per system; a broker full of fakes
#: must not grow the bridge without bound).
MAX_BATTERIES: Final = 24
#: The batteries' last MQTT messages kept for the web inspector, and the most
#: of a payload each keeps.
MESSAGES_KEPT: Final = 1000
MESSAGE_TEXT_MAX: Final = 4096
#: Seconds between two sends of a held setpoint: under the 30 s integrators use
#: and well under the firmware's 60 s (msa2.md 1.5).
KEEPALIVE_INTERVAL: Final = 25.0
#: How long a TOU command waits for its acknowledgement.
ACK_TIMEOUT: Final = 15.0
#: A reported mode that contradicts the one we sent less than this ago is taken for a
#: report made before our command (system/state comes every 5 minutes, msa2.md 1.5).
MODE_REPORT_GRACE: Final = 15.0
#: How often the hub looks at the clock (availability, keep-alive), seconds.
TICK: Final = 1.0
#: Lifetime counters: keys whose value never goes down.
_LIFETIME_SUFFIXES: Final = ("_etin", "_etout")

Emit = Callable[[Event], Awaitable[None]]

#: What each battery command with an entity needs the firmware to advertise
#: (None: it needs the master or standalone unit).
_NEEDS: Final[dict[str, Outbound | None]] = {
    "ems_mode": None,
    "setpoint": None,
    "battery_reboot": Outbound.REBOOT,
    "output_power": Outbound.OUTPUT_POWER,
    "phase_output_power": Outbound.PHASE_OUTPUT_POWER,
    "awake": Outbound.SWITCH,
}


def offered_commands(battery: BatteryState) -> tuple[str, ...]:
    """The registry's battery commands this battery is offered as entities and controls."""
    offered = []
    for spec in commands_for(Target.BATTERY):
        if not spec.entities:
            continue
        needs = _NEEDS.get(spec.name)
        if (needs is None and battery.master is True) or needs in battery.capabilities:
            offered.append(spec.name)
    return tuple(offered)


class BatterySender(Protocol):
    """What the hub needs from the MQTT adapter: send a command to a battery."""

    @property
    def connected(self) -> bool: ...

    async def send(self, dev_id: str, what: Outbound, payload: str) -> None: ...


@dataclass(frozen=True, slots=True)
class BatteryMessage:
    """One MQTT message to or from a battery, as the inspector shows it.

    ``direction`` is ``in`` (from the firmware) or ``out`` (a command of the
    bridge); ``kind`` the firmware's topic (``quick``, ``device``, ``system``,
    ``config``, ``ack``...) or the command; ``text`` the payload (at most
    :data:`MESSAGE_TEXT_MAX` characters); ``decoded`` what the bridge read from
    it, or ``error`` why it read nothing.
    """

    time: float
    dev_id: str
    direction: str
    kind: str
    text: str
    decoded: Any = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "dev_id": self.dev_id,
            "direction": self.direction,
            "kind": self.kind,
            "text": self.text,
            "decoded": self.decoded,
            "error": self.error,
        }


class BatteryHub:
    """Every battery on the broker, their commands and the setpoint keep-alive."""

    def __init__(
        self,
        options: Options,
        emit: Emit,
        *,
        clock: Callable[[], float] = time.monotonic,
        keepalive_interval: float = KEEPALIVE_INTERVAL,
        ack_timeout: float = ACK_TIMEOUT,
        tick: float = TICK,
    ) -> None:
        self.options = options
        self._emit = emit
        self._clock = clock
        self.keepalive_interval = keepalive_interval
        self.ack_timeout = ack_timeout
        self._tick = tick
        self._names = {b.dev_id: b.name for b in options.batteries}
        self.batteries: dict[str, BatteryState] = {}
        self._sender: BatterySender | None = None
        #: Per battery and ack topic: the command waiting for it.
        self._waiting: dict[tuple[str, Inbound], asyncio.Future[fw.Ack]] = {}
        #: One TOU exchange at a time per battery (msa2.md 1.5: wait for each ack).
        self._tou_locks: dict[str, asyncio.Lock] = {}
        self.keepalives_sent = 0
        #: The last messages to and from the batteries (the web inspector's).
        self.messages: deque[BatteryMessage] = deque(maxlen=MESSAGES_KEPT)

    def record(
        self,
        dev_id: str,
        direction: str,
        kind: str,
        payload: bytes | str,
        decoded: Any = None,
        error: str | None = None,
    ) -> None:
        """Keep one message for the inspector (bounded; never raises for its content)."""
        raw = (
            payload
            if isinstance(payload, str)
            else payload[:MESSAGE_TEXT_MAX].decode("utf-8", "replace")
        )
        self.messages.append(
            BatteryMessage(
                time.time(), dev_id, direction, kind, raw[:MESSAGE_TEXT_MAX], decoded, error
            )
        )

    def __repr__(self) -> str:
        return f"BatteryHub(batteries={sorted(self.batteries)})"

    # --- wiring ------------------------------------------------------------------------

    def attach(self, sender: BatterySender) -> None:
        """The port commands go out through (the MQTT adapter)."""
        self._sender = sender

    @property
    def connected(self) -> bool:
        return self._sender is not None and self._sender.connected

    def adopt(self, dev_id: str) -> BatteryState | None:
        """The battery ``dev_id`` (adopted now if the options allow); None if it is not ours."""
        known = self.batteries.get(dev_id)
        if known is not None:
            return known
        if not fw.is_dev_id(dev_id):
            return None
        listed = dev_id in self._names
        if not (listed or self.options.batteries_auto) or len(self.batteries) >= MAX_BATTERIES:
            return None
        state = BatteryState(dev_id, name=self._names.get(dev_id))
        self.batteries[dev_id] = state
        _LOGGER.info("Battery %s found", dev_id)
        return state

    # --- what batteries send ---------------------------------------------------------

    async def on_state(self, dev_id: str, source: Source, payload: bytes) -> None:
        """A ``quick``/``device``/``system`` message."""
        battery = self.adopt(dev_id)
        if battery is None:
            return
        try:
            reading = fw.parse_state(source, payload)
        except fw.BatteryPayloadError as err:
            _LOGGER.debug("Battery %s: %s/state ignored: %s", dev_id, source.value, err)
            self.record(dev_id, "in", source.value, payload, error=str(err))
            return
        self.record(
            dev_id,
            "in",
            source.value,
            payload,
            {"values": dict(reading.values), "dropped": list(reading.dropped)},
        )
        for why in reading.dropped:
            _LOGGER.debug("Battery %s: dropped %s", dev_id, why)
        now = self._clock()
        values = self._guard(battery, reading.values)
        changed: set[str] = set()
        if source is Source.QUICK:
            battery.last_quick = now
            is_master = any(k.startswith("sys_") for k in reading.keys)
            if battery.master is not is_master and (is_master or battery.master is None):
                battery.master = is_master
                changed.add("identity")
        else:
            battery.last_slow = now
        if source is Source.SYSTEM and battery.master is not True:
            battery.master = True
            changed.add("identity")
        if reading.model and reading.model != battery.model:
            battery.model = reading.model
            changed.add("identity")
        new_keys = set(values) - battery.seen
        if new_keys:
            battery.seen |= new_keys
            changed.add("identity")
        mode = values.get("ems_mode")
        sent = battery.mode_sent_at
        if isinstance(mode, str) and sent is not None and now - sent < MODE_REPORT_GRACE:
            if mode != battery.mode:
                _LOGGER.debug("Battery %s: %s reported before our %s", dev_id, mode, battery.mode)
            mode = None
        if isinstance(mode, str) and mode != battery.mode:
            battery.mode = mode
            if mode != "mqtt_ctrl" and battery.holding is not None:
                _LOGGER.info("Battery %s runs %s: the setpoint is no longer held", dev_id, mode)
                battery.holding = None
                changed.add("setpoint")
        if not values and not reading.keys:
            return  # an empty object: nothing new
        battery.values.update(values)
        battery.updated_at = now
        changed.add("values")
        if not battery.available:
            battery.available = True
            changed.add("availability")
        await self._emit(BatteryChanged(battery, frozenset(changed), source.value))

    def _guard(self, battery: BatteryState, values: dict[str, Value]) -> dict[str, Value]:
        """Drop a lifetime counter that went backwards (like the inverters' yield)."""
        trusted: dict[str, Value] = {}
        for key, value in values.items():
            old = battery.values.get(key)
            if (
                key.endswith(_LIFETIME_SUFFIXES)
                and isinstance(value, float)
                and isinstance(old, float)
                and value < old
            ):
                _LOGGER.debug(
                    "Battery %s: %s went back from %g to %g", battery.dev_id, key, old, value
                )
                continue
            trusted[key] = value
        return trusted

    async def on_config(self, dev_id: str, key: str, payload: bytes) -> None:
        """One of the firmware's own discovery configs (its identity, range, capabilities)."""
        battery = self.adopt(dev_id)
        if battery is None or not payload:
            return
        battery.firmware_configs.add(key)
        if key in fw.LEGACY_TEXT_KEYS:
            return
        try:
            info = fw.parse_config(payload)
        except fw.BatteryPayloadError as err:
            _LOGGER.debug("Battery %s: config %s ignored: %s", dev_id, key, err)
            self.record(dev_id, "in", f"config {key}", payload, error=str(err))
            return
        self.record(
            dev_id,
            "in",
            f"config {key}",
            payload,
            {"model": info.model, "serial": info.serial, "firmware": info.firmware},
        )
        before = (battery.model, battery.serial, battery.firmware, battery.advertised)
        before_caps = set(battery.capabilities)
        battery.model = info.model or battery.model
        battery.serial = info.serial or battery.serial
        battery.firmware = info.firmware or battery.firmware
        config = next(c for c in fw.FIRMWARE_CONFIGS if c.key == key)
        if config.capability is not None and (key != "switch" or _has_command(payload)):
            battery.capabilities.add(config.capability)
        if key in ("ems_mode", "power_ctrl") and battery.master is not True:
            battery.master = True
        if key == "power_ctrl" and info.minimum is not None and info.maximum is not None:
            battery.advertised = (info.minimum, info.maximum)
        after = (battery.model, battery.serial, battery.firmware, battery.advertised)
        if after != before or battery.capabilities != before_caps:
            await self._emit(BatteryChanged(battery, frozenset({"identity"}), "config"))

    async def on_attributes(self, dev_id: str, payload: bytes) -> None:
        """``attributes``: the firmware's ``supported_topics``."""
        battery = self.adopt(dev_id)
        if battery is None:
            return
        try:
            names = fw.supported_topics(payload)
        except fw.BatteryPayloadError as err:
            _LOGGER.debug("Battery %s: attributes ignored: %s", dev_id, err)
            self.record(dev_id, "in", "attributes", payload, error=str(err))
            return
        self.record(dev_id, "in", "attributes", payload, {"supported_topics": sorted(names)})
        offered = {o for o in Outbound if o.value in names}
        if not offered <= battery.capabilities:
            battery.capabilities |= offered
            await self._emit(BatteryChanged(battery, frozenset({"identity"}), "attributes"))

    async def on_ack(self, dev_id: str, kind: Inbound, payload: bytes) -> None:
        """A TOU acknowledgement or plan status: it answers the command waiting for it."""
        battery = self.batteries.get(dev_id)
        if battery is None:
            return
        try:
            ack = fw.parse_ack(kind, payload)
        except fw.BatteryPayloadError as err:
            _LOGGER.debug("Battery %s: %s ignored: %s", dev_id, kind.value, err)
            self.record(dev_id, "in", kind.value, payload, error=str(err))
            return
        self.record(dev_id, "in", kind.value, payload, {"outcome": ack.describe()})
        battery.acks[kind.value] = ack.describe()
        waiting = self._waiting.get((dev_id, kind))
        if waiting is not None and not waiting.done():
            waiting.set_result(ack)
        await self._emit(BatteryChanged(battery, frozenset({"ack"}), kind.value))

    # --- running -----------------------------------------------------------------------

    async def run(self) -> None:
        """Watch availability and keep held setpoints alive, until cancelled."""
        while True:
            await asyncio.sleep(self._tick)
            await self.tick()

    async def tick(self) -> None:
        """One look at the clock: silence, and setpoints due again."""
        now = self._clock()
        for battery in list(self.batteries.values()):
            if battery.available and self._silent(battery, now):
                battery.available = False
                _LOGGER.info("Battery %s is silent: unavailable", battery.dev_id)
                await self._emit(BatteryChanged(battery, frozenset({"availability"}), "silence"))
            holding = battery.holding
            if holding is None or battery.mode != "mqtt_ctrl" or not self.connected:
                continue
            if now - holding.sent_at >= self.keepalive_interval:
                await self._resend(battery, holding, now)

    @staticmethod
    def _silent(battery: BatteryState, now: float) -> bool:
        if battery.last_quick is not None:
            return now - battery.last_quick > fw.SILENCE_QUICK
        if battery.last_slow is not None:
            return now - battery.last_slow > fw.SILENCE_SLOW
        return False

    async def _resend(self, battery: BatteryState, holding: Holding, now: float) -> None:
        low, high = battery.setpoint_range
        value = fw.perturbed(holding.watts, holding.count, low, high)
        holding.sent_at = now
        holding.count += 1
        self.keepalives_sent += 1
        await self._send(battery, Outbound.SETPOINT, fw.setpoint_payload(value))

    async def link_up(self) -> None:
        """The broker is back: re-send held setpoints, only where the mode is still mqtt_ctrl."""
        now = self._clock()
        for battery in list(self.batteries.values()):
            holding = battery.holding
            if holding is not None and battery.mode == "mqtt_ctrl":
                await self._resend(battery, holding, now)

    async def release(self) -> None:
        """The bridge stops: every held battery gets 0 W (and ``general``, by the option)."""
        for battery in list(self.batteries.values()):
            if battery.holding is None:
                continue
            battery.holding = None
            if not self.connected:
                continue
            await self._send(battery, Outbound.SETPOINT, fw.setpoint_payload(0.0))
            if self.options.battery_release_mode == "general":
                await self._send(battery, Outbound.EMS_MODE, "general")
                battery.mode = "general"
            _LOGGER.info(
                "Battery %s released (%s)", battery.dev_id, self.options.battery_release_mode
            )

    # --- commands ------------------------------------------------------------------

    async def execute(self, command: Command) -> CommandOutcome:
        """Carry out a battery command of the registry; raises :class:`CommandError` if refused."""
        battery = self.find(command.serial)
        name = command.name
        if name == "setpoint":
            return await self._setpoint(battery, command.value)
        if name == "ems_mode":
            return await self._ems_mode(battery, command.text)
        if name == "tou_day_plan":
            plan = fw.day_plan(_json(command.text), units=self._units())
            return await self._tou(battery, Outbound.TOU_DAY, Inbound.DAY_ACK, plan.payload())
        if name == "tou_week_plan":
            week = fw.week_plan(_json(command.text))
            return await self._tou(battery, Outbound.TOU_WEEK, Inbound.WEEK_ACK, week.payload())
        if name == "tou_get":
            request = fw.plan_request(command.text)
            return await self._tou(battery, Outbound.TOU_GET, Inbound.PLAN_STATUS, request)
        simple = {
            "battery_reboot": (Outbound.REBOOT, "RESTART"),
            "output_power": (Outbound.OUTPUT_POWER, str(round(command.value))),
            "phase_output_power": (Outbound.PHASE_OUTPUT_POWER, fw.phase_payload(command.value)),
            "awake": (Outbound.SWITCH, "ON" if command.value else "OFF"),
        }
        if name not in simple:
            raise CommandError(f"unknown command {name!r}")
        what, payload = simple[name]
        if what not in battery.capabilities:
            raise CommandError(f"battery {battery.dev_id} does not offer {name.replace('_', ' ')}")
        self._require_link()
        await self._send(battery, what, payload)
        return CommandOutcome("ok")

    def find(self, dev_id: str) -> BatteryState:
        """The battery ``dev_id`` ("" = the only one); raises :class:`CommandError`."""
        if not dev_id and len(self.batteries) == 1:
            return next(iter(self.batteries.values()))
        battery = self.batteries.get(dev_id)
        if battery is None:
            raise CommandError(f"unknown battery {dev_id[:64]!r}")
        return battery

    def _units(self) -> int:
        return max(1, len(self.batteries))

    def _require_link(self) -> None:
        if not self.connected:
            raise CommandError("the MQTT broker is not connected; nothing was sent")

    @staticmethod
    def _require_master(battery: BatteryState, what: str) -> None:
        if battery.master is False:
            raise CommandError(
                f"battery {battery.dev_id} is a slave: send {what} to the master of its system"
            )

    async def _setpoint(self, battery: BatteryState, watts: float) -> CommandOutcome:
        low, high = battery.setpoint_range
        if not low <= watts <= high:
            raise CommandError(f"setpoint {watts:g} W is outside {low:g}..{high:g} W")
        self._require_master(battery, "a setpoint")
        self._require_link()
        note = ""
        if battery.mode != "mqtt_ctrl":
            await self._send(battery, Outbound.EMS_MODE, "mqtt_ctrl")
            battery.mode = "mqtt_ctrl"
            battery.mode_sent_at = self._clock()
            note = "EMS mode set to mqtt_ctrl"
        await self._send(battery, Outbound.SETPOINT, fw.setpoint_payload(watts))
        battery.holding = Holding(watts, self._clock())
        await self._emit(BatteryChanged(battery, frozenset({"setpoint"}), "command"))
        return CommandOutcome("ok", note, note=note)

    async def _ems_mode(self, battery: BatteryState, mode: str) -> CommandOutcome:
        self._require_master(battery, "the EMS mode")
        self._require_link()
        await self._send(battery, Outbound.EMS_MODE, mode)
        battery.mode = mode
        battery.mode_sent_at = self._clock()
        if mode != "mqtt_ctrl":
            battery.holding = None
        await self._emit(BatteryChanged(battery, frozenset({"setpoint", "mode"}), "command"))
        return CommandOutcome("ok")

    async def _tou(
        self, battery: BatteryState, what: Outbound, answer: Inbound, payload: str
    ) -> CommandOutcome:
        self._require_master(battery, "TOU plans")
        self._require_link()
        lock = self._tou_locks.setdefault(battery.dev_id, asyncio.Lock())
        async with lock:
            key = (battery.dev_id, answer)
            future: asyncio.Future[fw.Ack] = asyncio.get_running_loop().create_future()
            self._waiting[key] = future
            try:
                await self._send(battery, what, payload)
                async with asyncio.timeout(self.ack_timeout):
                    ack = await future
            except TimeoutError:
                return CommandOutcome(
                    "failed", f"no answer on {answer.value} within {self.ack_timeout:g} s"
                )
            finally:
                if self._waiting.get(key) is future:
                    del self._waiting[key]
        if not ack.ok:
            return CommandOutcome("failed", ack.describe())
        if answer is Inbound.PLAN_STATUS:
            body = json.dumps(ack.body, separators=(",", ":"))[:2000]
            return CommandOutcome("ok", body, note=body)
        return CommandOutcome("ok", ack.describe())

    async def _send(self, battery: BatteryState, what: Outbound, payload: str) -> None:
        sender = self._sender
        if sender is None:
            raise CommandError("no MQTT adapter carries battery commands")
        self.record(battery.dev_id, "out", what.value, payload)
        await sender.send(battery.dev_id, what, payload)


def _has_command(payload: bytes) -> bool:
    """Whether a firmware switch config names a command topic (newer firmware)."""
    try:
        data = fw.load_object(payload, fw.MAX_SMALL_PAYLOAD)
    except fw.BatteryPayloadError:
        return False
    return isinstance(data.get("command_topic", data.get("cmd_t")), str)


def _json(text: str) -> object:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise CommandError("payload is not JSON") from None


__all__ = [
    "ACK_TIMEOUT",
    "KEEPALIVE_INTERVAL",
    "MAX_BATTERIES",
    "MODE_REPORT_GRACE",
    "BatteryHub",
    "BatterySender",
    "BatteryState",
    "Holding",
    "offered_commands",
]
