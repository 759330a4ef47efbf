"""History rows the database would refuse (values longer than their columns) never stop or
stall the recorder: they are trimmed to fit, and everything else is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from vendhub.core.context import Context
from vendhub.core.hub import Hub
from vendhub.recorder.models import Events, EventTypes, States
from vendhub.recorder.recorder import Recorder, RecorderConfig


async def test_an_event_type_and_a_user_longer_than_their_columns(
    tmp_path: Path, db_url: str
) -> None:
    hub = Hub(tmp_path)
    recorder = Recorder(hub, RecorderConfig(db_url=db_url, commit_interval=0.05))
    await recorder.async_start()
    try:
        long_type = "automation_fired_an_event_whose_type_is_much_longer_than_sixty_four_chars"
        long_user = "machine:" + "m" * 64
        hub.bus.async_fire(long_type, {"n": 1}, context=Context(user_id=long_user))
        hub.bus.async_fire("short_one", {"n": 2})
        await recorder.async_flush()
        hub.bus.async_fire("after_it", {"n": 3})
        await recorder.async_flush()
        with recorder.engine.connect() as connection:
            types = set(connection.execute(select(EventTypes.event_type)).scalars())
            users = set(connection.execute(select(Events.context_user_id)).scalars())
        assert {"short_one", "after_it"} <= types
        assert long_type[:64] in types
        assert long_user[:64] in users
        assert recorder.stats.connected
    finally:
        await recorder.async_stop()
        await hub.async_stop()


async def test_history_the_database_refuses_is_dropped_loudly_and_the_rest_goes_on(
    tmp_path: Path, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A state PostgreSQL cannot store (a NUL character) used to look like a lost connection:
    the writer reconnected and retried the same batch for ever, and no history was written
    again. Now the batch is dropped with an ERROR and the writer goes on (SQLite and MariaDB
    store the value)."""
    hub = Hub(tmp_path)
    recorder = Recorder(hub, RecorderConfig(db_url=db_url, commit_interval=0.05))
    await recorder.async_start()
    try:
        hub.states.async_set("sensor.label", "bad\x00text")
        await recorder.async_flush()
        hub.states.async_set("sensor.after", "fine")
        await recorder.async_flush()
        with recorder.engine.connect() as connection:
            written = set(connection.execute(select(States.state)).scalars())
        assert "fine" in written
        assert recorder.stats.connected
        assert recorder.stats.connect_failures == 0
        if db_url.startswith("postgresql"):
            assert recorder.stats.states_dropped == 1
            assert any(
                "dropped 1 state changes" in record.getMessage() for record in caplog.records
            )
        else:
            assert "bad\x00text" in written
    finally:
        await recorder.async_stop()
        await hub.async_stop()
