"""Alembic migrations of the recorder's schema, run by ``vendhub.recorder.migrate``.

After changing the models, from the repository root::

    .venv/bin/python -c "
    from alembic import command
    from vendhub.recorder.engine import make_engine
    from vendhub.recorder.migrate import alembic_config, upgrade_database
    upgrade_database(make_engine('sqlite:////tmp/scratch.db'))
    command.revision(alembic_config('sqlite:////tmp/scratch.db'), autogenerate=True,
                     rev_id='0003', message='what changed')"

then edit the file it writes (``versions/0003_what_changed.py``): pass
``**MYSQL_TABLE_OPTIONS`` to every new table as the earlier revisions do, and run
``tests/recorder/test_migrations.py`` (it compares the migrated schema with the models on
SQLite, PostgreSQL and MariaDB). ``command.check(...)`` in place of ``command.revision``
only reports whether the models and the migrations differ.
"""
