"""Protobuf messages as plain JSON-able dicts, with secrets masked.

Unlike protobuf's own JSON mapping, 64-bit integers stay numbers (serials are
int64), bytes become hex, and field names are those of ``protos/``. Fields
that hold secrets (:mod:`hoymiles_bridge.protocol.secrets`) are replaced by
the mask.
"""

from __future__ import annotations

from typing import Any, Final

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from hoymiles_bridge.protocol.secrets import MASK, SECRET_FIELDS

_MESSAGE: Final = FieldDescriptor.TYPE_MESSAGE
_BYTES: Final = FieldDescriptor.TYPE_BYTES


def message_to_dict(message: Message, *, mask_secrets: bool = True) -> dict[str, Any]:
    """Every field that is set, recursively. Secrets are masked unless told otherwise."""
    # The web UI turns every frame into this dict, so the loop stays flat.
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        name = field.name
        if mask_secrets and name in SECRET_FIELDS:
            out[name] = MASK
            continue
        kind = field.type
        if field.is_repeated:
            if kind == _MESSAGE:
                out[name] = [message_to_dict(item, mask_secrets=mask_secrets) for item in value]
            elif kind == _BYTES:
                out[name] = [bytes(item).hex() for item in value]
            else:
                out[name] = list(value)
        elif kind == _MESSAGE:
            out[name] = message_to_dict(value, mask_secrets=mask_secrets)
        elif kind == _BYTES:
            out[name] = bytes(value).hex()
        else:
            out[name] = value
    return out


__all__ = ["message_to_dict"]
