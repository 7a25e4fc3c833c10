"""The web hub's memory bounds: the frame ring's byte budget, cut hex, forgotten inverters."""

from __future__ import annotations

import json

from hoymiles_bridge.core.events import Activity
from hoymiles_bridge.dtu.connection import FrameEvent
from hoymiles_bridge.errors import BadMagicError
from hoymiles_bridge.protocol.registry import Direction
from hoymiles_bridge.web.hub import (
    FRAME_BUFFER_BYTES,
    HEX_BYTES,
    SERIES_EXPIRY,
    WebHub,
    build_frame_record,
)

#: What one read of a misbehaving peer delivered: 256 KiB that are not a frame.
GARBAGE = bytes(range(256)) * 1024


def _garbage(raw: bytes = GARBAGE) -> FrameEvent:
    error = BadMagicError(f"skipped {len(raw)} bytes that are not part of a frame", raw)
    return FrameEvent(1_700_000_000.0, Direction.FROM_DTU, raw, None, None, error)


def _retained(hub: WebHub) -> int:
    return sum(len(item.json.encode("utf-8")) for item in hub.frames)


def test_garbage_reads_stay_within_the_frame_budget() -> None:
    hub = WebHub()
    subscription = hub.subscribe()
    for _ in range(500):
        hub.on_frame("DTU1", _garbage())
    assert hub.frame_count == 500 and hub.frames[-1].data["id"] == 500
    # The hub's own accounting is exact, and within the budget.
    assert hub.frame_bytes == _retained(hub)
    assert 0 < hub.frame_bytes <= FRAME_BUFFER_BYTES
    newest = hub.frames[-1].data
    assert newest["truncated"] is True and newest["length"] == len(GARBAGE)
    assert bytes.fromhex(newest["hex"]) == GARBAGE[:HEX_BYTES]
    # The live copies are the same short records.
    message = subscription.get_nowait()
    assert message is not None
    assert len(message) < 3 * HEX_BYTES
    assert json.loads(message)["data"]["truncated"] is True


def test_real_frames_keep_their_whole_hex() -> None:
    # HEX_BYTES is the largest frame the protocol allows: no real frame is ever cut.
    whole = build_frame_record(1, "DTU1", _garbage(GARBAGE[:HEX_BYTES]))
    assert whole["truncated"] is False and len(whole["hex"]) == 2 * HEX_BYTES
    cut = build_frame_record(2, "DTU1", _garbage(GARBAGE[: HEX_BYTES + 1]))
    assert cut["truncated"] is True and cut["hex"] == whole["hex"]
    assert cut["length"] == HEX_BYTES + 1


def test_the_budget_and_the_count_both_bound_the_ring() -> None:
    hub = WebHub(frames=3, frame_bytes=70_000)  # two garbage records
    for _ in range(10):
        hub.on_frame("DTU1", _garbage(GARBAGE[:100]))
    assert len(hub.frames) == 3 and hub.frame_bytes == _retained(hub)
    for _ in range(10):
        hub.on_frame("DTU1", _garbage())
    assert len(hub.frames) == 2 and hub.frame_bytes == _retained(hub) <= 70_000
    # The newest frame is kept even when it alone is over the budget.
    tiny = WebHub(frame_bytes=1000)
    tiny.on_frame("DTU1", _garbage())
    tiny.on_frame("DTU1", _garbage())
    assert [item.data["id"] for item in tiny.frames] == [2]
    assert tiny.frame_bytes == _retained(tiny)


def _poll(when: float, power: dict[str, float]) -> Activity:
    return Activity("poll", "dtu", "DTU1", "poll", data={"time": when, "power": power})


def test_inverters_not_seen_for_two_days_are_forgotten() -> None:
    hub = WebHub()
    start = 1_700_000_000.0
    hub.on_event(_poll(start, {"A": 100.0, "B": 50.0}))
    hub.on_event(_poll(start + SERIES_EXPIRY, {"B": 60.0}))
    assert set(hub.history) == {"A", "B", "total"}  # A was seen exactly 48 h ago
    hub.on_event(_poll(start + SERIES_EXPIRY + 35, {"B": 70.0}))
    assert set(hub.history) == {"B", "total"}
    # Its last power no longer counts in the total either.
    assert hub.history["total"][-1] == (round(start + SERIES_EXPIRY + 35, 1), 70.0)
    hub.on_event(_poll(start + SERIES_EXPIRY + 70, {"A": 10.0, "B": 70.0}))
    assert list(hub.history["A"]) == [(round(start + SERIES_EXPIRY + 70, 1), 10.0)]
