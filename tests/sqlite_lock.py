"""Another process's lock on a SQLite file: the database is there, and takes no writes."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def locked_sqlite(path: Path) -> Iterator[None]:
    """Hold an exclusive transaction on ``path`` while the block runs; release it after."""
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        blocker.execute("COMMIT")
        blocker.close()
