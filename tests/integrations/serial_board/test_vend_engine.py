"""The serial board under the real vend engine and the vending integration's option checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.serial_pty import PtyPair
from vendhub.config.errors import ConfigError
from vendhub.config.validation import validate
from vendhub.core.hub import Hub
from vendhub.vending.engine import MachineSetup, Timeouts, VendEngine
from vendhub.vending.journal import VendJournal
from vendhub.vending.planogram import SlotPlan
from vendhub.vending.session import SessionState, VendOutcome
from vendhub_integrations.serial_board.board import SerialBoardDispenser
from vendhub_integrations.serial_board.emulator import Fault, SerialBoardEmulator
from vendhub_integrations.vending.instant_payment import InstantPaymentProvider
from vendhub_integrations.vending.schema import platform_options_schema

from .conftest import dispenser_options, wait_until


async def test_engine_vends_through_the_board_and_voids_a_jam(
    hub: Hub, tmp_path: Path, serial_pair: PtyPair, emulator: SerialBoardEmulator
) -> None:
    dispenser = SerialBoardDispenser(hub, "lobby_1", dispenser_options(serial_pair.host))
    provider = InstantPaymentProvider(
        hub, "lobby_1", {"ledger_file": str(tmp_path / "instant.jsonl")}
    )
    journal = VendJournal(tmp_path / ".storage" / "vending.journal.db")
    engine = VendEngine(
        hub,
        MachineSetup(
            machine_id="lobby_1",
            currency="EUR",
            planogram={"A1": SlotPlan("Cola", 150, 10), "B2": SlotPlan("Water", 100, 10)},
            stock={"A1": 3, "B2": 3},
            dispenser=dispenser,
            providers=[provider],
            timeouts=Timeouts(payment=5, dispense=10, capture=2, void=2),
        ),
        journal,
    )
    await engine.async_start()
    try:
        await wait_until(lambda: dispenser.online)
        sold = await engine.async_select(slot="B2", method="card")
        final = await engine.async_wait(sold.id, timeout=10)
        assert (final.state, final.outcome) == (SessionState.completed, VendOutcome.completed)
        assert engine.stock["B2"] == 2

        emulator.inject(Fault.jam, selection=1)
        jammed = await engine.async_select(slot="A1", method="card")
        final = await engine.async_wait(jammed.id, timeout=10)
        assert final.outcome is VendOutcome.dispense_failed
        assert final.dispense is not None and final.dispense.outcome.value == "jammed"
        assert engine.stock["A1"] == 3
        assert [drive.selection for drive in emulator.record.drives] == [12, 1]
    finally:
        await engine.async_stop()
        await journal.async_close()


def test_vending_config_errors_point_at_the_option() -> None:
    schema = platform_options_schema(SerialBoardDispenser)
    entry = {"platform": "serial_board", "port": "/dev/ttyUSB0", "selections": {"A1": 1, "A2": 1}}
    with pytest.raises(ConfigError, match="slots A1 and A2 both drive selection 1"):
        validate(schema, entry, root_path=("vending", "machines", "lobby_1", "dispenser"))
    valid = validate(schema, {"platform": "serial_board", "port": "/dev/ttyUSB0"})
    assert valid["baudrate"] == 57600
