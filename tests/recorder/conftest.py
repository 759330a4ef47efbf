"""Databases for the recorder's tests: one suite, run against SQLite, PostgreSQL and MariaDB.

Every test that asks for ``db_url`` runs once per backend, each time on an empty database:
a file in ``tmp_path`` for SQLite; on the PostgreSQL and MariaDB servers, a uniquely named
database created for the test module, emptied before each test and dropped after the module
(creating a PostgreSQL database costs about 0.3 s, emptying one 0.02 s).
A server that cannot be reached skips its tests with the reason, or fails them when
``CI=true``, where all three must run. The servers default to the local ones;
``VENDHUB_TEST_POSTGRESQL_URL`` and ``VENDHUB_TEST_MARIADB_URL`` point elsewhere (at an
existing database that the test user may connect to and create databases from).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
from sqlalchemy import URL, Engine, NullPool, create_engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from tests.recorder.helpers import RecorderRows
from vendhub.recorder.engine import (
    describe_connection_error,
    make_engine,
    normalize_db_url,
    redact_url,
)
from vendhub.recorder.migrate import upgrade_database
from vendhub.recorder.models import Base

BACKENDS = ("sqlite", "postgresql", "mariadb")
SERVER_URLS = {
    "postgresql": os.environ.get(
        "VENDHUB_TEST_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test"
    ),
    "mariadb": os.environ.get("VENDHUB_TEST_MARIADB_URL", "mysql://root@127.0.0.1:3306/test"),
}
SERVER_CONNECT_TIMEOUT_SECONDS = 3


def server_unavailable(reason: str) -> NoReturn:
    """Skip the test, or fail it on CI, where every backend must be there."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: every database backend must be reachable)", pytrace=False)
    pytest.skip(reason)


@dataclass(slots=True)
class ServerDatabase:
    """A database of the tests' own on a PostgreSQL or MariaDB server."""

    backend: str
    name: str
    url: URL
    fresh: bool = True


class DatabaseServers:
    """Creates, empties and drops uniquely named databases on the test servers."""

    def __init__(self) -> None:
        self._admin_engines: dict[str, Engine] = {}
        self._unreachable: dict[str, str] = {}

    def create(self, backend: str) -> ServerDatabase:
        admin = self._admin(backend)
        name = f"vendhub_test_{uuid.uuid4().hex[:12]}"
        with admin.connect() as connection:
            connection.exec_driver_sql(self._create_statement(backend, name))
        return ServerDatabase(backend, name, admin.url.set(database=name))

    def empty(self, database: ServerDatabase) -> None:
        """Remove everything from the database, as if it had just been created."""
        if database.fresh:
            database.fresh = False
            return
        if database.backend == "postgresql":
            # Connected to the database itself: a schema is dropped within its database.
            inside = create_engine(database.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
            try:
                with inside.connect() as connection:
                    connection.exec_driver_sql(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                    connection.exec_driver_sql("DROP SCHEMA public CASCADE")
                    connection.exec_driver_sql("CREATE SCHEMA public")
            finally:
                inside.dispose()
        else:
            with self._admin("mariadb").connect() as connection:
                self._end_mariadb_sessions(database.name)
                connection.exec_driver_sql(f"DROP DATABASE `{database.name}`")
                connection.exec_driver_sql(self._create_statement("mariadb", database.name))

    def drop(self, database: ServerDatabase) -> None:
        with self._admin(database.backend).connect() as connection:
            if database.backend == "postgresql":
                connection.exec_driver_sql(
                    f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)'
                )
            else:
                self._end_mariadb_sessions(database.name)
                connection.exec_driver_sql(f"DROP DATABASE IF EXISTS `{database.name}`")

    def close(self) -> None:
        for engine in self._admin_engines.values():
            engine.dispose()

    @staticmethod
    def _create_statement(backend: str, name: str) -> str:
        if backend == "postgresql":
            return f'CREATE DATABASE "{name}"'
        return f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"

    def _end_mariadb_sessions(self, name: str) -> None:
        """End connections a test left open, which would block DROP DATABASE."""
        with self._admin("mariadb").connect() as connection:
            session_ids = connection.exec_driver_sql(
                "SELECT id FROM information_schema.processlist"
                " WHERE db = %s AND id <> CONNECTION_ID()",
                (name,),
            ).scalars()
            for session_id in session_ids:
                connection.exec_driver_sql(f"KILL {int(session_id)}")

    def _admin(self, backend: str) -> Engine:
        if backend in self._unreachable:
            server_unavailable(self._unreachable[backend])
        if backend not in self._admin_engines:
            url = normalize_db_url(SERVER_URLS[backend]).update_query_dict(
                {"connect_timeout": str(SERVER_CONNECT_TIMEOUT_SECONDS)}
            )
            engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
            try:
                with engine.connect():
                    pass
            except DBAPIError as err:
                self._unreachable[backend] = (
                    f"{backend} is not reachable at {redact_url(SERVER_URLS[backend])}: "
                    f"{describe_connection_error(engine, err)}"
                )
                server_unavailable(self._unreachable[backend])
            self._admin_engines[backend] = engine
        return self._admin_engines[backend]


def delete_all_rows(engine: Engine) -> None:
    """Empty every recorder table, children first."""
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())


@pytest.fixture(scope="session")
def database_servers() -> Iterator[DatabaseServers]:
    servers = DatabaseServers()
    yield servers
    servers.close()


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The backend under test: ``sqlite``, ``postgresql`` or ``mariadb``."""
    return str(request.param)


@pytest.fixture(scope="module")
def server_database(
    backend: str, database_servers: DatabaseServers
) -> Iterator[ServerDatabase | None]:
    """The module's own database on the backend's server (None for SQLite)."""
    if backend == "sqlite":
        yield None
        return
    database = database_servers.create(backend)
    yield database
    database_servers.drop(database)


@pytest.fixture
def db_url(
    server_database: ServerDatabase | None, database_servers: DatabaseServers, tmp_path: Path
) -> str:
    """The URL of an empty database for this test, on each backend in turn."""
    if server_database is None:
        return f"sqlite:///{tmp_path / 'recorder_test.db'}"
    database_servers.empty(server_database)
    return server_database.url.render_as_string(hide_password=False)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on the test's empty database, disposed after the test."""
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def migrated_engine(engine: Engine) -> Engine:
    """An engine on the test's own database, which holds the newest schema."""
    upgrade_database(engine)
    return engine


@pytest.fixture(scope="module")
def shared_schema_engine(
    backend: str,
    database_servers: DatabaseServers,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Engine]:
    """An engine on a database with the newest schema, migrated once for the module."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('shared_schema') / 'recorder_test.db'}"
        database = None
    else:
        database = database_servers.create(backend)
        url = database.url.render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade_database(engine)
    yield engine
    engine.dispose()
    if database is not None:
        database_servers.drop(database)


@pytest.fixture
def schema_engine(shared_schema_engine: Engine) -> Iterator[Engine]:
    """The module's migrated database, with no rows at the start of each test.

    Faster than ``migrated_engine`` where a test only reads and writes rows.
    """
    yield shared_schema_engine
    delete_all_rows(shared_schema_engine)


@pytest.fixture
def session(migrated_engine: Engine) -> Iterator[Session]:
    """An ORM session on a migrated, empty database of the current backend."""
    with Session(migrated_engine) as session:
        yield session


@pytest.fixture
def rows(session: Session) -> RecorderRows:
    """Helpers that insert realistic recorder rows through ``session``."""
    return RecorderRows(session)
