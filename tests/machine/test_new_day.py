"""A machine's day's sales start at 0 at local midnight, not at the first sale after it."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from vendhub.bootstrap import async_start_hub, prepare
from vendhub.machine import entities
from vendhub.util.dt import utcnow

CONFIGURATION = """\
vendhub:
  time_zone: Pacific/Kiritimati
simulator:
  summary_interval: 0
  tick: 3600
  machines:
    - id: lobby_1
      jam_rate: 0
      failure_rate: 0
      slots:
        A1: {product: Cola, price: 150, capacity: 10}
"""


async def test_the_days_sales_start_at_zero_at_midnight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Midnight comes every 0.3 s here.
    monkeypatch.setattr(
        entities, "next_local_midnight", lambda hub: utcnow() + timedelta(seconds=0.3)
    )
    (tmp_path / "configuration.yaml").write_text(CONFIGURATION)
    prepared = await asyncio.to_thread(prepare, tmp_path)
    assert prepared.issues == []
    hub, _report = await async_start_hub(prepared)
    try:
        for _ in range(2):
            await hub.services.async_call(
                "simulator",
                "vend",
                {"machine_id": "lobby_1", "slot": "A1", "payment_method": "card"},
            )
        attributes = hub.states.get("machine.lobby_1").attributes
        assert (attributes["sales_today"], attributes["revenue_today"]) == (2, 300)
        # A midnight of the same day (the clock's, here) leaves the day's figures alone.
        await asyncio.sleep(0.8)
        attributes = hub.states.get("machine.lobby_1").attributes
        assert (attributes["sales_today"], attributes["revenue_today"]) == (2, 300)

        # The sales were yesterday's: the next midnight shows 0 without a sale.
        machine = hub.data["simulator"].entities["lobby_1"].machine
        assert machine.sales_date is not None
        machine.sales_date -= timedelta(days=1)
        await asyncio.sleep(0.8)
        attributes = hub.states.get("machine.lobby_1").attributes
        assert (attributes["sales_today"], attributes["revenue_today"]) == (0, 0)
    finally:
        await hub.async_stop()
