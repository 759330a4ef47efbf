"""Migrations on every backend: create, upgrade keeping rows, refuse what is too new."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from setuptools import find_packages
from sqlalchemy import Engine, func, inspect, select, text
from sqlalchemy.orm import Session

from tests.conftest import REPO_ROOT
from vendhub.recorder.engine import make_engine, redact_url
from vendhub.recorder.migrate import (
    MIGRATIONS_DIR,
    DatabaseTooNew,
    MigrationError,
    MigrationResult,
    UnversionedDatabase,
    alembic_config,
    compare_column_types,
    head_revision,
    upgrade_database,
)
from vendhub.recorder.models import Base, Payment, PaymentStatusChange, VendTransaction

FIRST_REVISION = "0001"
TS = 1_764_140_000.5


def migrate_to(engine: Engine, revision: str) -> None:
    """Bring the database to an older revision, as an older VendHub would have left it."""
    config = alembic_config()
    with engine.connect() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        connection.commit()


def database_revision(engine: Engine) -> tuple[str, ...]:
    with engine.connect() as connection:
        return tuple(MigrationContext.configure(connection).get_current_heads())


def snapshot(engine: Engine) -> dict[str, Any]:
    """The tables, their row counts and the revision: what 'left untouched' compares."""
    with engine.connect() as connection:
        tables = sorted(inspect(connection).get_table_names())
        rows = {
            table: connection.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar()
            for table in tables
        }
    return {"tables": tables, "rows": rows, "revision": database_revision(engine)}


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_empty_database_is_created_then_found_current(engine: Engine) -> None:
    head = head_revision()
    assert upgrade_database(engine) == MigrationResult("created", None, head)
    assert upgrade_database(engine) == MigrationResult("current", head, head)
    assert database_revision(engine) == (head,)
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())


def test_the_migrated_schema_matches_the_models(migrated_engine: Engine) -> None:
    with migrated_engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": compare_column_types}
        )
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_a_database_of_the_first_schema_is_upgraded_keeping_its_rows(engine: Engine) -> None:
    migrate_to(engine, FIRST_REVISION)
    assert "payment_status_changes" not in inspect(engine).get_table_names()
    with Session(engine) as session:
        transaction = VendTransaction(
            machine_id="lobby_1",
            source_event_id="evt-1",
            slot_code="A1",
            product="COLA-330",
            price=150,
            currency="EUR",
            outcome="completed",
            ts=TS,
            recorded_ts=TS,
        )
        session.add(transaction)
        session.flush()
        session.add(
            Payment(
                transaction_id=transaction.id,
                machine_id="lobby_1",
                provider="sumup",
                method="card",
                amount=150,
                currency="EUR",
                status="captured",
                source_event_id="tx-9",
                created_ts=TS,
                updated_ts=TS,
            )
        )
        session.commit()

    result = upgrade_database(engine)

    assert result == MigrationResult("upgraded", FIRST_REVISION, head_revision())
    assert str(result) == f"upgraded from revision {FIRST_REVISION} to {head_revision()}"
    with Session(engine) as session:
        payment = session.scalars(select(Payment)).one()
        assert payment.amount == 150
        assert payment.transaction_id is not None
        assert session.scalars(select(VendTransaction.source_event_id)).all() == ["evt-1"]
        session.add(PaymentStatusChange(payment_id=payment.id, status="captured", ts=TS))
        session.commit()
        assert session.scalar(select(func.count()).select_from(PaymentStatusChange)) == 1


def test_a_database_from_a_newer_vendhub_is_refused_and_left_untouched(
    engine: Engine, db_url: str, backend: str
) -> None:
    upgrade_database(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
        connection.execute(text("CREATE TABLE future_things (id INTEGER PRIMARY KEY)"))
        connection.execute(text("INSERT INTO future_things (id) VALUES (1)"))
    before = snapshot(engine)
    engine.dispose()
    sqlite_file = Path(engine.url.database or "") if backend == "sqlite" else None
    digest = file_digest(sqlite_file) if sqlite_file else None

    newer = make_engine(db_url)
    try:
        with pytest.raises(DatabaseTooNew) as caught:
            upgrade_database(newer)
    finally:
        newer.dispose()

    message = str(caught.value)
    assert redact_url(db_url) in message
    assert "revision 0099" in message
    assert f"newest it knows is {head_revision()}" in message
    assert "Upgrade VendHub" in message
    assert snapshot(engine) == before
    if sqlite_file:
        engine.dispose()
        assert file_digest(sqlite_file) == digest


def test_recorder_tables_without_a_revision_are_refused(engine: Engine) -> None:
    Base.metadata.tables["users"].create(engine)
    with pytest.raises(UnversionedDatabase, match=r"holds recorder tables \(users\)"):
        upgrade_database(engine)
    assert database_revision(engine) == ()


def test_a_failed_upgrade_is_reported_and_keeps_the_revision(engine: Engine) -> None:
    migrate_to(engine, FIRST_REVISION)
    with engine.begin() as connection:  # in the way of revision 0002
        connection.execute(text("CREATE TABLE payment_status_changes (id INTEGER PRIMARY KEY)"))
    with pytest.raises(MigrationError, match=rf"from revision {FIRST_REVISION} to"):
        upgrade_database(engine)
    assert database_revision(engine) == (FIRST_REVISION,)


def test_hubs_starting_together_migrate_once(db_url: str) -> None:
    engines = [make_engine(db_url) for _ in range(2)]
    results: list[MigrationResult] = []
    errors: list[BaseException] = []
    start = threading.Barrier(len(engines))

    def start_hub(engine: Engine) -> None:
        start.wait()
        try:
            results.append(upgrade_database(engine))
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=start_hub, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for engine in engines:
        engine.dispose()
    assert errors == []
    assert sorted(result.action for result in results) == ["created", "current"]


def test_the_migrations_are_installed_with_the_package() -> None:
    packages = find_packages(str(REPO_ROOT), include=["vendhub", "vendhub.*"])
    assert {"vendhub.recorder.migrations", "vendhub.recorder.migrations.versions"} <= set(packages)
    revision_files = sorted(path.name for path in (MIGRATIONS_DIR / "versions").glob("0*.py"))
    assert revision_files[0] == "0001_initial.py"
    assert len(revision_files) >= 2
