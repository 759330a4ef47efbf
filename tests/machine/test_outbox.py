"""The machine's durable outbox: ordering, acknowledgement, resend timing, pruning, kills."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vendhub.machine.outbox import Outbox, OutboxError

REPO_ROOT = Path(__file__).resolve().parents[2]


def event(number: int, **extra: Any) -> dict[str, Any]:
    return {
        "v": 1,
        "id": f"e{number:04d}",
        "seq": number,
        "ts": "2024-05-06T12:00:00.000+00:00",
        "event": "vend_completed",
        "data": {"slot": "A1", "price": 150 + number, **extra},
    }


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    box = Outbox(tmp_path / "outbox.db")
    yield box
    box.close()


def test_put_and_pending_keep_order_and_content(outbox: Outbox) -> None:
    for number in (3, 1, 2):
        outbox.put(event(number))
    pending = outbox.pending(10)
    assert [message["id"] for message in pending] == ["e0003", "e0001", "e0002"]
    assert pending[1] == event(1)
    assert outbox.count() == 3
    assert [m["id"] for m in outbox.pending(2)] == ["e0003", "e0001"]


def test_duplicate_id_is_ignored_even_after_ack(outbox: Outbox) -> None:
    outbox.put(event(1))
    outbox.put({**event(1), "data": {"changed": True}})
    assert outbox.count() == 1
    assert outbox.pending()[0]["data"] == {"slot": "A1", "price": 151}
    assert outbox.ack(["e0001"]) == 1
    outbox.put(event(1))  # a replay of an acknowledged event is not sent again
    assert outbox.count() == 0
    assert outbox.contains("e0001")
    assert not outbox.is_pending("e0001")
    assert outbox.put_many([event(1), event(2), event(2)]) == 1


def test_ack_counts_only_pending_ids(outbox: Outbox) -> None:
    outbox.put_many(event(number) for number in range(1, 6))
    assert outbox.ack(["e0002", "e0004", "unknown", "e0002"]) == 2
    assert outbox.ack(["e0002"]) == 0
    assert [m["id"] for m in outbox.pending()] == ["e0001", "e0003", "e0005"]
    assert outbox.count() == 3
    assert outbox.count_acked() == 2
    assert outbox.ack([]) == 0


def test_ack_of_many_ids_in_chunks(outbox: Outbox) -> None:
    outbox.put_many(event(number) for number in range(1200))
    assert outbox.ack([f"e{number:04d}" for number in range(1200)]) == 1200
    assert outbox.count() == 0


def test_mark_sent_and_due_for_resend(outbox: Outbox) -> None:
    outbox.put_many(event(number) for number in range(1, 4))
    outbox.mark_sent(["e0001", "e0002"], at=1000.0)
    outbox.mark_sent(["e0002"], at=1020.0)
    due = outbox.pending(sent_before=1010.0)
    assert [m["id"] for m in due] == ["e0001", "e0003"]  # e0003 never sent
    assert [m["id"] for m in outbox.pending(sent_before=1030.0)] == ["e0001", "e0002", "e0003"]
    assert outbox.attempts("e0002") == 2
    assert outbox.attempts("e0003") == 0
    outbox.ack(["e0001"])
    outbox.mark_sent(["e0001"], at=2000.0)  # acknowledged: no longer counted
    assert outbox.attempts("e0001") == 1


def test_due_waits_longer_after_each_send(outbox: Outbox) -> None:
    outbox.put_many(event(number) for number in range(1, 4))
    assert [row.id for row in outbox.due(now=0.0, resend_after=10)] == ["e0001", "e0002", "e0003"]
    outbox.mark_sent(["e0001", "e0002", "e0003"], at=100.0)
    assert outbox.due(now=109.0, resend_after=10) == []
    assert [row.id for row in outbox.due(now=110.0, resend_after=10)] == ["e0001", "e0002", "e0003"]
    outbox.mark_sent(["e0001"], at=110.0)  # second send: the next wait is 20 s
    outbox.mark_sent(["e0002"], at=110.0)
    outbox.mark_sent(["e0002"], at=130.0)  # third send: 40 s
    assert [row.id for row in outbox.due(now=129.0, resend_after=10)] == ["e0003"]
    assert [row.id for row in outbox.due(now=130.0, resend_after=10)] == ["e0001", "e0003"]
    assert [row.id for row in outbox.due(now=170.0, resend_after=10)] == ["e0001", "e0002", "e0003"]
    assert [row.attempts for row in outbox.due(now=170.0, resend_after=10)] == [2, 3, 1]
    capped = outbox.due(now=145.0, resend_after=10, max_resend_after=15)
    assert [row.id for row in capped] == ["e0001", "e0002", "e0003"]
    # A new connection resends everything sent before it, whatever the wait.
    fresh = outbox.due(now=131.0, resend_after=10, sent_before=131.0)
    assert [row.id for row in fresh] == ["e0001", "e0002", "e0003"]
    outbox.ack(["e0002"])
    assert [row.id for row in outbox.due(now=999.0, resend_after=10)] == ["e0001", "e0003"]


def test_prune_removes_only_old_acknowledged_rows(outbox: Outbox, tmp_path: Path) -> None:
    outbox.put_many(event(number) for number in range(1, 5))
    outbox.ack(["e0001", "e0002"])
    # Acknowledged ten days ago, as far as e0001 knows.
    with sqlite3.connect(tmp_path / "outbox.db") as raw:
        raw.execute("UPDATE outbox SET acked_at = acked_at - 10 * 86400 WHERE id = 'e0001'")
    assert outbox.prune(keep_days=7) == 1
    assert not outbox.contains("e0001")
    assert outbox.contains("e0002")
    assert outbox.count() == 2
    assert outbox.prune(keep_days=0, now=9e12) == 1  # e0002; the pending ones stay
    assert [m["id"] for m in outbox.pending()] == ["e0003", "e0004"]


def test_counter_is_durable(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as box:
        assert [box.next_counter("event_seq") for _ in range(3)] == [1, 2, 3]
        assert box.next_counter("other") == 1
    with Outbox(tmp_path / "o.db") as box:
        assert box.next_counter("event_seq") == 4


def test_put_numbered_numbers_only_new_messages_durably(tmp_path: Path) -> None:
    with Outbox(tmp_path / "n.db") as box:
        first = box.put_numbered([event(1), event(2), event(1)], counter="event_seq")
        assert box.counter("event_seq") == 2
        assert [(m["id"], m["seq"]) for m in first] == [("e0001", 1), ("e0002", 2)]
        assert box.put_numbered([event(2)], counter="event_seq") == []  # already there
        box.ack(["e0001", "e0002"])
        box.prune(keep_days=0, now=9e12)  # the rows go, the counter stays
        assert box.count_acked() == 0
    with Outbox(tmp_path / "n.db") as box:
        (third,) = box.put_numbered([event(3)], counter="event_seq")
        assert third["seq"] == 3
        (fourth,) = box.put_numbered([event(4)], counter="event_seq", after=10)
        assert fourth["seq"] == 11 and box.counter("event_seq") == 11
        assert box.pending() == [{**event(3), "seq": 3}, {**event(4), "seq": 11}]
        assert box.put_numbered([], counter="event_seq") == []


def test_messages_without_id_or_not_json_are_refused(outbox: Outbox) -> None:
    with pytest.raises(OutboxError, match="needs a non-empty text 'id'"):
        outbox.put({"event": "vend_completed"})
    with pytest.raises(OutboxError, match="is not JSON"):
        outbox.put({"id": "x", "data": {1, 2}})
    assert outbox.count() == 0


def test_database_is_wal_with_full_sync(outbox: Outbox, tmp_path: Path) -> None:
    assert outbox._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert outbox._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert (tmp_path / "outbox.db").is_file()


_CHILD = textwrap.dedent(
    """
    import sys, time
    from vendhub.machine.outbox import Outbox

    box = Outbox(sys.argv[1])
    action = sys.argv[2]
    if action == "put":
        for number in range(1, 51):
            box.put({"id": f"e{number:04d}", "event": "vend_completed", "data": {"n": number}})
    elif action == "ack":
        box.ack([f"e{number:04d}" for number in range(1, 21)])
        box.mark_sent(["e0021"], at=1234.0)
    print("done", flush=True)
    time.sleep(60)
    """
)


def _run_and_kill(db: Path, action: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(db), action],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "done"
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_puts_and_acks_survive_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "killed.db"
    _run_and_kill(db, "put")  # killed after its puts, before any ack
    with Outbox(db) as box:
        pending = box.pending(100)
        assert box.count() == 50
        assert [m["id"] for m in pending] == [f"e{n:04d}" for n in range(1, 51)]
        assert pending[49]["data"] == {"n": 50}
    _run_and_kill(db, "ack")  # killed after acking the first 20
    with Outbox(db) as box:
        assert box.count() == 30
        assert box.pending(1)[0]["id"] == "e0021"
        assert box.attempts("e0021") == 1
        assert box.pending(sent_before=1000.0)[0]["id"] == "e0022"
