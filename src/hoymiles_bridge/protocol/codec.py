"""From frames to protobuf messages and back (still no I/O).

:func:`decode_frame` takes a :class:`~hoymiles_bridge.protocol.frame.Frame`
(from the splitter or :func:`~hoymiles_bridge.protocol.frame.parse_frame`),
decrypts it when needed and parses the payload with the type the registry
names. A tag the registry does not know is not an error: the result has
``message = None`` and keeps the raw payload.
"""

from __future__ import annotations

from typing import NamedTuple

from google.protobuf.message import DecodeError, Message

from hoymiles_bridge.errors import EncryptionError, PayloadDecodeError
from hoymiles_bridge.protocol.crypto import PayloadCipher, is_encrypted_tag
from hoymiles_bridge.protocol.frame import ExtendedHeader, Frame, encode_frame, is_extended_tag
from hoymiles_bridge.protocol.registry import (
    Direction,
    MessageSpec,
    direction_of,
    request_tag_for,
    spec_for,
)


class DecodedFrame(NamedTuple):
    """A frame with its payload decoded (immutable).

    ``plaintext`` is the protobuf payload (decrypted when the frame was
    encrypted). ``message`` is None for tags the registry does not know.
    """

    frame: Frame
    spec: MessageSpec | None
    message: Message | None
    plaintext: bytes

    @property
    def tag(self) -> int:
        return self.frame.tag

    @property
    def sequence(self) -> int:
        return self.frame.sequence

    @property
    def name(self) -> str:
        return self.spec.name if self.spec is not None else f"Unknown_{self.frame.tag:04X}"

    @property
    def direction(self) -> Direction:
        return self.spec.direction if self.spec is not None else direction_of(self.frame.tag)


def parse_payload(message_type: type[Message], payload: bytes, tag: int = 0) -> Message:
    """Parse ``payload`` as ``message_type``; a bad payload is a PayloadDecodeError."""
    try:
        return message_type.FromString(payload)
    except DecodeError as err:
        raise PayloadDecodeError(
            f"payload of tag {tag:04X} is not a valid {message_type.__name__}: {err}"
        ) from None


def decode_frame(frame: Frame, cipher: PayloadCipher | None = None) -> DecodedFrame:
    """Decrypt (if needed) and parse one frame."""
    plaintext = frame.payload
    if frame.encrypted:
        if cipher is None:
            raise EncryptionError(
                f"frame {frame.tag:04X} is encrypted; the DTU's enc_rand is needed to read it"
            )
        plaintext = cipher.decrypt(frame.tag, frame.sequence, frame.payload, frame.gcm_tag)
    spec = spec_for(frame.tag)
    if spec is None:
        return DecodedFrame(frame, None, None, plaintext)
    return DecodedFrame(
        frame, spec, parse_payload(spec.message_type, plaintext, frame.tag), plaintext
    )


def encode_message(
    message: Message,
    sequence: int,
    *,
    tag: int | None = None,
    cipher: PayloadCipher | None = None,
    extended: ExtendedHeader | None = None,
) -> bytes:
    """Serialise ``message`` into a frame, encrypting when ``cipher`` is given.

    The tag defaults to the registry's request tag for the message type.
    Tags that always travel in clear (app info, extended header) are never
    encrypted, whatever ``cipher`` says.
    """
    if tag is None:
        tag = request_tag_for(message)
    payload = message.SerializeToString()
    if is_extended_tag(tag) and extended is None:
        extended = ExtendedHeader()
    if cipher is not None and is_encrypted_tag(tag):
        ciphertext, gcm_tag = cipher.encrypt(tag, sequence, payload)
        return encode_frame(tag, sequence, ciphertext, gcm_tag=gcm_tag, extended=extended)
    return encode_frame(tag, sequence, payload, extended=extended)


__all__ = ["DecodedFrame", "decode_frame", "encode_message", "parse_payload"]
