"""A hub process killed (SIGKILL) while the customer inserts coins gives them back once when it
starts again: the credit was committed to the cash store before it was shown, the engine
resolves the session left at ``authorizing``, and the coins come out of the tubes.

The hub is a real ``python -m vendhub run`` whose ``mdb_cash`` provider talks over a socat pty
pair to ``MdbAdapterEmulator`` running in this test's event loop, which outlives the hub.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from tests.http.hub_process import OWNER_PASSWORD, free_port, request
from tests.integrations.vending.test_restart import journal_rows, start, wait_for
from tests.serial_pty import pty_pair
from vendhub_integrations.mdb.cash_store import CASH_STORE_FILE, read_cash_store
from vendhub_integrations.mdb.emulator import MdbAdapterEmulator

CONFIGURATION = """\
vendhub:
  name: Cash restart test
  currency: EUR
recorder:
alarm:
http:
  server_host: 127.0.0.1
  server_port: {port}
mdb:
vending:
  machines:
    kiosk_1:
      planogram:
        A1: {{product: Sandwich, price: 400, capacity: 10, stock: 5}}
      dispenser:
        platform: simulator
        dispense_time: 0
      payments:
        - platform: mdb_cash
          port: {port_path}
          poll_interval: 0.05
          bill_validator: false
      timeouts:
        payment: 120
"""
TUBES = {5: 10, 10: 10, 20: 10, 50: 10}


def cash_rows(config_dir: Path) -> dict[str, dict[str, Any]]:
    path = config_dir / ".storage" / CASH_STORE_FILE
    return read_cash_store(path) if path.exists() else {}


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        process.wait(timeout=20)


async def test_a_hub_killed_with_coins_inserted_pays_them_back_once(tmp_path: Path) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with pty_pair() as pair:
        # Held open while the hub is dead, so socat keeps the line up between the two runs.
        line_keeper = os.open(pair.host, os.O_RDWR | os.O_NOCTTY)
        emulator = MdbAdapterEmulator(pair.device)
        for value, count in TUBES.items():
            emulator.set_tube(value, count)
        try:
            async with emulator:
                (config_dir / "configuration.yaml").write_text(
                    CONFIGURATION.format(port=port, port_path=pair.host)
                )
                process = await asyncio.to_thread(start, config_dir, port)
                try:
                    status, grant = await asyncio.to_thread(
                        request,
                        url + "/api/onboarding",
                        method="POST",
                        body={"username": "olga", "password": OWNER_PASSWORD},
                    )
                    assert status == 200, grant
                    status, answer = await asyncio.to_thread(
                        request,
                        url + "/api/services/vending/select",
                        method="POST",
                        body={
                            "machine_id": "kiosk_1",
                            "slot": "A1",
                            "method": "cash",
                            "wait": False,
                        },
                        token=grant["access_token"],
                    )
                    assert status == 200, answer
                    session_id = answer["result"]["session_id"]
                    reference = f"mdb-cash-{session_id}"
                    await asyncio.to_thread(
                        wait_for, lambda: emulator.changer.enabled, 15, "coins accepted", config_dir
                    )
                    for coin in (50, 50, 20, 100):  # 120 to the tubes, a euro to the cash box
                        emulator.insert_coin(coin)
                    await asyncio.to_thread(
                        wait_for,
                        lambda: cash_rows(config_dir).get(reference, {}).get("coins") == 220,
                        15,
                        "the credit committed",
                        config_dir,
                    )
                    process.send_signal(signal.SIGKILL)
                    await asyncio.to_thread(process.wait, 10)
                finally:
                    await asyncio.to_thread(stop, process, signal.SIGKILL)

                (row,) = journal_rows(config_dir)
                assert row["id"] == session_id and row["state"] == "authorizing"
                assert emulator.changer.paid_out == []
                assert emulator.tube_levels() == {5: 10, 10: 10, 20: 11, 50: 12}

                process = await asyncio.to_thread(start, config_dir, port)
                try:

                    def resolved() -> dict[str, Any] | None:
                        rows = journal_rows(config_dir)
                        return rows[0] if rows and rows[0]["state"] == "failed" else None

                    row = await asyncio.to_thread(
                        wait_for, resolved, 30, "the session to be resolved", config_dir
                    )
                    await asyncio.to_thread(
                        wait_for,
                        lambda: cash_rows(config_dir)[reference]["closed"],
                        15,
                        "the cash session closed",
                        config_dir,
                    )
                finally:
                    await asyncio.to_thread(stop, process)
                assert row["outcome"] == "payment_error"
                assert row["snapshot"]["reason"] == "interrupted_while_authorizing"
                steps = [(step, phase) for step, phase, _ in row["steps"]]
                assert ("release", "done") in steps and ("authorize", "done") not in steps
                assert sorted(emulator.changer.paid_out, reverse=True) == [50, 50, 50, 50, 20]
                stored = cash_rows(config_dir)[reference]
                assert stored["paid_out"] == 220 and stored["shortfall"] == 0

                # Once only: another start finds nothing to give back.
                process = await asyncio.to_thread(start, config_dir, port)
                await asyncio.to_thread(stop, process)
                assert sum(emulator.changer.paid_out) == 220
                log = (config_dir / "hub.log").read_text()
                assert "given back to the customer" in log
        finally:
            os.close(line_keeper)
