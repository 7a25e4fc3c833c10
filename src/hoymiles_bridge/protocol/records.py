"""Frames as JSON records and hex text back to frames: what ``decode``, the web
inspector and the web console share.

:func:`frame_record` is the object ``hoymiles-bridge decode`` prints for one
frame (a contract other tools read); :func:`clean_hex` and
:func:`split_frames` turn pasted or exported hex into frames.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from google.protobuf.message import Message

from hoymiles_bridge.errors import FrameLengthError
from hoymiles_bridge.protocol.codec import DecodedFrame
from hoymiles_bridge.protocol.crypto import PayloadCipher, is_encrypted_tag
from hoymiles_bridge.protocol.frame import Frame, FrameSplitter, parse_frame
from hoymiles_bridge.protocol.jsonify import message_to_dict
from hoymiles_bridge.protocol.models import model_for


class _HasDict(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


Result = _HasDict | Message | dict[str, Any] | None


def as_json_data(result: Result) -> Any:
    """A model, message or dict as JSON-able data (None stays None)."""
    if result is None:
        return None
    if isinstance(result, Message):
        return message_to_dict(result)
    if isinstance(result, dict):
        return result
    return result.to_dict()


def frame_record(decoded: DecodedFrame) -> dict[str, Any]:
    """The JSON object ``decode`` prints for one frame."""
    frame = decoded.frame
    message = decoded.message
    return {
        "tag": f"{frame.tag:04X}",
        "sequence": frame.sequence,
        "length": frame.length,
        "crc_ok": frame.crc_ok,
        "message": decoded.name,
        "direction": decoded.direction.value,
        "payload": message_to_dict(message) if message is not None else None,
        "data": as_json_data(model_for(message)) if message is not None else None,
    }


def clean_hex(text: str) -> bytes:
    text = text.strip()
    if text.startswith("{"):
        try:
            record = json.loads(text)
        except json.JSONDecodeError:
            raise ValueError("the line looks like JSON but is not valid JSON") from None
        text = str(record.get("hex") or record.get("raw") or "")
    cleaned = "".join(text.split()).replace(":", "").removeprefix("0x")
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise ValueError("the input is not hexadecimal") from None


def split_frames(data: bytes, cipher: PayloadCipher | None) -> list[Frame]:
    try:
        return [parse_frame(data, verify_crc=False)]
    except FrameLengthError:
        # More bytes than one frame: several frames back to back.
        splitter = FrameSplitter(encrypted=is_encrypted_tag if cipher else None)
        items = splitter.feed(data)
        errors = [i for i in items if not isinstance(i, Frame)]
        if errors or splitter.pending:
            raise
        return [i for i in items if isinstance(i, Frame)]


__all__ = ["Result", "as_json_data", "clean_hex", "frame_record", "split_frames"]
