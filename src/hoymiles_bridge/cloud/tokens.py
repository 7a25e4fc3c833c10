"""The cloud's session token kept in a file between runs, readable by its owner only.

The cloud allows only so many logins a day, and each start of the bridge or
of ``hoymiles-bridge cloud`` would otherwise cost one. The file holds the
token and a key (a hash of the account and the hosts, no e-mail address), so
a token is only reused for the account and hosts it belongs to. A file that
cannot be read or written is no error: the client logs in instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Final

from hoymiles_bridge.cloud.client import MAX_TOKEN, Credentials, Endpoints

_LOGGER = logging.getLogger(__name__)

#: The file's name in the bridge's state directory.
TOKEN_FILE_NAME: Final = "cloud-token.json"  # noqa: S105 - a file name
#: Mode of the file and of a directory made for it.
FILE_MODE: Final = 0o600
DIR_MODE: Final = 0o700


def account_key(credentials: Credentials, endpoints: Endpoints) -> str:
    """Which account and hosts a token belongs to: a hash, no e-mail address in the file."""
    text = f"{credentials.username.strip().lower()}\n{endpoints.auth}\n{endpoints.data}"
    return hashlib.sha256(text.encode()).hexdigest()


class TokenFile:
    """One token file (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"TokenFile({str(self.path)!r})"

    def load(self, key: str) -> str | None:
        """The kept token of ``key``'s account, or ``None``."""
        try:
            text = self.path.read_text(encoding="utf-8")
            data = json.loads(text) if len(text) <= 2 * MAX_TOKEN else None
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("key") != key:
            return None
        token = data.get("token")
        if isinstance(token, str) and token and len(token) <= MAX_TOKEN:
            return token
        return None

    def save(self, key: str, token: str | None) -> bool:
        """Keep ``token`` for ``key``'s account (nothing for ``None``); whether it was written."""
        if not token:
            return False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
            descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump({"key": key, "token": token}, handle)
            os.chmod(self.path, FILE_MODE)  # an older file may have had another mode
        except OSError as err:
            _LOGGER.warning(
                "cloud: cannot keep the session token in %s (%s)", self.path, err.strerror
            )
            return False
        return True


__all__ = ["TOKEN_FILE_NAME", "TokenFile", "account_key"]
