"""``hoymiles-bridge decode``: frames in (hex), one JSON object per frame out.

The output is a contract other tools depend on; every line has the keys
``tag`` (4 uppercase hex digits), ``sequence``, ``length``, ``crc_ok``,
``message``, ``direction``, ``payload`` and ``data``. Input is hex frames as
arguments, or one per line on stdin (spaces and colons are ignored; a JSON
Lines export with a ``hex`` key per line is read too).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator

from hoymiles_bridge.cli.common import enc_rand_hex
from hoymiles_bridge.cli.output import print_json
from hoymiles_bridge.errors import HoymilesError, ProtocolError
from hoymiles_bridge.protocol.codec import decode_frame
from hoymiles_bridge.protocol.crypto import PayloadCipher
from hoymiles_bridge.protocol.records import clean_hex, frame_record, split_frames


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
            for frame in split_frames(clean_hex(text), cipher):
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
