"""ReleaseWatchStore keeps payment providers' release follows in a real Store file: written
before ``async_add`` returns, read once by the next store (resumed or run out), removed later,
and what cannot be trusted (a bad entry, another scope, a refused file) is logged and left out."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.vending.authorizing import eventually
from vendhub.const import STORAGE_DIR
from vendhub.core.hub import Hub
from vendhub.util.dt import utcnow
from vendhub.vending.money import Money
from vendhub.vending.release_watches import (
    ReleaseWatch,
    ReleaseWatchNotStored,
    ReleaseWatchStore,
)

KEY = "gateway.lobby_1.release_watches"


def watch(reference: str, *, minutes: float = 60) -> ReleaseWatch:
    until = (utcnow() + timedelta(minutes=minutes)).replace(microsecond=0)
    return ReleaseWatch(reference, f"sess-{reference}", Money(150, "RUB"), until)


def store_file(hub: Hub) -> Path:
    return hub.path(STORAGE_DIR, KEY)


def on_disk(hub: Hub) -> dict[str, Any]:
    """The ``data`` of the file, as the next start reads it."""
    return json.loads(store_file(hub).read_text(encoding="utf-8"))["data"]


def write(hub: Hub, data: Any, *, version: int = 1) -> None:
    path = store_file(hub)
    path.parent.mkdir(parents=True, exist_ok=True)
    envelope = {"version": version, "minor_version": 1, "key": KEY, "data": data}
    path.write_text(json.dumps(envelope), encoding="utf-8")


def new_store(hub: Hub, scope: str | None = None) -> ReleaseWatchStore:
    return ReleaseWatchStore(hub, "gateway", "lobby_1", scope=scope, scope_name="store")


async def test_added_follows_are_on_disk_when_add_returns_and_resumed_by_the_next_store(
    hub: Hub,
) -> None:
    first, second = watch("pay-1"), watch("pay-2", minutes=5)
    before = new_store(hub, scope="S1")
    await before.async_add(first)
    assert on_disk(hub) == {"scope": "S1", "watches": [first.as_dict()]}
    await before.async_add(second)
    assert [entry["reference"] for entry in on_disk(hub)["watches"]] == ["pay-1", "pay-2"]

    after = new_store(hub, scope="S1")
    loaded = await after.async_load()
    assert loaded.resume == [first, second]
    assert loaded.ran_out == []
    assert "pay-1" in after and after.get("pay-2") == second
    assert (await after.async_load()).resume == [], "the file is read once"


async def test_a_removed_follow_leaves_the_file_with_a_delayed_save(hub: Hub) -> None:
    kept, ended = watch("pay-kept"), watch("pay-ended")
    store = new_store(hub)
    await store.async_add(kept)
    await store.async_add(ended)
    store.remove(watch("pay-ended"))  # an equal but other follow: not the one stored
    store.remove(ended)
    assert "pay-ended" not in store
    assert len(on_disk(hub)["watches"]) == 2, "not written at once"
    await eventually(lambda: on_disk(hub)["watches"] == [kept.as_dict()], timeout=3)


async def test_follows_that_ran_out_come_back_as_run_out_and_leave_the_file(hub: Hub) -> None:
    lasting, ran_out = watch("pay-lasting"), watch("pay-ran-out", minutes=-1)
    write(hub, {"scope": None, "watches": [lasting.as_dict(), ran_out.as_dict()]})
    store = new_store(hub)
    loaded = await store.async_load()
    assert loaded.resume == [lasting]
    assert loaded.ran_out == [ran_out]
    assert "pay-ran-out" not in store
    await store.async_flush()
    assert on_disk(hub)["watches"] == [lasting.as_dict()]


async def test_a_bad_entry_is_skipped_with_an_error_naming_the_file(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    good = watch("pay-good")
    bad = {"reference": "pay-bad", "session_id": "s", "amount": {"amount": "1.50"}}
    write(hub, {"scope": None, "watches": [good.as_dict(), bad]})
    with caplog.at_level(logging.ERROR):
        loaded = await new_store(hub).async_load()
    assert loaded.resume == [good]
    (error,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert str(store_file(hub)) in error and "pay-bad" in error


async def test_follows_of_another_scope_are_not_resumed(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    write(hub, {"scope": "OldStore", "watches": [watch("inv-1").as_dict()]})
    store = new_store(hub, scope="NewStore")
    with caplog.at_level(logging.ERROR):
        loaded = await store.async_load()
    assert loaded.resume == [] and loaded.ran_out == []
    (error,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "inv-1" in error and "OldStore" in error and "NewStore" in error
    await store.async_flush()
    assert on_disk(hub) == {"scope": "NewStore", "watches": []}


async def test_a_file_the_store_refuses_is_logged_and_never_overwritten(
    hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    write(hub, {}, version=2)
    newer = store_file(hub).read_text(encoding="utf-8")
    store = new_store(hub)
    with caplog.at_level(logging.ERROR):
        loaded = await store.async_load()
    assert loaded.resume == []
    assert any(str(store_file(hub)) in r.getMessage() for r in caplog.records), caplog.text
    with pytest.raises(ReleaseWatchNotStored, match="pay-1 could not be stored"):
        await store.async_add(watch("pay-1"))
    assert "pay-1" in store, "kept in memory all the same"
    await store.async_flush()
    assert store_file(hub).read_text(encoding="utf-8") == newer


async def test_an_add_before_the_load_keeps_the_follows_on_disk(hub: Hub) -> None:
    stored = watch("pay-stored")
    write(hub, {"scope": None, "watches": [stored.as_dict()]})
    store = new_store(hub)
    await store.async_add(watch("pay-new"))
    references = {entry["reference"] for entry in on_disk(hub)["watches"]}
    assert references == {"pay-stored", "pay-new"}
    assert (await store.async_load()).resume == [stored]


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("text", "not an object"),
        ({"session_id": "s"}, "has no reference"),
        ({"reference": "r1"}, "r1 has no session_id"),
        ({"reference": "r1", "session_id": "s", "amount": 150}, "r1 is unreadable"),
        (
            {
                "reference": "r1",
                "session_id": "s",
                "amount": {"amount": 150, "currency": "RUB"},
                "until": "2025-03-01T12:00:00",
            },
            "no time zone",
        ),
    ],
)
def test_the_parser_says_what_is_wrong_with_an_entry(entry: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        ReleaseWatch.from_dict(entry)
