"""``sales_today`` / ``revenue_today`` of a local machine survive a hub restart.

Each test runs a real hub from a configuration folder (vend journal on disk, simulator board,
``instant`` provider), sells, stops it and starts a new hub on the same folder: the machine
entity counts the local day's completed sessions from the journal, then the live sales, each
session once.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta
from datetime import time as wall_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from vendhub.const import EVENT_VEND_COMPLETED
from vendhub.core.hub import Hub
from vendhub.vending.journal import read_journal
from vendhub.vending.outcomes import ledger_data

# Kiritimati is UTC+14: local midnight is never UTC midnight, so a day counted in UTC (or in
# the machine's zone taken wrongly) puts the sessions around local midnight on the wrong side.
TIME_ZONE = "Pacific/Kiritimati"

CONFIGURATION = """\
vendhub:
  name: Sales today test
  currency: EUR
  time_zone: {time_zone}
{extra}
vending:
  machines:
    kiosk_1:
      currency: {currency}
      planogram:
        A1: {{product: Cola, price: 150, capacity: 20, stock: 20}}
        A2: {{product: Water, price: 120, capacity: 20, stock: 20}}
        A3: {{product: Gum, price: 75, capacity: 20, stock: 20}}
      dispenser:
        platform: simulator
        dispense_time: 0
        jam_slots: [A3]
      payments:
        - platform: instant
"""

MACHINE = "machine.kiosk_1"


def write_config(
    config_dir: Path, *, recorder: bool = False, currency: str = "EUR", time_zone: str = TIME_ZONE
) -> None:
    (config_dir / "configuration.yaml").write_text(
        CONFIGURATION.format(
            time_zone=time_zone, extra="recorder:" if recorder else "", currency=currency
        )
    )


async def sell(hub: Hub, slot: str) -> dict[str, Any]:
    result = await hub.services.async_call(
        "vending", "select", {"machine_id": "kiosk_1", "slot": slot, "method": "card"}
    )
    return result


def counters(hub: Hub) -> tuple[int, int]:
    state = hub.states.get(MACHINE)
    assert state is not None
    return state.attributes["sales_today"], state.attributes["revenue_today"]


def journal_path(config_dir: Path) -> Path:
    return config_dir / ".storage" / "vending.journal.db"


def edit_journal(config_dir: Path, sql: str, parameters: tuple[Any, ...]) -> None:
    """Change the journal of a stopped hub, as a crash or the clock would have left it."""
    connection = sqlite3.connect(journal_path(config_dir))
    try:
        with connection:
            assert connection.execute(sql, parameters).rowcount == 1
    finally:
        connection.close()


async def test_the_days_sales_survive_a_restart(tmp_path: Path, hubs) -> None:
    write_config(tmp_path, recorder=True)
    hub = await hubs(tmp_path)
    assert counters(hub) == (0, 0)
    sold = [await sell(hub, slot) for slot in ("A1", "A2", "A1")]
    assert [result["outcome"] for result in sold] == ["completed"] * 3
    jammed = await sell(hub, "A3")  # a vend_failed after a dispense: in the ledger, no sale
    assert jammed["outcome"] == "dispense_failed"
    await hub.services.async_call(
        "vending", "set_mode", {"machine_id": "kiosk_1", "mode": "free_vend"}
    )
    free = await sell(hub, "A2")  # a sale without revenue
    assert free["outcome"] == "completed" and free["free_vend"] is True
    await hub.services.async_call(
        "vending", "set_mode", {"machine_id": "kiosk_1", "mode": "normal"}
    )
    assert counters(hub) == (4, 420)
    await hub.async_stop()

    hub = await hubs(tmp_path)
    assert counters(hub) == (4, 420)
    after = await sell(hub, "A2")
    assert after["outcome"] == "completed"
    assert counters(hub) == (5, 540)
    await hub.async_stop()

    # The same figures as the recorder's ledger of the day.
    with sqlite3.connect(tmp_path / "vendhub.db") as database:
        ledger = database.execute(
            "SELECT count(*), sum(price) FROM vend_transactions WHERE outcome = 'completed'"
        ).fetchone()
    assert ledger == (5, 540)


async def test_a_session_fired_again_at_start_is_counted_once(tmp_path: Path, hubs) -> None:
    write_config(tmp_path)
    hub = await hubs(tmp_path)
    sold = [await sell(hub, slot) for slot in ("A1", "A2", "A1")]
    assert counters(hub) == (3, 420)
    await hub.async_stop()
    # Completed, but its ledger event never reached the recorder: the engine fires it again.
    again = sold[1]["session_id"]
    edit_journal(tmp_path, "UPDATE sessions SET recorded = 0 WHERE id = ?", (again,))

    hub = await hubs(tmp_path)
    rows = {row["id"]: row for row in read_journal(journal_path(tmp_path))}
    assert rows[again]["recorded"] and rows[again]["resolved_after_restart"]
    assert counters(hub) == (3, 420)
    # The same session's vend_completed once more (as a re-fire that reaches the entity live):
    # still counted once.
    engine = hub.data["vending"].engine("kiosk_1")
    session = engine.session(again)
    assert session is not None
    hub.bus.async_fire(EVENT_VEND_COMPLETED, ledger_data(session))
    await hub.async_block_till_done()
    assert counters(hub) == (3, 420)
    await sell(hub, "A1")
    assert counters(hub) == (4, 570)


async def test_sales_of_yesterday_do_not_count(tmp_path: Path, hubs) -> None:
    write_config(tmp_path)
    hub = await hubs(tmp_path)
    sold = [await sell(hub, slot) for slot in ("A1", "A2", "A1")]
    assert counters(hub) == (3, 420)
    await hub.async_stop()

    zone = ZoneInfo(TIME_ZONE)
    midnight = datetime.combine(datetime.now(zone).date(), wall_time.min, tzinfo=zone)
    before_midnight = (midnight - timedelta(minutes=1)).timestamp()
    set_finished = "UPDATE sessions SET snapshot = json_set(snapshot, '$.finished_at', ?)"
    # Finished a minute before local midnight, written since (closed at a start after it).
    for sale in (sold[0], sold[2]):
        edit_journal(
            tmp_path, set_finished + " WHERE id = ?", (before_midnight, sale["session_id"])
        )
    # Finished and written yesterday.
    edit_journal(
        tmp_path,
        set_finished + ", updated = ? WHERE id = ?",
        (before_midnight - 3600, before_midnight - 3600, sold[1]["session_id"]),
    )

    hub = await hubs(tmp_path)
    assert counters(hub) == (0, 0)  # all of yesterday: none today
    await hub.async_stop()

    # Finished a second after local midnight: today's.
    edit_journal(
        tmp_path, set_finished + " WHERE id = ?", (midnight.timestamp() + 1, sold[2]["session_id"])
    )
    hub = await hubs(tmp_path)
    assert counters(hub) == (1, 150)
    await sell(hub, "A2")
    assert counters(hub) == (2, 270)


async def test_revenue_is_in_the_machines_currency(tmp_path: Path, hubs) -> None:
    write_config(tmp_path)
    hub = await hubs(tmp_path)
    await sell(hub, "A1")
    await sell(hub, "A2")
    assert counters(hub) == (2, 270)
    await hub.async_stop()

    write_config(tmp_path, currency="USD")  # the machine's currency changed during the day
    hub = await hubs(tmp_path)
    assert hub.states.get(MACHINE).attributes["currency"] == "USD"
    assert counters(hub) == (2, 0)  # two sales today, none of them in dollars
    await sell(hub, "A1")
    assert counters(hub) == (3, 150)
