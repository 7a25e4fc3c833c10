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

The Hoymiles cloud (``cloud/``) raises :class:`CloudError` and its children:
:class:`CloudUnavailableError` (no answer, a 5xx, a timeout: try again later),
:class:`CloudResponseError` (an answer that is not what the cloud documents),
:class:`CloudRejectedError` (the cloud said no), and among those the login
errors (:class:`CloudLoginError`; :class:`CloudLoginCapError` for the daily
limit) that must not be retried at once, and :class:`CloudTokenError`.
"""

from __future__ import annotations

import asyncio
from datetime import datetime


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


# --- cloud layer -------------------------------------------------------------


class CloudError(HoymilesError):
    """Something went wrong talking to the Hoymiles cloud."""


class CloudUnavailableError(CloudError):
    """The cloud did not answer usefully: no connection, a timeout or a 5xx."""


class CloudResponseError(CloudError):
    """The cloud answered something that is not what it documents (bad JSON, a missing field)."""


class CloudRejectedError(CloudError):
    """The cloud answered with a non-zero ``status``.

    ``reason`` tells what its message meant (``token``, ``credentials``,
    ``daily_cap``, ``home_app_only``, ... or ``other``).
    """

    def __init__(self, message: str, *, status: str = "", reason: str = "other") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class CloudLoginError(CloudRejectedError):
    """The login was refused for a reason that retrying will not change.

    A wrong password, an unknown account, a password to renew in the app, an
    account that only the S-Miles Home app may use. The client does not try
    again with the same credentials.
    """


class CloudLoginCapError(CloudLoginError):
    """The account reached the cloud's daily number of logins.

    ``retry_at`` is when the client will try again (the next UTC day).
    """

    def __init__(self, message: str, *, retry_at: datetime, status: str = "") -> None:
        super().__init__(message, status=status, reason="daily_cap")
        self.retry_at = retry_at


class CloudTokenError(CloudRejectedError):
    """The cloud refused the session token, also after one new login."""


class CloudWriteRefusedError(CloudError, InvalidArgumentError):
    """A settings write while ``cloud.allow_writes`` is off, or with a value out of range."""
