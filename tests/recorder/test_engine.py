"""Engines: URLs and drivers, redaction, SQLite's settings, waiting for a database."""

from __future__ import annotations

import logging
import socket
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, make_url

from vendhub.recorder.engine import (
    DatabaseDriverMissing,
    DatabaseUnavailable,
    DatabaseUrlError,
    backend_name,
    backoff_delay,
    connect_with_retry,
    default_db_url,
    make_engine,
    redact_url,
)


def closed_port() -> int:
    """A local TCP port that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_default_database_is_next_to_the_configuration(tmp_path: Path) -> None:
    url = default_db_url(tmp_path)
    assert url == f"sqlite:///{tmp_path.resolve()}/vendhub.db"
    assert make_url(url).database == str(tmp_path.resolve() / "vendhub.db")


@pytest.mark.parametrize(
    ("db_url", "drivername", "query"),
    [
        ("postgresql://vendhub:pw@db/fleet", "postgresql+psycopg", {}),
        ("postgres://vendhub:pw@db/fleet", "postgresql+psycopg", {}),
        ("mysql://vendhub:pw@db/fleet", "mysql+pymysql", {"charset": "utf8mb4"}),
        ("mariadb://vendhub:pw@db/fleet", "mysql+pymysql", {"charset": "utf8mb4"}),
        ("mysql+pymysql://db/fleet?charset=utf8mb3", "mysql+pymysql", {"charset": "utf8mb3"}),
        ("postgresql+psycopg://db/fleet", "postgresql+psycopg", {}),
        ("sqlite:///vendhub.db", "sqlite", {}),
    ],
)
def test_short_schemes_map_to_the_installed_drivers(
    db_url: str, drivername: str, query: dict[str, str]
) -> None:
    engine = make_engine(db_url)
    try:
        assert engine.url.drivername == drivername
        assert dict(engine.url.query) == query
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("db_url", "module", "scheme", "extra"),
    [
        ("postgresql://vendhub:hunter22@db/fleet", "psycopg", "postgresql+psycopg", "postgresql"),
        ("mariadb://vendhub:hunter22@db/fleet", "pymysql", "mysql+pymysql", "mariadb"),
    ],
)
def test_a_missing_driver_names_the_scheme_and_the_extra(
    monkeypatch: pytest.MonkeyPatch, db_url: str, module: str, scheme: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import of the driver now fails
    with pytest.raises(DatabaseDriverMissing) as caught:
        make_engine(db_url)
    message = str(caught.value)
    assert f"'{scheme}'" in message
    assert f"'{module}' is not installed" in message
    assert f"pip install 'vendhub[{extra}]'" in message
    assert "hunter22" not in message


def test_a_missing_driver_of_another_scheme_points_to_the_short_scheme(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg2", None)
    with pytest.raises(DatabaseDriverMissing, match=r"'postgresql\+psycopg2'.*'postgresql://'"):
        make_engine("postgresql+psycopg2://db/fleet")


@pytest.mark.parametrize("db_url", ["oracle9://db/fleet", "not a database url"])
def test_an_unusable_url_is_refused_clearly(db_url: str) -> None:
    with pytest.raises(DatabaseUrlError):
        make_engine(db_url)


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("postgresql://vendhub:s3cret@db:5432/fleet", "postgresql://vendhub:***@db:5432/fleet"),
        ("mysql+pymysql://root:p%40ss@db/fleet", "mysql+pymysql://root:***@db/fleet"),
        (
            "postgresql://vendhub@db/fleet?password=s3cret",
            "postgresql://vendhub@db/fleet?password=***",
        ),
        ("mysql://root@127.0.0.1/test", "mysql://root@127.0.0.1/test"),
        ("sqlite:////var/lib/vendhub/vendhub.db", "sqlite:////var/lib/vendhub/vendhub.db"),
    ],
)
def test_redact_url_hides_every_password(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted
    assert redact_url(make_url(url)) == redacted


def test_backend_name(engine: Engine, backend: str) -> None:
    assert backend_name(engine) == backend
    with engine.connect() as connection:
        assert backend_name(connection) == backend


def test_sqlite_settings_are_in_effect_on_every_connection(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'vendhub.db'}")
    expected = {
        "journal_mode": "wal",
        "synchronous": 1,  # NORMAL
        "foreign_keys": 1,
        "busy_timeout": 10_000,
        "temp_store": 2,  # MEMORY
        "cache_size": -8_192,
        "wal_autocheckpoint": 2_000,
        "journal_size_limit": 16 * 1024 * 1024,
    }
    try:
        with engine.connect() as first, engine.connect() as second:
            for connection in (first, second):
                found = {
                    pragma: connection.exec_driver_sql(f"PRAGMA {pragma}").scalar()
                    for pragma in expected
                }
                assert found == expected
    finally:
        engine.dispose()


def test_an_in_memory_sqlite_database_works(tmp_path: Path) -> None:
    engine = make_engine("sqlite://")
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


def test_backoff_doubles_with_jitter_up_to_the_maximum() -> None:
    for attempt, nominal in [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0)]:
        delays = [backoff_delay(attempt, 1.0, 60.0) for _ in range(200)]
        assert all(0.75 * nominal <= delay <= 1.25 * nominal for delay in delays)
        assert len(set(delays)) > 1
    assert all(45.0 <= backoff_delay(attempt, 1.0, 60.0) <= 60.0 for attempt in (7, 50, 10_000))


@pytest.mark.parametrize("scheme", ["postgresql", "mariadb"])
def test_retry_backs_off_against_a_closed_port_and_logs_each_failure(
    scheme: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(f"{scheme}://vendhub:hunter22@127.0.0.1:{closed_port()}/fleet")
    retries: list[tuple[int, float]] = []
    try:
        with (
            caplog.at_level(logging.ERROR, logger="vendhub.recorder.engine"),
            pytest.raises(DatabaseUnavailable) as caught,
        ):
            connect_with_retry(
                engine,
                attempts=3,
                first_delay=0.01,
                max_delay=0.015,
                on_retry=lambda attempt, delay, _error: retries.append((attempt, delay)),
            )
    finally:
        engine.dispose()
    assert [attempt for attempt, _ in retries] == [1, 2]
    assert 0.0075 <= retries[0][1] <= 0.0125
    assert 0.015 * 0.75 <= retries[1][1] <= 0.015  # doubled, then capped
    assert len(caplog.records) == 3
    for record in caplog.records:
        assert "vendhub:***@127.0.0.1" in record.getMessage()
        assert "refused" in record.getMessage().lower()
    assert "after 3 attempts" in str(caught.value)
    assert "hunter22" not in caplog.text + str(caught.value)


def test_retry_succeeds_once_the_database_can_be_opened(tmp_path: Path) -> None:
    folder = tmp_path / "not_yet"
    engine = make_engine(f"sqlite:///{folder / 'vendhub.db'}")
    retries: list[int] = []

    def create_folder(attempt: int, _delay: float, _error: BaseException) -> None:
        retries.append(attempt)
        folder.mkdir()

    try:
        assert connect_with_retry(engine, first_delay=0.01, on_retry=create_folder)
    finally:
        engine.dispose()
    assert retries == [1]


def test_retry_stops_when_asked(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'missing' / 'vendhub.db'}")
    stop = threading.Event()
    try:
        connected = connect_with_retry(
            engine, first_delay=30.0, on_retry=lambda *_: stop.set(), stop_event=stop
        )
    finally:
        engine.dispose()
    assert connected is False


def test_retry_connects_at_once_to_a_reachable_database(engine: Engine) -> None:
    assert connect_with_retry(engine, attempts=1)
