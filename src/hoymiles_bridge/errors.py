"""The one exception tree of the package.

Every error the package raises on purpose derives from :class:`HoymilesError`.
Callers are expected to handle:

* :class:`FrameError` and its children - a frame on the wire is malformed;
  the stream resynchronises by itself, the frame is lost.
* :class:`DtuConnectionError` and its children - the TCP session is gone
  (refused, closed, displaced by another client); reconnecting may help.
* :class:`DtuTimeoutError` - the DTU did not answer in time.
* :class:`DtuRejectedError` - the DTU answered with a non-zero error code.

:class:`InvalidArgumentError` signals a caller mistake (a limit of 140 %).
"""

from __future__ import annotations

import asyncio


class HoymilesError(Exception):
    """Root of every error raised by hoymiles_bridge."""


class InvalidArgumentError(HoymilesError, ValueError):
    """A caller passed a value outside what the protocol allows."""


# --- protocol layer -------------------------------------------------------


class ProtocolError(HoymilesError):
    """Something on the wire does not follow the protocol."""


class FrameError(ProtocolError):
    """A frame is malformed. ``raw`` holds the offending bytes when known."""

    def __init__(self, message: str, raw: bytes = b"") -> None:
        super().__init__(message)
        self.raw = raw


class BadMagicError(FrameError):
    """The frame does not start with ``HM``."""


class FrameLengthError(FrameError):
    """The length field is impossible: too small, or above the hard maximum."""


class TruncatedFrameError(FrameError):
    """Fewer bytes than the header announces."""


class CrcMismatchError(FrameError):
    """The CRC-16/MODBUS in the header does not match the payload."""

    def __init__(self, message: str, raw: bytes = b"", *, expected: int, actual: int) -> None:
        super().__init__(message, raw)
        self.expected = expected
        self.actual = actual


class PayloadDecodeError(ProtocolError):
    """The payload is not a valid protobuf of the message the tag names."""


class InvalidSerialError(PayloadDecodeError):
    """A reply names a device by a serial number that breaks the serial rule.

    The rule is :data:`hoymiles_bridge.protocol.devices.SERIAL_PATTERN`; a
    serial that breaks it never reaches a model, a topic or a page.
    """


class EncryptionError(ProtocolError):
    """Encryption is required, or a payload failed AES-GCM authentication.

    On a real DTU this usually means ``enc_rand`` changed (the DTU rebooted).
    """


class UnknownMessageError(ProtocolError):
    """A message type or tag that the registry does not know."""


# --- dtu layer --------------------------------------------------------------


class DtuConnectionError(HoymilesError):
    """The TCP session to the DTU could not be opened or was lost."""


class DtuDisplacedError(DtuConnectionError):
    """The DTU closed our session because another client connected.

    A DTU serves one client at a time; a new connection (often the S-Miles
    app) closes the previous one. Back off instead of fighting for the slot.
    """


class DtuTimeoutError(HoymilesError, asyncio.TimeoutError):
    """The DTU did not answer within the timeout."""


class DtuRejectedError(HoymilesError):
    """The DTU answered, but with a non-zero ``err_code``."""

    def __init__(self, message: str, *, code: int) -> None:
        super().__init__(message)
        self.code = code


class InvalidStateError(HoymilesError):
    """The operation is not allowed in the object's current state."""
