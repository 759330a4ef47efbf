"""The wallet against a real recorder database (SQLite, PostgreSQL, MariaDB): accounts,
top-ups, and the payment provider through authorize, capture, void, refund and restarts."""

from __future__ import annotations

import asyncio
import hashlib
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from tests.integrations.wallet.helpers import (
    Progress,
    call,
    customers,
    request,
    rows,
    start_hub,
    wallet_provider,
)
from vendhub.bootstrap import async_start_hub, prepare
from vendhub.core.errors import InvalidServiceData
from vendhub.core.hub import Hub
from vendhub.vending.money import Money
from vendhub.vending.payment import (
    Authorization,
    PaymentDeclined,
    PaymentError,
    PaymentStatus,
)
from vendhub_integrations import wallet

NFC_UID = "04A2B3C4D5E680"
RULES = "  rules:\n    percent_back: 5\n    nth_vend_free: 4\n"


async def test_a_token_is_stored_only_as_a_keyed_hash(tmp_path: Path, db_url: str) -> None:
    hub = await start_hub(tmp_path, db_url)
    try:
        created = await call(hub, "create_account", token=NFC_UID, display_name="Ann")
        assert "token" not in created  # the customer's own token is never echoed
        generated = await call(hub, "create_account")
        qr_token = generated["token"]
        assert len(qr_token) >= 22

        stored = await customers(hub)
        assert len(stored) == 2
        for row in stored:
            values = " ".join(str(value) for value in row.values())
            assert NFC_UID not in values and NFC_UID.lower() not in values
            assert qr_token not in values
            assert row["token_hash"].startswith("hmac-sha256:")
        plain_hash = hashlib.sha256(NFC_UID.encode()).hexdigest()
        assert all(plain_hash not in row["token_hash"] for row in stored)

        key_file = tmp_path / ".storage" / "wallet.token_key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

        with pytest.raises(ValueError, match="already uses this token"):
            await call(hub, "create_account", token=NFC_UID)
    finally:
        await hub.async_stop()

    hub = await start_hub(tmp_path, db_url)  # the key survives a restart
    try:
        assert (await call(hub, "balance", token=NFC_UID))["display_name"] == "Ann"
        assert (await call(hub, "balance", token=qr_token))["account_id"] == generated["account_id"]
        with pytest.raises(LookupError, match="no wallet account"):
            await call(hub, "balance", token=NFC_UID.lower())
    finally:
        await hub.async_stop()


async def test_top_up_is_idempotent_and_bad_input_is_named(tmp_path: Path, db_url: str) -> None:
    hub = await start_hub(tmp_path, db_url)
    try:
        await call(hub, "create_account", token=NFC_UID)
        first = await call(hub, "top_up", token=NFC_UID, amount=500, source_id="till-17")
        again = await call(hub, "top_up", token=NFC_UID, amount=500, source_id="till-17")
        assert (first["balance"], first["duplicate"]) == (500, False)
        assert (again["balance"], again["duplicate"]) == (500, True)
        assert await rows(hub) == [("topup", 500, 0, "topup:till-17")]

        with pytest.raises(ValueError, match="already used"):
            await call(hub, "top_up", token=NFC_UID, amount=700, source_id="till-17")
        with pytest.raises(ValueError, match="account is in EUR, the top-up in USD"):
            await call(
                hub, "top_up", token=NFC_UID, amount=100, currency="USD", source_id="till-18"
            )
        with pytest.raises(InvalidServiceData, match="0 to 1,000,000,000, got -100"):
            await call(hub, "top_up", token=NFC_UID, amount=-100, source_id="till-19")
        with pytest.raises(InvalidServiceData, match="minor units"):
            await call(hub, "top_up", token=NFC_UID, amount=1.5, source_id="till-19")
        with pytest.raises(InvalidServiceData, match="name the account"):
            await call(hub, "top_up", amount=100, source_id="till-19")
        with pytest.raises(LookupError, match="no wallet account"):
            await call(hub, "top_up", token="not-a-customer", amount=100, source_id="till-19")

        points = await call(hub, "adjust_points", token=NFC_UID, points=30, source_id="promo")
        assert points["points"] == 30
        with pytest.raises(ValueError, match="has 30 points; it cannot lose 61"):
            await call(hub, "adjust_points", token=NFC_UID, points=-61, source_id="fix")
        balance = await call(hub, "balance", token=NFC_UID)
        assert (balance["balance"], balance["points"], balance["currency"]) == (500, 30, "EUR")
    finally:
        await hub.async_stop()


async def test_authorize_then_capture_takes_the_price_and_awards_points(
    tmp_path: Path, db_url: str
) -> None:
    hub = await start_hub(tmp_path, db_url, RULES)
    try:
        await call(hub, "create_account", token=NFC_UID)
        await call(hub, "top_up", token=NFC_UID, amount=1000, source_id="t1")
        provider = wallet_provider(hub)
        progress = Progress()

        authorization = await provider.async_authorize(request("s1", NFC_UID), progress)
        assert progress.steps == [{"step": "processing"}]
        assert authorization.details["free_vend"] is False
        assert authorization.amount == Money(150, "EUR")
        assert NFC_UID not in str(authorization.as_dict())
        held = await call(hub, "balance", token=NFC_UID)
        assert (held["balance"], held["held"]) == (850, 150)
        assert await provider.async_status(authorization) is PaymentStatus.authorized

        again = await provider.async_authorize(request("s1", NFC_UID), Progress())
        assert again.reference == authorization.reference  # the same session: the same hold

        await provider.async_capture(authorization, Money(150, "EUR"))
        after = await call(hub, "balance", token=NFC_UID)
        assert (after["balance"], after["held"], after["points"]) == (850, 0, 7)  # 5 % of 150
        assert await provider.async_status(authorization) is PaymentStatus.captured
        assert await rows(hub) == [
            ("topup", 1000, 0, "topup:t1"),
            ("hold", -150, 0, "hold:s1"),
            ("release", 150, 0, "release:s1"),
            ("spend", -150, 7, "spend:s1"),
        ]
    finally:
        await hub.async_stop()


async def test_unknown_token_and_insufficient_funds_are_declined(
    tmp_path: Path, db_url: str
) -> None:
    hub = await start_hub(tmp_path, db_url)
    try:
        await call(hub, "create_account", token=NFC_UID)
        await call(hub, "top_up", token=NFC_UID, amount=100, source_id="t1")
        provider = wallet_provider(hub)

        with pytest.raises(PaymentDeclined) as unknown:
            await provider.async_authorize(request("s1", "04FFFFFFFFFFFF"), Progress())
        assert unknown.value.reason == "unknown_token"
        with pytest.raises(PaymentDeclined) as no_token:
            await provider.async_authorize(request("s2", None), Progress())
        assert no_token.value.reason == "unknown_token"
        with pytest.raises(PaymentDeclined) as short:
            await provider.async_authorize(request("s3", NFC_UID, amount=150), Progress())
        assert short.value.reason == "insufficient_funds"
        usd = replace(request("s4", NFC_UID, amount=50), amount=Money(50, "USD"))
        with pytest.raises(PaymentDeclined, match="account is in EUR, the price in USD"):
            await provider.async_authorize(usd, Progress())

        balance = await call(hub, "balance", token=NFC_UID)
        assert (balance["balance"], balance["held"]) == (100, 0)
        assert await rows(hub) == [("topup", 100, 0, "topup:t1")]
    finally:
        await hub.async_stop()


async def test_void_releases_the_hold_and_refund_gives_money_and_points_back(
    tmp_path: Path, db_url: str
) -> None:
    hub = await start_hub(tmp_path, db_url, RULES)
    try:
        await call(hub, "create_account", token=NFC_UID)
        await call(hub, "top_up", token=NFC_UID, amount=1000, source_id="t1")
        provider = wallet_provider(hub)

        voided = await provider.async_authorize(request("s1", NFC_UID, 200), Progress())
        await provider.async_void(voided)
        await provider.async_void(voided)  # repeated: nothing more happens
        assert await provider.async_status(voided) is PaymentStatus.voided
        balance = await call(hub, "balance", token=NFC_UID)
        assert (balance["balance"], balance["held"]) == (1000, 0)
        with pytest.raises(PaymentError, match="voided"):
            await provider.async_capture(voided, Money(200, "EUR"))

        bought = await provider.async_authorize(request("s2", NFC_UID, 400), Progress())
        await provider.async_capture(bought, Money(400, "EUR"))
        assert (await call(hub, "balance", token=NFC_UID))["points"] == 20
        await provider.async_refund(bought, Money(100, "EUR"))
        await provider.async_refund(bought, Money(100, "EUR"))  # repeated: once
        assert await provider.async_status(bought) is PaymentStatus.refunded
        balance = await call(hub, "balance", token=NFC_UID)
        assert (balance["balance"], balance["points"]) == (700, 15)  # 1000 - 400 + 100
        with pytest.raises(PaymentError, match="captured; refund it"):
            await provider.async_void(bought)
        with pytest.raises(PaymentError, match="already refunded 100"):
            await provider.async_refund(bought, Money(300, "EUR"))
        assert [row[0] for row in await rows(hub)] == [
            "topup",
            "hold",
            "release",
            "hold",
            "release",
            "spend",
            "refund",
        ]
    finally:
        await hub.async_stop()


async def test_every_nth_vend_is_free(tmp_path: Path, db_url: str) -> None:
    hub = await start_hub(tmp_path, db_url, RULES)  # every 4th vend free
    try:
        await call(hub, "create_account", token=NFC_UID)
        await call(hub, "top_up", token=NFC_UID, amount=2000, source_id="t1")
        provider = wallet_provider(hub)

        voided = await provider.async_authorize(request("v", NFC_UID), Progress())
        await provider.async_void(voided)  # a voided vend does not count
        free: list[bool] = []
        for number in range(1, 9):
            authorization = await provider.async_authorize(
                request(f"s{number}", NFC_UID), Progress()
            )
            free.append(authorization.details["free_vend"])
            assert authorization.details["vend_number"] == number
            await provider.async_capture(authorization, authorization.amount)
        assert free == [False, False, False, True, False, False, False, True]
        balance = await call(hub, "balance", token=NFC_UID)
        assert (balance["balance"], balance["vends"]) == (2000 - 6 * 150, 8)
        assert balance["points"] == 6 * 7  # a free vend earns nothing
        assert ("free_vend", 0, 0, "hold:s4") in await rows(hub)
        assert ("spend", 0, 0, "spend:s8") in await rows(hub)
    finally:
        await hub.async_stop()


async def test_a_hold_survives_a_restart_and_settles_exactly_once(
    tmp_path: Path, db_url: str
) -> None:
    hub = await start_hub(tmp_path, db_url, RULES)
    try:
        await call(hub, "create_account", token=NFC_UID)
        await call(hub, "top_up", token=NFC_UID, amount=1000, source_id="t1")
        provider = wallet_provider(hub)
        to_capture = await provider.async_authorize(request("s1", NFC_UID), Progress())
        to_void = await provider.async_authorize(request("s2", NFC_UID, 300), Progress())
        journal = [to_capture.as_dict(), to_void.as_dict()]  # what the engine journals
    finally:
        await hub.async_stop()

    hub = await start_hub(tmp_path, db_url, RULES)
    try:
        provider = wallet_provider(hub)
        to_capture, to_void = (Authorization.from_dict(data) for data in journal)
        assert await provider.async_status(to_capture) is PaymentStatus.authorized
        assert (await call(hub, "balance", token=NFC_UID))["held"] == 450

        await asyncio.gather(
            provider.async_capture(to_capture, Money(150, "EUR")),
            wallet_provider(hub).async_capture(to_capture, Money(150, "EUR")),
        )
        await provider.async_capture(to_capture, Money(150, "EUR"))
        await asyncio.gather(provider.async_void(to_void), wallet_provider(hub).async_void(to_void))
        with pytest.raises(PaymentError, match="captured; refund it"):
            await provider.async_void(to_capture)

        balance = await call(hub, "balance", token=NFC_UID)
        assert (balance["balance"], balance["held"], balance["points"]) == (850, 0, 7)
        kinds = [row[0] for row in await rows(hub)]
        assert kinds.count("spend") == 1 and kinds.count("release") == 2
    finally:
        await hub.async_stop()


async def test_concurrent_authorizations_cannot_overspend(tmp_path: Path, db_url: str) -> None:
    hub = await start_hub(tmp_path, db_url)
    try:
        await call(hub, "create_account", token=NFC_UID)
        await call(hub, "top_up", token=NFC_UID, amount=500, source_id="t1")
        providers = [wallet_provider(hub, f"machine_{n}") for n in range(10)]
        results = await asyncio.gather(
            *(
                provider.async_authorize(request(f"s{n}", NFC_UID), Progress())
                for n, provider in enumerate(providers)
            ),
            return_exceptions=True,
        )
        approved = [result for result in results if not isinstance(result, BaseException)]
        declined = [result for result in results if isinstance(result, PaymentDeclined)]
        assert len(approved) == 3
        assert len(declined) == 7
        assert {error.reason for error in declined} == {"insufficient_funds"}
        balance = await call(hub, "balance", token=NFC_UID)
        assert (balance["balance"], balance["held"]) == (50, 450)
        assert sorted(row[0] for row in await rows(hub)) == ["hold"] * 3 + ["topup"]
    finally:
        await hub.async_stop()


async def test_a_cancelled_authorization_leaves_nothing_held(tmp_path: Path, db_url: str) -> None:
    hub = await start_hub(tmp_path, db_url)
    try:
        await call(hub, "create_account", token=NFC_UID)
        await call(hub, "top_up", token=NFC_UID, amount=500, source_id="t1")
        provider = wallet_provider(hub)
        for attempt, delay in enumerate((0, 0.001, 0.005, 0.02, 0.2)):
            task = asyncio.ensure_future(
                provider.async_authorize(request(f"s{attempt}", NFC_UID), Progress())
            )
            await asyncio.sleep(delay)
            task.cancel()
            try:
                authorization = await task
            except asyncio.CancelledError:
                pass
            else:  # it had finished before the cancel: the engine would void it
                await provider.async_void(authorization)
            balance = await call(hub, "balance", token=NFC_UID)
            assert (balance["balance"], balance["held"]) == (500, 0)
    finally:
        await hub.async_stop()


async def test_the_wallet_does_not_start_without_its_recorder(tmp_path: Path) -> None:
    (tmp_path / "configuration.yaml").write_text(
        'recorder:\n  db_url: "nosuchdb://somewhere/vendhub"\nwallet:\n'
    )
    prepared = await asyncio.to_thread(prepare, tmp_path)
    hub, report = await async_start_hub(prepared)
    try:
        assert "recorder" in report.failed
        assert "recorder" in report.failed["wallet"]
        assert not hub.services.has_service("wallet", "top_up")
    finally:
        await hub.async_stop()


async def test_setup_says_the_recorder_is_missing(hub: Hub) -> None:
    with pytest.raises(wallet.WalletSetupError, match="add 'recorder:'"):
        await wallet.vendhub_setup(hub, None)
