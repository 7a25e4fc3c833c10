"""Fuzzing as a standing suite: hostile input at every edge gives only the documented errors.

Each property feeds one parser what a broken or hostile peer could send and
allows exactly the errors that parser documents; anything else (an
``IndexError``, an ``OverflowError``, a ``RecursionError``) fails the test:

* the frame splitter and ``parse_frame`` - any byte stream, in any chunks:
  only :class:`~hoymiles_bridge.errors.FrameError`; linear work; a frame
  that is cleanly delimited is never lost;
* the codec and the decode records - any frame: only
  :class:`~hoymiles_bridge.errors.ProtocolError`;
* the models - any reply message, built field by field from its descriptor,
  or any payload bytes parsed as one: only ``ProtocolError``, and every
  serial they hold follows the serial rule;
* the command registry's value parser - any name and payload: only
  :class:`~hoymiles_bridge.core.commands.CommandError`;
* the options loader - any JSON-like document: only
  :class:`~hoymiles_bridge.config.options.OptionsError`;
* the web API's body reader - any request body: only ``BadRequest``.

The number of examples per property is the ``hoymiles-fuzz`` profile's
(``HOYMILES_FUZZ_EXAMPLES``, default 400: well under a minute for the file).
``scripts/fuzz.sh`` runs the coverage-guided fuzzer (atheris) for longer.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import string
from typing import Any, Final
from unittest import mock

from aiohttp import streams
from aiohttp.test_utils import make_mocked_request
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hoymiles_bridge.config.options import OPTIONS, OptionsError, validate
from hoymiles_bridge.core.commands import (
    BY_NAME,
    MAX_PAYLOAD,
    CommandError,
    CommandRequest,
    Target,
    ValueKind,
    check,
)
from hoymiles_bridge.errors import (
    BadMagicError,
    CrcMismatchError,
    FrameError,
    FrameLengthError,
    ProtocolError,
)
from hoymiles_bridge.protocol.codec import decode_frame, parse_payload
from hoymiles_bridge.protocol.crypto import PayloadCipher
from hoymiles_bridge.protocol.devices import check_serial
from hoymiles_bridge.protocol.frame import (
    EXTENDED_HEADER_SIZE,
    GCM_TAG_SIZE,
    KEPT_BAD_BYTES,
    MAGIC,
    ExtendedHeader,
    Frame,
    FrameSplitter,
    encode_frame,
    is_extended_tag,
    parse_frame,
)
from hoymiles_bridge.protocol.models import MODELS, RealData, model_for
from hoymiles_bridge.protocol.records import frame_record
from hoymiles_bridge.protocol.registry import BY_TAG
from hoymiles_bridge.web.common import BadRequest, read_body

EXAMPLES: Final = int(os.environ.get("HOYMILES_FUZZ_EXAMPLES", "400"))
settings.register_profile(
    "hoymiles-fuzz",
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ: Final = settings.get_profile("hoymiles-fuzz")

#: What a splitter reports; TruncatedFrameError only comes from parse_frame.
SPLITTER_ERRORS: Final = (BadMagicError, FrameLengthError, CrcMismatchError)
H: Final = MAGIC[0]

# --- frames --------------------------------------------------------------------------------------

#: Tags the registry knows, and any other.
TAGS: Final = st.one_of(st.sampled_from(sorted(BY_TAG)), st.integers(0, 0xFFFF))


@st.composite
def frames(draw: st.DrawFn, payload: st.SearchStrategy[bytes] | None = None) -> bytes:
    """A valid frame of any tag (a 24-byte header where the tag asks for one)."""
    tag = draw(TAGS)
    extended = None
    if is_extended_tag(tag):
        extended = ExtendedHeader(serial=draw(st.integers(0, 2**64 - 1)))
    body = draw(payload if payload is not None else st.binary(max_size=300))
    return encode_frame(tag, draw(st.integers(0, 0xFFFF)), body, extended=extended)


@st.composite
def chunked(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """``data`` cut at a few arbitrary places."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


#: Raw streams: frames, pieces of frames, headers with any fields, "HM" runs, noise.
STREAM_PARTS: Final = st.one_of(
    frames(),
    frames().flatmap(lambda f: st.integers(0, len(f)).map(lambda n: f[:n])),
    st.builds(
        lambda tag, seq, crc, length: MAGIC
        + bytes.fromhex(f"{tag:04x}{seq:04x}{crc:04x}")
        + length.to_bytes(2, "big"),
        TAGS,
        st.integers(0, 0xFFFF),
        st.integers(0, 0xFFFF),
        st.one_of(st.integers(0, 0xFFFF), st.integers(0, 400), st.just(16 * 1024)),
    ),
    st.integers(1, 6).map(lambda n: MAGIC * n),
    st.binary(max_size=64),
)


@FUZZ
@given(st.lists(STREAM_PARTS, max_size=12).map(b"".join).flatmap(chunked), st.booleans())
def test_splitter_reports_frames_or_documented_errors_with_linear_work(
    chunks: list[bytes], encrypted: bool
) -> None:
    splitter = FrameSplitter(encrypted=(lambda tag: tag >> 8 == 0xA2) if encrypted else None)
    fed = 0
    for chunk in chunks:
        for item in splitter.feed(chunk):
            if isinstance(item, Frame):
                continue
            assert isinstance(item, SPLITTER_ERRORS), repr(item)
            assert len(item.raw) <= EXTENDED_HEADER_SIZE + KEPT_BAD_BYTES
        fed += len(chunk)
    # each byte hashed by the plain check and the register grid at most once,
    # then at most two 16-byte extensions per candidate (one per 3 bytes at
    # most) and one per chunk
    assert splitter.crc_bytes <= 2 * fed + 32 * (fed // 3 + 1) + 16 * len(chunks)
    assert splitter.pending <= len(b"".join(chunks))


NOISE: Final = st.binary(max_size=40).map(lambda b: b.replace(bytes([H]), b""))


@st.composite
def corrupted(draw: st.DrawFn) -> bytes:
    """A frame with a wrong CRC and no 'H' after its magic: nothing inside it can start a frame."""
    payload = draw(st.binary(max_size=100).map(lambda b: b.replace(bytes([H]), b"")))
    raw = bytearray(encode_frame(0xA211, draw(st.integers(0, 0xFFFF)), payload))
    raw[6] ^= draw(st.integers(1, 0xFF))
    assume(H not in raw[2:])
    return bytes(raw)


@FUZZ
@given(
    st.lists(
        st.one_of(frames().map(lambda f: ("frame", f)), NOISE.map(lambda b: ("noise", b))),
        max_size=10,
    ).flatmap(
        lambda parts: st.lists(corrupted(), min_size=len(parts), max_size=len(parts)).map(
            lambda bad: [p if i % 3 else ("bad", bad[i]) for i, p in enumerate(parts)]
            if parts
            else parts
        )
    ),
    st.data(),
)
def test_splitter_never_loses_a_cleanly_delimited_frame(
    parts: list[tuple[str, bytes]], data: st.DataObject
) -> None:
    """Valid frames between noise without an 'H' and frames whose CRC is wrong are all found."""
    stream = b"".join(raw for _, raw in parts)
    splitter = FrameSplitter()
    found = []
    for chunk in data.draw(chunked(stream)):
        found += [item.to_bytes() for item in splitter.feed(chunk) if isinstance(item, Frame)]
    assert found == [raw for kind, raw in parts if kind == "frame"]
    assert splitter.pending <= 1  # a lone last byte waits for its successor, as ever


@FUZZ
@given(st.binary(max_size=400), st.booleans())
def test_parse_frame_raises_only_frame_errors(data: bytes, verify: bool) -> None:
    try:
        frame = parse_frame(data, verify_crc=verify)
    except FrameError:
        return
    assert frame.to_bytes() == data


# --- the codec and the decode records ----------------------------------------------------------


@FUZZ
@given(
    frames(payload=st.binary(max_size=200)),
    st.one_of(st.none(), st.binary(min_size=16, max_size=16)),
    st.binary(min_size=GCM_TAG_SIZE, max_size=GCM_TAG_SIZE),
)
def test_codec_decodes_any_frame_or_raises_a_protocol_error(
    raw: bytes, enc_rand: bytes | None, gcm_tag: bytes
) -> None:
    frame = parse_frame(raw)
    if enc_rand is not None and frame.extended is None:
        frame = frame._replace(gcm_tag=gcm_tag)  # an "encrypted" frame with a forged tag
    cipher = PayloadCipher(enc_rand) if enc_rand is not None else None
    try:
        decoded = decode_frame(frame, cipher)
        record = frame_record(decoded)
    except ProtocolError:
        return
    assert record["tag"] == f"{frame.tag:04X}"


# --- the models ------------------------------------------------------------------------------

#: The replies a model is made of (protocol/models.py's table).
REPLY_TYPES: Final[list[type[Message]]] = list(MODELS)

_T = FieldDescriptor
_SCALARS: Final[dict[int, st.SearchStrategy[Any]]] = {
    _T.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    _T.TYPE_SINT32: st.integers(-(2**31), 2**31 - 1),
    _T.TYPE_SFIXED32: st.integers(-(2**31), 2**31 - 1),
    _T.TYPE_ENUM: st.integers(-(2**31), 2**31 - 1),
    _T.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    _T.TYPE_SINT64: st.integers(-(2**63), 2**63 - 1),
    _T.TYPE_SFIXED64: st.integers(-(2**63), 2**63 - 1),
    _T.TYPE_UINT32: st.integers(0, 2**32 - 1),
    _T.TYPE_FIXED32: st.integers(0, 2**32 - 1),
    _T.TYPE_UINT64: st.integers(0, 2**64 - 1),
    _T.TYPE_FIXED64: st.integers(0, 2**64 - 1),
    _T.TYPE_BOOL: st.booleans(),
    _T.TYPE_FLOAT: st.floats(width=32),
    _T.TYPE_DOUBLE: st.floats(),
    # serials are text: hostile text, and often a real-looking serial
    _T.TYPE_STRING: st.one_of(st.text(max_size=24), st.from_regex(r"[0-9A-F]{12}", fullmatch=True)),
    _T.TYPE_BYTES: st.binary(max_size=24),
}


@st.composite
def messages(draw: st.DrawFn, message_type: type[Message], depth: int = 0) -> Message:
    """A ``message_type`` with any subset of its fields set to any values (2 levels deep)."""
    message = message_type()
    for field in message_type.DESCRIPTOR.fields:
        if not draw(st.booleans()):
            continue
        container = getattr(message, field.name)
        if field.type == _T.TYPE_MESSAGE:
            if depth >= 2:
                continue
            if field.is_repeated:
                for _ in range(draw(st.integers(0, 3))):
                    item = container.add()
                    item.CopyFrom(draw(messages(type(item), depth + 1)))
            else:
                container.CopyFrom(draw(messages(type(container), depth + 1)))
        elif field.is_repeated:
            container.extend(draw(st.lists(_SCALARS[field.type], max_size=4)))
        else:
            setattr(message, field.name, draw(_SCALARS[field.type]))
    return message


#: Keys of a model's dict whose values are lists of serials (CommandStatus).
_SERIAL_LISTS: Final = frozenset({"succeeded", "failed", "running"})


def _serials(model: object) -> list[str]:
    """Every serial string a model holds, found in its ``to_dict``."""
    found: list[str] = []

    def walk(value: object, key: str = "") -> None:
        if isinstance(value, dict):
            if key == "errors":  # CommandStatus: serial -> error code
                found.extend(str(name) for name in value)
            for name, item in value.items():
                walk(item, str(name))
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item, key)
        elif isinstance(value, str) and ("serial" in key or key in _SERIAL_LISTS):
            found.append(value)

    to_dict = getattr(model, "to_dict", None)
    walk(to_dict() if to_dict is not None else model)
    return found


def _check_model(message: Message) -> None:
    try:
        model = model_for(message)
        if isinstance(model, RealData):
            model.inverters  # noqa: B018 - the models are built on first read
    except ProtocolError:
        return
    assert model is not None
    for serial in _serials(model):
        # held as the rule wants it: valid, upper case (empty only where optional)
        assert serial == "" or check_serial(serial, "a model") == serial, serial


@FUZZ
@given(st.sampled_from(REPLY_TYPES).flatmap(messages))
def test_models_of_any_reply_raise_only_protocol_errors(message: Message) -> None:
    _check_model(message)


@FUZZ
@given(st.sampled_from(REPLY_TYPES), st.binary(max_size=300))
def test_models_of_any_payload_raise_only_protocol_errors(
    message_type: type[Message], payload: bytes
) -> None:
    try:
        message = parse_payload(message_type, payload)
    except ProtocolError:
        return
    _check_model(message)


# --- the command registry's value parser ----------------------------------------------------------

PAYLOADS: Final = st.one_of(
    st.binary(max_size=MAX_PAYLOAD + 8),
    st.text(max_size=MAX_PAYLOAD).map(str.encode),
    st.floats().map(lambda f: repr(f).encode()),
    st.integers().map(lambda n: str(n).encode()),
    st.sampled_from([b"1", b"on", b"OFF", b"press", b" 50 ", b"1e999", b"nan", b"-0"]),
)


@FUZZ
@given(
    st.one_of(st.sampled_from(sorted(BY_NAME)), st.text(max_size=20)),
    st.sampled_from([None, *Target]),
    st.text(alphabet=string.hexdigits + "/#+", max_size=16),
    PAYLOADS,
    st.booleans(),
)
def test_command_parser_raises_only_command_errors(
    name: str, target: Target | None, serial: str, payload: bytes, retained: bool
) -> None:
    request = CommandRequest(target, serial, name, payload, retained)
    try:
        command = check(request)
    except CommandError:
        return
    if command is None:
        return
    spec = command.spec
    assert command.value == command.value  # finite numbers only: never NaN
    if spec.value is not ValueKind.NUMBER:
        assert command.value in {0.0, 1.0}
    elif spec.minimum is not None and spec.maximum is not None:
        assert spec.minimum <= command.value <= spec.maximum


# --- the options loader ---------------------------------------------------------------------------

_KEYS: Final = sorted(
    {spec.key for spec in OPTIONS}
    | {field.key for spec in OPTIONS for field in getattr(spec, "fields", ())}
)
JSON_SCALARS: Final = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**18, max_value=10**400),
    st.floats(),
    st.text(max_size=30),
)
JSON_LIKE: Final = st.recursive(
    JSON_SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(_KEYS), st.text(max_size=10)), children, max_size=5
        ),
    ),
    max_leaves=20,
)


def _fields_of(key: str) -> list[str]:
    spec = next(spec for spec in OPTIONS if spec.key == key)
    return [field.key for field in getattr(spec, "fields", ())]


#: Values at the edges of what a number option takes.
EDGE_VALUES: Final = st.sampled_from(
    [math.inf, -math.inf, math.nan, 1e308, -0.0, 0.5, 10**30, -1, 0, 65536, True, "", " 1 "]
)
#: A value for an option: often an edge value or one scalar, else anything.
OPTION_VALUES: Final = st.one_of(EDGE_VALUES, JSON_SCALARS, JSON_LIKE)


def _section(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=dict.fromkeys(keys, OPTION_VALUES))


#: Documents shaped like options: known keys, sections and DTU lists with any values.
OPTION_DOCUMENTS: Final = st.fixed_dictionaries(
    {},
    optional={
        **{spec.key: OPTION_VALUES for spec in OPTIONS if spec.kind not in {"list", "section"}},
        "dtus": st.one_of(st.lists(_section(_fields_of("dtus")), max_size=3), OPTION_VALUES),
        "mqtt": st.one_of(_section(_fields_of("mqtt")), OPTION_VALUES),
        "web": st.one_of(_section(_fields_of("web")), OPTION_VALUES),
    },
)


@FUZZ
@given(st.one_of(JSON_LIKE, OPTION_DOCUMENTS))
def test_options_loader_raises_only_options_errors(document: Any) -> None:
    try:
        validate(document)
    except OptionsError:
        return


# --- the web API's body reader ----------------------------------------------------------------


def _read(body: bytes, content_type: str) -> Any:
    """``read_body`` of a POST request with ``body``, without a server."""

    async def main() -> Any:
        stream = streams.StreamReader(
            mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop()
        )
        stream.feed_data(body)
        stream.feed_eof()
        request = make_mocked_request(
            "POST",
            "/api/command",
            headers={"Content-Type": content_type, "Content-Length": str(len(body))},
            payload=stream,
        )
        return await read_body(request)

    return asyncio.run(main())


BODIES: Final = st.one_of(
    st.binary(max_size=200),
    JSON_LIKE.map(lambda doc: repr(doc).encode()),
    st.sampled_from([1, 10, 100, 30_000]).map(lambda n: b"[" * n + b"]" * n),
    st.text(max_size=100).map(str.encode),
)


@settings(FUZZ, max_examples=max(EXAMPLES // 4, 20))
@given(BODIES, st.sampled_from(["application/json", "application/json; charset=latin-1"]))
def test_web_body_reader_raises_only_bad_request(body: bytes, content_type: str) -> None:
    try:
        document = _read(body, content_type)
    except BadRequest:
        return
    assert isinstance(document, dict)
