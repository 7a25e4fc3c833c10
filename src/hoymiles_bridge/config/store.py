"""Where the bridge's options live, for the web UI's configuration page.

A :class:`ConfigStore` reads the stored options, saves new ones and restarts
the bridge so that they apply:

* :class:`~hoymiles_bridge.addon.config_store.SupervisorConfigStore` (in
  ``addon/``) - the add-on: the Supervisor keeps the options;
* :class:`FileConfigStore` - standalone: the ``--config`` file (YAML or JSON
  by its suffix), replaced atomically with the old one kept as
  ``<file>.bak``, both readable by their owner only (:data:`FILE_MODE`); the
  restart is the service's in-process one;
* :class:`ReadOnlyConfigStore` - nowhere to save (the bridge was given its
  options in code, as in tests).

Every save validates with the same schema as the service
(:func:`~hoymiles_bridge.config.options.normalize`) before anything is written,
and nothing is written half-way.

Secrets (:data:`~hoymiles_bridge.config.options.SECRET_KEYS`) never leave the
process: :func:`masked_values` shows a stored secret as
:data:`~hoymiles_bridge.protocol.jsonify.MASK`; a submitted value still equal
to the mask keeps the stored secret, an empty one removes it. The MQTT
password is sent to the broker, so it is kept only for the same broker: when
``mqtt.host``, ``mqtt.port`` or ``mqtt.tls`` change, :func:`prepare` refuses
a masked password (a page that could save options must not be able to point
the bridge, and its stored password, at a broker of its own). The cloud
password likewise stays only for the same ``cloud.username`` and
``cloud.base_url``. The web
password is only compared with what browsers send, never sent anywhere, so
it stays when ``web.host`` or ``web.port`` change.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import yaml

from hoymiles_bridge.config.options import (
    SECRET_KEYS,
    Options,
    OptionsError,
    WebOptions,
    clean_option,
    form_values,
    from_clean,
    normalize,
    storable,
    unreadable_value,
)
from hoymiles_bridge.errors import HoymilesError
from hoymiles_bridge.protocol.secrets import MASK

_LOGGER = logging.getLogger(__name__)

Mode = Literal["addon", "file", "readonly"]
#: The options that say where the MQTT password is sent, and how.
BROKER_KEYS: Final = ("mqtt.host", "mqtt.port", "mqtt.tls")
#: The message on ``mqtt.password`` when the broker changes and the password is masked.
NEW_BROKER_MESSAGE: Final = "enter the password again to change the broker"
#: The options that say where the cloud password's hash is sent, and for whom.
CLOUD_KEYS: Final = ("cloud.username", "cloud.base_url")
NEW_CLOUD_MESSAGE: Final = "enter the password again to change the cloud account or base URL"

#: Mode of every file the store writes, the options file and its backup: they
#: may hold passwords, so only their owner may read them.
FILE_MODE: Final = 0o600


class ConfigStoreError(HoymilesError):
    """Saving or restarting failed; the message is one sentence for the user.

    ``status`` is the HTTP status the web API answers with.
    """

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class ConfigStore(Protocol):
    """Reads, saves and applies the options; see the module docs."""

    @property
    def mode(self) -> Mode:
        """``addon``, ``file`` or ``readonly``."""
        ...

    @property
    def source(self) -> str:
        """Where the options live, for people ("the Supervisor", a file path)."""
        ...

    @property
    def can_save(self) -> bool: ...

    @property
    def can_restart(self) -> bool: ...

    @property
    def process_web(self) -> WebOptions | None:
        """The ``web`` options the process listens with, when they can change (standalone).

        A change to them needs a restart of the process.
        """
        ...

    async def load(self) -> dict[str, Any]:
        """The stored options as stored (secrets included: never send them anywhere)."""
        ...

    async def save(self, submitted: dict[str, Any]) -> Options:
        """Validate ``submitted`` (secrets may be masked) and store it; the new options.

        Raises :class:`OptionsError` for invalid options (nothing stored) and
        :class:`ConfigStoreError` when they cannot be stored.
        """
        ...

    async def restart(self) -> None:
        """Apply the stored options; raises :class:`ConfigStoreError` (or OptionsError)."""
        ...

    async def close(self) -> None: ...


# --- secrets ---------------------------------------------------------------------


def _lookup(data: Any, key: str) -> Any:
    node = data
    for part in key.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def masked_values(raw: Any, *, addon: bool) -> dict[str, Any]:
    """The form's values for ``raw`` stored options, every stored secret shown as the mask."""
    values = form_values(raw, addon=addon)
    for key in SECRET_KEYS:
        section, _, name = key.partition(".")
        holder = values.get(section)
        if isinstance(holder, dict) and name in holder:
            holder[name] = MASK if holder[name] not in (None, "") else ""
    return values


def merge_secrets(submitted: dict[str, Any], stored: Any) -> dict[str, Any]:
    """``submitted`` with each masked secret replaced by the stored one ("" removes it).

    It does not ask whether the stored MQTT password may go to the submitted
    broker: :func:`prepare` does, before it merges.
    """
    merged = copy.deepcopy(submitted)
    for key in SECRET_KEYS:
        section, _, name = key.partition(".")
        holder = merged.get(section)
        if not isinstance(holder, dict) or name not in holder:
            continue
        if holder[name] == MASK:
            holder[name] = _lookup(stored, key)
        elif holder[name] == "":
            holder[name] = None
    return merged


def secret_values(data: Any) -> list[str]:
    """The non-empty secrets in an options document (to keep them out of messages)."""
    found = [_lookup(data, key) for key in SECRET_KEYS]
    return [v for v in found if isinstance(v, str) and v and v != MASK]


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every secret in ``secrets`` replaced by the mask."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


#: What :func:`_broker` gives for an invalid value (unequal to every valid one).
_INVALID: Final = object()


def _broker(data: Any, key: str) -> Any:
    """The clean value of the broker option ``key`` in ``data``; ``_INVALID`` when invalid."""
    try:
        return clean_option(key, data)
    except OptionsError:
        return _INVALID


def keeps_password_for_another_broker(submitted: Any, stored: Any) -> bool:
    """Whether ``submitted`` keeps the stored MQTT password for another broker.

    True when its ``mqtt.password`` is the mask (keep the stored one), a
    password is stored, and ``mqtt.host``, ``mqtt.port`` or ``mqtt.tls``
    differ from the stored ones once both are validated (a value left out is
    its default). A submitted broker option that is invalid does not count:
    its own message says what is wrong. A stored one that is invalid counts
    as different from any valid one.
    """
    return _keeps_secret_elsewhere(submitted, stored, "mqtt.password", BROKER_KEYS)


def _keeps_secret_elsewhere(
    submitted: Any, stored: Any, secret: str, keys: tuple[str, ...]
) -> bool:
    """Whether ``submitted`` keeps the stored ``secret`` while one of ``keys`` changes."""
    if _lookup(submitted, secret) != MASK:
        return False
    if _lookup(stored, secret) in (None, ""):
        return False  # nothing stored, nothing to send anywhere
    for key in keys:
        new = _broker(submitted, key)
        if new is not _INVALID and new != _broker(stored, key):
            return True
    return False


def prepare(submitted: Any, stored: Any) -> tuple[dict[str, Any], Options]:
    """Merge the secrets and validate: the clean document and the options.

    Raises :class:`OptionsError` with a message per field, including
    :data:`NEW_BROKER_MESSAGE` on ``mqtt.password`` when the submitted options
    keep the stored MQTT password for another broker
    (:func:`keeps_password_for_another_broker`), and :data:`NEW_CLOUD_MESSAGE`
    on ``cloud.password`` when they keep the cloud password for another
    account or ``base_url``.
    """
    if not isinstance(submitted, dict):
        raise OptionsError(["options: expected a mapping of option names to values"])
    again = []
    if keeps_password_for_another_broker(submitted, stored):
        again.append(f"mqtt.password: {NEW_BROKER_MESSAGE}")
    if _keeps_secret_elsewhere(submitted, stored, "cloud.password", CLOUD_KEYS):
        again.append(f"cloud.password: {NEW_CLOUD_MESSAGE}")
    try:
        clean = normalize(merge_secrets(submitted, stored))
    except OptionsError as err:
        if again:
            raise OptionsError(sorted([*err.problems, *again])) from None
        raise
    if again:
        raise OptionsError(again)
    return clean, from_clean(clean)


def changed_keys(before: Any, after: dict[str, Any]) -> list[str]:
    """The top-level option names whose value differs (names only, never values)."""
    old = before if isinstance(before, dict) else {}
    return sorted(k for k in set(old) | set(after) if old.get(k) != after.get(k))


def options_document(options: Options) -> dict[str, Any]:
    """:class:`Options` as an options document (tuples as lists)."""
    data: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(options)))
    return data


# --- standalone: a file ------------------------------------------------------------


def _parse(path: Path, text: str) -> Any:
    if path.suffix.lower() == ".json":
        return json.loads(text)
    return yaml.safe_load(text)


def _dump(path: Path, data: dict[str, Any]) -> str:
    if path.suffix.lower() == ".json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    text: str = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
    return text


def write_atomically(path: Path, text: str, *, backup: bool = True) -> None:
    """Replace ``path`` by ``text`` in one step, keeping the old file as ``<path>.bak``.

    The text goes to a temporary file in the same directory, is flushed to
    disk, gets the mode :data:`FILE_MODE` (whatever the old file's mode was:
    options files hold passwords) and the old file's owner (when allowed),
    and only then replaces the file. On any error the file is as it was and
    no temporary file is left behind.
    """
    target = Path(os.path.realpath(path))  # replace a symlink's target, not the link
    directory = target.parent
    try:
        old = target.stat()
    except FileNotFoundError:
        old = None
    handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    temp = Path(temp_name)
    replaced = False
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, FILE_MODE)
        if old is not None:
            with contextlib.suppress(PermissionError):
                os.chown(temp, old.st_uid, old.st_gid)
            if backup:
                _backup(target)
        os.replace(temp, target)
        replaced = True
    finally:
        if not replaced:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
    _fsync_directory(directory)


def _backup(target: Path) -> None:
    """Copy ``target`` to ``<target>.bak`` (itself replaced atomically).

    The copy has the mode :data:`FILE_MODE` from its first byte (the
    temporary file is created so, and only the contents and times are
    copied), and ``target``'s owner when allowed.
    """
    bak = target.with_name(target.name + ".bak")
    handle, temp_name = tempfile.mkstemp(prefix=f".{bak.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    replaced = False
    try:
        os.chmod(temp_name, FILE_MODE)
        shutil.copyfile(target, temp_name)
        old = target.stat()
        os.utime(temp_name, ns=(old.st_atime_ns, old.st_mtime_ns))
        with contextlib.suppress(PermissionError):
            os.chown(temp_name, old.st_uid, old.st_gid)
        os.replace(temp_name, bak)
        replaced = True
    finally:
        if not replaced:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_name)


def _fsync_directory(directory: Path) -> None:
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(handle)
    finally:
        os.close(handle)


class FileConfigStore:
    """The standalone options file (YAML, or JSON when it ends in ``.json``).

    ``restart`` applies the saved file (the service's in-process restart);
    ``web`` is the ``web`` options the process listens with.
    """

    mode: Mode = "file"
    can_save = True

    def __init__(
        self,
        path: str | Path,
        *,
        restart: Callable[[], Awaitable[None]] | None = None,
        web: WebOptions | None = None,
    ) -> None:
        self.path = Path(path)
        self.source = str(self.path)
        self._restart = restart
        self.process_web = web
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"FileConfigStore({str(self.path)!r})"

    @property
    def can_restart(self) -> bool:
        return self._restart is not None

    def _read(self) -> Any:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else "not UTF-8"
            raise ConfigStoreError(f"Cannot read {self.path}: {reason}.", status=500) from None
        kind = "JSON" if self.path.suffix.lower() == ".json" else "YAML"
        try:
            data = _parse(self.path, text)
        except (json.JSONDecodeError, yaml.YAMLError):
            raise ConfigStoreError(
                f"{self.path} is not valid {kind}; fix it by hand first, nothing was changed.",
                status=409,
            ) from None
        except (ValueError, RecursionError) as err:
            raise ConfigStoreError(
                f"{self.path} is not valid {kind} ({unreadable_value(err)}); "
                "fix it by hand first, nothing was changed.",
                status=409,
            ) from None
        return data if data is not None else {}

    async def load(self) -> dict[str, Any]:
        data = self._read()
        return data if isinstance(data, dict) else {}

    async def save(self, submitted: dict[str, Any]) -> Options:
        async with self._lock:
            stored = self._read()
            clean, options = prepare(submitted, stored)
            text = _dump(self.path, storable(clean, addon=False))
            try:
                await asyncio.to_thread(write_atomically, self.path, text)
            except OSError as err:
                raise ConfigStoreError(
                    f"Cannot write {self.path}: {err.strerror or err}; nothing was changed.",
                    status=500,
                ) from None
            return options

    async def restart(self) -> None:
        if self._restart is None:
            raise ConfigStoreError(
                "This bridge cannot restart itself; restart the process to apply the file.",
                status=409,
            )
        await self._restart()

    async def close(self) -> None:
        return None


# --- nowhere to save ------------------------------------------------------------------


class ReadOnlyConfigStore:
    """The running bridge's options, shown but not saved anywhere."""

    mode: Mode = "readonly"
    source = "the running bridge (started without an options file)"
    can_save = False
    can_restart = False
    process_web: WebOptions | None = None

    def __init__(self, running: Callable[[], Options | None]) -> None:
        self._running = running

    def __repr__(self) -> str:
        return "ReadOnlyConfigStore()"

    async def load(self) -> dict[str, Any]:
        options = self._running()
        return options_document(options) if options is not None else {}

    async def save(self, submitted: dict[str, Any]) -> Options:
        prepare(submitted, await self.load())  # invalid input still gets its field messages
        raise ConfigStoreError(
            "This bridge has no options file to save to; "
            "start it with 'hoymiles-bridge run --config FILE'.",
            status=409,
        )

    async def restart(self) -> None:
        raise ConfigStoreError("This bridge cannot restart itself.", status=409)

    async def close(self) -> None:
        return None


__all__ = [
    "BROKER_KEYS",
    "CLOUD_KEYS",
    "FILE_MODE",
    "NEW_BROKER_MESSAGE",
    "NEW_CLOUD_MESSAGE",
    "ConfigStore",
    "ConfigStoreError",
    "FileConfigStore",
    "ReadOnlyConfigStore",
    "changed_keys",
    "keeps_password_for_another_broker",
    "masked_values",
    "merge_secrets",
    "options_document",
    "prepare",
    "scrub",
    "secret_values",
    "write_atomically",
]
