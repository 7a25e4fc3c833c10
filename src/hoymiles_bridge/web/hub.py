"""What the web UI shows, kept in the bridge process: frames, events, power history, live pushes.

:class:`WebHub` listens to the fleet (its events and frames, see
:meth:`WebHub.attach`) and keeps bounded ring buffers:

* frames: every frame in and out of every DTU session, at most 2,000 and at
  most :data:`FRAME_BUFFER_BYTES` of encoded JSON (the newest frame is always
  kept); the oldest go first. A record's ``hex`` holds at most
  :data:`HEX_BYTES` bytes, the largest frame the protocol allows, so a real
  frame is never cut: only a run of bytes that is not a frame (a peer that
  sends garbage, read by the connection in chunks of up to 256 KiB) is, and
  its record says ``"truncated": true`` (``length`` is the whole run's);
* events: state changes, displacement, new alarms, commands and their outcome,
  bridge start, MQTT connect and disconnect (default 500);
* power history: ``(time, W)`` per inverter and in total, one point per fresh
  poll, bounded to about 24 h at the poll interval (at most 20,000 points per
  series). An inverter not polled for :data:`SERIES_EXPIRY` (48 h) is
  forgotten: its series goes, and its last power no longer counts in the total;
* daily yields: per local day (the bridge's clock) the highest ``yieldday`` each
  inverter reported that day, for the last :data:`DAILY_DAYS` (400) days. The bridge's value guard
  (:mod:`hoymiles_bridge.core.values`) already keeps ``yieldday`` from going down
  during a day and resets it at local midnight, so the maximum is the day's yield.
  A day holds only the inverters that reported on it, so this stays bounded
  without forgetting anyone: the yields of an inverter that went away are part
  of the month's history.

With a state directory (:meth:`WebHub.open_store`, see :mod:`.store`) the power
history, the daily yields and the event log also go to SQLite and come back at
the next start: the rows of one :data:`FLUSH_DELAY` go in one transaction, in
a worker thread (:meth:`WebHub.flush`, run by the task ``web-history-store``).
Once per process and DTU, at its first poll, the hub then reads the DTU's own
energy history (``HistEnergy``) and fills in earlier days that hold no yield
of that DTU's inverters (:func:`daily_energies`).

Each frame and event is turned into a JSON-able dict and encoded ONCE; the
same string goes into the ring buffer, the export and every websocket client.

Live clients :meth:`subscribe` and get a bounded queue of pre-encoded messages
``{"type": "frame"|"event"|"state", "data": ...}``. Publishing never waits for
a client: when a client's queue is full its OLDEST message is dropped and
counted, so a lagging browser can never slow the bridge.

Secrets never enter a record. Payloads are decoded with secret fields masked
(:mod:`hoymiles_bridge.protocol.jsonify`). Frames whose payload holds a secret
(the config reply ``GetConfigFromDtu``, the config write ``SetConfigToDtu``
and an app-info reply carrying ``enc_rand``) get ``"redacted": true`` and a
``hex`` that is NOT the wire bytes: the same message with its secret fields
replaced by the mask (bytes fields emptied), re-encoded as a plain frame with
the same tag and sequence. That hex reveals nothing and still decodes with
``hoymiles-bridge decode``. When such a frame could not be decoded at all, only
its header is kept.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from hoymiles_bridge.core.events import Activity, BatteryChanged, Event, FrameSeen, describe
from hoymiles_bridge.core.fleet import Fleet
from hoymiles_bridge.core.state import DtuState
from hoymiles_bridge.core.values import local_day
from hoymiles_bridge.dtu.connection import FrameEvent
from hoymiles_bridge.errors import FrameError, HoymilesError
from hoymiles_bridge.protocol.frame import (
    EXTENDED_HEADER_SIZE,
    GCM_TAG_SIZE,
    HEADER_SIZE,
    MAGIC,
    MAX_FRAME_SIZE,
    encode_frame,
    is_extended_tag,
)
from hoymiles_bridge.protocol.jsonify import message_to_dict
from hoymiles_bridge.protocol.pb import history_pb2
from hoymiles_bridge.protocol.registry import spec_for
from hoymiles_bridge.protocol.secrets import SECRET_TAGS, has_secret, masked_copy
from hoymiles_bridge.web.store import DB_NAME, Batch, HistoryStore, Snapshot, StoreUnavailable

_LOGGER = logging.getLogger(__name__)

FRAME_BUFFER: Final = 2000
#: The frame ring's budget: the UTF-8 length of its records' JSON. The records'
#: dicts take about as much again.
FRAME_BUFFER_BYTES: Final = 8 * 1024 * 1024
#: Most bytes a record's ``hex`` shows: the largest frame, encrypted, with its GCM tag.
HEX_BYTES: Final = MAX_FRAME_SIZE + GCM_TAG_SIZE
EVENT_BUFFER: Final = 500
#: Per-client queue of live messages; the oldest is dropped when it is full.
CLIENT_QUEUE: Final = 500
#: Power history: about a day at the poll interval, never more points than this.
HISTORY_SECONDS: Final = 24 * 3600
HISTORY_MAX_POINTS: Final = 20000
#: An inverter not polled for this many seconds loses its power series.
SERIES_EXPIRY: Final = 48 * 3600
#: A battery reports every second; its chart series keeps a point at most this
#: often (seconds), so a day still fits the history's points.
BATTERY_POINT_INTERVAL: Final = 30.0
#: The chart series of a battery: its power (W, + discharging) and its SOC (%).
BATTERY_POWER_KEY: Final = "battery:"
BATTERY_SOC_KEY: Final = "soc:"
#: Daily yields: this many local days are kept (in memory and in the store).
DAILY_DAYS: Final = 400
#: api/history's ``daily`` holds this many newest days unless ``days`` asks for more.
DAILY_SHOWN: Final = 31
#: Rows wait this long (seconds) after the first one so that one transaction takes them all.
FLUSH_DELAY: Final = 5.0
#: A day's yield from the DTU's energy history above this (Wh) is not believed.
BACKFILL_MAX_WH: Final = 1_000_000.0
#: ``r_time`` values below this (2000-01-01) are not Unix times (protocol.md 4.9).
_UNIX_2000: Final = 946_684_800
#: Live state pushes are coalesced to at most one per this many seconds.
STATE_THROTTLE: Final = 0.5

StatusSource = Callable[[], dict[str, Any]]


def encode(data: Any) -> str:
    """Compact JSON, the one encoding used for records and messages."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _peek_tag(raw: bytes) -> int | None:
    if len(raw) >= 4 and raw[:2] == MAGIC:
        return int.from_bytes(raw[2:4], "big")
    return None


def safe_hex(event: FrameEvent) -> tuple[str, bool]:
    """The frame's hex for people and exports, and whether it was redacted (module docs)."""
    frame, decoded, raw = event.frame, event.decoded, event.raw
    message = decoded.message if decoded is not None else None
    tag = frame.tag if frame is not None else _peek_tag(raw)
    secret = message is not None and has_secret(message)
    if not secret and (tag not in SECRET_TAGS or message is not None):
        return raw.hex(), False
    if frame is not None and message is not None:
        try:
            masked = masked_copy(message).SerializeToString()
            return encode_frame(
                frame.tag, frame.sequence, masked, extended=frame.extended
            ).hex(), True
        except FrameError:
            pass
    header = EXTENDED_HEADER_SIZE if tag is not None and is_extended_tag(tag) else HEADER_SIZE
    return raw[:header].hex(), True


def build_frame_record(frame_id: int, dtu: str, event: FrameEvent) -> dict[str, Any]:
    """The inspector's record of one frame (see DOCS.md, "Web API").

    ``hex`` holds at most :data:`HEX_BYTES` bytes; ``truncated`` says it was cut.
    """
    frame, decoded = event.frame, event.decoded
    message = decoded.message if decoded is not None else None
    hex_text, redacted = safe_hex(event)
    truncated = len(hex_text) > 2 * HEX_BYTES
    if truncated:
        hex_text = hex_text[: 2 * HEX_BYTES]
    tag = frame.tag if frame is not None else _peek_tag(event.raw)
    if decoded is not None:
        name: str | None = decoded.name
    elif tag is not None:
        spec = spec_for(tag)
        name = spec.name if spec is not None else f"Unknown_{tag:04X}"
    else:
        name = None
    return {
        "id": frame_id,
        "time": round(event.timestamp, 3),
        "dtu": dtu,
        "direction": event.direction.value,
        "tag": f"{tag:04X}" if tag is not None else None,
        "message": name,
        "sequence": frame.sequence if frame is not None else None,
        "length": frame.length if frame is not None else len(event.raw),
        "crc_ok": frame.crc_ok if frame is not None else None,
        "encrypted": frame.encrypted if frame is not None else None,
        "hex": hex_text,
        "truncated": truncated,
        "redacted": redacted,
        "payload": message_to_dict(message) if message is not None else None,
        "error": str(event.error) if event.error is not None else None,
    }


@dataclass(frozen=True, slots=True)
class Encoded:
    """A record and its JSON, encoded once."""

    data: dict[str, Any]
    json: str
    #: The JSON's length in UTF-8 bytes, for a frame (what the frame ring's budget counts).
    size: int = 0


class Subscription:
    """One live client's bounded queue of pre-encoded messages (drop-oldest)."""

    def __init__(self, hub: WebHub, size: int) -> None:
        self._hub = hub
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=size)
        self.dropped = 0
        self.closed = False

    def __repr__(self) -> str:
        return f"Subscription(queued={self.queued}, dropped={self.dropped})"

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def offer(self, message: str) -> None:
        """Queue ``message`` without waiting; a full queue loses its oldest message."""
        if self.closed:
            return
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
            self._hub.dropped += 1
        self._queue.put_nowait(message)

    async def get(self) -> str:
        return await self._queue.get()

    def get_nowait(self) -> str | None:
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    def close(self) -> None:
        self.closed = True
        self._hub.unsubscribe(self)


class WebHub:
    """Ring buffers and live fan-out for the web UI; see the module docs."""

    def __init__(
        self,
        *,
        frames: int = FRAME_BUFFER,
        frame_bytes: int = FRAME_BUFFER_BYTES,
        events: int = EVENT_BUFFER,
        queue_size: int = CLIENT_QUEUE,
        history_points: int = HISTORY_MAX_POINTS,
        daily_days: int = DAILY_DAYS,
        clock: Callable[[], float] = time.time,
        flush_delay: float = FLUSH_DELAY,
    ) -> None:
        #: The newest frames, oldest first (see the module docs for the bounds).
        self.frames: deque[Encoded] = deque()
        self.frame_limit = frames
        self.frame_budget = frame_bytes
        #: What the frame ring holds: the sum of its records' ``size``.
        self.frame_bytes = 0
        self.events: deque[Encoded] = deque(maxlen=events)
        self.queue_size = queue_size
        self.history_points = history_points
        self.history: dict[str, deque[tuple[float, float]]] = {}
        self._latest_power: dict[str, float] = {}
        #: When each inverter of the power history was last polled (its poll's time).
        self._last_seen: dict[str, float] = {}
        #: Per battery: when its chart series got their last point.
        self._battery_point_at: dict[str, float] = {}
        #: "YYYY-MM-DD" (local) -> {inverter serial: Wh}; see daily_data().
        self.daily: dict[str, dict[str, float]] = {}
        self.daily_days = max(1, daily_days)
        self._clock = clock
        self._subscribers: set[Subscription] = set()
        self._next_frame = 1
        self._next_event = 1
        self._state_timer: asyncio.TimerHandle | None = None
        self._state_at = -float("inf")
        #: Builds the "state" message (the api/status body); set by the API.
        self.status_source: StatusSource | None = None
        self.started_at = clock()
        # Counters for the diagnostics.
        self.frame_count = 0
        self.frame_errors = 0
        self.displacements = 0
        self.dropped = 0
        # Persistence (open_store): the store, its pending rows and its writer task.
        self.store: HistoryStore | None = None
        self.flush_delay = flush_delay
        self._pending = Batch()
        self._dirty = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._store_task: asyncio.Task[None] | None = None
        self._write_failing = False
        #: Committed write transactions of the store (one per flush that had rows).
        self.store_transactions = 0
        #: Failed write transactions (their rows are lost; the hub keeps them in memory).
        self.store_errors = 0
        # The DTU energy-history backfill: the fleet, the DTU labels asked, the tasks.
        self._fleet: Fleet | None = None
        self._backfill_asked: set[str] = set()
        self._backfills: set[asyncio.Task[None]] = set()
        #: Days filled in from DTUs' energy history (for tests and diagnostics).
        self.backfilled_days = 0

    def __repr__(self) -> str:
        return (
            f"WebHub(frames={len(self.frames)}, events={len(self.events)}, "
            f"clients={len(self._subscribers)}, store={self.store is not None})"
        )

    # --- wiring -------------------------------------------------------------

    def attach(self, fleet: Fleet) -> None:
        """Become ``fleet``'s frame observer and event subscriber (call before it runs)."""
        fleet.observe_frames(self.on_frame_seen)
        fleet.subscribe(self.on_fleet_event)
        self._fleet = fleet

    def on_frame_seen(self, seen: FrameSeen) -> None:
        self.on_frame(seen.dtu, seen.frame)

    async def on_fleet_event(self, event: Event) -> None:
        for activity in describe(event):
            self.on_event(activity)
        if isinstance(event, BatteryChanged) and event.what - {"ack"}:
            # A battery's values (every second) are no log line, but the overview's card
            # follows them: the push is coalesced (STATE_THROTTLE).
            self.state_changed()
            if "values" in event.what:
                self._record_battery(event)

    def _record_battery(self, event: BatteryChanged) -> None:
        """A point of the battery's power and SOC, at most every BATTERY_POINT_INTERVAL."""
        battery = event.battery
        now = self._clock()
        if now - self._battery_point_at.get(battery.dev_id, -float("inf")) < BATTERY_POINT_INTERVAL:
            return
        power, soc = battery.values.get("battery_power"), battery.values.get("soc")
        if isinstance(power, int | float) and not isinstance(power, bool):
            self._add_point(BATTERY_POWER_KEY + battery.dev_id, now, float(power))
            self._battery_point_at[battery.dev_id] = now
        if isinstance(soc, int | float) and not isinstance(soc, bool):
            self._add_point(BATTERY_SOC_KEY + battery.dev_id, now, float(soc))
            self._battery_point_at[battery.dev_id] = now

    def history_limit(self, interval: float) -> None:
        """Size the power history for ``interval`` s polls (24 h, at most the cap)."""
        points = int(HISTORY_SECONDS / max(interval, 1.0)) + 1
        self.history_points = max(2, min(points, HISTORY_MAX_POINTS))
        for key, ring in list(self.history.items()):
            self.history[key] = deque(ring, maxlen=self.history_points)

    # --- subscribers --------------------------------------------------------

    @property
    def clients(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> Subscription:
        subscription = Subscription(self, self.queue_size)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    def close(self) -> None:
        """Forget every client and the pending state push."""
        for subscription in list(self._subscribers):
            subscription.close()
        if self._state_timer is not None:
            self._state_timer.cancel()
            self._state_timer = None

    def _publish(self, kind: str, data_json: str) -> None:
        message = f'{{"type":"{kind}","data":{data_json}}}'
        for subscription in tuple(self._subscribers):
            subscription.offer(message)

    # --- frames -------------------------------------------------------------

    def on_frame(self, dtu: str, event: FrameEvent) -> None:
        record = build_frame_record(self._next_frame, dtu, event)
        self._next_frame += 1
        self.frame_count += 1
        if event.error is not None:
            self.frame_errors += 1
        text = encode(record)
        item = Encoded(record, text, len(text.encode("utf-8")))
        self.frames.append(item)
        self.frame_bytes += item.size
        frames = self.frames
        while len(frames) > self.frame_limit or (
            self.frame_bytes > self.frame_budget and len(frames) > 1
        ):
            self.frame_bytes -= frames.popleft().size
        self._publish("frame", item.json)

    def frame_records(
        self,
        *,
        dtu: str | None = None,
        direction: str | None = None,
        message: str | None = None,
        since: int | None = None,
        limit: int | None = None,
    ) -> list[Encoded]:
        """Buffered frames, oldest first, filtered; ``limit`` keeps the newest."""
        wanted = message.lower() if message else None
        out: list[Encoded] = []
        for item in self.frames:
            data = item.data
            if dtu and data["dtu"] != dtu:
                continue
            if direction and data["direction"] != direction:
                continue
            if since is not None and data["id"] <= since:
                continue
            if (
                wanted
                and wanted not in (data["message"] or "").lower()
                and wanted != (data["tag"] or "").lower()
            ):
                continue
            out.append(item)
        if limit is not None and len(out) > limit:
            out = out[len(out) - limit :]
        return out

    # --- events -------------------------------------------------------------

    def log(
        self,
        kind: str,
        text: str,
        *,
        dtu: str = "",
        serial: str | None = None,
        level: str = "info",
        data: dict[str, Any] | None = None,
    ) -> None:
        """Add an entry to the event log and push it to the clients."""
        event_id, when = self._next_event, round(self._clock(), 3)
        record = {
            "id": event_id,
            "time": when,
            "kind": kind,
            "level": level,
            "dtu": dtu,
            "serial": serial,
            "text": text,
            "data": data or {},
        }
        self._next_event += 1
        item = Encoded(record, encode(record))
        self.events.append(item)
        if self.store is not None:
            self._pending.events.append((event_id, when, item.json))
            self._dirty.set()
        self._publish("event", item.json)

    def on_event(self, event: Activity) -> None:
        if event.kind == "poll":
            self._record_power(event)
            self._maybe_backfill(event.dtu)
            self.state_changed()
            return
        if event.kind == "state" and event.data.get("displaced"):
            self.displacements += 1
        self.log(
            event.kind,
            event.text,
            dtu=event.dtu,
            serial=event.serial,
            level=event.level,
            data=event.data,
        )
        if event.kind in {"state", "dtu_info", "mqtt", "command", "alarm", "battery"}:
            self.state_changed()

    # --- power history --------------------------------------------------------

    def _ring(self, key: str) -> deque[tuple[float, float]]:
        ring = self.history.get(key)
        if ring is None:
            ring = deque(maxlen=self.history_points)
            self.history[key] = ring
        return ring

    def _add_point(self, key: str, when: float, watts: float) -> None:
        point = (round(when, 1), round(watts, 1))
        self._ring(key).append(point)
        if self.store is not None:
            self._pending.power.append((key, *point))
            self._dirty.set()

    def _record_power(self, event: Activity) -> None:
        when = float(event.data.get("time") or self._clock())
        power = event.data.get("power") or {}
        for serial, watts in power.items():
            self._latest_power[serial] = float(watts)
            self._last_seen[serial] = when
            self._add_point(serial, when, float(watts))
        self._forget_gone(when)
        self._add_point("total", when, sum(self._latest_power.values()))
        yields = event.data.get("yieldday") or {}
        if yields:
            self._record_yields(when, yields)

    def _forget_gone(self, now: float) -> None:
        """Drop the series and last power of inverters not polled for SERIES_EXPIRY."""
        for serial, seen in list(self._last_seen.items()):
            if now - seen > SERIES_EXPIRY:
                del self._last_seen[serial]
                self._latest_power.pop(serial, None)
                self.history.pop(serial, None)

    def _record_yields(self, when: float, yields: dict[str, Any]) -> None:
        day = _day_text(when)
        seen = self._day(day)
        for serial, wh in yields.items():
            value = float(wh)
            if value > seen.get(serial, -1.0):
                self._set_yield(day, serial, value, "bridge")

    def _day(self, day: str) -> dict[str, float]:
        seen = self.daily.get(day)
        if seen is None:
            seen = self.daily[day] = {}
            while len(self.daily) > self.daily_days:
                del self.daily[min(self.daily)]
        return seen

    def _set_yield(self, day: str, serial: str, wh: float, source: str) -> None:
        value = round(wh, 1)
        self.daily[day][serial] = value
        if self.store is not None:
            self._pending.daily[(day, serial)] = (value, source)
            self._dirty.set()

    def history_data(
        self, keys: Iterable[str] | None = None, *, since: float | None = None
    ) -> dict[str, list[list[float]]]:
        """Power points per key (serial or "total"), oldest first; only newer than ``since``."""
        chosen = self.history if keys is None else {k: self.history[k] for k in keys}
        out: dict[str, list[list[float]]] = {}
        for key, ring in chosen.items():
            if since is None:
                out[key] = [[t, w] for t, w in ring]
                continue
            newer: list[list[float]] = []
            for t, w in reversed(ring):  # the newest are at the end: stop at the first old one
                if t <= since:
                    break
                newer.append([t, w])
            newer.reverse()
            out[key] = newer
        return out

    def daily_data(self, days: int | None = None) -> list[dict[str, Any]]:
        """``[{"date", "total", "inverters": {serial: Wh}}]`` per local day, oldest first.

        ``days`` keeps only that many newest days.
        """
        chosen = sorted(self.daily)
        if days is not None:
            chosen = chosen[max(0, len(chosen) - days) :]
        return [
            {
                "date": day,
                "total": round(sum(self.daily[day].values()), 1),
                "inverters": dict(self.daily[day]),
            }
            for day in chosen
        ]

    # --- persistence -----------------------------------------------------------

    async def open_store(self, directory: str | Path | None) -> None:
        """Keep the history in ``directory`` (None: memory only) and load what it holds.

        Call it before :meth:`attach`. A directory or database that cannot be
        used is logged once and the hub carries on in memory.
        """
        if directory is None or self.store is not None:
            return
        store = HistoryStore(Path(directory) / DB_NAME, daily_days=self.daily_days)
        since = self._clock() - HISTORY_SECONDS
        try:
            await asyncio.to_thread(store.open)
            snapshot = await asyncio.to_thread(
                store.load, power_since=since, events=self.events.maxlen or EVENT_BUFFER
            )
        except (StoreUnavailable, sqlite3.Error) as err:
            _LOGGER.warning("The history is kept in memory only: %s", err)
            await asyncio.to_thread(store.close)
            return
        self._restore(snapshot)
        self.store = store
        self._store_task = asyncio.create_task(self._store_loop(), name="web-history-store")

    def _restore(self, snapshot: Snapshot) -> None:
        """Put the stored history before what the hub already holds."""
        for key, points in snapshot.power.items():
            ring = self._ring(key)
            newer = list(ring)
            ring.clear()
            ring.extend(points)
            ring.extend(newer)
            if key != "total" and points:
                self._last_seen[key] = max(self._last_seen.get(key, 0.0), points[-1][0])
        for day in sorted(snapshot.daily):
            for serial, wh in snapshot.daily[day].items():
                seen = self._day(day)
                if wh > seen.get(serial, -1.0):
                    seen[serial] = wh
        existing = list(self.events)
        self.events.clear()
        for data in snapshot.events:
            self.events.append(Encoded(data, encode(data)))
        self._next_event = max(self._next_event, snapshot.last_event_id + 1)
        for item in existing:  # logged before the store opened: numbered after it
            record = {**item.data, "id": self._next_event}
            self._next_event += 1
            renumbered = Encoded(record, encode(record))
            self.events.append(renumbered)
            self._pending.events.append((record["id"], record["time"], renumbered.json))

    async def _store_loop(self) -> None:
        while True:
            await self._dirty.wait()
            await asyncio.sleep(self.flush_delay)
            await self.flush()

    async def flush(self) -> None:
        """Write the pending rows in one transaction (in a worker thread)."""
        store = self.store
        if store is None:
            return
        async with self._flush_lock:
            self._dirty.clear()
            batch, self._pending = self._pending, Batch()
            if not batch:
                return
            try:
                await asyncio.to_thread(store.write, batch)
            except sqlite3.Error as err:
                self.store_errors += 1
                if not self._write_failing:
                    _LOGGER.warning("Cannot save the history to %s: %s", store.path, err)
                self._write_failing = True
                return
            self.store_transactions += 1
            if self._write_failing:
                _LOGGER.info("Saving the history to %s works again", store.path)
            self._write_failing = False

    async def close_store(self) -> None:
        """Write what is pending and close the store (at shutdown)."""
        tasks = {t for t in (self._store_task, *self._backfills) if t is not None}
        self._store_task = None
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        store = self.store
        if store is None:
            return
        await self.flush()
        self.store = None
        await asyncio.to_thread(store.close)

    # --- the DTU's energy history ----------------------------------------------

    def _maybe_backfill(self, label: str) -> None:
        if self.store is None or self._fleet is None or label in self._backfill_asked:
            return
        view = next((d for d in self._fleet.dtus if d.label == label), None)
        if view is None:
            return
        self._backfill_asked.add(label)
        task = asyncio.create_task(self._backfill(view), name=f"web-backfill-{label}")
        self._backfills.add(task)
        task.add_done_callback(self._backfills.discard)

    async def _backfill(self, view: DtuState) -> None:
        """Fill earlier days from the DTU's ``HistEnergy`` (the client paces the request)."""
        label = view.label
        try:
            reply = await view.session.client.history_energy()
        except (HoymilesError, OSError) as err:
            _LOGGER.info("The DTU %s did not give its energy history: %s", label, err)
            return
        today = _day_text(self._clock())
        inverters = set(view.inverters)
        key = next(iter(inverters)) if len(inverters) == 1 else (view.serial or label)
        mine = inverters | {key, view.serial or label}
        added = 0
        for day, wh in sorted(daily_energies(reply).items()):
            if day >= today:
                continue
            if any(serial in self.daily.get(day, {}) for serial in mine):
                continue  # the bridge saw (or already filled) this day
            self._day(day)
            if day in self.daily:
                self._set_yield(day, key, wh, "dtu")
                added += 1
        self.backfilled_days += added
        if added:
            _LOGGER.info("Filled in %d earlier day(s) from the energy history of %s", added, label)
            self.state_changed()

    # --- live state -----------------------------------------------------------

    def state_changed(self) -> None:
        """Push the status to the clients soon (coalesced, at most every STATE_THROTTLE s)."""
        if self.status_source is None or not self._subscribers or self._state_timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        delay = max(0.0, self._state_at + STATE_THROTTLE - time.monotonic())
        self._state_timer = loop.call_later(delay, self._push_state)

    def _push_state(self) -> None:
        self._state_timer = None
        self._state_at = time.monotonic()
        source = self.status_source
        if source is None:
            return
        try:
            status = source()
        except (LookupError, AttributeError, TypeError, ValueError):
            _LOGGER.exception("Building the live status failed")
            return
        self._publish("state", encode(status))

    def state_message(self) -> str | None:
        """The current state as a ready-to-send message (for a client that just connected)."""
        if self.status_source is None:
            return None
        return f'{{"type":"state","data":{encode(self.status_source())}}}'


def _day_text(when: float) -> str:
    year, month, mday = local_day(when)
    return f"{year:04d}-{month:02d}-{mday:02d}"


def daily_energies(reply: history_pb2.HistEnergyFromDtu) -> dict[str, float]:
    """``{"YYYY-MM-DD": Wh}`` from a DTU's energy history (``HistEnergyFromDtu``).

    protocol.md 4.9 marks the semantics uncertain. Taken here: each entry's
    ``ed`` is that day's energy in Wh and ``r_time`` a Unix time within the
    day (the simulator sends local midnight). An entry whose ``r_time`` is
    not a plausible Unix time (before 2000: perhaps a relative time) or whose
    ``ed`` is above :data:`BACKFILL_MAX_WH` is skipped; of two entries for one
    day the larger counts.
    """
    out: dict[str, float] = {}
    for entry in reply.energ:
        wh = float(entry.ed)
        if entry.r_time < _UNIX_2000 or not math.isfinite(wh) or wh > BACKFILL_MAX_WH:
            continue
        day = _day_text(float(entry.r_time))
        out[day] = max(out.get(day, 0.0), wh)
    return out


__all__ = [
    "CLIENT_QUEUE",
    "DAILY_DAYS",
    "DAILY_SHOWN",
    "EVENT_BUFFER",
    "FLUSH_DELAY",
    "FRAME_BUFFER",
    "FRAME_BUFFER_BYTES",
    "HEX_BYTES",
    "SERIES_EXPIRY",
    "Encoded",
    "Subscription",
    "WebHub",
    "build_frame_record",
    "daily_energies",
    "encode",
    "masked_copy",
    "safe_hex",
]
