"""THE restart test: a hub process killed (SIGKILL) while it dispenses resolves the session
exactly once when it starts again: one void, no capture, one ledger row, the journal closed.

The hub is a real ``python -m vendhub run`` with the recorder, alarms, HTTP and a local
vending machine whose simulator board takes 60 s per vend; its ``instant`` provider writes
what it does to a file that this test reads across the two processes.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.http.hub_process import OWNER_PASSWORD, free_port, request
from vendhub.vending.journal import read_journal
from vendhub_integrations.vending.instant_payment import read_ledger

CONFIGURATION = """\
vendhub:
  name: Restart test
  currency: EUR
recorder:
alarm:
http:
  server_host: 127.0.0.1
  server_port: {port}
vending:
  machines:
    kiosk_1:
      planogram:
        A1: {{product: Cola, price: 150, capacity: 10, stock: 5}}
      dispenser:
        platform: simulator
        dispense_time: 60
      payments:
        - platform: instant
          ledger_file: {ledger}
      timeouts:
        dispense: 120
"""


def start(config_dir: Path, port: int) -> subprocess.Popen[bytes]:
    log = (config_dir / "hub.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "vendhub", "run", "--config", str(config_dir)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    wait_for(
        lambda: _healthy(port) or _exited(process, config_dir),
        30,
        "the hub to answer",
        config_dir,
    )
    return process


def _healthy(port: int) -> bool:
    try:
        return request(f"http://127.0.0.1:{port}/api/health", timeout=2)[0] == 200
    except OSError:
        return False


def _exited(process: subprocess.Popen[bytes], config_dir: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"the hub exited: {(config_dir / 'hub.log').read_text()[-3000:]}")
    return False


def wait_for(check: Callable[[], Any], seconds: float, what: str, config_dir: Path) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(
        f"timed out waiting for {what}: {(config_dir / 'hub.log').read_text()[-3000:]}"
    )


def journal_rows(config_dir: Path) -> list[dict[str, Any]]:
    path = config_dir / ".storage" / "vending.journal.db"
    if not path.exists():
        return []
    try:
        return read_journal(path)
    except sqlite3.OperationalError:
        return []


def test_a_hub_killed_while_dispensing_voids_the_session_once(tmp_path: Path) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    ledger = tmp_path / "instant-provider.jsonl"
    port = free_port()
    (config_dir / "configuration.yaml").write_text(CONFIGURATION.format(port=port, ledger=ledger))
    url = f"http://127.0.0.1:{port}"
    process = start(config_dir, port)
    try:
        status, grant = request(
            url + "/api/onboarding",
            method="POST",
            body={"username": "olga", "password": OWNER_PASSWORD},
        )
        assert status == 200, grant
        status, answer = request(
            url + "/api/services/vending/select",
            method="POST",
            body={"machine_id": "kiosk_1", "slot": "A1", "method": "card", "wait": False},
            token=grant["access_token"],
        )
        assert status == 200, answer
        session_id = answer["result"]["session_id"]

        def dispensing() -> bool:
            rows = journal_rows(config_dir)
            return bool(rows) and rows[0]["state"] == "dispensing"

        wait_for(dispensing, 15, "the session to reach the dispense", config_dir)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    (row,) = journal_rows(config_dir)
    assert row["id"] == session_id and row["state"] == "dispensing"
    assert [record["op"] for record in read_ledger(ledger)] == ["authorize"]

    process = start(config_dir, port)
    try:

        def resolved() -> dict[str, Any] | None:
            rows = journal_rows(config_dir)
            if rows and rows[0]["state"] == "failed" and rows[0]["recorded"]:
                return rows[0]
            return None

        row = wait_for(resolved, 20, "the session to be resolved", config_dir)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)

    assert row["outcome"] == "dispense_failed"
    assert row["resolved_after_restart"] is True
    assert row["snapshot"]["reason"] == "dispense_unknown_after_restart"
    assert row["snapshot"]["stock_after"] == 5
    steps = [(step, phase) for step, phase, _ in row["steps"]]
    assert steps[:3] == [("authorize", "begin"), ("authorize", "done"), ("dispense", "begin")]
    assert ("void", "done") in steps and ("capture", "begin") not in steps
    records = read_ledger(ledger)
    effective = [record["op"] for record in records if record["effect"] == "done"]
    assert effective.count("void") == 1
    assert effective.count("capture") == 0
    assert effective.count("authorize") == 1

    with sqlite3.connect(config_dir / "vendhub.db") as database:
        transactions = database.execute(
            "SELECT source_event_id, outcome, failure_reason FROM vend_transactions"
        ).fetchall()
        payments = database.execute("SELECT count(*) FROM payments").fetchone()[0]
        movements = database.execute("SELECT count(*) FROM stock_movements").fetchone()[0]
    assert transactions == [(session_id, "failed", "dispense_unknown_after_restart")]
    assert payments == 0 and movements == 0
    log = (config_dir / "hub.log").read_text()
    assert "Resolving vend session" in log
    assert json.dumps(row["snapshot"]).count("4111") == 0  # no card data anywhere
