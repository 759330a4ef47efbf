"""The demo's test doubles (the ``instant`` provider, the ``simulator`` board) remember only
their latest vends: a demo that sells for months does not grow."""

from __future__ import annotations

import pytest

from vendhub.core.hub import Hub
from vendhub.vending.money import Money
from vendhub.vending.payment import PaymentError, PaymentMethod, PaymentRequest
from vendhub_integrations.vending.instant_payment import KEEP_PAYMENTS, InstantPaymentProvider
from vendhub_integrations.vending.simulator_board import KEEP_COMMANDS, SimulatorDispenser


def _request(number: int) -> PaymentRequest:
    return PaymentRequest(
        session_id=f"session{number:04d}",
        machine_id="lobby_1",
        amount=Money(150, "EUR"),
        method=PaymentMethod.card,
        item="A1",
        description="Cola",
    )


async def test_the_instant_provider_remembers_its_latest_payments(hub: Hub) -> None:
    provider = InstantPaymentProvider(hub, "lobby_1", {})
    authorizations = [
        await provider.async_authorize(_request(number), lambda step: None)
        for number in range(KEEP_PAYMENTS + 5)
    ]

    assert len(provider.payments) == KEEP_PAYMENTS
    await provider.async_capture(authorizations[-1], Money(150, "EUR"))
    with pytest.raises(PaymentError, match="unknown payment reference"):
        await provider.async_capture(authorizations[0], Money(150, "EUR"))


async def test_the_simulator_board_remembers_its_latest_commands(hub: Hub) -> None:
    board = SimulatorDispenser(hub, "lobby_1", {"dispense_time": 0})
    for number in range(KEEP_COMMANDS + 5):
        result = await board.async_dispense("A1", f"vend{number}")
        assert result.ok

    assert len(board.commands) == KEEP_COMMANDS
    assert board.commands[-1].vend_id == f"vend{KEEP_COMMANDS + 4}"
    assert board.commands[0].vend_id == "vend5"
    assert board.dropped == {"A1": KEEP_COMMANDS + 5}
