"""Throw-away databases on the local servers for benchmarks: SQLite always, others if reachable."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

SERVERS = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/{database}",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306/{database}?charset=utf8mb4",
}
ADMIN_DATABASE = {"postgresql": "postgres", "mariadb": "mysql"}


@dataclass(frozen=True)
class Backend:
    """A database a benchmark may use: its name, URL, and why it is missing if it is."""

    name: str
    url: str | None
    unavailable: str | None = None


@contextlib.contextmanager
def temporary_database(name: str, folder: Path) -> Iterator[Backend]:
    """A fresh empty database on backend ``name``, dropped afterwards."""
    if name == "sqlite":
        yield Backend(name, f"sqlite:///{folder / 'bench.db'}")
        return
    database = f"vendhub_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(
        SERVERS[name].format(database=ADMIN_DATABASE[name]), isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as connection:
            connection.execute(text(f"CREATE DATABASE {database}"))
    except OperationalError as error:
        admin.dispose()
        yield Backend(name, None, str(error.orig).strip().splitlines()[0])
        return
    try:
        yield Backend(name, SERVERS[name].format(database=database))
    finally:
        with admin.connect() as connection:
            if name == "postgresql":
                connection.execute(text(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
            else:
                connection.execute(text(f"DROP DATABASE IF EXISTS {database}"))
        admin.dispose()
