"""Cash credit across a restart: the ``mdb_cash`` provider finds in its store what a killed hub
left (rows as the provider writes them) and settles it against the emulated adapter exactly
once; the card reader ends a vend it still holds. A real hub process killed with coins
inserted: test_hub_restart.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from vendhub.core.hub import Hub
from vendhub.vending.money import Money
from vendhub.vending.payment import (
    Authorization,
    PaymentError,
    PaymentMethod,
    PaymentRequest,
    PaymentStatus,
)
from vendhub_integrations.mdb.cash import MdbCashProvider
from vendhub_integrations.mdb.cash_store import CASH_STORE_FILE, CashStore, read_cash_store
from vendhub_integrations.mdb.cashless import MdbCashlessProvider
from vendhub_integrations.mdb.emulator import MdbAdapterEmulator

from .conftest import Progress, wait_until

EUR = "EUR"
TUBES = {5: 10, 10: 10, 20: 10, 50: 10}


def row(price: int, **fields: Any) -> dict[str, Any]:
    """A cash store row as the provider writes it; ``fields`` override the defaults."""
    data: dict[str, Any] = {
        "price": price,
        "currency": EUR,
        "state": "pending",
        "coins": 0,
        "stacked": 0,
        "escrow_type": None,
        "escrow_value": 0,
        "stacking": False,
        "returning": False,
        "captured": 0,
        "captures": {},
        "refunded": 0,
        "paid_out": 0,
        "bill_returned": 0,
        "shortfall": 0,
        "bill_change": 0,
        "payout": None,
        "closed": False,
        "change": None,
    }
    data.update(fields)
    return data


async def left_by_a_killed_hub(hub: Hub, rows: dict[str, dict[str, Any]]) -> None:
    store = CashStore.for_hub(hub, "lobby_1")
    await store.async_open()
    for reference, data in rows.items():
        await store.async_save(reference, data, closed=data["closed"])
    await store.async_close()


@asynccontextmanager
async def restarted(
    hub: Hub, pair: Any, emulator: MdbAdapterEmulator
) -> AsyncIterator[MdbCashProvider]:
    provider = MdbCashProvider(
        hub, "lobby_1", {"port": pair.host, "poll_interval": 0.02, "reply_timeout": 1}
    )
    await provider.async_start()
    try:
        yield provider
    finally:
        await provider.async_stop()


def emulated(pair: Any) -> MdbAdapterEmulator:
    emulator = MdbAdapterEmulator(pair.device)
    for value, count in TUBES.items():
        emulator.set_tube(value, count)
    return emulator


def stored(hub: Hub, reference: str) -> dict[str, Any]:
    return read_cash_store(hub.path(".storage", CASH_STORE_FILE))[reference]


def cash_authorization(reference: str, price: int, credit: int) -> Authorization:
    """The authorization the engine journalled before the hub died."""
    return Authorization(
        provider="mdb_cash",
        method=PaymentMethod.cash,
        reference=reference,
        amount=Money(price, EUR),
        credit=Money(credit, EUR),
    )


async def test_credit_of_a_cut_off_authorize_is_given_back_once(hub: Hub, serial_pair) -> None:
    # 70 cents were in the tubes and a euro in the cash box when the hub died.
    await left_by_a_killed_hub(hub, {"mdb-cash-k1": row(250, coins=170)})
    emulator = emulated(serial_pair)
    async with emulator:
        async with restarted(hub, serial_pair, emulator) as provider:
            assert (
                await provider.async_status(cash_authorization("mdb-cash-k1", 250, 170))
                is PaymentStatus.pending
            )
            await provider.async_release_session("k1", Money(250, EUR))
            assert sorted(emulator.changer.paid_out, reverse=True) == [50, 50, 50, 20]
            await provider.async_release_session("k1", Money(250, EUR))
            await provider.async_release_session("never-paid", Money(250, EUR))
        async with restarted(hub, serial_pair, emulator) as provider:
            await provider.async_release_session("k1", Money(250, EUR))  # another restart
    assert sum(emulator.changer.paid_out) == 170
    data = stored(hub, "mdb-cash-k1")
    assert data["closed"] and data["state"] == "voided" and data["paid_out"] == 170
    assert data["change"] == 170 and data["payout"] is None


async def test_an_authorized_session_is_captured_and_closed_after_a_restart(
    hub: Hub, serial_pair
) -> None:
    await left_by_a_killed_hub(hub, {"mdb-cash-k2": row(150, coins=200, state="authorized")})
    authorization = cash_authorization("mdb-cash-k2", 150, 200)
    emulator = emulated(serial_pair)
    async with emulator, restarted(hub, serial_pair, emulator) as provider:
        assert await provider.async_status(authorization) is PaymentStatus.authorized
        await provider.async_capture(authorization, Money(150, EUR))
        await provider.async_capture(authorization, Money(150, EUR))  # the engine repeats it
        assert await provider.async_close(authorization) == Money(50, EUR)
        assert await provider.async_close(authorization) == Money(50, EUR)
    assert emulator.changer.paid_out == [50]
    assert stored(hub, "mdb-cash-k2")["captured"] == 150


async def test_void_after_a_restart_hands_the_escrowed_bill_back(hub: Hub, serial_pair) -> None:
    emulator = emulated(serial_pair)
    emulator.validator.in_escrow = emulator.validator.bill_type(500)
    await left_by_a_killed_hub(
        hub,
        {"mdb-cash-k3": row(250, coins=50, escrow_type=0, escrow_value=500, state="authorized")},
    )
    authorization = cash_authorization("mdb-cash-k3", 250, 550)
    async with emulator, restarted(hub, serial_pair, emulator) as provider:
        await provider.async_void(authorization)
        await provider.async_void(authorization)
        assert await provider.async_close(authorization) == Money(50, EUR)
    assert emulator.validator.returned == [500]
    assert emulator.changer.paid_out == [50]
    assert "R,35,00" in emulator.host_lines()


async def test_a_bill_the_hub_had_stacked_is_paid_back_in_coins(hub: Hub, serial_pair) -> None:
    # The stack command went out and the bill was stacked; the hub died before the report.
    emulator = emulated(serial_pair)
    emulator.validator.stacked[500] += 1
    await left_by_a_killed_hub(
        hub, {"mdb-cash-k4": row(700, escrow_type=0, escrow_value=500, stacking=True)}
    )
    async with emulator, restarted(hub, serial_pair, emulator) as provider:
        await provider.async_release_session("k4", Money(700, EUR))
    assert sum(emulator.changer.paid_out) == 500
    assert emulator.validator.returned == []
    assert stored(hub, "mdb-cash-k4")["stacked"] == 500


async def test_a_payout_cut_off_half_way_is_finished_not_repeated(hub: Hub, serial_pair) -> None:
    # The void had paid one 50 cent coin of the 100 owed when the hub died.
    emulator = emulated(serial_pair)
    before = [TUBES.get(value, 0) for value in emulator.changer.coin_values] + [0] * 10
    emulator.set_tube(50, TUBES[50] - 1)
    emulator.changer.paid_out.append(50)
    await left_by_a_killed_hub(
        hub,
        {
            "mdb-cash-k5": row(
                250,
                coins=100,
                state="authorized",
                payout={"due": 100, "before": before, "refund": False},
            )
        },
    )
    authorization = cash_authorization("mdb-cash-k5", 250, 100)
    async with emulator, restarted(hub, serial_pair, emulator) as provider:
        data = stored(hub, "mdb-cash-k5")
        assert data["paid_out"] == 50 and data["payout"] is None and data["shortfall"] == 0
        await provider.async_void(authorization)
        assert await provider.async_close(authorization) == Money(100, EUR)
    assert emulator.changer.paid_out == [50, 50]


async def test_a_captured_session_cannot_be_released(hub: Hub, serial_pair) -> None:
    await left_by_a_killed_hub(
        hub,
        {
            "mdb-cash-k6": row(
                150, coins=200, state="captured", captured=150, captures={"mdb-cash-k6": 150}
            )
        },
    )
    emulator = emulated(serial_pair)
    async with emulator, restarted(hub, serial_pair, emulator) as provider:
        with pytest.raises(PaymentError, match="was captured"):
            await provider.async_release_session("k6", Money(150, EUR))
    assert emulator.changer.paid_out == []


async def test_each_coin_is_committed_before_the_customer_sees_it(hub: Hub, serial_pair) -> None:
    emulator = emulated(serial_pair)
    async with emulator, restarted(hub, serial_pair, emulator) as provider:
        seen: list[tuple[int, int]] = []

        def progress(step: Any) -> None:
            if step.get("step") == "insert_cash":
                data = stored(hub, "mdb-cash-c9")
                seen.append((step["credit"], data["coins"]))

        request = PaymentRequest("c9", "lobby_1", Money(100, EUR), PaymentMethod.cash, "A1", "Cola")
        task = asyncio.create_task(provider.async_authorize(request, progress))
        await wait_until(lambda: len(seen) == 1)
        emulator.insert_coin(50)
        await wait_until(lambda: len(seen) == 2)
        emulator.insert_coin(50)
        authorization = await task
        assert stored(hub, "mdb-cash-c9")["state"] == "authorized"
        await provider.async_void(authorization)
    assert seen[:3] == [(0, 0), (50, 50), (100, 100)]


async def test_the_card_reader_ends_a_vend_it_still_holds(hub: Hub, serial_pair) -> None:
    emulator = MdbAdapterEmulator(serial_pair.device, present_delay=None)
    async with emulator:
        before = MdbCashlessProvider(hub, "lobby_1", {"port": serial_pair.host})
        await before.async_start()
        request = PaymentRequest("r1", "lobby_1", Money(150, EUR), PaymentMethod.card, "A1", "Cola")
        task = asyncio.create_task(before.async_authorize(request, Progress()))
        await wait_until(lambda: "D,REQ,1.50,101" in emulator.host_lines())
        emulator.present_card()
        await task  # approved; the hub dies before the journal has it
        await before.async_stop()

        after = MdbCashlessProvider(hub, "lobby_1", {"port": serial_pair.host})
        await after.async_start()
        try:
            await after.async_release_session("r1", Money(150, EUR))
            assert emulator.reversed == ["1.50"] and emulator.charged == []
            await after.async_release_session("r1", Money(150, EUR))
            assert emulator.reversed == ["1.50"]
            # The reader sells again afterwards.
            emulator.present_delay = 0.05
            second = PaymentRequest(
                "r2", "lobby_1", Money(150, EUR), PaymentMethod.card, "A1", "Cola"
            )
            authorization = await after.async_authorize(second, Progress())
            await after.async_capture(authorization, Money(150, EUR))
            assert emulator.charged == ["1.50"]
        finally:
            await after.async_stop()
