"""Store: versioned JSON files under ``<config>/.storage/``, written atomically, saved with delay.

Each file holds ``{"version": N, "minor_version": M, "key": key, "data": ...}``. A file of an
older version is migrated when loaded; a file of a newer major version is refused and never
overwritten; an unreadable file is moved aside, never deleted.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import tempfile
from collections.abc import Awaitable, Callable
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from vendhub.const import EVENT_HUB_FINAL_WRITE, STORAGE_DIR
from vendhub.core.errors import HubNotRunning, VendHubError
from vendhub.core.events import Event, Unsubscribe
from vendhub.core.hub import CoreState
from vendhub.util.dt import utcnow

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)
_T = TypeVar("_T")
_VALID_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

MigrateFunc = Callable[[int, int, Any], Awaitable[Any]]
"""``async_migrate(old_major, old_minor, old_data) -> data`` in the Store's current format."""


class StorageError(VendHubError):
    """A storage file cannot be read, migrated or written safely."""


class _CorruptFile(ValueError):
    """The file exists but is not a storage envelope."""


class Store(Generic[_T]):
    """One JSON file of versioned data, e.g. ``Store(hub, "core.device_registry", 1)``.

    A newer *minor* version of the same major version is loaded as is: minor versions only
    add what older code may ignore. Anything that stops a load from reading the file (a newer
    major version, a failed migration) also stops every later save, so the file survives.
    """

    def __init__(
        self,
        hub: Hub,
        key: str,
        version: int,
        *,
        minor_version: int = 1,
        async_migrate: MigrateFunc | None = None,
    ) -> None:
        if not _VALID_KEY.match(key):
            raise ValueError(
                f"invalid storage key {key!r}: use letters, digits, '_', '.' and '-' only"
            )
        self.hub = hub
        self.key = key
        self.version = version
        self.minor_version = minor_version
        self.path: Path = hub.path(STORAGE_DIR, key)
        self.writes = 0
        self._async_migrate = async_migrate
        self._pending_data_func: Callable[[], _T] | None = None
        self._delay_handle: asyncio.TimerHandle | None = None
        self._delay_deadline = 0.0
        self._unsub_final_write: Unsubscribe | None = None
        self._write_lock = asyncio.Lock()
        self._load_error: StorageError | None = None

    def __repr__(self) -> str:
        return f"<Store {self.key} v{self.version}.{self.minor_version}>"

    # ---- loading -----------------------------------------------------------------------

    async def async_load(self) -> _T | None:
        """Return the stored data (migrated to this version), or None if there is none.

        Data waiting for a delayed save is newer than the file, so it is returned instead.
        """
        if self._pending_data_func is not None:
            return self._pending_data_func()
        envelope = await self.hub.async_add_executor_job(self._read_envelope)
        if envelope is None:
            return None
        major, minor, data = envelope["version"], envelope["minor_version"], envelope["data"]
        if major > self.version:
            raise self._refuse(
                StorageError(
                    f"{self.path} was written by a newer VendHub (storage version "
                    f"{major}.{minor}); this version reads up to {self.version}.x. "
                    "The file was left untouched; upgrade VendHub to use it."
                )
            )
        if major == self.version and minor >= self.minor_version:
            return data
        if self._async_migrate is None:
            raise self._refuse(
                StorageError(
                    f"{self.path} has storage version {major}.{minor}, this VendHub uses "
                    f"{self.version}.{self.minor_version} and has no migration for it; "
                    "the file was left untouched"
                )
            )
        try:
            migrated = await self._async_migrate(major, minor, data)
        except Exception as error:
            raise self._refuse(
                StorageError(
                    f"migrating {self.path} from storage version {major}.{minor} to "
                    f"{self.version}.{self.minor_version} failed: {error}; "
                    "the file was left untouched"
                )
            ) from error
        _LOGGER.info(
            "Migrated %s from storage version %d.%d to %d.%d",
            self.path,
            major,
            minor,
            self.version,
            self.minor_version,
        )
        return migrated

    def _refuse(self, error: StorageError) -> StorageError:
        self._load_error = error
        return error

    def _read_envelope(self) -> dict[str, Any] | None:
        """Read and check the file (in a worker thread); move it aside if it is corrupt."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return _parse_envelope(raw)
        except ValueError as error:
            aside = self._move_aside()
            _LOGGER.error(
                "Storage file %s is corrupt (%s); moved it to %s and started without it",
                self.path,
                error,
                aside,
            )
            return None

    def _move_aside(self) -> Path:
        stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
        aside = self.path.with_name(f"{self.key}.corrupt-{stamp}")
        counter = 1
        while aside.exists():
            counter += 1
            aside = self.path.with_name(f"{self.key}.corrupt-{stamp}-{counter}")
        os.rename(self.path, aside)
        return aside

    # ---- saving ------------------------------------------------------------------------

    async def async_save(self, data: _T) -> None:
        """Write ``data`` now; it replaces any delayed save. Do not change ``data`` afterwards."""
        self._check_writable()
        self._pending_data_func = None
        self._cancel_delay_timer()
        await self._async_write(data)

    def async_delay_save(self, data_func: Callable[[], _T], delay_seconds: float) -> None:
        """Save ``data_func()`` within ``delay_seconds``; many calls make one write.

        A later call replaces ``data_func`` but never pushes the write further out, so a
        steady stream of changes is still saved at least every ``delay_seconds``. A pending
        save is written when the hub fires ``hub_final_write`` or on ``async_flush``.
        """
        self._check_writable()
        self._pending_data_func = data_func
        self._ensure_final_write_listener()
        if self.hub.state is CoreState.stopping:
            return  # the final write comes in a moment
        if self.hub.state is CoreState.final_write:
            self._start_pending_write()
            return
        deadline = self.hub.loop.time() + max(0.0, delay_seconds)
        if self._delay_handle is not None:
            if self._delay_deadline <= deadline:
                return
            self._delay_handle.cancel()
        self._delay_deadline = deadline
        self._delay_handle = self.hub.loop.call_at(deadline, self._start_pending_write)

    async def async_flush(self) -> None:
        """Write a pending delayed save now and wait for any write in progress."""
        await self._async_write_pending()
        async with self._write_lock:
            pass

    def _check_writable(self) -> None:
        if self._load_error is not None:
            raise StorageError(f"refusing to overwrite {self.path}: {self._load_error}")

    def _ensure_final_write_listener(self) -> None:
        if self._unsub_final_write is None:
            self._unsub_final_write = self.hub.bus.async_listen_once(
                EVENT_HUB_FINAL_WRITE, self._on_final_write
            )

    def _on_final_write(self, _event: Event) -> None:
        self._unsub_final_write = None
        self._start_pending_write()

    def _cancel_delay_timer(self) -> None:
        if self._delay_handle is not None:
            self._delay_handle.cancel()
            self._delay_handle = None

    def _start_pending_write(self) -> None:
        self._cancel_delay_timer()
        if self._pending_data_func is None:
            return
        try:
            self.hub.async_create_task(self._async_write_pending_logged(), name=f"save {self.key}")
        except HubNotRunning:
            _LOGGER.warning(
                "The hub has stopped; changes to %s are not saved until async_flush is awaited",
                self.key,
            )

    async def _async_write_pending_logged(self) -> None:
        try:
            await self._async_write_pending()
        except Exception:
            _LOGGER.exception("Could not save %s; will try again at the next save", self.path)

    async def _async_write_pending(self) -> None:
        data_func = self._pending_data_func
        if data_func is None:
            return
        self._pending_data_func = None
        self._cancel_delay_timer()
        try:
            await self._async_write(data_func())
        except Exception:
            if self._pending_data_func is None:
                self._pending_data_func = data_func
            raise
        if self._pending_data_func is None and self._unsub_final_write is not None:
            self._unsub_final_write()
            self._unsub_final_write = None

    async def _async_write(self, data: _T) -> None:
        envelope = {
            "version": self.version,
            "minor_version": self.minor_version,
            "key": self.key,
            "data": data,
        }
        # In a task of its own: a caller cancelled while the worker thread writes must not let
        # the lock go before the file is replaced, or a later save could land first and then
        # be overwritten with these older data.
        await asyncio.shield(asyncio.ensure_future(self._async_write_locked(envelope)))

    async def _async_write_locked(self, envelope: dict[str, Any]) -> None:
        async with self._write_lock:
            await self.hub.async_add_executor_job(self._write_envelope, envelope)
            self.writes += 1

    def _write_envelope(self, envelope: dict[str, Any]) -> None:
        """Write atomically (in a worker thread): temp file, fsync, rename, fsync the folder."""
        try:
            text = json.dumps(envelope, indent=2, ensure_ascii=False)
        except (TypeError, ValueError) as error:
            raise StorageError(f"cannot save {self.key}: data is not JSON: {error}") from error
        folder = self.path.parent
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor, temp_name = tempfile.mkstemp(dir=folder, prefix=f".{self.key}.", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as temp_file:
                temp_file.write(text)
                temp_file.flush()
                os.fsync(temp_file.fileno())
            os.chmod(temp_name, 0o600)
            os.replace(temp_name, self.path)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(temp_name)
            raise
        _fsync_folder(folder)


def _parse_envelope(raw: bytes) -> dict[str, Any]:
    envelope = json.loads(raw)
    if not isinstance(envelope, dict) or "data" not in envelope:
        raise _CorruptFile("not a storage file: no 'data' member")
    version = envelope.get("version")
    minor_version = envelope.setdefault("minor_version", 1)
    if type(version) is not int or type(minor_version) is not int:
        raise _CorruptFile("'version' and 'minor_version' must be whole numbers")
    return envelope


def read_stored_data(config_dir: Path, key: str, version: int) -> Any | None:
    """The data of ``.storage/<key>`` read without a hub (for the command line); None when the
    file is missing, unreadable, corrupt or of another major version. It is only read: never
    moved aside nor written, as a running hub's Store would."""
    try:
        envelope = _parse_envelope((Path(config_dir) / STORAGE_DIR / key).read_bytes())
    except (OSError, ValueError):
        return None
    return envelope["data"] if envelope["version"] == version else None


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


__all__ = ["MigrateFunc", "StorageError", "Store", "read_stored_data"]
