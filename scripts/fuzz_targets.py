"""Coverage-guided fuzz targets (atheris/libFuzzer) for the parsers at the edge.

Run by ``scripts/fuzz.sh``; by hand::

    python scripts/fuzz_targets.py TARGET [CORPUS_DIR] [libFuzzer options]

Targets:

* ``wire`` - the bytes a DTU sends: the frame splitter (the input cut into
  chunks at points the input chooses), then every frame through the codec,
  the models and the ``decode`` record;
* ``models`` - the first byte picks a reply type, the rest is parsed as its
  payload and turned into a model;
* ``commands`` - a command name and payload for the MQTT command registry.

Each target allows exactly the errors its parser documents; anything else
is a crash, and libFuzzer keeps the input that caused it.
``--seed TARGET DIR`` writes a starting corpus for ``wire`` or ``models``
into ``DIR``, made of the reference frames (``tests/vectors/frames.json``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final

import atheris

with atheris.instrument_imports(include=["hoymiles_bridge"]):
    from hoymiles_bridge.core.commands import BY_NAME, CommandError, CommandRequest, Target, check
    from hoymiles_bridge.errors import FrameError, ProtocolError
    from hoymiles_bridge.protocol.codec import decode_frame, parse_payload
    from hoymiles_bridge.protocol.frame import Frame, FrameSplitter, parse_frame
    from hoymiles_bridge.protocol.models import MODELS, RealData, model_for
    from hoymiles_bridge.protocol.records import frame_record
    from hoymiles_bridge.protocol.registry import spec_for

ROOT: Final = Path(__file__).resolve().parents[1]
VECTORS: Final = ROOT / "tests" / "vectors" / "frames.json"
#: The replies that have a model (protocol/models.py's table).
REPLY_TYPES: Final = tuple(MODELS)
NAMES: Final = sorted(BY_NAME)
TARGETS_OF: Final = (None, Target.INVERTER, Target.DTU)


def _model(message: object) -> None:
    """Build the model of ``message``; ProtocolError (a bad serial) is allowed."""
    try:
        model = model_for(message)
        if isinstance(model, RealData):
            model.to_dict()  # the inverters are built on first read
    except ProtocolError:
        return


def wire(data: bytes) -> None:
    """Bytes from a DTU: splitter, codec, models, decode record."""
    if not data:
        return
    step = data[0] % 64 + 1  # the input chooses its own chunk size
    splitter = FrameSplitter()
    stream = data[1:]
    for start in range(0, len(stream), step):
        for item in splitter.feed(stream[start : start + step]):
            if isinstance(item, FrameError):
                continue
            if not isinstance(item, Frame):
                raise TypeError(f"the splitter returned {item!r}")
            try:
                frame_record(decode_frame(item))
            except ProtocolError:
                continue
    splitter.clear()


def models(data: bytes) -> None:
    """A reply type chosen by the first byte, parsed from the rest, turned into a model."""
    if not data:
        return
    message_type = REPLY_TYPES[data[0] % len(REPLY_TYPES)]
    try:
        message = parse_payload(message_type, data[1:])
    except ProtocolError:
        return
    _model(message)


def commands(data: bytes) -> None:
    """A command name and payload for the registry: only CommandError is allowed."""
    provider = atheris.FuzzedDataProvider(data)
    if provider.ConsumeBool():
        name = NAMES[provider.ConsumeIntInRange(0, len(NAMES) - 1)]
    else:
        name = provider.ConsumeUnicodeNoSurrogates(24)
    target = TARGETS_OF[provider.ConsumeIntInRange(0, len(TARGETS_OF) - 1)]
    retained = provider.ConsumeBool()
    serial = provider.ConsumeUnicodeNoSurrogates(16)
    payload = provider.ConsumeBytes(provider.remaining_bytes())
    try:
        check(CommandRequest(target, serial, name, payload, retained))
    except CommandError:
        return


TARGETS: Final[dict[str, Callable[[bytes], None]]] = {
    "wire": wire,
    "models": models,
    "commands": commands,
}


def seed(target: str, directory: Path) -> int:
    """Write a corpus for ``target`` made of the reference frames; returns how many inputs."""
    directory.mkdir(parents=True, exist_ok=True)
    inputs: list[bytes] = []
    for vector in json.loads(VECTORS.read_text())["frames"]:
        raw = bytes.fromhex(vector["hex"])
        if target == "wire":
            inputs.append(b"\x3f" + raw)  # the first byte 63: 64-byte chunks
        elif target == "models":
            try:
                frame = parse_frame(raw)
            except FrameError:
                continue
            spec = spec_for(frame.tag)
            if spec is not None and spec.message_type in REPLY_TYPES and not frame.encrypted:
                inputs.append(bytes([REPLY_TYPES.index(spec.message_type)]) + frame.payload)
    for number, data in enumerate(inputs):
        (directory / f"vector-{number:03d}").write_bytes(data)
    return len(inputs)


def main(argv: list[str]) -> None:
    if len(argv) >= 4 and argv[1] == "--seed":
        seed(argv[2], Path(argv[3]))
        return
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.exit(f"usage: {argv[0]} {{{','.join(TARGETS)}}} [libFuzzer options]")
    target = TARGETS[argv[1]]
    atheris.Setup([argv[0], *argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
