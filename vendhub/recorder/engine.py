"""Database URLs and engines for SQLite, PostgreSQL and MariaDB, and waiting for a database."""

from __future__ import annotations

import logging
import random
import re
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
)

from vendhub.core.errors import VendHubError

_LOGGER = logging.getLogger(__name__)

BackendName = Literal["sqlite", "postgresql", "mariadb"]

# Short schemes an operator writes, and the driver each one means.
_DRIVER_FOR_SCHEME = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mysql+pymysql",
}
# The pip extra of VendHub that installs the driver for each backend.
_EXTRA_FOR_BACKEND = {"postgresql": "postgresql", "mysql": "mariadb", "mariadb": "mariadb"}
# The drivers that the extras install.
_EXTRA_DRIVERS = {"postgresql+psycopg", "mysql+pymysql", "mariadb+pymysql"}
_PASSWORD_IN_AUTHORITY = re.compile(r"(://[^:/@]*):[^@/]*@")
_PASSWORD_IN_QUERY = re.compile(r"([?&](?:password|passwd|pwd)=)[^&]*", re.IGNORECASE)

POOL_SIZE = 5
MAX_OVERFLOW = 10
CONNECT_TIMEOUT_SECONDS = 10
# MariaDB closes connections idle for longer than wait_timeout (8 hours by default).
MYSQL_POOL_RECYCLE_SECONDS = 3600

SQLITE_BUSY_TIMEOUT_MS = 10_000
SQLITE_CACHE_SIZE_KIB = 8_192
SQLITE_WAL_AUTOCHECKPOINT_PAGES = 2_000
SQLITE_JOURNAL_SIZE_LIMIT_BYTES = 16 * 1024 * 1024


class DatabaseUrlError(VendHubError, ValueError):
    """A database URL cannot be used: unparsable or an unknown scheme."""


class DatabaseDriverMissing(DatabaseUrlError):
    """The Python package of the driver a database URL asks for is not installed."""


class DatabaseUnavailable(VendHubError):
    """The database could not be reached within the allowed attempts."""


def default_db_url(config_dir: Path) -> str:
    """The SQLite database next to the configuration: ``sqlite:///<config_dir>/vendhub.db``."""
    return f"sqlite:///{(config_dir.resolve() / 'vendhub.db').as_posix()}"


def normalize_db_url(db_url: str | URL) -> URL:
    """Map short schemes to the installed drivers (``postgresql://`` → psycopg 3,
    ``mysql://``/``mariadb://`` → PyMySQL) and make MariaDB connections speak utf8mb4."""
    try:
        url = make_url(db_url)
    except ArgumentError as err:
        raise DatabaseUrlError(f"cannot parse the database URL {redact_url(db_url)}") from err
    if url.drivername in _DRIVER_FOR_SCHEME:
        url = url.set(drivername=_DRIVER_FOR_SCHEME[url.drivername])
    if url.get_backend_name() in ("mysql", "mariadb") and "charset" not in url.query:
        url = url.update_query_dict({"charset": "utf8mb4"})
    return url


def redact_url(url: str | URL) -> str:
    """The URL with its password (in the authority or the query) replaced by ``***``."""
    try:
        rendered = make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        rendered = _PASSWORD_IN_AUTHORITY.sub(r"\1:***@", str(url))
    return _PASSWORD_IN_QUERY.sub(r"\1***", rendered)


def make_engine(
    db_url: str | URL, *, pool_size: int = POOL_SIZE, max_overflow: int = MAX_OVERFLOW
) -> Engine:
    """A synchronous engine for the URL, with the settings each backend needs.

    Raises ``DatabaseUrlError`` for an unusable URL and ``DatabaseDriverMissing``
    (naming the scheme and the pip extra to install) when the driver is not installed.
    Creating the engine does not connect; see ``connect_with_retry``.
    """
    url = normalize_db_url(db_url)
    backend = url.get_backend_name()
    options: dict[str, Any] = {"pool_pre_ping": True}
    connect_args: dict[str, Any] = {}
    if backend == "sqlite":
        # An in-memory database lives in one connection, which SQLAlchemy keeps per thread.
        if url.database not in (None, "", ":memory:") and url.query.get("mode") != "memory":
            options.update(pool_size=pool_size, max_overflow=max_overflow)
    else:
        options.update(pool_size=pool_size, max_overflow=max_overflow)
        if "connect_timeout" not in url.query:
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    if backend in ("mysql", "mariadb"):
        options["pool_recycle"] = MYSQL_POOL_RECYCLE_SECONDS
    if backend == "postgresql" and "application_name" not in url.query:
        connect_args["application_name"] = "vendhub"  # names the hub in pg_stat_activity
    try:
        engine = create_engine(url, connect_args=connect_args, **options)
    except NoSuchModuleError as err:
        raise DatabaseUrlError(
            f"the database URL {redact_url(url)} uses the unknown scheme '{url.drivername}'; "
            "use sqlite:///<path>, postgresql://… or mysql://… (mariadb://…)"
        ) from err
    except ModuleNotFoundError as err:
        raise DatabaseDriverMissing(_missing_driver_message(url, err.name)) from err
    if backend == "sqlite":
        event.listen(engine, "connect", _configure_sqlite_connection)
    return engine


def _missing_driver_message(url: URL, module: str | None) -> str:
    scheme = url.drivername
    package = f"'{module}'" if module else "of its driver"
    extra = _EXTRA_FOR_BACKEND.get(url.get_backend_name())
    if extra and scheme in _EXTRA_DRIVERS:
        remedy = f"install it with: pip install 'vendhub[{extra}]'"
    elif extra:
        remedy = (
            f"install {package}, or use the short scheme '{url.get_backend_name()}://' "
            f"with the driver that pip install 'vendhub[{extra}]' installs"
        )
    else:
        remedy = f"install {package}"
    return (
        f"the database URL {redact_url(url)} uses the scheme '{scheme}', "
        f"but the Python package {package} is not installed; {remedy}"
    )


def _configure_sqlite_connection(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    """Tune each SQLite connection for a Raspberry Pi's SD card.

    WAL lets the history queries read while the writer writes, and with
    ``synchronous=NORMAL`` a commit is one append to the WAL without an fsync: a killed
    process loses nothing committed; a power cut may lose the last commits but never
    corrupts the file. SD cards wear and stall on small random writes, so checkpoints
    (which copy WAL pages into the database at random places) run every ~8 MiB of WAL
    instead of SQLite's ~4 MiB: a page rewritten many times in between (indexes, the
    stock table) is written to the database once. ``journal_size_limit`` above that size
    lets the WAL be reused in place instead of being truncated and regrown, yet bounds it
    after a burst. The page cache stays small (8 MiB) for a Pi with little memory, and
    temporary tables and sorts stay in memory, off the card.
    """
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        _enable_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_SIZE_KIB}")
        cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WAL_AUTOCHECKPOINT_PAGES}")
        cursor.execute(f"PRAGMA journal_size_limit={SQLITE_JOURNAL_SIZE_LIMIT_BYTES}")
    finally:
        cursor.close()


def _enable_wal(cursor: sqlite3.Cursor) -> None:
    """Switch a database to WAL once; SQLite answers a concurrent switch with "database is
    locked" at once, without waiting ``busy_timeout``, so wait here instead."""
    if cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
        return
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if err.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def backend_name(engine: Engine | Connection) -> BackendName:
    """Which backend the engine talks to; MySQL counts as ``mariadb``."""
    dialect = engine.dialect.name
    if dialect == "sqlite":
        return "sqlite"
    if dialect == "postgresql":
        return "postgresql"
    if dialect in ("mysql", "mariadb"):
        return "mariadb"
    raise DatabaseUrlError(f"unsupported database backend '{dialect}'")


def describe_connection_error(engine: Engine, error: BaseException) -> str:
    """The driver's own message on one line, without SQLAlchemy's wrapping or the password."""
    original = error.orig if isinstance(error, DBAPIError) and error.orig else error
    message = " ".join(str(original).split()) or type(original).__name__
    password = engine.url.password
    if password and len(str(password)) >= 4:
        message = message.replace(str(password), "***")
    return message


RetryCallback = Callable[[int, float, BaseException], None]


def connect_with_retry(
    engine: Engine,
    *,
    attempts: int | None = None,
    first_delay: float = 1.0,
    max_delay: float = 60.0,
    on_retry: RetryCallback | None = None,
    stop_event: threading.Event | None = None,
) -> bool:
    """Connect to the database, retrying with exponential backoff and jitter until it answers.

    Each failure is logged as an error naming the (redacted) URL and the driver's message,
    then ``on_retry(attempt, delay, error)`` is called before waiting ``delay`` seconds.
    ``attempts=None`` tries forever. Returns True once connected, False if ``stop_event``
    was set first; raises ``DatabaseUnavailable`` when the attempts are used up.
    """
    if attempts is not None and attempts < 1:
        raise ValueError("attempts must be at least 1")
    attempt = 0
    while stop_event is None or not stop_event.is_set():
        attempt += 1
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except (DBAPIError, OSError) as err:
            reason = describe_connection_error(engine, err)
            if attempts is not None and attempt >= attempts:
                _LOGGER.error(
                    "Cannot connect to the database %s (attempt %d of %d, giving up): %s",
                    redact_url(engine.url),
                    attempt,
                    attempts,
                    reason,
                )
                raise DatabaseUnavailable(
                    f"cannot connect to the database {redact_url(engine.url)} "
                    f"after {attempt} attempts: {reason}"
                ) from err
            delay = backoff_delay(attempt, first_delay, max_delay)
            _LOGGER.error(
                "Cannot connect to the database %s (attempt %d): %s; retrying in %.1f s",
                redact_url(engine.url),
                attempt,
                reason,
                delay,
            )
            if on_retry is not None:
                on_retry(attempt, delay, err)
            if stop_event is None:
                time.sleep(delay)
            elif stop_event.wait(delay):
                return False
        else:
            if attempt > 1:
                _LOGGER.info(
                    "Connected to the database %s after %d attempts",
                    redact_url(engine.url),
                    attempt,
                )
            return True
    return False


def backoff_delay(attempt: int, first_delay: float, max_delay: float) -> float:
    """The wait after failed attempt ``attempt`` (1-based): doubling from ``first_delay``
    up to ``max_delay``, each scaled by a random 75 to 125 % so that many hubs do not retry
    in step."""
    base = min(max_delay, first_delay * 2 ** min(attempt - 1, 32))
    return min(max_delay, base * random.uniform(0.75, 1.25))


def is_connection_error(error: BaseException) -> bool:
    """Whether ``error`` says the database is out of reach (retry later), not that it refused
    the data (which no retry changes)."""
    if isinstance(error, OperationalError | InterfaceError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated
