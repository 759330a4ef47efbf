"""The recorder when things go wrong: SIGKILL, a database that goes away, one that is too new."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from tests.plugins.conftest import write_integration
from tests.sqlite_lock import locked_sqlite
from vendhub.bootstrap import async_start_hub, prepare
from vendhub.core.hub import Hub
from vendhub.recorder import engine as recorder_engine
from vendhub.recorder.engine import make_engine, normalize_db_url
from vendhub.recorder.migrate import upgrade_database
from vendhub.recorder.models import CashCollection, States, StockMovement, VendTransaction
from vendhub.recorder.recorder import Recorder, RecorderConfig

ACK_LOGGER = """
import os
from vendhub.plugins import hookimpl

@hookimpl
def vendhub_setup(hub, config):
    log = open({path!r}, "a", buffering=1)

    def acknowledged(event):
        log.write(f"{{event.data['event_type']}} {{event.data['machine_id']}} "
                  f"{{event.data['event_id']}}\\n")
        log.flush()
        os.fsync(log.fileno())

    hub.bus.async_listen("money_recorded", acknowledged)
"""


def _write_config(config_dir: Path, db_url: str, commit_interval: float) -> None:
    (config_dir / "configuration.yaml").write_text(
        textwrap.dedent(
            f"""
            vendhub:
              name: Durability test
            recorder:
              db_url: "{db_url}"
              commit_interval: {commit_interval}
            simulator:
              speed: 900
              tick: 0.1
              summary_interval: 0
              fleet:
                count: 6
                slots_per_machine: 6
                sales_per_hour: 60
            ack_logger:
            """
        )
    )


def test_sigkill_loses_no_acknowledged_money_and_at_most_a_commit_interval_of_history(
    tmp_path: Path, db_url: str
) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    acks = tmp_path / "acks.txt"
    write_integration(config_dir, "ack_logger", ACK_LOGGER.format(path=str(acks)))
    commit_interval = 1.0
    _write_config(config_dir, db_url, commit_interval)
    log_file = tmp_path / "hub.log"
    with log_file.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "vendhub", "run", "--config", str(config_dir)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if acks.exists() and len(acks.read_text().splitlines()) >= 30:
                    break
                assert process.poll() is None, log_file.read_text()
                time.sleep(0.1)
            time.sleep(2.5)  # several commit intervals of history, and money in flight
            killed_at = time.time()
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()

    acknowledged = [line.split() for line in acks.read_text().splitlines() if line.strip()]
    assert len(acknowledged) >= 30, log_file.read_text()
    engine = make_engine(db_url)
    try:
        with engine.connect() as connection:
            recorded: dict[str, set[tuple[str, str]]] = {}
            for name, model in (
                ("vend", VendTransaction),
                ("stock_refilled", StockMovement),
                ("cash_collected", CashCollection),
            ):
                recorded[name] = set(
                    tuple(row)
                    for row in connection.execute(select(model.machine_id, model.source_event_id))
                )
            newest_state = connection.execute(select(func.max(States.last_updated_ts))).scalar()
    finally:
        engine.dispose()
    missing = []
    for event_type, machine_id, event_id in acknowledged:
        kind = "vend" if event_type.startswith("vend_") else event_type
        if (machine_id, event_id) not in recorded[kind]:
            missing.append((event_type, machine_id, event_id))
    assert missing == []
    # History: what was committed reaches to within one commit interval of the kill (plus the
    # simulator's tick and the time the kill itself took).
    assert newest_state is not None
    assert killed_at - newest_state <= commit_interval + 0.5


class TcpProxy:
    """Forwards a local port to a database server; ``stop()`` is the database going away."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update((writer, up_writer))


@pytest.fixture
async def proxied_url(db_url: str, backend: str) -> AsyncIterator[tuple[str, TcpProxy]]:
    if backend == "sqlite":
        pytest.skip("a SQLite file cannot become unreachable")
    url = normalize_db_url(db_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 0)
    await proxy.start()
    yield url.set(port=proxy.port).render_as_string(hide_password=False), proxy
    with contextlib.suppress(AssertionError):
        await proxy.stop()


async def _wait_until(condition, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_a_database_that_goes_away_and_returns_loses_nothing(
    tmp_path: Path, proxied_url: tuple[str, TcpProxy], caplog: pytest.LogCaptureFixture
) -> None:
    url, proxy = proxied_url
    hub = Hub(tmp_path)
    recorder = Recorder(
        hub,
        RecorderConfig(db_url=url, commit_interval=0.1, retry_first_delay=0.2, retry_max_delay=0.5),
    )
    await recorder.async_start()
    hub.states.async_set("sensor.m1_temperature", "4.0")
    await recorder.async_flush()
    assert recorder.stats.states_written == 1

    await proxy.stop()
    acknowledged = asyncio.ensure_future(recorder.async_wait_recorded("m1", "outage-1"))
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR):
        for value in range(1, 21):
            hub.states.async_set("sensor.m1_temperature", f"{4 + value / 10:.1f}")
        hub.bus.async_fire(
            "vend_completed",
            {
                "machine_id": "m1",
                "slot": "A1",
                "product": "Cola",
                "price": 150,
                "currency": "EUR",
                "payment_method": "cash",
                "event_id": "outage-1",
            },
        )
        await _wait_until(lambda: not recorder.stats.connected)
        await asyncio.sleep(0.5)
    assert not acknowledged.done()  # never acknowledged before it is committed
    assert recorder.stats.backlog >= 21
    assert "unreachable" in caplog.text

    await proxy.start()  # the same port: the database is back
    record = await asyncio.wait_for(acknowledged, 20)
    assert record.duplicate is False
    await recorder.async_flush()
    assert recorder.stats.states_written == 21

    def counts(session: Session) -> tuple[int, int]:
        return (
            session.execute(select(func.count()).select_from(States)).scalar_one(),
            session.execute(select(func.count()).select_from(VendTransaction)).scalar_one(),
        )

    # Through the recorder's worker thread: the proxy runs in this event loop.
    assert await recorder.async_query(counts) == (21, 1)
    await hub.async_stop()
    await recorder.async_stop()


async def test_past_the_backlog_bound_drops_are_counted_and_logged(
    tmp_path: Path, proxied_url: tuple[str, TcpProxy], caplog: pytest.LogCaptureFixture
) -> None:
    url, proxy = proxied_url
    hub = Hub(tmp_path)
    recorder = Recorder(
        hub,
        RecorderConfig(
            db_url=url,
            commit_interval=0.1,
            max_backlog=50,
            retry_first_delay=0.2,
            retry_max_delay=0.5,
        ),
    )
    await recorder.async_start()
    await proxy.stop()
    hub.states.async_set("sensor.m1_temperature", "0")
    await _wait_until(lambda: not recorder.stats.connected)
    with caplog.at_level(logging.ERROR):
        for value in range(1, 201):
            hub.states.async_set("sensor.m1_temperature", str(value))
        await _wait_until(lambda: recorder.stats.states_dropped >= 151)
    assert "dropped" in caplog.text
    await proxy.start()
    await _wait_until(lambda: recorder.stats.connected)
    await recorder.async_flush()
    assert recorder.stats.states_written + recorder.stats.states_dropped == 201
    await hub.async_stop()
    await recorder.async_stop()


async def test_an_unreachable_database_at_start_does_not_stop_the_hub(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with contextlib.closing(__import__("socket").socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    url = f"postgresql://vendhub:s3cret-pass@127.0.0.1:{closed_port}/vendhub"
    hub = Hub(tmp_path)
    recorder = Recorder(hub, RecorderConfig(db_url=url, retry_first_delay=0.2))
    started = time.monotonic()
    with caplog.at_level(logging.ERROR):
        await recorder.async_start()
        await _wait_until(lambda: recorder.stats.connect_failures >= 2)
    assert time.monotonic() - started < 5
    assert f"127.0.0.1:{closed_port}" in caplog.text and "unreachable" in caplog.text
    assert "s3cret-pass" not in caplog.text
    hub.states.async_set("sensor.x", "1")
    await asyncio.sleep(0.1)
    assert recorder.stats.backlog >= 1
    await hub.async_stop()
    await recorder.async_stop()


async def test_a_database_from_a_newer_vendhub_fails_the_recorder_setup_only(
    tmp_path: Path, db_url: str
) -> None:
    engine = make_engine(db_url)
    upgrade_database(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    engine.dispose()
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "configuration.yaml").write_text(
        f'recorder:\n  db_url: "{db_url}"\nsimulator:\n  fleet:\n    count: 1\n'
    )
    prepared = await asyncio.to_thread(prepare, config_dir)
    hub, report = await async_start_hub(prepared)
    try:
        assert report.loaded == ["simulator"]
        assert "0099" in report.failed["recorder"]
        assert "Upgrade VendHub" in report.failed["recorder"]
    finally:
        await hub.async_stop()


async def test_a_locked_database_keeps_the_backlog_bounded_and_the_history(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A database that takes connections but not writes (SQLite locked by another process):
    the writer reconnects at every retry, and still bounds what it keeps; a money write that
    loses the connection leaves the history waiting (it was written off as refused, through an
    assertion on the missing connection)."""
    monkeypatch.setattr(recorder_engine, "SQLITE_BUSY_TIMEOUT_MS", 100)
    hub = Hub(tmp_path)
    recorder = Recorder(
        hub,
        RecorderConfig(
            db_url=f"sqlite:///{tmp_path / 'vendhub.db'}",
            commit_interval=0.1,
            max_backlog=3,
            retry_first_delay=0.05,
            retry_max_delay=0.05,
        ),
    )
    await recorder.async_start()
    with locked_sqlite(tmp_path / "vendhub.db"):
        with caplog.at_level(logging.ERROR):
            for number in range(1, 6):
                hub.states.async_set("sensor.m1_temperature", str(number))
                hub.bus.async_fire(
                    "vend_completed",
                    {
                        "machine_id": "m1",
                        "slot": "A1",
                        "price": 150,
                        "currency": "EUR",
                        "event_id": f"locked-{number}",
                    },
                )
                await asyncio.sleep(0.05)
            await _wait_until(lambda: recorder.stats.money_dropped >= 2)
            await asyncio.sleep(0.5)  # several reconnects and failed writes
        assert recorder.stats.backlog <= 2 * 3
        assert "refused" not in caplog.text, caplog.text
    await recorder.async_flush()
    assert recorder.stats.money_written + recorder.stats.money_dropped == 5
    assert recorder.stats.money_written == 3
    # History is kept or dropped by the bound, oldest telemetry first, never lost unnoticed.
    assert recorder.stats.states_written + recorder.stats.states_dropped == 5
    assert recorder.stats.events_written + recorder.stats.events_dropped >= 5
    await hub.async_stop()
    await recorder.async_stop()
