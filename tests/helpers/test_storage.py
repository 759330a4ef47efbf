"""Store: versioned JSON files, atomic writes, delayed saves, migrations, refusals."""

import asyncio
import json
import logging
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from vendhub.const import EVENT_HUB_FINAL_WRITE
from vendhub.core.hub import Hub
from vendhub.helpers.storage import StorageError, Store


def write_envelope(path: Path, version: int, minor_version: int, data: Any) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = json.dumps(
        {"version": version, "minor_version": minor_version, "key": path.name, "data": data}
    ).encode()
    path.write_bytes(raw)
    return raw


async def test_save_writes_envelope_with_private_mode(hub: Hub) -> None:
    store: Store[dict[str, Any]] = Store(hub, "test.things", 3, minor_version=2)

    await store.async_save({"slots": ["A1", "A2"], "price": 1.5, "name": "Café"})

    path = hub.config_dir / ".storage" / "test.things"
    assert store.path == path
    assert json.loads(path.read_text(encoding="utf-8")) == {
        "version": 3,
        "minor_version": 2,
        "key": "test.things",
        "data": {"slots": ["A1", "A2"], "price": 1.5, "name": "Café"},
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["test.things"]
    assert store.writes == 1


async def test_save_then_load_in_a_new_hub(tmp_path: Path) -> None:
    first = Hub(tmp_path)
    await Store(first, "test.things", 1).async_save({"count": 7})
    await first.async_stop()

    second = Hub(tmp_path)
    assert await Store(second, "test.things", 1).async_load() == {"count": 7}
    await second.async_stop()


async def test_save_replaces_the_file_atomically(hub: Hub) -> None:
    store: Store[dict[str, Any]] = Store(hub, "test.things", 1)
    await store.async_save({"generation": 1})
    inode_before = store.path.stat().st_ino

    await store.async_save({"generation": 2})

    assert store.path.stat().st_ino != inode_before  # a new file was renamed over the old
    assert await store.async_load() == {"generation": 2}
    assert [p.name for p in store.path.parent.iterdir()] == ["test.things"]


async def test_unserialisable_data_leaves_the_old_file_and_no_temp_file(hub: Hub) -> None:
    store: Store[Any] = Store(hub, "test.things", 1)
    await store.async_save({"generation": 1})
    before = store.path.read_bytes()

    with pytest.raises(StorageError, match=r"test\.things.*not JSON"):
        await store.async_save({"when": object()})

    assert store.path.read_bytes() == before
    assert [p.name for p in store.path.parent.iterdir()] == ["test.things"]
    assert store.writes == 1


async def test_load_of_missing_file_returns_none(hub: Hub) -> None:
    store: Store[dict[str, Any]] = Store(hub, "test.absent", 1)
    assert await store.async_load() is None
    assert not store.path.exists()


async def test_newer_major_version_is_refused_and_left_untouched(hub: Hub) -> None:
    store: Store[dict[str, Any]] = Store(hub, "test.things", 1, minor_version=4)
    raw = write_envelope(store.path, 2, 1, {"from": "the future"})

    with pytest.raises(StorageError) as caught:
        await store.async_load()

    message = str(caught.value)
    assert str(store.path) in message
    assert "2.1" in message
    assert "1.x" in message
    with pytest.raises(StorageError, match="refusing to overwrite"):
        await store.async_save({"from": "the past"})
    with pytest.raises(StorageError, match="refusing to overwrite"):
        store.async_delay_save(lambda: {"from": "the past"}, 0)
    await hub.async_stop()
    assert store.path.read_bytes() == raw
    assert store.writes == 0


async def test_newer_minor_version_of_same_major_is_loaded(hub: Hub) -> None:
    store: Store[dict[str, Any]] = Store(hub, "test.things", 1, minor_version=1)
    write_envelope(store.path, 1, 5, {"extra": True})

    assert await store.async_load() == {"extra": True}


async def test_corrupt_file_is_moved_aside_with_its_bytes(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    store: Store[dict[str, Any]] = Store(hub, "test.things", 1)
    store.path.parent.mkdir(parents=True)
    store.path.write_bytes(b'{"version": 1, "data": {"half": ')

    with caplog.at_level(logging.ERROR):
        assert await store.async_load() is None

    assert not store.path.exists()
    [aside] = list(store.path.parent.glob("test.things.corrupt-*"))
    assert aside.read_bytes() == b'{"version": 1, "data": {"half": '
    assert str(store.path) in caplog.text
    assert str(aside) in caplog.text
    await store.async_save({"fresh": 1})
    assert aside.read_bytes() == b'{"version": 1, "data": {"half": '


@pytest.mark.parametrize(
    "raw",
    [b"", b"[1, 2]", b'{"version": 1}', b'{"version": "1", "data": {}}', b"\xff\xfe"],
    ids=["empty", "list", "no-data", "text-version", "not-utf8"],
)
async def test_files_that_are_not_envelopes_count_as_corrupt(hub: Hub, raw: bytes) -> None:
    store: Store[dict[str, Any]] = Store(hub, "test.things", 1)
    store.path.parent.mkdir(parents=True)
    store.path.write_bytes(raw)

    assert await store.async_load() is None

    [aside] = list(store.path.parent.glob("test.things.corrupt-*"))
    assert aside.read_bytes() == raw


async def test_two_corrupt_files_in_one_second_both_survive(hub: Hub) -> None:
    store: Store[dict[str, Any]] = Store(hub, "test.things", 1)
    store.path.parent.mkdir(parents=True)
    store.path.write_bytes(b"first")
    await store.async_load()
    store.path.write_bytes(b"second")
    await store.async_load()

    contents = sorted(p.read_bytes() for p in store.path.parent.glob("test.things.corrupt-*"))
    assert contents == [b"first", b"second"]


async def test_older_version_is_migrated(hub: Hub) -> None:
    calls: list[tuple[int, int, Any]] = []

    async def migrate(old_major: int, old_minor: int, data: Any) -> Any:
        calls.append((old_major, old_minor, data))
        return {"machines": [{"name": name} for name in data["machine_names"]]}

    store: Store[dict[str, Any]] = Store(
        hub, "test.things", 2, minor_version=1, async_migrate=migrate
    )
    write_envelope(store.path, 1, 3, {"machine_names": ["lobby", "gym"]})

    data = await store.async_load()

    assert calls == [(1, 3, {"machine_names": ["lobby", "gym"]})]
    assert data == {"machines": [{"name": "lobby"}, {"name": "gym"}]}
    assert data is not None
    await store.async_save(data)
    saved = json.loads(store.path.read_text())
    assert (saved["version"], saved["minor_version"]) == (2, 1)
    assert saved["data"] == {"machines": [{"name": "lobby"}, {"name": "gym"}]}


async def test_older_minor_version_is_migrated(hub: Hub) -> None:
    async def migrate(old_major: int, old_minor: int, data: Any) -> Any:
        return {**data, "currency": "EUR"} if (old_major, old_minor) == (1, 1) else data

    store: Store[dict[str, Any]] = Store(
        hub, "test.things", 1, minor_version=2, async_migrate=migrate
    )
    write_envelope(store.path, 1, 1, {"price": 150})

    assert await store.async_load() == {"price": 150, "currency": "EUR"}


async def test_older_version_without_migration_is_refused(hub: Hub) -> None:
    store: Store[dict[str, Any]] = Store(hub, "test.things", 2)
    raw = write_envelope(store.path, 1, 1, {"old": True})

    with pytest.raises(StorageError, match=r"1\.1.*2\.1.*no migration"):
        await store.async_load()
    with pytest.raises(StorageError, match="refusing to overwrite"):
        await store.async_save({"new": True})
    assert store.path.read_bytes() == raw


async def test_failing_migration_is_refused_and_file_kept(hub: Hub) -> None:
    async def migrate(old_major: int, old_minor: int, data: Any) -> Any:
        raise KeyError("machine_names")

    store: Store[dict[str, Any]] = Store(hub, "test.things", 2, async_migrate=migrate)
    raw = write_envelope(store.path, 1, 1, {"old": True})

    with pytest.raises(StorageError, match=r"from storage version 1\.1 to 2\.1 failed"):
        await store.async_load()
    with pytest.raises(StorageError, match="refusing to overwrite"):
        await store.async_save({"new": True})
    assert store.path.read_bytes() == raw


async def test_delayed_saves_coalesce_into_one_write(hub: Hub) -> None:
    store: Store[dict[str, Any]] = Store(hub, "test.things", 1)
    counter = {"value": 0}

    for value in range(1, 51):
        counter["value"] = value
        store.async_delay_save(lambda: dict(counter), 0.05)
    assert store.writes == 0
    assert not store.path.exists()

    await asyncio.sleep(0.2)
    await hub.async_block_till_done()

    assert store.writes == 1
    assert json.loads(store.path.read_text())["data"] == {"value": 50}


async def test_later_delayed_save_does_not_postpone_the_write(hub: Hub) -> None:
    store: Store[dict[str, Any]] = Store(hub, "test.things", 1)
    store.async_delay_save(lambda: {"n": 1}, 0.05)
    store.async_delay_save(lambda: {"n": 2}, 60)  # would wait a minute if it postponed
    await asyncio.sleep(0.2)
    await hub.async_block_till_done()

    assert store.writes == 1
    assert json.loads(store.path.read_text())["data"] == {"n": 2}


async def test_shorter_delay_brings_the_write_forward(hub: Hub) -> None:
    store: Store[dict[str, Any]] = Store(hub, "test.things", 1)
    store.async_delay_save(lambda: {"n": 1}, 60)
    store.async_delay_save(lambda: {"n": 2}, 0.01)
    await asyncio.sleep(0.1)
    await hub.async_block_till_done()

    assert store.writes == 1
    assert json.loads(store.path.read_text())["data"] == {"n": 2}


async def test_pending_delayed_save_is_flushed_by_hub_stop(tmp_path: Path) -> None:
    hub = Hub(tmp_path)
    store: Store[dict[str, Any]] = Store(hub, "test.things", 1)
    store.async_delay_save(lambda: {"sold": 3}, 60)
    store.async_delay_save(lambda: {"sold": 4}, 60)

    await hub.async_stop()

    assert store.writes == 1
    assert json.loads(store.path.read_text())["data"] == {"sold": 4}
    assert hub.last_stop_report is not None
    assert hub.last_stop_report.stages_timed_out == []


async def test_async_flush_writes_now_and_only_once(hub: Hub) -> None:
    store: Store[dict[str, Any]] = Store(hub, "test.things", 1)
    store.async_delay_save(lambda: {"a": 1}, 60)

    await store.async_flush()
    await store.async_flush()
    await asyncio.sleep(0)

    assert store.writes == 1
    assert json.loads(store.path.read_text())["data"] == {"a": 1}
    await hub.async_stop()
    assert store.writes == 1


async def test_load_returns_data_waiting_for_a_delayed_save(hub: Hub) -> None:
    store: Store[dict[str, Any]] = Store(hub, "test.things", 1)
    await store.async_save({"n": 1})
    store.async_delay_save(lambda: {"n": 2}, 60)

    assert await store.async_load() == {"n": 2}
    assert json.loads(store.path.read_text())["data"] == {"n": 1}


async def test_explicit_save_cancels_the_delayed_one(hub: Hub) -> None:
    store: Store[dict[str, Any]] = Store(hub, "test.things", 1)
    store.async_delay_save(lambda: {"n": "delayed"}, 0.02)
    await store.async_save({"n": "explicit"})
    await asyncio.sleep(0.08)
    await hub.async_block_till_done()

    assert store.writes == 1
    assert json.loads(store.path.read_text())["data"] == {"n": "explicit"}


async def test_delayed_save_during_final_write_is_still_written(tmp_path: Path) -> None:
    hub = Hub(tmp_path)
    store: Store[dict[str, Any]] = Store(hub, "test.late", 1)

    def save_on_final_write(_event: Any) -> None:
        store.async_delay_save(lambda: {"late": True}, 60)

    hub.bus.async_listen(EVENT_HUB_FINAL_WRITE, save_on_final_write)
    await hub.async_stop()

    assert json.loads(store.path.read_text())["data"] == {"late": True}


@pytest.mark.parametrize("key", ["../escape", "a/b", ".hidden", ""])
async def test_invalid_keys_are_refused(hub: Hub, key: str) -> None:
    with pytest.raises(ValueError, match="invalid storage key"):
        Store(hub, key, 1)


async def test_a_save_cancelled_while_writing_never_overwrites_a_later_one(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    store: Store[dict[str, Any]] = Store(hub, "test.order", 1)
    write = store._write_envelope
    first_write_started = asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow_first_write(envelope: dict[str, Any]) -> None:
        if envelope["data"] == {"n": 1}:
            loop.call_soon_threadsafe(first_write_started.set)
            time.sleep(0.3)
        write(envelope)

    monkeypatch.setattr(store, "_write_envelope", slow_first_write)
    first = asyncio.create_task(store.async_save({"n": 1}))
    await first_write_started.wait()
    first.cancel()  # the worker thread goes on writing {"n": 1}
    with pytest.raises(asyncio.CancelledError):
        await first

    await store.async_save({"n": 2})
    await asyncio.sleep(0.4)  # past the end of the first write, whatever the order

    assert json.loads(store.path.read_text())["data"] == {"n": 2}
    assert store.writes == 2
