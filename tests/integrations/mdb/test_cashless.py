"""The card reader provider against the emulated adapter on a real pty pair."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import voluptuous as vol

from vendhub.core.hub import Hub
from vendhub.vending.money import Money
from vendhub.vending.payment import (
    PaymentDeclined,
    PaymentError,
    PaymentMethod,
    PaymentRequest,
    PaymentStatus,
)
from vendhub_integrations.mdb import vendhub_payment_provider
from vendhub_integrations.mdb.cashless import MdbCashlessProvider, item_number
from vendhub_integrations.mdb.emulator import MdbAdapterEmulator, ReaderSetup

from .conftest import Progress, wait_until


def card_request(amount: int, session_id: str = "s1", item: str = "A1") -> PaymentRequest:
    return PaymentRequest(
        session_id=session_id,
        machine_id="lobby_1",
        amount=Money(amount, "EUR"),
        method=PaymentMethod.card,
        item=item,
        description="Cola",
    )


@asynccontextmanager
async def reader(
    hub: Hub, pair: Any, options: dict[str, Any] | None = None, **emulator_options: Any
) -> AsyncIterator[tuple[MdbCashlessProvider, MdbAdapterEmulator]]:
    emulator = MdbAdapterEmulator(pair.device, **emulator_options)
    async with emulator:
        provider = MdbCashlessProvider(
            hub,
            "lobby_1",
            {"port": pair.host, "reply_timeout": 1, "card_timeout": 2, **(options or {})},
        )
        await provider.async_start()
        try:
            yield provider, emulator
        finally:
            await provider.async_stop()


def test_hook_provides_both_platforms() -> None:
    assert vendhub_payment_provider(platform="mdb") is MdbCashlessProvider
    cash = vendhub_payment_provider(platform="mdb_cash")
    assert cash is not None and cash.platform == "mdb_cash" and cash.multi_vend
    assert vendhub_payment_provider(platform="qr_gateway") is None


async def test_card_approved_then_captured(hub: Hub, serial_pair) -> None:
    async with reader(hub, serial_pair) as (provider, emulator):
        progress = Progress()
        authorization = await provider.async_authorize(card_request(150), progress)
        assert authorization.provider == "mdb"
        assert authorization.amount == Money(150, "EUR")
        assert authorization.details["item"] == 101  # A1 → row 1, column 1
        assert await provider.async_status(authorization) is PaymentStatus.authorized
        assert emulator.charged == []
        await provider.async_capture(authorization, Money(150, "EUR"))
        await provider.async_capture(authorization, Money(150, "EUR"))  # a repeat is a no-op
        assert await provider.async_status(authorization) is PaymentStatus.captured
        assert await provider.async_close(authorization) is None
    assert emulator.charged == ["1.50"]
    assert progress.steps[0] == {"step": "present_card"}
    # The setup came from the reader (D,STATUS), then the vend.
    assert emulator.host_lines() == [
        "D,2",
        "D,STATUS",
        "D,READER,1",
        "D,REQ,1.50,101",
        "D,END",
    ]
    assert provider.scaling is not None and provider.scaling.decimal_places == 2


async def test_denied_card_raises_declined(hub: Hub, serial_pair) -> None:
    async with reader(hub, serial_pair, card_result="deny") as (provider, emulator):
        with pytest.raises(PaymentDeclined) as declined:
            await provider.async_authorize(card_request(150), Progress())
        assert declined.value.reason == "declined"
        status = await provider.async_status(_authorization_for(provider, "s1", Money(150, "EUR")))
        assert status is PaymentStatus.declined
    assert emulator.charged == []
    assert emulator.reversed == []


async def test_reader_timeout_is_an_error_and_nothing_is_charged(hub: Hub, serial_pair) -> None:
    async with reader(hub, serial_pair, {"card_timeout": 0.3}, card_result="silent") as (
        provider,
        emulator,
    ):
        with pytest.raises(PaymentError, match=r"no result within 0\.3 s"):
            await provider.async_authorize(card_request(150), Progress())
        # The pending vend request was cancelled at the reader.
        assert emulator.host_lines()[-1] == "D,REQ,-1"
        # The reader is usable again: the next customer pays.
        emulator.card_result = "approve"
        authorization = await provider.async_authorize(card_request(200, "s2"), Progress())
        await provider.async_capture(authorization, Money(200, "EUR"))
    assert emulator.charged == ["2.00"]


async def test_cancel_while_waiting_for_the_card(hub: Hub, serial_pair) -> None:
    async with reader(hub, serial_pair, present_delay=None) as (provider, emulator):
        task = asyncio.create_task(provider.async_authorize(card_request(150), Progress()))
        await wait_until(lambda: "D,REQ,1.50,101" in emulator.host_lines())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert emulator.host_lines()[-1] == "D,REQ,-1"
        assert ("adapter", "d,STATUS,RESULT,-1") in emulator.transcript
        emulator.present_card()  # too late: the reader is idle, nothing happens
        await asyncio.sleep(0.05)
        assert emulator.charged == []
        assert emulator.transcript[-1] == ("adapter", "d,STATUS,RESULT,-1")


async def test_lost_reply_is_an_error_then_the_reader_recovers(hub: Hub, serial_pair) -> None:
    async with reader(hub, serial_pair) as (provider, emulator):
        emulator.lose_reply("D,READER,1")
        with pytest.raises(PaymentError, match="IDLE"):
            await provider.async_authorize(card_request(150), Progress())
        assert emulator.charged == []
        # Next time the provider initialises again; the adapter says its master is on.
        authorization = await provider.async_authorize(card_request(150, "s2"), Progress())
        await provider.async_capture(authorization, Money(150, "EUR"))
    assert ("adapter", 'd,ERR,"cashless master is on"') in emulator.transcript
    assert emulator.charged == ["1.50"]


async def test_lost_reply_to_vend_success_leaves_the_payment_authorized(
    hub: Hub, serial_pair
) -> None:
    async with reader(hub, serial_pair) as (provider, emulator):
        authorization = await provider.async_authorize(card_request(150), Progress())
        emulator.lose_reply("D,END")
        with pytest.raises(PaymentError, match="IDLE after D,END"):
            await provider.async_capture(authorization, Money(150, "EUR"))
        assert await provider.async_status(authorization) is PaymentStatus.authorized


async def test_void_reverses_at_the_reader(hub: Hub, serial_pair) -> None:
    async with reader(hub, serial_pair) as (provider, emulator):
        authorization = await provider.async_authorize(card_request(250), Progress())
        await provider.async_void(authorization)
        await provider.async_void(authorization)  # a repeat is a no-op
        assert await provider.async_status(authorization) is PaymentStatus.voided
        with pytest.raises(PaymentError):
            await provider.async_capture(authorization, Money(250, "EUR"))
    assert emulator.host_lines()[-1] == "D,END,-1"
    assert emulator.reversed == ["2.50"]
    assert emulator.charged == []


async def test_refund_after_capture_is_refused_clearly(hub: Hub, serial_pair) -> None:
    async with reader(hub, serial_pair) as (provider, _emulator):
        authorization = await provider.async_authorize(card_request(150), Progress())
        await provider.async_capture(authorization, Money(150, "EUR"))
        with pytest.raises(PaymentError, match="cannot refund after vend success"):
            await provider.async_refund(authorization, Money(150, "EUR"))
        with pytest.raises(PaymentError, match="exactly the approved"):
            other = await provider.async_authorize(card_request(150, "s2"), Progress())
            await provider.async_capture(other, Money(100, "EUR"))


async def test_scale_factor_and_decimals_from_the_reader(hub: Hub, serial_pair) -> None:
    setup = ReaderSetup(scale_factor=5, decimal_places=2)
    async with reader(hub, serial_pair, reader=setup) as (provider, emulator):
        with pytest.raises(PaymentError, match="not a multiple of the device's smallest step"):
            await provider.async_authorize(card_request(123), Progress())
        authorization = await provider.async_authorize(card_request(125, "s2"), Progress())
        await provider.async_capture(authorization, Money(125, "EUR"))
        authorization = await provider.async_authorize(card_request(300, "s3"), Progress())
        await provider.async_capture(authorization, Money(300, "EUR"))
    assert "D,REQ,1.25,101" in emulator.host_lines()
    assert "D,REQ,3,101" in emulator.host_lines()
    assert "D,REQ,1.23,101" not in emulator.host_lines()
    assert emulator.charged == ["1.25", "3.00"]


async def test_reader_with_one_decimal_place(hub: Hub, serial_pair) -> None:
    setup = ReaderSetup(scale_factor=1, decimal_places=1)
    async with reader(hub, serial_pair, reader=setup) as (provider, emulator):
        with pytest.raises(PaymentError, match="needs 2 decimal places"):
            await provider.async_authorize(card_request(125), Progress())
        authorization = await provider.async_authorize(card_request(120, "s2"), Progress())
        await provider.async_capture(authorization, Money(120, "EUR"))
    assert "D,REQ,1.2,101" in emulator.host_lines()
    assert emulator.charged == ["1.2"]


async def test_reader_in_another_currency_is_refused(hub: Hub, serial_pair) -> None:
    setup = ReaderSetup(currency_code=1756)  # Swiss francs
    async with reader(hub, serial_pair, reader=setup) as (provider, emulator):
        with pytest.raises(PaymentError, match="MDB currency 1756, not EUR"):
            await provider.async_authorize(card_request(150), Progress())
    assert not any(line.startswith("D,REQ") for line in emulator.host_lines())


async def test_authorization_first_mode(hub: Hub, serial_pair) -> None:
    options = {"mode": "authorize_first", "items": {"A1": 7}}
    async with reader(hub, serial_pair, options, present_delay=None, funds="5.00") as (
        provider,
        emulator,
    ):
        progress = Progress()
        task = asyncio.create_task(provider.async_authorize(card_request(150), progress))
        # The emulator notes IDLE as it sends it; the provider asks for the card once it
        # has read it.
        await wait_until(lambda: ("adapter", "d,STATUS,IDLE") in emulator.transcript)
        await wait_until(lambda: progress.steps)
        assert progress.steps == [{"step": "present_card"}]
        emulator.present_card()
        authorization = await task
        await provider.async_capture(authorization, Money(150, "EUR"))
    assert emulator.host_lines() == ["D,1", "D,STATUS", "D,READER,1", "D,REQ,1.50,7", "D,END"]
    assert ("adapter", "d,STATUS,CREDIT,5.00") in emulator.transcript
    assert emulator.charged == ["1.50"]


async def test_authorization_first_with_too_little_on_the_card(hub: Hub, serial_pair) -> None:
    async with reader(
        hub, serial_pair, {"mode": "authorize_first"}, present_delay=None, funds="1.00"
    ) as (provider, emulator):
        task = asyncio.create_task(provider.async_authorize(card_request(150), Progress()))
        await wait_until(lambda: ("adapter", "d,STATUS,IDLE") in emulator.transcript)
        emulator.present_card()
        with pytest.raises(PaymentDeclined) as declined:
            await task
        assert declined.value.reason == "insufficient_funds"
    assert emulator.host_lines()[-1] == "D,REQ,-1"
    assert emulator.charged == []


def test_item_numbers() -> None:
    assert item_number("12", {}) == 12
    assert item_number("B3", {}) == 203
    assert item_number("B3", {"B3": 9}) == 9
    with pytest.raises(PaymentError, match="has no MDB item number"):
        item_number("chips", {})


async def test_bad_options_are_named(hub: Hub) -> None:
    with pytest.raises(vol.Invalid, match="mode"):
        MdbCashlessProvider(hub, "lobby_1", {"port": "/dev/null", "mode": "sometimes"})
    with pytest.raises(vol.Invalid, match="port"):
        MdbCashlessProvider(hub, "lobby_1", {})


def _authorization_for(provider: MdbCashlessProvider, session_id: str, amount: Money):
    from vendhub.vending.payment import Authorization

    return Authorization(
        provider="mdb", method=PaymentMethod.card, reference=f"mdb-{session_id}", amount=amount
    )


async def test_authorization_first_card_presented_before_the_selection(
    hub: Hub, serial_pair
) -> None:
    async with reader(
        hub, serial_pair, {"mode": "authorize_first"}, present_delay=None, funds="-1"
    ) as (provider, emulator):
        # A first vend enables the reader; then the next customer taps before choosing.
        task = asyncio.create_task(provider.async_authorize(card_request(100), Progress()))
        await wait_until(lambda: ("adapter", "d,STATUS,IDLE") in emulator.transcript)
        emulator.present_card()
        first = await task
        await provider.async_capture(first, Money(100, "EUR"))
        emulator.present_card()
        await wait_until(lambda: emulator.transcript[-1] == ("adapter", "d,STATUS,CREDIT,-1"))
        second = await provider.async_authorize(card_request(150, "s2"), Progress())
        await provider.async_capture(second, Money(150, "EUR"))
    assert emulator.charged == ["1.00", "1.50"]
