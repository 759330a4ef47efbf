"""A hold whose authorize was cut off by a restart: released by the session id alone, through
the provider and through the vend engine resolving its journal (each recorder backend)."""

from __future__ import annotations

from pathlib import Path

from tests.integrations.wallet.helpers import (
    Progress,
    call,
    request,
    rows,
    start_hub,
    wallet_provider,
)
from tests.vending.authorizing import journal_cut_off_while_authorizing
from vendhub.core.hub import Hub
from vendhub.vending.engine import MachineSetup, Timeouts, VendEngine
from vendhub.vending.journal import VendJournal, read_journal
from vendhub.vending.money import Money
from vendhub.vending.payment import PaymentMethod, PaymentStatus
from vendhub.vending.planogram import SlotPlan
from vendhub.vending.session import VendOutcome
from vendhub_integrations.vending.simulator_board import SimulatorDispenser

NFC_UID = "04A2B3C4D5E680"
OTHER_UID = "04FFEEDDCCBB01"


async def balance(hub: Hub, token: str = NFC_UID) -> tuple[int, int]:
    account = await call(hub, "balance", token=token)
    return account["balance"], account["held"]


async def test_release_voids_the_hold_of_the_session_on_its_account(
    tmp_path: Path, db_url: str
) -> None:
    hub = await start_hub(tmp_path, db_url)
    try:
        await call(hub, "create_account", token=NFC_UID)
        await call(hub, "top_up", token=NFC_UID, amount=1000, source_id="t1")
        await call(hub, "create_account", token=OTHER_UID)
        await call(hub, "top_up", token=OTHER_UID, amount=500, source_id="t1")
        provider = wallet_provider(hub)
        await provider.async_authorize(request("lost", NFC_UID), Progress())
        kept = await provider.async_authorize(request("kept", OTHER_UID, 200), Progress())
        assert await balance(hub) == (850, 150)
    finally:
        await hub.async_stop()

    hub = await start_hub(tmp_path, db_url)
    try:
        provider = wallet_provider(hub)
        await provider.async_release_session("lost", Money(150, "EUR"))
        assert await balance(hub) == (1000, 0)
        await provider.async_release_session("lost", Money(150, "EUR"))  # a repeat
        await provider.async_release_session("never-held", Money(150, "EUR"))
        assert await balance(hub) == (1000, 0)
        # Another customer's hold of another session is untouched.
        assert await balance(hub, OTHER_UID) == (300, 200)
        assert await provider.async_status(kept) is PaymentStatus.authorized
        keys = [row[3] for row in await rows(hub)]
        assert keys.count("release:lost") == 1
        assert "release:kept" not in keys
    finally:
        await hub.async_stop()


async def test_release_of_a_captured_session_gives_the_money_back(
    tmp_path: Path, db_url: str
) -> None:
    hub = await start_hub(tmp_path, db_url, "  rules:\n    percent_back: 10\n")
    try:
        await call(hub, "create_account", token=NFC_UID)
        await call(hub, "top_up", token=NFC_UID, amount=1000, source_id="t1")
        provider = wallet_provider(hub)
        authorization = await provider.async_authorize(request("s1", NFC_UID), Progress())
        await provider.async_capture(authorization, Money(150, "EUR"))
        assert (await call(hub, "balance", token=NFC_UID))["points"] == 15
        await provider.async_release_session("s1", Money(150, "EUR"))
        await provider.async_release_session("s1", Money(150, "EUR"))
        account = await call(hub, "balance", token=NFC_UID)
        assert (account["balance"], account["held"], account["points"]) == (1000, 0, 0)
        assert await provider.async_status(authorization) is PaymentStatus.refunded
    finally:
        await hub.async_stop()


def engine_for(hub: Hub, journal_path: Path) -> VendEngine:
    return VendEngine(
        hub,
        MachineSetup(
            machine_id="lobby_1",
            currency="EUR",
            planogram={"A1": SlotPlan("Cola", 150, 10)},
            stock={"A1": 5},
            dispenser=SimulatorDispenser(hub, "lobby_1", {"dispense_time": 0}),
            providers=[wallet_provider(hub)],
            timeouts=Timeouts(payment=5, dispense=5, capture=2, void=5),
        ),
        VendJournal(journal_path),
    )


async def test_a_restart_while_authorizing_releases_the_wallet_hold(
    tmp_path: Path, db_url: str
) -> None:
    journal_path = tmp_path / ".storage" / "vending.journal.db"
    hub = await start_hub(tmp_path, db_url)
    try:
        await call(hub, "create_account", token=NFC_UID)
        await call(hub, "top_up", token=NFC_UID, amount=1000, source_id="t1")
        # What a hub killed mid-authorize leaves: "authorize begin" journalled, the hold made,
        # its answer never journalled.
        session = await journal_cut_off_while_authorizing(
            journal_path,
            "0190f2a1c3d47e8f9a0b1c2d3e4f5a6b",
            machine_id="lobby_1",
            product="Cola",
            price=Money(150, "EUR"),
            method=PaymentMethod.e_wallet,
            provider="wallet",
        )
        await wallet_provider(hub).async_authorize(request(session.id, NFC_UID), Progress())
        assert await balance(hub) == (850, 150)
    finally:
        await hub.async_stop()

    hub = await start_hub(tmp_path, db_url)
    try:
        engine = engine_for(hub, journal_path)
        await engine.async_start()
        (resolved,) = engine.resolved_after_restart
        assert resolved.id == session.id
        assert resolved.outcome is VendOutcome.payment_error
        assert resolved.reason == "interrupted_while_authorizing"
        assert await balance(hub) == (1000, 0)
        await engine.async_stop()
        await engine.journal.async_close()

        engine = engine_for(hub, journal_path)
        await engine.async_start()
        assert engine.resolved_after_restart == []
        await engine.async_stop()
        await engine.journal.async_close()
        kinds = [row[0] for row in await rows(hub) if row[3].endswith(session.id)]
        assert kinds == ["hold", "release"]
        (row,) = read_journal(journal_path)
        assert row["state"] == "failed" and row["resolved_after_restart"]
        assert [(step, phase) for step, phase, _ in row["steps"] if step == "release"] == [
            ("release", "begin"),
            ("release", "done"),
        ]
    finally:
        await hub.async_stop()
