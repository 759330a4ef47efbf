"""The wallet's tests run on each recorder backend: the recorder tests' database fixtures."""

from tests.recorder.conftest import (  # noqa: F401 - fixtures, found by pytest by name
    backend,
    database_servers,
    db_url,
    server_database,
)
