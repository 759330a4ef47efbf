"""The demo's test doubles (the ``instant`` provider, the ``simulator`` board) remember only
their latest vends: a demo that sells for months does not grow. The simulator board reports a
temperature and its door only when told to."""

from __future__ import annotations

from typing import Any

import pytest
import voluptuous as vol

from vendhub.core.hub import Hub
from vendhub.vending.dispenser import DispenserStatus
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


def _board(hub: Hub, **options: Any) -> SimulatorDispenser:
    """A simulator board of options checked as the ``vending:`` block checks them."""
    return SimulatorDispenser(hub, "lobby_1", vol.Schema(dict(SimulatorDispenser.OPTIONS))(options))


async def test_the_simulator_board_reports_no_temperature_or_door_unless_told(hub: Hub) -> None:
    board = _board(hub)

    assert await board.async_status() == DispenserStatus(
        online=True, temperature=None, door_open=None
    )


async def test_the_simulator_board_reports_the_temperature_and_door_of_its_options(
    hub: Hub,
) -> None:
    board = _board(hub, temperature="4.5", door_open="no", offline=True)

    assert await board.async_status() == DispenserStatus(
        online=False, temperature=4.5, door_open=False
    )
    assert await _board(hub, temperature=-2, door_open=True).async_status() == DispenserStatus(
        online=True, temperature=-2.0, door_open=True
    )


async def test_the_simulator_boards_setters_change_what_it_reports(hub: Hub) -> None:
    board = _board(hub, temperature=4.5, door_open=False)
    heard: list[DispenserStatus] = []
    board.async_listen(heard.append)

    board.set_temperature(9.0)
    board.set_door(True)
    status = await board.async_status()
    assert (status.temperature, status.door_open) == (9.0, True)
    assert heard[-1] == status  # as a board that reports a change by itself

    board.set_temperature(None)
    board.set_door(None)
    status = await board.async_status()
    assert (status.temperature, status.door_open) == (None, None)

    with pytest.raises(ValueError, match="temperature: expected a number, got 'warm'"):
        board.set_temperature("warm")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="door: expected True, False or None, got 'open'"):
        board.set_door("open")  # type: ignore[arg-type]
    assert (board.temperature, board.door_open) == (None, None)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"temperature": "warm"}, r"expected a number, got 'warm' \(str\).*\['temperature'\]"),
        ({"temperature": float("nan")}, r"expected a finite number.*\['temperature'\]"),
        ({"door_open": "ajar"}, r"expected a boolean .*got 'ajar' \(str\).*\['door_open'\]"),
    ],
)
def test_a_bad_temperature_or_door_option_is_refused_naming_it(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(vol.Invalid, match=message):
        vol.Schema(dict(SimulatorDispenser.OPTIONS))(options)
