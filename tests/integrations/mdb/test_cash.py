"""The coin changer and bill validator provider against the emulated adapter on a pty pair.

The emulated changer (euro coins 5, 10, 20, 50 cents to tubes; 1 and 2 euro to the cash box)
and validator (5, 10, 20, 50 euro, escrow) answer raw MDB commands as the adapter relays them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest

from vendhub.core.hub import Hub
from vendhub.vending.money import Money
from vendhub.vending.payment import (
    Authorization,
    PaymentDeclined,
    PaymentError,
    PaymentMethod,
    PaymentRequest,
    PaymentStatus,
)
from vendhub_integrations.mdb.cash import MdbCashProvider
from vendhub_integrations.mdb.cashless import MdbCashlessProvider
from vendhub_integrations.mdb.emulator import EmulatedChanger, MdbAdapterEmulator

from .conftest import Progress, wait_until

EUR = "EUR"


def cash_request(amount: int, session_id: str = "c1") -> PaymentRequest:
    return PaymentRequest(
        session_id=session_id,
        machine_id="lobby_1",
        amount=Money(amount, EUR),
        method=PaymentMethod.cash,
        item="A1",
        description="Cola",
    )


@asynccontextmanager
async def cash_machine(
    hub: Hub, pair: Any, tubes: dict[int, int] | None = None, **options: Any
) -> AsyncIterator[tuple[MdbCashProvider, MdbAdapterEmulator]]:
    emulator = MdbAdapterEmulator(pair.device)
    for value, count in (tubes or {5: 10, 10: 10, 20: 10, 50: 10}).items():
        emulator.set_tube(value, count)
    async with emulator:
        provider = MdbCashProvider(
            hub,
            "lobby_1",
            {"port": pair.host, "poll_interval": 0.02, "reply_timeout": 1, **options},
        )
        await provider.async_start()
        try:
            yield provider, emulator
        finally:
            await provider.async_stop()


def follow_on(authorization: Authorization, session_id: str, amount: int) -> Authorization:
    """The authorization the engine gives a multi-vend follow-on session (docs/vending.md)."""
    return replace(
        authorization,
        amount=Money(amount, EUR),
        details={**authorization.details, "session_id": session_id, "multi_vend_of": "c1"},
    )


def credit_reached(progress: Progress, amount: int) -> bool:
    return progress.last_credit == amount


async def test_start_reads_the_devices(hub: Hub, serial_pair) -> None:
    async with cash_machine(hub, serial_pair) as (provider, emulator):
        assert provider.cash_totals().tubes == {5: 10, 10: 10, 20: 10, 50: 10}
        assert provider.cash_totals().tubes_value == 850
        # Acceptance stays off until someone pays.
        assert emulator.insert_coin(50) == "returned"
        assert emulator.insert_bill(500) == "rejected"
    assert emulator.host_lines()[:5] == ["M,1", "R,08", "R,0B", "R,0B", "R,09"]
    assert "R,0A" in emulator.host_lines()
    assert "R,0C,0000003F" in emulator.host_lines()  # no coin accepted, manual dispense on
    assert "R,34,00000000" in emulator.host_lines()  # no bill accepted


async def test_coins_and_a_bill_then_capture_and_change(hub: Hub, serial_pair) -> None:
    async with cash_machine(hub, serial_pair) as (provider, emulator):
        progress = Progress()
        task = asyncio.create_task(provider.async_authorize(cash_request(250), progress))
        await wait_until(lambda: credit_reached(progress, 0))
        assert emulator.insert_coin(50) == "tubes"
        await wait_until(lambda: credit_reached(progress, 50))
        assert emulator.insert_coin(100) == "cash_box"
        await wait_until(lambda: credit_reached(progress, 150))
        assert emulator.insert_bill(500) == "escrow"
        authorization = await task
        assert authorization.credit == Money(650, EUR)
        assert authorization.amount == Money(250, EUR)
        assert authorization.details["bill_in_escrow"] == 500
        assert progress.last_credit == 650
        # Until the capture the bill waits in escrow.
        assert emulator.validator.in_escrow == 0
        assert sum(emulator.validator.stacked.values()) == 0

        await provider.async_capture(authorization, Money(250, EUR))
        assert emulator.validator.stacked[500] == 1
        assert await provider.async_status(authorization) is PaymentStatus.captured

        change = await provider.async_close(authorization)
        assert change == Money(400, EUR)
        assert await provider.async_close(authorization) == Money(400, EUR)  # once only
        totals = provider.cash_totals()
    assert emulator.changer.paid_out == [50] * 8  # largest coins first
    assert emulator.tube_levels() == {5: 10, 10: 10, 20: 10, 50: 3}
    assert totals.tubes[50] == 3
    assert dict(totals.bills_stacked) == {500: 1}
    assert dict(totals.cash_box_coins) == {100: 1}
    assert totals.cash_box_value == 600
    assert dict(totals.coins_paid_out) == {50: 8}


async def test_change_is_what_the_tubes_actually_paid(hub: Hub, serial_pair) -> None:
    tubes = {5: 0, 10: 1, 20: 2, 50: 1}
    async with cash_machine(hub, serial_pair, tubes) as (provider, emulator):
        progress = Progress()
        task = asyncio.create_task(provider.async_authorize(cash_request(100), progress))
        await wait_until(lambda: credit_reached(progress, 0))
        emulator.insert_coin(200)
        authorization = await task
        await provider.async_capture(authorization, Money(100, EUR))
        change = await provider.async_close(authorization)
    # 100 owed: 50, then 20 + 20, then 10; the 5 cent tube is empty.
    assert sorted(emulator.changer.paid_out, reverse=True) == [50, 20, 20, 10]
    assert change == Money(100, EUR)


async def test_jammed_tube_reports_the_shortfall(hub: Hub, serial_pair) -> None:
    async with cash_machine(hub, serial_pair) as (provider, emulator):
        emulator.changer.jammed.add(3)  # the 50 cent tube pays nothing
        progress = Progress()
        task = asyncio.create_task(provider.async_authorize(cash_request(100), progress))
        await wait_until(lambda: credit_reached(progress, 0))
        emulator.insert_coin(200)
        authorization = await task
        await provider.async_capture(authorization, Money(100, EUR))
        change = await provider.async_close(authorization)
    # The 50 cent tube was asked for 2 coins and paid none; only what came out counts.
    assert emulator.changer.paid_out == []
    assert change == Money(0, EUR)


async def test_void_returns_the_escrowed_bill_and_the_coins(hub: Hub, serial_pair) -> None:
    async with cash_machine(hub, serial_pair) as (provider, emulator):
        progress = Progress()
        task = asyncio.create_task(provider.async_authorize(cash_request(250), progress))
        await wait_until(lambda: credit_reached(progress, 0))
        emulator.insert_coin(50)
        await wait_until(lambda: credit_reached(progress, 50))
        emulator.insert_bill(500)
        authorization = await task
        assert authorization.credit == Money(550, EUR)
        await provider.async_void(authorization)
        await provider.async_void(authorization)  # a repeat is a no-op
        assert await provider.async_status(authorization) is PaymentStatus.voided
        assert await provider.async_close(authorization) == Money(50, EUR)
    assert emulator.validator.returned == [500]
    assert sum(emulator.validator.stacked.values()) == 0
    assert emulator.changer.paid_out == [50]


async def test_bill_stacked_when_needed_and_cancel_returns_the_credit(
    hub: Hub, serial_pair
) -> None:
    async with cash_machine(hub, serial_pair) as (provider, emulator):
        progress = Progress()
        task = asyncio.create_task(provider.async_authorize(cash_request(700), progress))
        await wait_until(lambda: credit_reached(progress, 0))
        emulator.insert_bill(500)  # not enough alone: stacked so another can come
        await wait_until(lambda: emulator.validator.stacked[500] == 1)
        emulator.insert_coin(50)
        await wait_until(lambda: credit_reached(progress, 550))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Acceptance is off again.
        assert emulator.insert_coin(20) == "returned"
    # The stacked bill cannot come back: its value is paid in coins, with the coin.
    assert sum(emulator.changer.paid_out) == 550
    assert emulator.changer.paid_out[0] == 50
    assert emulator.validator.returned == []


async def test_not_enough_cash_in_time_is_declined_and_returned(hub: Hub, serial_pair) -> None:
    async with cash_machine(hub, serial_pair, insert_timeout=0.5) as (provider, emulator):
        progress = Progress()
        task = asyncio.create_task(provider.async_authorize(cash_request(300), progress))
        await wait_until(lambda: credit_reached(progress, 0))
        emulator.insert_coin(20)
        with pytest.raises(PaymentDeclined) as declined:
            await task
        assert declined.value.reason == "expired"
    assert emulator.changer.paid_out == [20]


async def test_multi_vend_captures_add_up(hub: Hub, serial_pair) -> None:
    async with cash_machine(hub, serial_pair) as (provider, emulator):
        progress = Progress()
        task = asyncio.create_task(provider.async_authorize(cash_request(150), progress))
        await wait_until(lambda: credit_reached(progress, 0))
        emulator.insert_bill(500)
        authorization = await task
        await provider.async_capture(authorization, Money(150, EUR))
        # The engine's follow-on vends pay from the credit under their own session ids.
        second = follow_on(authorization, "c2", 200)
        await provider.async_capture(second, Money(200, EUR))
        await provider.async_capture(second, Money(200, EUR))  # a repeat takes nothing
        with pytest.raises(PaymentError, match="the credit is 500"):
            await provider.async_capture(follow_on(authorization, "c3", 200), Money(200, EUR))
        assert await provider.async_close(authorization) == Money(150, EUR)
    assert sorted(emulator.changer.paid_out, reverse=True) == [50, 50, 50]
    assert emulator.validator.stacked[500] == 1


async def test_refund_pays_back_from_the_tubes(hub: Hub, serial_pair) -> None:
    async with cash_machine(hub, serial_pair) as (provider, emulator):
        progress = Progress()
        task = asyncio.create_task(provider.async_authorize(cash_request(100), progress))
        await wait_until(lambda: credit_reached(progress, 0))
        emulator.insert_coin(100)
        authorization = await task
        await provider.async_capture(authorization, Money(100, EUR))
        await provider.async_refund(authorization, Money(100, EUR))
        assert await provider.async_close(authorization) == Money(0, EUR)
    assert emulator.changer.paid_out == [50, 50]


async def test_missing_device_is_an_error(hub: Hub, serial_pair) -> None:
    emulator = MdbAdapterEmulator(serial_pair.device, changer=EmulatedChanger(present=False))
    async with emulator:
        provider = MdbCashProvider(hub, "lobby_1", {"port": serial_pair.host})
        with pytest.raises(PaymentError, match="coin changer did not answer"):
            await provider.async_start()
        await provider.async_stop()


async def test_card_reader_and_cash_share_one_adapter(hub: Hub, serial_pair) -> None:
    emulator = MdbAdapterEmulator(serial_pair.device)
    emulator.set_tube(50, 10)
    async with emulator:
        cash = MdbCashProvider(hub, "lobby_1", {"port": serial_pair.host, "poll_interval": 0.02})
        card = MdbCashlessProvider(hub, "lobby_1", {"port": serial_pair.host})
        await cash.async_start()
        await card.async_start()
        try:
            card_request = PaymentRequest(
                "k1", "lobby_1", Money(120, EUR), PaymentMethod.card, "A1", "Water"
            )
            authorization = await card.async_authorize(card_request, Progress())
            await card.async_capture(authorization, Money(120, EUR))
            progress = Progress()
            task = asyncio.create_task(cash.async_authorize(cash_request(150), progress))
            await wait_until(lambda: credit_reached(progress, 0))
            emulator.insert_coin(200)
            cash_authorization = await task
            await cash.async_capture(cash_authorization, Money(150, EUR))
            assert await cash.async_close(cash_authorization) == Money(50, EUR)
        finally:
            await card.async_stop()
            await cash.async_stop()
    assert emulator.charged == ["1.20"]
    assert emulator.changer.paid_out == [50]
