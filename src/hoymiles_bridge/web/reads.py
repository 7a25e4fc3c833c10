"""The reads the web console may send (moved to protocol/requests.py with the client's builders)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from google.protobuf.message import Message

from hoymiles_bridge.dtu.client import APP_OFFSET
from hoymiles_bridge.protocol.pb import (
    appinfo_pb2,
    config_pb2,
    heartbeat_pb2,
    history_pb2,
    network_pb2,
    realdata_pb2,
    warn_pb2,
)


def _ymd_hms(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _read_requests() -> dict[str, Callable[[int], Message]]:
    """Reads the console may send, by registry name: a builder taking the time."""
    return {
        "AppInfoToDtu": lambda now: appinfo_pb2.AppInfoToDtu(
            ymd_hms=_ymd_hms(now), offset=APP_OFFSET, time=now
        ),
        "HeartbeatToDtu": lambda now: heartbeat_pb2.HeartbeatToDtu(
            offset=APP_OFFSET, time=now, ymd_hms=_ymd_hms(now)
        ),
        "RealDataNewToDtu": lambda now: realdata_pb2.RealDataNewToDtu(
            ymd_hms=_ymd_hms(now), cp=0, oft=APP_OFFSET, time=now
        ),
        "WarnToDtu": lambda now: warn_pb2.WarnToDtu(
            ymd_hms=_ymd_hms(now), package_now=0, offset=APP_OFFSET, time=now
        ),
        "GetConfigToDtu": lambda now: config_pb2.GetConfigToDtu(offset=APP_OFFSET, time=now),
        "NetworkInfoToDtu": lambda now: network_pb2.NetworkInfoToDtu(offset=APP_OFFSET, time=now),
        "HistPowerToDtu": lambda now: history_pb2.HistPowerToDtu(cp=0, oft=APP_OFFSET, time=now),
        "HistEnergyToDtu": lambda now: history_pb2.HistEnergyToDtu(cp=0, oft=APP_OFFSET, time=now),
    }


READ_REQUESTS: Final = _read_requests()
