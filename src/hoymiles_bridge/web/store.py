"""The web hub's persistence: power history, daily yields and the event log in SQLite.

One file, :data:`DB_NAME`, in the bridge's state directory: ``/data`` in the
add-on (the Supervisor keeps it across updates and restarts), and standalone
a directory ``hoymiles-bridge-state`` next to the options file
(:func:`state_dir_for`). Only the standard library's :mod:`sqlite3` is used.

:class:`HistoryStore` is synchronous and thread-safe (one lock around the
connection): the hub calls it through :func:`asyncio.to_thread`, so the event
loop never waits for the disk. Every :meth:`HistoryStore.write` is ONE
transaction holding a whole batch of rows and the pruning that keeps the file
bounded; :attr:`HistoryStore.transactions` counts them.

Bounds (the file cannot grow past them, whatever it is fed):

* power history: points newer than :data:`POWER_KEEP_SECONDS` (7 days) at
  poll resolution, and never more than :data:`POWER_MAX_ROWS` rows (the
  oldest go first); older points are deleted, not downsampled;
* daily yields: the newest :data:`DAILY_KEEP_DAYS` (400) days that hold a yield;
* events: the newest :data:`EVENT_MAX_ROWS` (10,000).

The database uses WAL (its ``-wal`` file is truncated to
:data:`WAL_LIMIT_BYTES` after a checkpoint). A database that SQLite cannot
read, whose ``PRAGMA quick_check`` is not ``ok``, or that a newer version of
the bridge wrote, is moved aside (renamed ``<name>.corrupt-<UTC time>``, its
``-wal``/``-shm`` with it) with one warning, and a new one is started. A
directory or file that cannot be opened at all raises :class:`StoreUnavailable`
and the hub carries on in memory.

Rows read back are not trusted: a value that is not a finite, non-negative
number or a day that is not ``YYYY-MM-DD`` is skipped.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

_LOGGER = logging.getLogger(__name__)

#: The database's file name inside the state directory.
DB_NAME: Final = "history.sqlite3"
#: The directory next to a standalone options file that holds the state.
STATE_DIR_NAME: Final = "hoymiles-bridge-state"
SCHEMA_VERSION: Final = 1
#: Power history: points older than this are deleted (seconds).
POWER_KEEP_SECONDS: Final = 7 * 24 * 3600
#: Power history: never more rows than this (7 days at a 35 s poll for 17 series).
POWER_MAX_ROWS: Final = 300_000
#: Daily yields: this many days (those that hold a yield) are kept.
DAILY_KEEP_DAYS: Final = 400
#: Event log: this many newest events are kept.
EVENT_MAX_ROWS: Final = 10_000
#: The WAL file is truncated to this size after a checkpoint.
WAL_LIMIT_BYTES: Final = 4 * 1024 * 1024
#: How long a connection waits for a lock held by another process (seconds).
BUSY_TIMEOUT: Final = 5.0

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: SQLite's result codes that mean "this file is not a sound database".
_CORRUPT_CODES: Final = frozenset({11, 26})  # SQLITE_CORRUPT, SQLITE_NOTADB

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS power (" " t REAL NOT NULL, series TEXT NOT NULL, w REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS power_t ON power(t)",
    "CREATE TABLE IF NOT EXISTS daily ("
    " day TEXT NOT NULL, serial TEXT NOT NULL, wh REAL NOT NULL,"
    " source TEXT NOT NULL DEFAULT 'bridge', PRIMARY KEY (day, serial))",
    "CREATE TABLE IF NOT EXISTS events ("
    " id INTEGER PRIMARY KEY, t REAL NOT NULL, record TEXT NOT NULL)",
)


class StoreUnavailable(Exception):  # noqa: N818 - a state, not a failure of the caller
    """The state directory or its database cannot be used; the hub stays in memory."""


def state_dir_for(options_file: str | Path) -> Path:
    """The standalone state directory: ``hoymiles-bridge-state`` next to ``options_file``."""
    return Path(options_file).resolve().parent / STATE_DIR_NAME


@dataclass(slots=True)
class Batch:
    """Rows waiting for the next transaction."""

    #: ``(series, time, W)``; a series is an inverter serial or "total".
    power: list[tuple[str, float, float]] = field(default_factory=list)
    #: ``(day, serial) -> (Wh, source)``; source is "bridge" or "dtu".
    daily: dict[tuple[str, str], tuple[float, str]] = field(default_factory=dict)
    #: ``(id, time, record JSON)``.
    events: list[tuple[int, float, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.power or self.daily or self.events)

    def __len__(self) -> int:
        return len(self.power) + len(self.daily) + len(self.events)


@dataclass(slots=True)
class Snapshot:
    """What a store held at start."""

    #: series -> [(time, W)], oldest first.
    power: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    #: day -> {serial: Wh}.
    daily: dict[str, dict[str, float]] = field(default_factory=dict)
    #: Event records, oldest first.
    events: list[dict[str, Any]] = field(default_factory=list)
    #: The highest event id the store has seen (0 when none).
    last_event_id: int = 0


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and number >= 0 else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= 64 else None


class HistoryStore:
    """One SQLite database of the hub's history; see the module docs."""

    def __init__(
        self,
        path: str | Path,
        *,
        power_seconds: float = POWER_KEEP_SECONDS,
        power_rows: int = POWER_MAX_ROWS,
        daily_days: int = DAILY_KEEP_DAYS,
        event_rows: int = EVENT_MAX_ROWS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.power_seconds = power_seconds
        self.power_rows = max(1, power_rows)
        self.daily_days = max(1, daily_days)
        self.event_rows = max(1, event_rows)
        self._clock = clock
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._power_count = 0
        #: Write transactions committed (one per :meth:`write`).
        self.transactions = 0
        #: Where a damaged database was moved at :meth:`open`, if it was.
        self.moved_aside: Path | None = None

    def __repr__(self) -> str:
        return f"HistoryStore({str(self.path)!r}, transactions={self.transactions})"

    # --- opening ----------------------------------------------------------------

    def open(self) -> None:
        """Open (or create) the database; a damaged one is moved aside first."""
        with self._lock:
            if self._db is not None:
                return
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise StoreUnavailable(
                    f"cannot create the state directory {self.path.parent}: {err.strerror or err}"
                ) from None
            try:
                self._db = self._connect()
            except sqlite3.DatabaseError as err:
                if not self._is_damage(err):
                    raise StoreUnavailable(f"cannot open {self.path}: {err}") from None
                self._move_aside(str(err))
                try:
                    self._db = self._connect()
                except sqlite3.DatabaseError as again:
                    raise StoreUnavailable(f"cannot open {self.path}: {again}") from None

    @staticmethod
    def _is_damage(err: sqlite3.DatabaseError) -> bool:
        if isinstance(err, _Damaged):
            return True
        code = getattr(err, "sqlite_errorcode", None)
        return isinstance(code, int) and (code & 0xFF) in _CORRUPT_CODES

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
        )
        try:
            _check(db)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
            db.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            db.execute("COMMIT")
            self._power_count = int(db.execute("SELECT count(*) FROM power").fetchone()[0])
        except BaseException:
            db.close()
            raise
        return db

    def _move_aside(self, reason: str) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(self._clock()))
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        try:
            for suffix in ("-wal", "-shm"):
                side = self.path.with_name(self.path.name + suffix)
                if side.exists():
                    side.rename(target.with_name(target.name + suffix))
            self.path.rename(target)
        except OSError as err:
            raise StoreUnavailable(
                f"{self.path} is damaged ({reason}) and cannot be moved aside: "
                f"{err.strerror or err}"
            ) from None
        self.moved_aside = target
        _LOGGER.warning(
            "The history database %s is damaged (%s): moved it to %s and started a new one",
            self.path,
            reason,
            target.name,
        )

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise sqlite3.ProgrammingError("the history store is not open")
        return self._db

    # --- reading --------------------------------------------------------------

    def load(self, *, power_since: float, events: int) -> Snapshot:
        """Power points newer than ``power_since``, every daily yield, the newest ``events``."""
        with self._lock:
            db = self._connection()
            snapshot = Snapshot()
            for t, series, w in db.execute(
                "SELECT t, series, w FROM power WHERE t > ? ORDER BY t", (power_since,)
            ):
                when, watts, key = _number(t), _number(w), _text(series)
                if when is not None and watts is not None and key is not None:
                    snapshot.power.setdefault(key, []).append((when, watts))
            for day, serial, wh in db.execute("SELECT day, serial, wh FROM daily ORDER BY day"):
                energy, key = _number(wh), _text(serial)
                if isinstance(day, str) and _DAY.match(day) and energy is not None and key:
                    snapshot.daily.setdefault(day, {})[key] = energy
            rows = db.execute(
                "SELECT id, record FROM events ORDER BY id DESC LIMIT ?", (max(0, events),)
            ).fetchall()
            for event_id, record in reversed(rows):
                data = _event(event_id, record)
                if data is not None:
                    snapshot.events.append(data)
            last = db.execute("SELECT max(id) FROM events").fetchone()[0]
            snapshot.last_event_id = last if isinstance(last, int) and last > 0 else 0
            return snapshot

    def counts(self) -> dict[str, int]:
        """Rows per table (for tests and diagnostics)."""
        with self._lock:
            db = self._connection()
            return {
                table: int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # noqa: S608
                for table in ("power", "daily", "events")
            }

    # --- writing --------------------------------------------------------------

    def write(self, batch: Batch) -> None:
        """Store ``batch`` and prune to the bounds, in ONE transaction."""
        with self._lock:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                self._insert(db, batch)
                self._prune(db)
            except BaseException:
                db.execute("ROLLBACK")
                self._power_count = int(db.execute("SELECT count(*) FROM power").fetchone()[0])
                raise
            db.execute("COMMIT")
            self.transactions += 1

    def _insert(self, db: sqlite3.Connection, batch: Batch) -> None:
        if batch.power:
            db.executemany("INSERT INTO power (series, t, w) VALUES (?, ?, ?)", batch.power)
            self._power_count += len(batch.power)
        if batch.daily:
            db.executemany(
                "INSERT INTO daily (day, serial, wh, source) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (day, serial) DO UPDATE SET "
                "wh = excluded.wh, source = excluded.source",
                [(day, serial, wh, source) for (day, serial), (wh, source) in batch.daily.items()],
            )
        if batch.events:
            db.executemany(
                "INSERT OR REPLACE INTO events (id, t, record) VALUES (?, ?, ?)", batch.events
            )

    def _prune(self, db: sqlite3.Connection) -> None:
        cutoff = self._clock() - self.power_seconds
        self._power_count -= db.execute("DELETE FROM power WHERE t < ?", (cutoff,)).rowcount
        excess = self._power_count - self.power_rows
        if excess > 0:
            self._power_count -= db.execute(
                "DELETE FROM power WHERE rowid IN (SELECT rowid FROM power ORDER BY t LIMIT ?)",
                (excess,),
            ).rowcount
        db.execute(
            "DELETE FROM daily WHERE day < (SELECT day FROM "
            "(SELECT DISTINCT day FROM daily ORDER BY day DESC LIMIT 1 OFFSET ?))",
            (self.daily_days - 1,),
        )
        db.execute(
            "DELETE FROM events WHERE id <= (SELECT max(id) FROM events) - ?",
            (self.event_rows,),
        )


class _Damaged(sqlite3.DatabaseError):
    """The file opened but failed the check (or is from a newer version)."""


def _check(db: sqlite3.Connection) -> None:
    """Raise :class:`_Damaged` unless ``quick_check`` says ok and the schema is not newer."""
    rows = db.execute("PRAGMA quick_check").fetchall()
    if [tuple(r) for r in rows] != [("ok",)]:
        raise _Damaged("quick_check: " + "; ".join(str(r[0]) for r in rows[:3]))
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise _Damaged(f"schema version {version} is newer than this bridge's")


def _event(event_id: object, record: object) -> dict[str, Any] | None:
    if not isinstance(event_id, int) or not isinstance(record, str):
        return None
    try:
        data = json.loads(record)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("id") != event_id:
        return None
    return data


__all__ = [
    "DAILY_KEEP_DAYS",
    "DB_NAME",
    "EVENT_MAX_ROWS",
    "POWER_KEEP_SECONDS",
    "POWER_MAX_ROWS",
    "STATE_DIR_NAME",
    "WAL_LIMIT_BYTES",
    "Batch",
    "HistoryStore",
    "Snapshot",
    "StoreUnavailable",
    "state_dir_for",
]
