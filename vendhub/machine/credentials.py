"""Machine credentials: one MQTT user per machine, plus the hub's own user, issued by the hub.

The store is ``<config>/.storage/machine.credentials`` (a ``Store`` file, mode 0600). It holds
only password *hashes*, in Mosquitto's ``$7$`` format (PBKDF2-SHA512, 101 iterations, 12-byte
salt, as ``mosquitto_passwd`` writes them), so the same hash goes straight into a Mosquitto
password file (see ``vendhub.machine.mosquitto_files``). A password is shown once, when it is
made, and never stored, logged or shown again; a lost one is replaced with ``--rotate``.

A machine's username is its machine id. The hub connects as ``vendhub-hub``.

``CredentialStore`` is the async API on a running ``Hub``; ``add_machine``, ``remove_machine``,
``list_machines``, ``ensure_hub_user`` and ``load_credentials`` are blocking helpers for the
command line that take the configuration folder (and a file lock, so two commands at once do
not lose each other's change).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import fcntl
import hashlib
import hmac
import os
import secrets
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from vendhub.const import STORAGE_DIR
from vendhub.core.errors import VendHubError
from vendhub.core.hub import Hub
from vendhub.helpers.storage import Store
from vendhub.machine.protocol import is_machine_id
from vendhub.util.dt import utcnow

STORAGE_KEY: Final = "machine.credentials"
STORAGE_VERSION: Final = 1
HUB_USERNAME: Final = "vendhub-hub"
"""The MQTT user the hub connects as; it cannot clash with a machine id (no ``-`` there)."""

HASH_ITERATIONS: Final = 101
"""What ``mosquitto_passwd`` uses for ``$7$`` hashes."""
SALT_BYTES: Final = 12
PASSWORD_BYTES: Final = 24  # secrets.token_urlsafe(24): 32 characters, 192 bits

_T = TypeVar("_T")


class CredentialError(VendHubError):
    """A credential cannot be issued or removed (bad id, already there, not there)."""


# ---- password hashes -------------------------------------------------------------------


def new_password() -> str:
    """A fresh random password: 32 URL-safe characters."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


def hash_password(
    password: str, *, salt: bytes | None = None, iterations: int = HASH_ITERATIONS
) -> str:
    """``$7$<iterations>$<salt>$<hash>``: PBKDF2-SHA512 in base64, as ``mosquitto_passwd``."""
    if salt is None:
        salt = secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return f"$7${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches a ``$7$`` hash; False for any other or malformed hash."""
    parts = encoded.split("$")
    if len(parts) != 5 or parts[0] != "" or parts[1] != "7":
        return False
    try:
        iterations = int(parts[2])
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except (ValueError, binascii.Error):
        return False
    if iterations < 1 or not salt or not expected:
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return hmac.compare_digest(digest, expected)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


# ---- the store -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MachineCredential:
    """What is known of a machine's credential: never the password itself."""

    machine_id: str
    created: str
    """ISO 8601 UTC time the current password was issued."""

    @property
    def username(self) -> str:
        return self.machine_id


@dataclass(frozen=True, slots=True)
class Credentials:
    """A snapshot of the store: ``users`` maps every MQTT username to its ``$7$`` hash."""

    machines: tuple[MachineCredential, ...]
    users: dict[str, str]

    @property
    def hub_username(self) -> str | None:
        return HUB_USERNAME if HUB_USERNAME in self.users else None


def _empty() -> dict[str, Any]:
    return {"hub": None, "machines": {}}


class CredentialStore:
    """The credential store of a running hub (or of a throwaway one, for the command line)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._store: Store[dict[str, Any]] = Store(hub, STORAGE_KEY, STORAGE_VERSION)
        self._data: dict[str, Any] | None = None

    async def _async_data(self) -> dict[str, Any]:
        if self._data is None:
            self._data = await self._store.async_load() or _empty()
            self._data.setdefault("hub", None)
            self._data.setdefault("machines", {})
        return self._data

    async def async_add_machine(self, machine_id: str, *, rotate: bool = False) -> tuple[str, str]:
        """Issue a password for ``machine_id``; return ``(username, password)``.

        An existing machine is refused unless ``rotate``; a rotation replaces its password
        (the old one stops working once the broker reloads its password file).
        """
        if not is_machine_id(machine_id):
            raise CredentialError(
                f"invalid machine id {machine_id!r}: expected 1 to 64 lowercase letters a-z, "
                "digits and '_'"
            )
        data = await self._async_data()
        machines: dict[str, Any] = data["machines"]
        if machine_id in machines and not rotate:
            raise CredentialError(
                f"machine {machine_id} already has credentials; use --rotate to issue a new "
                "password (the old one stops working)"
            )
        password = new_password()
        machines[machine_id] = {"password_hash": hash_password(password), "created": _now()}
        await self._store.async_save(data)
        return machine_id, password

    async def async_remove_machine(self, machine_id: str) -> None:
        """Forget a machine's credentials; it cannot connect once the broker reloads."""
        data = await self._async_data()
        if machine_id not in data["machines"]:
            raise CredentialError(f"machine {machine_id!r} has no credentials")
        del data["machines"][machine_id]
        await self._store.async_save(data)

    async def async_ensure_hub_user(self, *, rotate: bool = False) -> str | None:
        """Make sure the hub's user exists; return its new password, or None if it existed.

        With ``rotate`` a new password is always issued and returned.
        """
        data = await self._async_data()
        if data["hub"] is not None and not rotate:
            return None
        password = new_password()
        data["hub"] = {
            "username": HUB_USERNAME,
            "password_hash": hash_password(password),
            "created": _now(),
        }
        await self._store.async_save(data)
        return password

    async def async_credentials(self) -> Credentials:
        """Every machine (ids and times) and every user's hash, sorted by id."""
        data = await self._async_data()
        machines = tuple(
            MachineCredential(machine_id, entry["created"])
            for machine_id, entry in sorted(data["machines"].items())
        )
        users = {m.machine_id: data["machines"][m.machine_id]["password_hash"] for m in machines}
        if data["hub"] is not None:
            users[HUB_USERNAME] = data["hub"]["password_hash"]
        return Credentials(machines, users)

    async def async_check(self, username: str, password: str) -> bool:
        """Whether ``username`` and ``password`` are valid (for an embedded broker's auth)."""
        users = (await self.async_credentials()).users
        encoded = users.get(username)
        return encoded is not None and verify_password(password, encoded)


FileStamp = tuple[int, int, int]
"""What changes when the credential store file is written: modification time, size, inode."""


def credentials_file_stamp(hub: Hub) -> FileStamp | None:
    """The store file's stamp now (None while there is no file): a cheap ``stat`` that tells
    whether ``vendhub machine add`` / ``remove`` changed it since it was last read."""
    try:
        found = os.stat(hub.path(STORAGE_DIR, STORAGE_KEY))
    except OSError:
        return None
    return (found.st_mtime_ns, found.st_size, found.st_ino)


def _now() -> str:
    return utcnow().replace(microsecond=0).isoformat()


# ---- blocking helpers for the command line ---------------------------------------------


@contextlib.contextmanager
def _locked(config_dir: Path) -> Iterator[None]:
    folder = config_dir / STORAGE_DIR
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(folder / f"{STORAGE_KEY}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _run(config_dir: Path | str, work: Callable[[CredentialStore], Awaitable[_T]]) -> _T:
    """Run ``work`` on the store of ``config_dir`` in a loop of its own, under the file lock.

    Blocking; from inside a running loop it runs in a worker thread (and still blocks).
    """
    folder = Path(config_dir).resolve()

    async def main() -> _T:
        return await work(CredentialStore(Hub(folder)))

    def blocking() -> _T:
        with _locked(folder):
            return asyncio.run(main())

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return blocking()
    # Called from async code (a test, a plugin): run in a thread with a loop of its own.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(blocking).result()


def add_machine(
    config_dir: Path | str, machine_id: str, *, rotate: bool = False
) -> tuple[str, str]:
    """Issue credentials for ``machine_id``; return ``(username, password)`` (show it once)."""
    return _run(config_dir, lambda store: store.async_add_machine(machine_id, rotate=rotate))


def remove_machine(config_dir: Path | str, machine_id: str) -> None:
    """Forget ``machine_id``'s credentials."""
    _run(config_dir, lambda store: store.async_remove_machine(machine_id))


def list_machines(config_dir: Path | str) -> list[MachineCredential]:
    """The machines with credentials: ids and issue times, never secrets."""
    return list(_run(config_dir, lambda store: store.async_credentials()).machines)


def ensure_hub_user(config_dir: Path | str, *, rotate: bool = False) -> str | None:
    """Create (or with ``rotate`` replace) the hub's user; its new password, else None."""
    return _run(config_dir, lambda store: store.async_ensure_hub_user(rotate=rotate))


def load_credentials(config_dir: Path | str) -> Credentials:
    """A snapshot of every user and hash (for writing the broker's files)."""
    return _run(config_dir, lambda store: store.async_credentials())


__all__ = [
    "HUB_USERNAME",
    "CredentialError",
    "CredentialStore",
    "Credentials",
    "MachineCredential",
    "add_machine",
    "ensure_hub_user",
    "hash_password",
    "list_machines",
    "load_credentials",
    "new_password",
    "remove_machine",
    "verify_password",
]
