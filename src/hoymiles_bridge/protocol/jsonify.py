"""Protobuf messages as plain JSON-able dicts, with secrets masked.

Unlike protobuf's own JSON mapping, 64-bit integers stay numbers (serials are
int64), bytes become hex, and field names are those of ``protos/``. Fields
that hold secrets are replaced by a mask: WiFi and AP passwords in config
messages and the encryption seed ``enc_rand``.
"""

from __future__ import annotations

from typing import Any, Final

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

#: Field names whose values are secrets wherever they appear. Correct here.
SECRET_FIELDS: Final = frozenset(
    {
        "wifi_passward",
        "dtu_ap_pass",
        "dtu_ap_old_pass",
        "apn_passward",
        "lock_password",
        "enc_rand",
    }
)
MASK: Final = "********"


def _value(field: FieldDescriptor, value: Any, mask: bool) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return message_to_dict(value, mask_secrets=mask)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return bytes(value).hex()
    return value


def message_to_dict(message: Message, *, mask_secrets: bool = True) -> dict[str, Any]:
    """Every field that is set, recursively. Secrets are masked unless told otherwise."""
    out: dict[str, Any] = {}
    for field, value in message.ListFields():
        if mask_secrets and field.name in SECRET_FIELDS:
            out[field.name] = MASK
        elif field.is_repeated:
            out[field.name] = [_value(field, item, mask_secrets) for item in value]
        else:
            out[field.name] = _value(field, value, mask_secrets)
    return out


__all__ = ["MASK", "SECRET_FIELDS", "message_to_dict"]
