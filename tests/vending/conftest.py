"""A local machine for the engine's tests: the real engine and journal, the integration's
``simulator`` board and ``instant`` providers (test doubles that move no money)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from vendhub.core.events import Event
from vendhub.core.hub import Hub
from vendhub.vending.engine import MachineSetup, Timeouts, VendEngine
from vendhub.vending.journal import VendJournal
from vendhub.vending.payment import PaymentProvider
from vendhub.vending.planogram import MachineMode, SlotPlan
from vendhub_integrations.vending.instant_payment import (
    InstantCashProvider,
    InstantPaymentProvider,
)
from vendhub_integrations.vending.simulator_board import SimulatorDispenser

PLANOGRAM = {
    "A1": SlotPlan("Cola", 150, 10, 8),
    "A2": SlotPlan("Water", 100, 10),
    "B1": SlotPlan("Chips", 220, 6),
}


class Machine:
    """Builds engines on one journal file, as a hub would across restarts."""

    def __init__(self, hub: Hub, tmp_path: Path) -> None:
        self.hub = hub
        self.tmp_path = tmp_path
        self.journal_path = tmp_path / ".storage" / "vending.journal.db"
        self.ledger_file = tmp_path / "instant.jsonl"
        self.engines: list[VendEngine] = []
        self.journals: list[VendJournal] = []

    async def start(
        self,
        *,
        dispense_time: float = 0.0,
        provider_options: dict[str, Any] | None = None,
        providers: list[PaymentProvider] | None = None,
        cash: dict[str, Any] | None = None,
        stock: dict[str, int] | None = None,
        mode: MachineMode = MachineMode.normal,
        timeouts: Timeouts | None = None,
        dispenser_options: dict[str, Any] | None = None,
    ) -> VendEngine:
        dispenser = SimulatorDispenser(
            self.hub, "lobby_1", {"dispense_time": dispense_time, **(dispenser_options or {})}
        )
        if providers is None:
            providers = [
                InstantPaymentProvider(
                    self.hub,
                    "lobby_1",
                    {"ledger_file": str(self.ledger_file), **(provider_options or {})},
                )
            ]
            if cash is not None:
                providers.append(
                    InstantCashProvider(
                        self.hub, "lobby_1", {"ledger_file": str(self.ledger_file), **cash}
                    )
                )
        journal = VendJournal(self.journal_path)
        engine = VendEngine(
            self.hub,
            MachineSetup(
                machine_id="lobby_1",
                currency="EUR",
                planogram=PLANOGRAM,
                stock=dict(stock or {"A1": 5, "A2": 1, "B1": 0}),
                dispenser=dispenser,
                providers=providers,
                mode=mode,
                timeouts=timeouts or Timeouts(payment=5, dispense=5, capture=2, void=2),
            ),
            journal,
        )
        await engine.async_start()
        self.engines.append(engine)
        self.journals.append(journal)
        return engine

    async def stop(self) -> None:
        for engine in self.engines:
            await engine.async_stop()
        for journal in self.journals:
            await journal.async_close()
        self.engines.clear()
        self.journals.clear()


@pytest.fixture
async def machine(hub: Hub, tmp_path: Path) -> AsyncIterator[Machine]:
    built = Machine(hub, tmp_path)
    yield built
    await built.stop()


@pytest.fixture
def events(hub: Hub) -> Callable[..., list[Event]]:
    """Every event fired on the hub; call with event types to filter."""
    seen: list[Event] = []
    hub.bus.async_listen("*", seen.append)

    def of(*types: str) -> list[Event]:
        return [event for event in seen if not types or event.event_type in types]

    return of
