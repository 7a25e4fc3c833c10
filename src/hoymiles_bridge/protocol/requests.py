"""The read requests a client sends, built from the time alone (or the time and a page).

Every builder takes ``now``, the Unix time in whole seconds, and fills the
fields the S-Miles app fills: ``time``, its ``ymd_hms`` form in local time
where the message has one, and the app's fixed UTC offset. Pages count from 0.

:data:`READ_REQUESTS` maps the registry name of the plain reads (the ones a
console may send without arguments) to their builders. Commands, writes and
the requests that need more than the time stay with their callers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from google.protobuf.message import Message

from hoymiles_bridge.protocol.pb import (
    appinfo_pb2,
    autosearch_pb2,
    command_pb2,
    config_pb2,
    devconfig_pb2,
    energy_storage_pb2,
    gateway_pb2,
    gridselftest_pb2,
    heartbeat_pb2,
    history_pb2,
    network_pb2,
    realdata_pb2,
    warn_pb2,
)

#: The S-Miles app always sends this UTC offset; the DTU keeps its own clock.
APP_OFFSET: Final = 28800


def ymd_hms(now: int) -> str:
    """``now`` as ``YYYY-MM-DD HH:MM:SS`` in local time, as the requests carry it."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))


# --- identity and status --------------------------------------------------------


def app_info(now: int) -> appinfo_pb2.AppInfoToDtu:
    """App info (0xA301): identity, versions and the encryption flag; never encrypted."""
    return appinfo_pb2.AppInfoToDtu(ymd_hms=ymd_hms(now), offset=APP_OFFSET, time=now)


def heartbeat(now: int) -> heartbeat_pb2.HeartbeatToDtu:
    return heartbeat_pb2.HeartbeatToDtu(offset=APP_OFFSET, time=now, ymd_hms=ymd_hms(now))


def get_config(now: int) -> config_pb2.GetConfigToDtu:
    return config_pb2.GetConfigToDtu(offset=APP_OFFSET, time=now)


def network_info(now: int) -> network_pb2.NetworkInfoToDtu:
    return network_pb2.NetworkInfoToDtu(offset=APP_OFFSET, time=now)


def auto_search(now: int) -> autosearch_pb2.AutoSearchToDtu:
    return autosearch_pb2.AutoSearchToDtu(ymd_hms=ymd_hms(now), offset=APP_OFFSET, time=now)


def grid_self_test(now: int) -> gridselftest_pb2.GridSelfTestToDtu:
    return gridselftest_pb2.GridSelfTestToDtu(ymd_hms=ymd_hms(now), offset=APP_OFFSET, time=now)


# --- data --------------------------------------------------------------------------


def real_data_new(now: int, page: int = 0) -> realdata_pb2.RealDataNewToDtu:
    """Live data (0xA311), page ``page`` (``cp``)."""
    return realdata_pb2.RealDataNewToDtu(ymd_hms=ymd_hms(now), cp=page, oft=APP_OFFSET, time=now)


def real_data_legacy(now: int, page: int = 0) -> realdata_pb2.RealDataToDtu:
    """Live data through the legacy tag 0xA303: the same fields under another name."""
    return realdata_pb2.RealDataToDtu(ymd_hms=ymd_hms(now), cp=page, oft=APP_OFFSET, time=now)


def warnings(now: int, page: int = 0) -> warn_pb2.WarnToDtu:
    """The warning list, page ``page`` (``package_now``)."""
    return warn_pb2.WarnToDtu(ymd_hms=ymd_hms(now), package_now=page, offset=APP_OFFSET, time=now)


def history_power(now: int, page: int = 0) -> history_pb2.HistPowerToDtu:
    """Today's power curve, page ``page`` (``cp``)."""
    return history_pb2.HistPowerToDtu(cp=page, oft=APP_OFFSET, time=now)


def history_energy(now: int, page: int = 0) -> history_pb2.HistEnergyToDtu:
    """Daily energies of the last days, page ``page`` (``cp``)."""
    return history_pb2.HistEnergyToDtu(cp=page, oft=APP_OFFSET, time=now)


# --- reads that need more than the time ------------------------------------------------


def command_status(now: int, action: int, tid: int) -> command_pb2.CommandStatusToDtu:
    """How far the inverters got with the command ``action`` sent as ``tid``."""
    return command_pb2.CommandStatusToDtu(time=now, action=action, tid=tid)


def dev_config_fetch(
    now: int, *, dtu_serial: str, device_serial: int, rule_type: int
) -> devconfig_pb2.DevConfigFetchToDtu:
    """A device configuration of the inverter ``device_serial`` (``tid`` is the time)."""
    return devconfig_pb2.DevConfigFetchToDtu(
        time=now,
        tid=now,
        dtu_sn=dtu_serial,
        dev_sn=f"{device_serial:012X}",
        rule_type=rule_type,
    )


# --- gateway and energy storage (24-byte header) -----------------------------------------


def gateway_info(now: int) -> gateway_pb2.GatewayInfoToDtu:
    return gateway_pb2.GatewayInfoToDtu(time=now, oft=APP_OFFSET)


def gateway_net_info(now: int) -> gateway_pb2.GatewayNetInfoToDtu:
    return gateway_pb2.GatewayNetInfoToDtu(offset=APP_OFFSET, time=now)


def es_registry(now: int) -> energy_storage_pb2.EsRegistryToDtu:
    return energy_storage_pb2.EsRegistryToDtu(time=now, ymd_hms=ymd_hms(now), offset=APP_OFFSET)


def es_data(now: int, inverter_serial: int) -> energy_storage_pb2.EsDataToDtu:
    return energy_storage_pb2.EsDataToDtu(
        time=now, ymd_hms=ymd_hms(now), offset=APP_OFFSET, sn=inverter_serial
    )


#: The plain reads by registry name: a builder taking the time (the first page).
READ_REQUESTS: Final[dict[str, Callable[[int], Message]]] = {
    "AppInfoToDtu": app_info,
    "HeartbeatToDtu": heartbeat,
    "RealDataNewToDtu": real_data_new,
    "WarnToDtu": warnings,
    "GetConfigToDtu": get_config,
    "NetworkInfoToDtu": network_info,
    "HistPowerToDtu": history_power,
    "HistEnergyToDtu": history_energy,
}

__all__ = [
    "APP_OFFSET",
    "READ_REQUESTS",
    "app_info",
    "auto_search",
    "command_status",
    "dev_config_fetch",
    "es_data",
    "es_registry",
    "gateway_info",
    "gateway_net_info",
    "get_config",
    "grid_self_test",
    "heartbeat",
    "history_energy",
    "history_power",
    "network_info",
    "real_data_legacy",
    "real_data_new",
    "warnings",
    "ymd_hms",
]
