"""Alembic's environment for the recorder's schema.

``vendhub.recorder.migrate`` passes an open connection in ``config.attributes["connection"]``
and owns its transaction; otherwise the ``sqlalchemy.url`` option names the database.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from vendhub.recorder.engine import make_engine
from vendhub.recorder.migrate import compare_column_types
from vendhub.recorder.models import Base


def _run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite changes most columns by copying the table; batch mode does that for it.
        render_as_batch=True,
        compare_type=compare_column_types,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run() -> None:
    config = context.config
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_migrations(connection)
        return
    db_url = config.get_main_option("sqlalchemy.url")
    if not db_url:
        raise RuntimeError("run the migrations through vendhub.recorder.migrate")
    if context.is_offline_mode():
        context.configure(url=db_url, target_metadata=Base.metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(db_url)
    try:
        with engine.connect() as own_connection:
            _run_migrations(own_connection)
            own_connection.commit()
    finally:
        engine.dispose()


_run()
