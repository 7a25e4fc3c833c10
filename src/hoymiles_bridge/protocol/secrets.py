"""What counts as a secret, and how it is masked: the one list for every surface.

Secrets are never logged, published, shown or exported: WiFi and access-point
passwords in the DTU's configuration, the encryption seed ``enc_rand``, and
the bridge's own passwords and tokens. :data:`SECRET_FIELDS` names them in
protobuf messages, :data:`SECRET_KEYS` in JSON-able dicts (options,
diagnostics, decoded records) and :data:`SECRET_TAGS` the frames whose
payload carries one. A masked value reads :data:`MASK`. The Hoymiles cloud's
requests and answers use short keys of their own: :data:`CLOUD_SECRET_KEYS`
names them for :func:`mask_cloud`.
"""

from __future__ import annotations

import functools
from typing import Any, Final

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

MASK: Final = "********"

#: Protobuf field names whose values are secrets wherever they appear. Correct here.
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

#: Keys of JSON-able dicts whose non-empty values are secrets (``mqtt.password``,
#: ``web.password``, a token, a decoded ``enc_rand``, any protobuf secret field).
SECRET_KEYS: Final = frozenset({"password", "token", "enc_rand"}) | SECRET_FIELDS

#: Tags whose payload carries a secret: the config reply and write, and the
#: app-info reply with ``enc_rand``.
SECRET_TAGS: Final = frozenset({0xA201, 0xA209, 0xA310})


#: Keys of the Hoymiles cloud's JSON bodies and headers whose values are secret or
#: personal: the login's credential hash ``ch``, nonce ``n`` and salt ``a``, the
#: account (``u``, ``email``, ``user_name``), the session token and its header,
#: and the live-data ``uri``, whose query holds a session key.
CLOUD_SECRET_KEYS: Final = SECRET_KEYS | frozenset(
    {
        "ch",
        "n",
        "a",
        "nonce",
        "salt",
        "u",
        "email",
        "user_name",
        "authorization",
        "Authorization",
        "uri",
    }
)


def mask_secrets(value: Any) -> Any:
    """``value`` with every secret key's non-empty value replaced by the mask."""
    if isinstance(value, dict):
        return {
            k: (MASK if k in SECRET_KEYS and v not in (None, "") else mask_secrets(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [mask_secrets(v) for v in value]
    return value


def mask_cloud(value: Any) -> Any:
    """``value`` (a cloud body or headers) with every secret or personal value masked."""
    if isinstance(value, dict):
        return {
            k: (MASK if k in CLOUD_SECRET_KEYS and v not in (None, "") else mask_cloud(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [mask_cloud(v) for v in value]
    return value


@functools.cache
def _may_hold_secret(descriptor: Descriptor) -> bool:
    """Whether messages of this type can hold a secret field at all (at any depth)."""
    for field in descriptor.fields:
        if field.name in SECRET_FIELDS:
            return True
        if (
            field.type == FieldDescriptor.TYPE_MESSAGE
            and field.message_type is not descriptor
            and _may_hold_secret(field.message_type)
        ):
            return True
    return False


def has_secret(message: Message) -> bool:
    """Whether ``message`` has a secret field set (at any depth)."""
    if not _may_hold_secret(message.DESCRIPTOR):
        return False  # most frames (real data above all): no walk needed
    for field, value in message.ListFields():
        if field.name in SECRET_FIELDS:
            return True
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            items = value if field.is_repeated else [value]
            if any(has_secret(item) for item in items):
                return True
    return False


def _mask_in_place(message: Message) -> None:
    for field, value in message.ListFields():
        if field.name in SECRET_FIELDS:
            if field.type == FieldDescriptor.TYPE_STRING and not field.is_repeated:
                setattr(message, field.name, MASK)
            else:
                message.ClearField(field.name)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            for item in value if field.is_repeated else [value]:
                _mask_in_place(item)


def masked_copy(message: Message) -> Message:
    """A copy of ``message`` with secret strings set to the mask and other secrets cleared."""
    copy = type(message)()
    copy.CopyFrom(message)
    _mask_in_place(copy)
    return copy


__all__ = [
    "CLOUD_SECRET_KEYS",
    "MASK",
    "SECRET_FIELDS",
    "SECRET_KEYS",
    "SECRET_TAGS",
    "has_secret",
    "mask_cloud",
    "mask_secrets",
    "masked_copy",
]
