"""``hoymiles-bridge decode``: frames in (hex), one JSON object per frame out.

The output is a contract other tools depend on; every line has the keys
``tag`` (4 uppercase hex digits), ``sequence``, ``length``, ``crc_ok``,
``message``, ``direction``, ``payload`` and ``data``. Input is hex frames as
arguments, or one per line on stdin (spaces and colons are ignored; a JSON
Lines export with a ``hex`` key per line is read too).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from hoymiles_bridge.cli.common import enc_rand_hex
from hoymiles_bridge.cli.output import as_json_data, print_json
from hoymiles_bridge.dtu.models import model_for
from hoymiles_bridge.errors import FrameLengthError, HoymilesError, ProtocolError
from hoymiles_bridge.protocol.codec import DecodedFrame, decode_frame
from hoymiles_bridge.protocol.crypto import PayloadCipher, is_encrypted_tag
from hoymiles_bridge.protocol.frame import Frame, FrameSplitter, parse_frame
from hoymiles_bridge.protocol.jsonify import message_to_dict


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


def _clean_hex(text: str) -> bytes:
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


def _frames(data: bytes, cipher: PayloadCipher | None) -> list[Frame]:
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


def _inputs(args: argparse.Namespace) -> Iterator[str]:
    sources: Iterable[str] = args.frames if args.frames else sys.stdin
    for item in sources:
        if item.strip():
            yield item


def run(args: argparse.Namespace) -> int:
    cipher = PayloadCipher(args.enc_rand) if args.enc_rand else None
    failures = 0
    for number, text in enumerate(_inputs(args), start=1):
        try:
            for frame in _frames(_clean_hex(text), cipher):
                print_json(frame_record(decode_frame(frame, cipher)))
        except (ValueError, ProtocolError, HoymilesError) as err:
            failures += 1
            print(f"input {number}: {err}", file=sys.stderr)
    return 1 if failures else 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "decode",
        help="decode hex frames to JSON lines",
        description="Decode frames given as hex (arguments, or one per line on stdin).",
    )
    parser.add_argument("frames", nargs="*", metavar="HEX", help="frames as hex")
    parser.add_argument("--enc-rand", type=enc_rand_hex, help="encryption seed (hex)")
    parser.set_defaults(func=run)
