"""The recorder tests' database fixtures: the ledger tests here run on each recorder backend."""

from tests.recorder.conftest import (  # noqa: F401 - fixtures, found by pytest by name
    backend,
    database_servers,
    db_url,
    server_database,
)
