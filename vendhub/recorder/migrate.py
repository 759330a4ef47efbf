"""Create or upgrade the recorder's schema on start, and refuse a database that is too new."""

from __future__ import annotations

import logging
import sqlite3
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Connection, Engine, LargeBinary, inspect, text
from sqlalchemy.dialects.mysql import TINYBLOB
from sqlalchemy.types import TypeEngine

from vendhub.core.errors import VendHubError
from vendhub.recorder.engine import backend_name, describe_connection_error, redact_url
from vendhub.recorder.models import Base

_LOGGER = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Serialises hubs that start at the same time against one PostgreSQL or MariaDB database.
_LOCK_NAME = "vendhub.recorder.migrate"
_POSTGRESQL_LOCK_KEY = zlib.crc32(_LOCK_NAME.encode())
_MARIADB_LOCK_TIMEOUT_SECONDS = 600


class MigrationError(VendHubError):
    """The schema cannot be brought to the version this VendHub needs."""


class DatabaseTooNew(MigrationError):
    """The database was written by a newer VendHub; it is left as it is."""

    def __init__(self, database: str, revision: str, newest_known: str) -> None:
        self.database = database
        self.revision = revision
        self.newest_known = newest_known
        super().__init__(
            f"the database {database} has schema revision {revision}, which this version "
            f"of VendHub does not know (the newest it knows is {newest_known}): it was "
            "written by a newer VendHub. Upgrade VendHub to use this database; "
            "it has been left unchanged."
        )


class UnversionedDatabase(MigrationError):
    """The database holds recorder tables but no schema revision, so it cannot be upgraded."""


@dataclass(frozen=True, slots=True)
class MigrationResult:
    """What ``upgrade_database`` did."""

    action: Literal["created", "upgraded", "current"]
    from_revision: str | None
    to_revision: str

    def __str__(self) -> str:
        if self.action == "created":
            return f"created at revision {self.to_revision}"
        if self.action == "upgraded":
            return f"upgraded from revision {self.from_revision} to {self.to_revision}"
        return f"current at revision {self.to_revision}"


def alembic_config(db_url: str | None = None) -> Config:
    """An Alembic configuration for the recorder's migrations, without any alembic.ini."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if db_url is not None:
        config.set_main_option("sqlalchemy.url", db_url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest schema revision this version of VendHub knows."""
    head = _script_directory(alembic_config()).get_current_head()
    assert head is not None, "the recorder has no migrations"
    return head


def upgrade_database(engine: Engine) -> MigrationResult:
    """Create the schema in an empty database or upgrade it to the newest revision.

    Raises ``DatabaseTooNew`` without changing anything when the database carries a
    revision this code does not know, ``UnversionedDatabase`` when it holds recorder
    tables without a revision, and ``MigrationError`` when a migration step fails
    (SQLite and PostgreSQL then roll back the whole upgrade; MariaDB cannot roll back
    schema changes).
    """
    config = alembic_config()
    script = _script_directory(config)
    head = script.get_current_head()
    assert head is not None, "the recorder has no migrations"
    known = {revision.revision for revision in script.walk_revisions()}
    database = redact_url(engine.url)
    with engine.connect() as connection, _exclusive_schema_access(connection):
        current = MigrationContext.configure(connection).get_current_heads()
        unknown = sorted(set(current) - known)
        if unknown:
            raise DatabaseTooNew(database, ", ".join(unknown), head)
        if current == (head,):
            return MigrationResult("current", head, head)
        if not current:
            _refuse_unversioned_tables(connection, database)
        from_revision = ", ".join(current) or None
        config.attributes["connection"] = connection
        try:
            command.upgrade(config, "heads")
            _check_foreign_keys(connection)
            connection.commit()
        except MigrationError:
            raise
        except Exception as err:
            step = (
                f"upgrading the database {database} from revision {from_revision} to {head}"
                if current
                else f"creating the schema (revision {head}) in the database {database}"
            )
            advice = (
                "; MariaDB cannot undo schema changes, so restore a backup of the database "
                "if VendHub still fails once the cause is fixed"
                if backend_name(engine) == "mariadb"
                else "; nothing was changed"
            )
            raise MigrationError(
                f"{step} failed: {describe_connection_error(engine, err)}{advice}"
            ) from err
    result = MigrationResult("upgraded" if current else "created", from_revision, head)
    _LOGGER.info("Database %s %s", database, result)
    return result


def compare_column_types(
    _context: MigrationContext,
    _inspected_column: Column[Any],
    _metadata_column: Column[Any],
    inspected_type: TypeEngine[Any],
    metadata_type: TypeEngine[Any],
) -> bool | None:
    """Alembic's type comparison, minus a reflection quirk: MariaDB creates a
    ``LargeBinary(16)`` as ``BLOB(16)``, which it stores and reports as ``TINYBLOB``."""
    if (
        isinstance(inspected_type, TINYBLOB)
        and isinstance(metadata_type, LargeBinary)
        and metadata_type.length is not None
        and metadata_type.length < 256
    ):
        return False
    return None


def _script_directory(config: Config) -> ScriptDirectory:
    return ScriptDirectory.from_config(config)


def _refuse_unversioned_tables(connection: Connection, database: str) -> None:
    present = set(inspect(connection).get_table_names()) & set(Base.metadata.tables)
    if present:
        raise UnversionedDatabase(
            f"the database {database} holds recorder tables ({', '.join(sorted(present))}) "
            "but no schema revision, so VendHub cannot tell how to upgrade it; "
            "point db_url at an empty database or restore one that VendHub created"
        )


def _check_foreign_keys(connection: Connection) -> None:
    """SQLite migrations run with foreign keys off (tables get copied); check them after."""
    if backend_name(connection) != "sqlite":
        return
    violations = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if violations:
        tables = sorted({str(row[0]) for row in violations})
        raise MigrationError(f"the migration broke foreign keys in: {', '.join(tables)}")


@contextmanager
def _exclusive_schema_access(connection: Connection) -> Iterator[None]:
    """Hold the schema for this connection alone until the block ends.

    SQLite: one ``BEGIN IMMEDIATE`` transaction (the write lock, and the schema changes
    become atomic), with foreign keys off as SQLite asks for while tables are rebuilt.
    PostgreSQL: a transaction-scoped advisory lock. MariaDB: a named lock.
    Whatever the block did not commit is rolled back.
    """
    backend = backend_name(connection)
    if backend == "sqlite":
        with _sqlite_write_transaction(connection):
            yield
    elif backend == "postgresql":
        try:
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _POSTGRESQL_LOCK_KEY}
            )
            yield
        finally:
            connection.rollback()
    else:
        acquired = connection.execute(
            text("SELECT GET_LOCK(:name, :timeout)"),
            {"name": _LOCK_NAME, "timeout": _MARIADB_LOCK_TIMEOUT_SECONDS},
        ).scalar()
        if acquired != 1:
            raise MigrationError(
                "another VendHub has been migrating the database "
                f"{redact_url(connection.engine.url)} for more than "
                f"{_MARIADB_LOCK_TIMEOUT_SECONDS} s"
            )
        connection.commit()  # the lock stays; the reads that follow see the newest schema
        try:
            yield
        finally:
            connection.rollback()
            connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": _LOCK_NAME})
            connection.commit()


@contextmanager
def _sqlite_write_transaction(connection: Connection) -> Iterator[None]:
    driver_connection = connection.connection.driver_connection
    assert isinstance(driver_connection, sqlite3.Connection)
    isolation_level = driver_connection.isolation_level
    # Take transaction control from pysqlite, which opens no transaction for DDL.
    driver_connection.isolation_level = None
    try:
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        yield
    finally:
        connection.rollback()
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.commit()
        driver_connection.isolation_level = isolation_level
