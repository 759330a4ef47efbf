"""Stock of a local machine after restocks, counts and plan changes, and what the recorder's
ledger makes of them; cancelling a session only the journal still has.

Each test runs a real hub from a configuration folder (the vend engine and its journal on disk,
the ``simulator`` board, the ``instant`` test provider: not real money); the ledger tests add
the recorder, once per database backend (the recorder tests' fixtures).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from vendhub.core.errors import InvalidServiceData
from vendhub.core.events import Event
from vendhub.core.hub import Hub
from vendhub.recorder.models import StockLevel, StockMovement
from vendhub.vending.engine import SESSIONS_IN_MEMORY

MACHINE = "demo_kiosk"
# The demo machine's planogram (config/configuration.yaml).
CONFIGURATION = """\
vendhub:
  name: Stock counts test
  currency: EUR
{recorder}vending:
  machines:
    demo_kiosk:
      planogram:
        A1: {{product: Cola 0.5 l, price: 180, capacity: 8, par: 4, stock: 6}}
        A2: {{product: Sparkling water 0.5 l, price: 120, capacity: 8, par: 4}}
        B1: {{product: Chocolate bar, price: 150, capacity: 10, par: 5, stock: 3}}
      dispenser:
        platform: simulator
        dispense_time: 0
      payments:
        - platform: instant
"""


def write_config(config_dir: Path, db_url: str | None = None) -> None:
    recorder = (
        "" if db_url is None else f'recorder:\n  db_url: "{db_url}"\n  commit_interval: 0.1\n'
    )
    (config_dir / "configuration.yaml").write_text(CONFIGURATION.format(recorder=recorder))


async def call(hub: Hub, service: str, **data: Any) -> Any:
    return await hub.services.async_call(
        "vending", service, {"machine_id": MACHINE, **data}, blocking=True
    )


def stock(hub: Hub) -> dict[str, int]:
    engine = hub.data["vending"].engine(MACHINE)
    shown = {
        code: int(hub.states.get(f"slot.{MACHINE}_{code.lower()}").state) for code in engine.stock
    }
    assert shown == engine.stock
    return dict(engine.stock)


def refills(hub: Hub) -> list[Event]:
    seen: list[Event] = []
    hub.bus.async_listen("stock_refilled", seen.append)
    return seen


async def ledger(hub: Hub, db_url: str) -> tuple[list[tuple[Any, ...]], dict[str, int]]:
    """The recorder's stock movements (slot, kind, quantity, stock after) and levels."""
    await hub.data["recorder"].async_flush()
    engine = create_engine(db_url)
    try:
        with engine.connect() as connection:
            movements = connection.execute(
                select(
                    StockMovement.slot_code,
                    StockMovement.kind,
                    StockMovement.quantity,
                    StockMovement.stock_after,
                ).order_by(StockMovement.id)
            ).all()
            levels = connection.execute(select(StockLevel.slot_code, StockLevel.quantity)).all()
    finally:
        engine.dispose()
    return [tuple(row) for row in movements], {code: quantity for code, quantity in levels}


# ---- a restock without counts --------------------------------------------------------------


async def test_a_restock_to_par_never_takes_items_away(tmp_path: Path, hubs) -> None:
    write_config(tmp_path)
    hub = await hubs(tmp_path)
    seen = refills(hub)
    await call(hub, "restock", slots={"B1": 10})  # the driver counted a full slot
    assert stock(hub) == {"A1": 6, "A2": 4, "B1": 10}

    # Every slot to its par level: A1 (6, par 4) and B1 (10, par 5) keep what they hold.
    result = await call(hub, "restock")
    assert result["slots"] == {
        "A1": {"product": "Cola 0.5 l", "added": 0, "stock": 6},
        "A2": {"product": "Sparkling water 0.5 l", "added": 0, "stock": 4},
        "B1": {"product": "Chocolate bar", "added": 0, "stock": 10},
    }
    assert stock(hub) == {"A1": 6, "A2": 4, "B1": 10}

    # One slot to par (the restock route's and the fleet's restock command's way).
    result = await call(hub, "restock", fill=["B1"])
    assert result["slots"] == {"B1": {"product": "Chocolate bar", "added": 0, "stock": 10}}
    assert all(change["added"] >= 0 for event in seen for change in event.data["slots"].values())
    await call(hub, "restock", slots={"A1": 1})
    result = await call(hub, "restock", fill="A1")
    assert result["slots"] == {"A1": {"product": "Cola 0.5 l", "added": 3, "stock": 4}}
    assert stock(hub) == {"A1": 4, "A2": 4, "B1": 10}

    with pytest.raises(InvalidServiceData, match="no slot 'Q7'"):
        await call(hub, "restock", fill=["Q7"])
    with pytest.raises(InvalidServiceData, match="slot A1 is both counted and filled"):
        await call(hub, "restock", slots={"A1": 2}, fill=["A1"])
    assert stock(hub) == {"A1": 4, "A2": 4, "B1": 10}


async def test_par_0_means_no_par_level_a_restock_fills_to_capacity(tmp_path: Path, hubs) -> None:
    write_config(tmp_path)
    hub = await hubs(tmp_path)
    changed = await call(hub, "set_slots", slots={"A2": {"par": 0}})
    # The par of the result is the fill level: the capacity for a slot without a par level.
    assert changed["slots"]["A2"] == {
        "product": "Sparkling water 0.5 l",
        "price": 120,
        "capacity": 8,
        "par": 8,
    }
    assert stock(hub)["A2"] == 4
    await call(hub, "restock")
    assert stock(hub) == {"A1": 6, "A2": 8, "B1": 5}
    await call(hub, "restock", slots={"A2": 2})
    await call(hub, "restock", fill=["A2"])
    assert stock(hub)["A2"] == 8


# ---- counts and plan changes in the ledger ---------------------------------------------------


async def test_a_smaller_capacity_cuts_the_stock_as_a_ledger_correction(
    tmp_path: Path, hubs, db_url: str
) -> None:
    write_config(tmp_path, db_url)
    hub = await hubs(tmp_path)
    seen = refills(hub)
    await call(hub, "set_slots", slots={"A1": {"capacity": 2}})
    assert stock(hub)["A1"] == 2
    assert [event.data["slots"] for event in seen] == [
        {"A1": {"product": "Cola 0.5 l", "added": -4, "stock": 2}}
    ]
    movements, levels = await ledger(hub, db_url)
    assert movements == [("A1", "correction", -4, 2)]
    assert levels == {"A1": 2}

    # A sale after it goes on from the cut level, in the engine as in the ledger.
    sold = await call(hub, "select", slot="A1", method="card")
    assert (sold["outcome"], sold["stock_after"]) == ("completed", 1)
    movements, levels = await ledger(hub, db_url)
    assert movements[-1] == ("A1", "vend", -1, 1)
    assert levels == {"A1": 1}


async def test_a_count_below_the_stock_is_a_correction_above_it_a_refill(
    tmp_path: Path, hubs, db_url: str
) -> None:
    write_config(tmp_path, db_url)
    hub = await hubs(tmp_path)
    await call(hub, "restock", slots={"A1": 2, "B1": 9})  # A1 held 6, B1 3
    await call(hub, "restock", slots={"A1": 8})
    movements, levels = await ledger(hub, db_url)
    assert movements == [
        ("A1", "correction", -4, 2),
        ("B1", "refill", 6, 9),
        ("A1", "refill", 6, 8),
    ]
    assert levels == {"A1": 8, "B1": 9}


# ---- cancel of a session only the journal has ------------------------------------------------


async def test_cancel_answers_a_session_of_before_a_restart_as_it_is(tmp_path: Path, hubs) -> None:
    write_config(tmp_path)
    hub = await hubs(tmp_path)
    sold = await call(hub, "select", slot="A1", method="card")
    assert sold["outcome"] == "completed"
    await hub.async_stop()

    hub = await hubs(tmp_path)
    seen = await call(hub, "session", session_id=sold["session_id"])
    assert seen == sold
    assert await call(hub, "cancel", session_id=sold["session_id"]) == sold
    with pytest.raises(InvalidServiceData, match="no vend session 'nope'"):
        await call(hub, "cancel", session_id="nope")


async def test_cancel_answers_a_session_older_than_those_kept_in_memory(
    tmp_path: Path, hubs
) -> None:
    write_config(tmp_path)
    hub = await hubs(tmp_path)
    await call(hub, "set_mode", mode="free_vend")
    await call(hub, "restock", slots={"B1": 10})
    first = await call(hub, "select", slot="B1", method="card")
    for _ in range(SESSIONS_IN_MEMORY):
        await call(hub, "restock", fill=["B1"])
        assert (await call(hub, "select", slot="B1", method="card"))["outcome"] == "completed"
    engine = hub.data["vending"].engine(MACHINE)
    assert first["session_id"] not in engine._sessions  # only the journal has it now
    assert await call(hub, "session", session_id=first["session_id"]) == first
    assert await call(hub, "cancel", session_id=first["session_id"]) == first


# ---- a count while the slot is selling -------------------------------------------------------


async def test_a_count_of_the_slot_selling_now_is_refused_until_the_session_ends(
    tmp_path: Path, hubs
) -> None:
    write_config(tmp_path)
    hub = await hubs(tmp_path)
    engine = hub.data["vending"].engine(MACHINE)
    engine.machine.providers[0].approval_delay = 0.5
    started = await call(hub, "select", slot="A1", method="card", wait=False)
    assert started["state"] == "authorizing"

    with pytest.raises(InvalidServiceData, match="slot A1 of machine demo_kiosk is selling now"):
        await call(hub, "restock", slots={"A1": 0})
    with pytest.raises(InvalidServiceData, match="selling now"):
        await call(hub, "restock", slots={"A1": 3, "B1": 10})
    assert stock(hub) == {"A1": 6, "A2": 4, "B1": 3}  # nothing changed
    # Other slots may be counted, and filling to par takes nothing away.
    await call(hub, "restock", slots={"B1": 10})
    await call(hub, "restock")

    final = await engine.async_wait(started["session_id"], timeout=5)
    assert (final.outcome.value, final.stock_after) == ("completed", 5)
    # The count after the sale is the one that stands.
    await call(hub, "restock", slots={"A1": 0})
    assert stock(hub) == {"A1": 0, "A2": 4, "B1": 10}
    with pytest.raises(Exception, match="sold out"):
        await call(hub, "select", slot="A1", method="card")
