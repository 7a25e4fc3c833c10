"""Which protobuf message travels under which tag, in which direction.

One table (``_ENTRIES``) maps every known tag to its message type, direction
and a stable name. The tag scheme (protocol.md section 2.7): the low byte names
the message, the high byte the family and direction - 0xA3 app->DTU, 0xA2
DTU->app, 0x23/0x22 the same for cloud-family frames the DTU also accepts or
pushes locally, 0xDB/0xDA gateway and 0xC3/0xC2 energy storage (24-byte
header). Correct a tag here and nowhere else.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from google.protobuf.message import Message

from hoymiles_bridge.errors import UnknownMessageError
from hoymiles_bridge.protocol.frame import is_extended_tag
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


class Direction(enum.StrEnum):
    TO_DTU = "to_dtu"
    FROM_DTU = "from_dtu"


@dataclass(frozen=True, slots=True)
class MessageSpec:
    tag: int
    name: str  # stable, unique per tag; what `decode` prints as "message"
    message_type: type[Message]
    direction: Direction
    title: str  # a few words for people

    @property
    def extended(self) -> bool:
        return is_extended_tag(self.tag)

    @property
    def tag_hex(self) -> str:
        return f"{self.tag:04X}"


#: Family byte of a request -> family byte of its reply.
REPLY_FAMILY: Final = {0xA3: 0xA2, 0x23: 0x22, 0xDB: 0xDA, 0xC3: 0xC2, 0x83: 0x82}
_TO_DTU_FAMILIES: Final = frozenset(REPLY_FAMILY)


def reply_tag(request_tag: int) -> int:
    """The tag a reply to ``request_tag`` carries (0xA311 -> 0xA211)."""
    family = REPLY_FAMILY.get(request_tag >> 8)
    if family is None:
        raise UnknownMessageError(f"tag {request_tag:04X} is not a request tag")
    return (family << 8) | (request_tag & 0xFF)


def direction_of(tag: int) -> Direction:
    return Direction.TO_DTU if (tag >> 8) in _TO_DTU_FAMILIES else Direction.FROM_DTU


_M = type[Message]
# (tag, name, request-or-reply message type, title)
_ENTRIES: Final[list[tuple[int, str, _M, str]]] = [
    # --- local app protocol ------------------------------------------------
    (0xA301, "AppInfoToDtu", appinfo_pb2.AppInfoToDtu, "app info request"),
    (0xA201, "AppInfoFromDtu", appinfo_pb2.AppInfoFromDtu, "app info"),
    (0xA302, "HeartbeatToDtu", heartbeat_pb2.HeartbeatToDtu, "heartbeat request"),
    (0xA202, "HeartbeatFromDtu", heartbeat_pb2.HeartbeatFromDtu, "heartbeat"),
    (0xA303, "RealDataToDtu", realdata_pb2.RealDataToDtu, "real data request (legacy)"),
    # Modern DTUs answer the legacy request with the RealDataNew layout (section 4.2).
    (0xA203, "RealDataFromDtu", realdata_pb2.RealDataNewFromDtu, "real data (legacy tag)"),
    (0xA304, "WarnToDtu", warn_pb2.WarnToDtu, "warnings request"),
    (0xA204, "WarnFromDtu", warn_pb2.WarnFromDtu, "warnings"),
    (0xA305, "CommandToDtu", command_pb2.CommandToDtu, "command"),
    (0xA205, "CommandFromDtu", command_pb2.CommandFromDtu, "command acknowledgement"),
    (0xA306, "CommandStatusToDtu", command_pb2.CommandStatusToDtu, "command status request"),
    (0xA206, "CommandStatusFromDtu", command_pb2.CommandStatusFromDtu, "command status"),
    (0xA307, "DevConfigFetchToDtu", devconfig_pb2.DevConfigFetchToDtu, "device config fetch"),
    (0xA207, "DevConfigFetchFromDtu", devconfig_pb2.DevConfigFetchFromDtu, "device config"),
    (0xA308, "DevConfigPutToDtu", devconfig_pb2.DevConfigPutToDtu, "device config write"),
    (0xA208, "DevConfigPutFromDtu", devconfig_pb2.DevConfigPutFromDtu, "device config written"),
    (0xA309, "GetConfigToDtu", config_pb2.GetConfigToDtu, "config request"),
    (0xA209, "GetConfigFromDtu", config_pb2.GetConfigFromDtu, "config"),
    (0xA310, "SetConfigToDtu", config_pb2.SetConfigToDtu, "config write"),
    (0xA210, "SetConfigFromDtu", config_pb2.SetConfigFromDtu, "config written"),
    (0xA311, "RealDataNewToDtu", realdata_pb2.RealDataNewToDtu, "real data request"),
    (0xA211, "RealDataNewFromDtu", realdata_pb2.RealDataNewFromDtu, "real data"),
    (0xA312, "GridSelfTestToDtu", gridselftest_pb2.GridSelfTestToDtu, "grid self-test request"),
    (0xA212, "GridSelfTestFromDtu", gridselftest_pb2.GridSelfTestFromDtu, "grid self-test"),
    (0xA313, "AutoSearchToDtu", autosearch_pb2.AutoSearchToDtu, "auto-search request"),
    (0xA213, "AutoSearchFromDtu", autosearch_pb2.AutoSearchFromDtu, "auto-search result"),
    (0xA314, "NetworkInfoToDtu", network_pb2.NetworkInfoToDtu, "network info request"),
    (0xA214, "NetworkInfoFromDtu", network_pb2.NetworkInfoFromDtu, "network info"),
    (0xA315, "HistPowerToDtu", history_pb2.HistPowerToDtu, "power history request"),
    (0xA215, "HistPowerFromDtu", history_pb2.HistPowerFromDtu, "power history"),
    (0xA316, "HistEnergyToDtu", history_pb2.HistEnergyToDtu, "energy history request"),
    (0xA216, "HistEnergyFromDtu", history_pb2.HistEnergyFromDtu, "energy history"),
    # --- cloud family, accepted or pushed on the local port ----------------
    (0x2305, "CloudCommandToDtu", command_pb2.CommandToDtu, "command (cloud tag)"),
    (0x2205, "CloudCommandFromDtu", command_pb2.CommandFromDtu, "command ack (cloud tag)"),
    (0x2202, "CloudHeartbeatFromDtu", heartbeat_pb2.HeartbeatFromDtu, "heartbeat push"),
    (0x220B, "CloudWarnFromDtu", warn_pb2.WarnFromDtu, "warnings push"),
    (0x220C, "CloudRealDataNewFromDtu", realdata_pb2.RealDataNewFromDtu, "real data push"),
    (0x220D, "CloudHistoryDataFromDtu", realdata_pb2.RealDataNewFromDtu, "history data push"),
    # --- gateway and energy storage (24-byte header) -----------------------
    (0xDB01, "GatewayInfoToDtu", gateway_pb2.GatewayInfoToDtu, "gateway info request"),
    (0xDA01, "GatewayInfoFromDtu", gateway_pb2.GatewayInfoFromDtu, "gateway info"),
    (0xDB06, "GatewayNetInfoToDtu", gateway_pb2.GatewayNetInfoToDtu, "gateway network request"),
    (0xDA06, "GatewayNetInfoFromDtu", gateway_pb2.GatewayNetInfoFromDtu, "gateway network"),
    (0xC302, "EsRegistryToDtu", energy_storage_pb2.EsRegistryToDtu, "storage registry request"),
    (0xC202, "EsRegistryFromDtu", energy_storage_pb2.EsRegistryFromDtu, "storage registry"),
    (0xC303, "EsDataToDtu", energy_storage_pb2.EsDataToDtu, "storage data request"),
    (0xC203, "EsDataFromDtu", energy_storage_pb2.EsDataFromDtu, "storage data"),
    (0xC308, "EsUserSetToDtu", energy_storage_pb2.EsUserSetToDtu, "storage mode write"),
    (0xC208, "EsUserSetFromDtu", energy_storage_pb2.EsUserSetFromDtu, "storage mode written"),
]

BY_TAG: Final[dict[int, MessageSpec]] = {
    tag: MessageSpec(tag, name, mtype, direction_of(tag), title)
    for tag, name, mtype, title in _ENTRIES
}
BY_NAME: Final[dict[str, MessageSpec]] = {spec.name: spec for spec in BY_TAG.values()}
#: Default request tag for each message type that is sent to the DTU.
REQUEST_TAG: Final[dict[type[Message], int]] = {}
for _spec in BY_TAG.values():
    if _spec.direction is Direction.TO_DTU:
        REQUEST_TAG.setdefault(_spec.message_type, _spec.tag)


def spec_for(tag: int) -> MessageSpec | None:
    return BY_TAG.get(tag)


def request_tag_for(message: Message) -> int:
    try:
        return REQUEST_TAG[type(message)]
    except KeyError:
        raise UnknownMessageError(
            f"{type(message).__name__} is not a message the client sends"
        ) from None


__all__ = [
    "BY_NAME",
    "BY_TAG",
    "Direction",
    "MessageSpec",
    "direction_of",
    "reply_tag",
    "request_tag_for",
    "spec_for",
]
