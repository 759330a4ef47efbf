"""The published Qibixx cashless-master sessions, replayed line for line.

Each session of ``qibixx_cashless_master.json`` is played by ``ScriptedAdapter`` (which
answers exactly the transcript's adapter lines and notes every host line that differs) against
the real provider, which must reach the outcome the session names. The stateful emulator must
then produce the very same transcript for the same customer.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from vendhub.core.hub import Hub
from vendhub.vending.money import Money
from vendhub.vending.payment import (
    PaymentDeclined,
    PaymentMethod,
    PaymentRequest,
    PaymentStatus,
)
from vendhub_integrations.mdb.cashless import MdbCashlessProvider
from vendhub_integrations.mdb.emulator import (
    MdbAdapterEmulator,
    ScriptedAdapter,
    transcript_lines,
)

from .conftest import Progress, corpus_sessions

SESSIONS = corpus_sessions()


def _request_from(session: dict[str, Any]) -> PaymentRequest:
    """The purchase the session shows: price and item of its D,REQ line, as the hub has them."""
    request_line = next(s["line"] for s in session["steps"] if s["line"].startswith("D,REQ,"))
    _, _, price, item = request_line.split(",")
    return PaymentRequest(
        session_id=f"corpus-{SESSIONS.index(session)}",
        machine_id="lobby_1",
        amount=Money(int(Decimal(price) * 100), "EUR"),
        method=PaymentMethod.card,
        item=item,
        description="corpus product",
    )


async def _run_outcome(provider: MdbCashlessProvider, session: dict[str, Any]) -> Progress:
    request = _request_from(session)
    progress = Progress()
    outcome = session["outcome"]
    if outcome == "denied":
        with pytest.raises(PaymentDeclined) as declined:
            await provider.async_authorize(request, progress)
        assert declined.value.reason == "declined"
        return progress
    authorization = await provider.async_authorize(request, progress)
    assert authorization.amount == request.amount
    assert authorization.reference == f"mdb-{request.session_id}"
    if outcome == "approved_and_captured":
        await provider.async_capture(authorization, request.amount)
        assert await provider.async_status(authorization) is PaymentStatus.captured
    elif outcome == "approved_then_reversed":
        await provider.async_void(authorization)
        assert await provider.async_status(authorization) is PaymentStatus.voided
    else:
        pytest.fail(f"the corpus names an outcome this test does not know: {outcome}")
    return progress


@pytest.mark.parametrize("session", SESSIONS, ids=[s["title"] for s in SESSIONS])
async def test_corpus_session_replayed(hub: Hub, serial_pair, session: dict[str, Any]) -> None:
    async with ScriptedAdapter(serial_pair.device, session["steps"]) as script:
        provider = MdbCashlessProvider(
            hub,
            "lobby_1",
            {
                "port": serial_pair.host,
                # The transcripts do not show the reader's setup: a euro reader, scale 1,
                # 2 decimal places (as the adapter's documented example).
                "scale_factor": 1,
                "decimal_places": 2,
                "reply_timeout": 2,
                "card_timeout": 2,
            },
        )
        await provider.async_start()
        try:
            progress = await _run_outcome(provider, session)
        finally:
            await provider.async_stop()
    assert script.errors == []
    assert script.finished, "the provider stopped before the end of the transcript"
    assert transcript_lines(script.transcript) == [
        {"from": s["from"], "line": s["line"]} for s in session["steps"]
    ]
    assert {"step": "present_card"} in progress.steps


@pytest.mark.parametrize("session", SESSIONS, ids=[s["title"] for s in SESSIONS])
async def test_emulator_answers_as_the_corpus(
    hub: Hub, serial_pair, session: dict[str, Any]
) -> None:
    lines = [s["line"] for s in session["steps"]]
    emulator = MdbAdapterEmulator(
        serial_pair.device,
        card_result="deny" if session["outcome"] == "denied" else "approve",
        send_reset_status="d,STATUS,RESET" in lines,
        send_vend_status="d,STATUS,VEND" in lines,
    )
    async with emulator:
        provider = MdbCashlessProvider(
            hub,
            "lobby_1",
            {"port": serial_pair.host, "scale_factor": 1, "decimal_places": 2},
        )
        try:
            await _run_outcome(provider, session)
        finally:
            await provider.async_stop()
    assert transcript_lines(emulator.transcript) == [
        {"from": s["from"], "line": s["line"]} for s in session["steps"]
    ]
    request = _request_from(session)
    expected_amount = f"{Decimal(request.amount.amount) / 100:.2f}"
    if session["outcome"] == "approved_and_captured":
        assert emulator.charged == [expected_amount]
    else:
        assert emulator.charged == []
    if session["outcome"] == "approved_then_reversed":
        assert emulator.reversed == [expected_amount]
