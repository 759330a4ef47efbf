"""One hub per configuration folder: ``vendhub run`` holds a lock on ``.storage/hub.lock``.

Two hubs on one folder would record every simulated sale twice, resolve each other's vend
sessions as interrupted by a restart, overwrite each other's ``.storage`` files and drive the
same serial boards. The lock is an ``flock``: the kernel releases it when the process ends,
however it ends, so a hub killed with SIGKILL leaves no stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from vendhub.const import STORAGE_DIR
from vendhub.core.errors import VendHubError

LOCK_FILE = "hub.lock"


class HubAlreadyRunning(VendHubError):
    """Another hub holds the configuration folder, or the folder cannot be written."""


@contextlib.contextmanager
def hold_instance_lock(config_dir: Path) -> Iterator[None]:
    """Hold the folder's lock while the block runs; ``HubAlreadyRunning`` says why not."""
    path = config_dir / STORAGE_DIR / LOCK_FILE
    try:
        path.parent.mkdir(exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as error:
        raise HubAlreadyRunning(
            f"cannot write to the configuration folder {config_dir} ({error.strerror}: "
            f"{error.filename}); the hub keeps its users, machines and sales there: give the "
            "user that runs it write access"
        ) from None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(descriptor, 32).decode(errors="replace").strip() or "unknown"
            raise HubAlreadyRunning(
                f"another VendHub (pid {other}) runs on the configuration folder {config_dir}; "
                "two hubs on one folder would record sales twice and drive the same machines: "
                "stop it first, or give this one its own --config folder"
            ) from None
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(descriptor)  # releases the lock
