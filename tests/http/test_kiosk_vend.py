"""``/api/kiosk`` on machines of the vend engine: a real hub started from a configuration
folder with a ``vending:`` block (the ``simulator`` board, the ``instant`` / ``instant_cash``
test providers, the wallet on the recorder's SQLite database, the ``qr_gateway`` against the
emulated YooKassa), driven through the HTTP API as the machine's kiosk.

Every answer is checked against the operation's published JSON Schema.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from jsonschema import Draft202012Validator

from tests.integrations.qr_gateway.yookassa_server import YooKassaServer
from vendhub.bootstrap import async_start_hub, prepare
from vendhub.core.events import MATCH_ALL, Event
from vendhub.core.hub import Hub
from vendhub.http.api.kiosk import KioskView, PurchasesView, PurchaseView
from vendhub.http.server import get_http
from vendhub.machine.credentials import CredentialStore
from vendhub_integrations.qr_gateway.webhook import URL_WEBHOOK as QR_WEBHOOK

from .conftest import Api

WALLET_TOKEN = "04:A2:3B:1C:5D:80"
STOLEN_CARD = "stolen-card-4242"
FAST = {"payment": 5, "dispense": 5, "capture": 2, "void": 2, "multi_vend": 0.3}


def configuration(tmp_path: Path, gateway: YooKassaServer) -> dict[str, Any]:
    def machine(name: str, payments: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "planogram": {
                "A1": {"product": "Cola", "price": 150, "capacity": 10, "stock": 5},
                "A2": {"product": "Water", "price": 100, "capacity": 10, "stock": 0},
                "B1": {"product": "Chips", "price": 120, "capacity": 6, "stock": 3},
            },
            "dispenser": {"platform": "simulator", "dispense_time": 0.05, "jam_slots": ["B1"]},
            "payments": payments,
            **extra,
        }

    return {
        "vendhub": {"name": "Kiosk vend test", "currency": "EUR", "languages": ["en", "ru"]},
        "http": {"server_host": "127.0.0.1", "server_port": 0},
        "recorder": {"db_url": f"sqlite:///{tmp_path / 'vendhub.db'}", "commit_interval": 0.1},
        "alarm": None,
        "wallet": None,
        "qr_gateway": None,
        "simulator": {
            "tick": 3600,
            "summary_interval": 0,
            "purchase": {"approval_delay": 0.05, "dispense_time": 0},
            "machines": [
                {
                    "id": "sim_9",
                    "name": "Simulated",
                    "jam_rate": 0,
                    "failure_rate": 0,
                    "sales_per_hour": 0,
                    "slots": {"A1": {"product": "Juice", "price": 200, "capacity": 8}},
                }
            ],
        },
        "vending": {
            "machines": {
                "cafe_1": machine(
                    "Cafe",
                    [
                        {"platform": "instant", "decline_tokens": [STOLEN_CARD]},
                        {"platform": "instant_cash", "insert": 200},
                        {"platform": "wallet"},
                    ],
                    timeouts=FAST,
                ),
                # Approves after 30 s: the customer cancels first.
                "slow_2": machine(
                    "Slow",
                    [{"platform": "instant", "approval_delay": 30}],
                    timeouts={**FAST, "payment": 60},
                ),
                # Approves after 30 s, but the payment times out after 0.3 s.
                "late_3": machine(
                    "Late",
                    [{"platform": "instant", "approval_delay": 30}],
                    timeouts={**FAST, "payment": 0.3},
                ),
                "qr_4": machine(
                    "QR",
                    [
                        {
                            "platform": "qr_gateway",
                            "shop_id": gateway.shop_id,
                            "secret_key": gateway.secret_key,
                            "api_url": gateway.api_url,
                            "poll_interval": 60,
                            "request_timeout": 5,
                            "allowed_sources": ["127.0.0.2/32"],
                        }
                    ],
                    currency="RUB",
                    timeouts=FAST,
                ),
            }
        },
    }


@dataclass
class KioskHub:
    api: Api
    gateway: YooKassaServer
    events: list[Event]
    tokens: dict[str, str]

    @property
    def hub(self) -> Hub:
        return self.api.hub

    async def machine_token(self, machine_id: str) -> str:
        if machine_id not in self.tokens:
            _, password = await CredentialStore(self.hub).async_add_machine(machine_id)
            status, grant, _ = await self.api.call(
                "POST",
                "/api/auth/login",
                json={"grant_type": "machine", "machine_id": machine_id, "password": password},
            )
            assert status == 200, grant
            self.tokens[machine_id] = grant["access_token"]
        return self.tokens[machine_id]

    async def call(
        self, method: str, path: str, machine_id: str, json: Any = None
    ) -> tuple[int, Any]:
        token = await self.machine_token(machine_id)
        status, body, _ = await self.api.call(method, path, token=token, json=json)
        return status, body

    async def buy(self, machine_id: str, **wanted: Any) -> dict[str, Any]:
        status, purchase = await self.call(
            "POST", f"/api/kiosk/{machine_id}/purchases", machine_id, wanted
        )
        assert status == 201, purchase
        check(PurchasesView, "post", 201, purchase)
        return purchase

    async def purchase(self, machine_id: str, purchase_id: str) -> dict[str, Any]:
        status, purchase = await self.call(
            "GET", f"/api/kiosk/{machine_id}/purchases/{purchase_id}", machine_id
        )
        assert status == 200, purchase
        check(PurchaseView, "get", 200, purchase)
        return purchase

    async def until(
        self,
        machine_id: str,
        purchase_id: str,
        condition: Callable[[dict[str, Any]], bool] = lambda purchase: purchase["finished"],
        timeout: float = 5,
    ) -> dict[str, Any]:
        """Poll the purchase as the kiosk does until ``condition`` holds."""
        async with asyncio.timeout(timeout):
            while True:
                purchase = await self.purchase(machine_id, purchase_id)
                if condition(purchase):
                    return purchase
                await asyncio.sleep(0.02)

    async def kiosk(self, machine_id: str) -> dict[str, Any]:
        status, kiosk = await self.call("GET", f"/api/kiosk/{machine_id}", machine_id)
        assert status == 200, kiosk
        check(KioskView, "get", 200, kiosk)
        return kiosk

    def stock(self, machine_id: str, slot: str) -> str:
        state = self.hub.states.get(f"slot.{machine_id}_{slot.lower()}")
        assert state is not None
        return state.state


def check(view: Any, method: str, status: int, answer: Any) -> None:
    """``answer`` matches what ``/api/openapi.json`` publishes for it."""
    schema = view.operations()[method].responses[status]
    errors = [error.message for error in Draft202012Validator(schema).iter_errors(answer)]
    assert not errors, (errors, answer)


@pytest.fixture
async def kiosk_hub(tmp_path: Path) -> AsyncIterator[KioskHub]:
    gateway = YooKassaServer()  # its notifications come from 127.0.0.2
    await gateway.start()
    (tmp_path / "configuration.yaml").write_text(
        yaml.safe_dump(configuration(tmp_path, gateway), sort_keys=False), encoding="utf-8"
    )
    prepared = await asyncio.to_thread(prepare, tmp_path)
    assert prepared.issues == [], prepared.issues
    hub, report = await async_start_hub(prepared)
    try:
        assert report.failed == {}, report.failed
        assert hub.data["vending"].broken == {}
        gateway.webhook_url = get_http(hub).url + QR_WEBHOOK
        events: list[Event] = []
        hub.bus.async_listen(MATCH_ALL, events.append)
        session = aiohttp.ClientSession()
        try:
            yield KioskHub(Api(hub, get_http(hub).url, session), gateway, events, {})
        finally:
            await session.close()
    finally:
        if not hub.is_stopping:
            await hub.async_stop()
        await gateway.stop()


# ---- the menu -------------------------------------------------------------------------------


async def test_the_kiosk_of_an_engine_machine_shows_its_menu_and_methods(
    kiosk_hub: KioskHub,
) -> None:
    kiosk = await kiosk_hub.kiosk("cafe_1")
    assert (kiosk["backend"], kiosk["simulated"], kiosk["purchases"]) == ("engine", False, True)
    assert (kiosk["name"], kiosk["currency"], kiosk["mode"]) == ("Cafe", "EUR", "normal")
    assert kiosk["online"] and kiosk["selling"] and not kiosk["free_vend"]
    assert kiosk["languages"] == ["en", "ru"] and kiosk["purchase"] is None
    # instant: card, nfc, qr, mobile_wallet; wallet: e_wallet; instant_cash: cash.
    assert kiosk["payment_methods"] == ["card", "nfc", "qr", "mobile_wallet", "e_wallet", "cash"]
    slots = {slot["code"]: slot for slot in kiosk["slots"]}
    assert list(slots) == ["A1", "A2", "B1"]
    assert (slots["A1"]["product"], slots["A1"]["price"], slots["A1"]["stock"]) == ("Cola", 150, 5)
    assert slots["A1"]["available"] and not slots["A1"]["sold_out"]
    assert slots["A2"]["sold_out"] and not slots["A2"]["available"]

    rub = await kiosk_hub.kiosk("qr_4")
    assert (rub["currency"], rub["payment_methods"]) == ("RUB", ["qr"])

    # A machine in service mode shows its products, none of them buyable, and refuses sales.
    await kiosk_hub.hub.services.async_call(
        "vending", "set_mode", {"machine_id": "cafe_1", "mode": "service"}
    )
    kiosk = await kiosk_hub.kiosk("cafe_1")
    assert (kiosk["mode"], kiosk["selling"]) == ("service", False)
    assert not any(slot["available"] for slot in kiosk["slots"])
    status, refused = await kiosk_hub.call(
        "POST", "/api/kiosk/cafe_1/purchases", "cafe_1", {"slot": "A1", "method": "card"}
    )
    assert status == 409, refused
    assert refused["error"]["code"] == "not_selling"
    assert refused["error"]["details"] == {"outcome": "service_mode"}

    await kiosk_hub.hub.services.async_call(
        "vending", "set_mode", {"machine_id": "cafe_1", "mode": "free_vend"}
    )
    kiosk = await kiosk_hub.kiosk("cafe_1")
    assert kiosk["selling"] and kiosk["free_vend"]
    free = await kiosk_hub.buy("cafe_1", slot="A1", method="card")
    done = await kiosk_hub.until("cafe_1", free["id"])
    assert (done["outcome"], done["free_vend"], done["provider"]) == ("completed", True, None)


async def test_the_simulated_machine_beside_them_still_sells_with_simulated_payment(
    kiosk_hub: KioskHub,
) -> None:
    kiosk = await kiosk_hub.kiosk("sim_9")
    assert (kiosk["backend"], kiosk["simulated"]) == ("simulator", True)
    assert kiosk["payment_methods"] == ["card", "qr", "cash"]
    purchase = await kiosk_hub.buy("sim_9", slot="A1", method="card")
    assert purchase["simulated"] is True and purchase["state"] == "awaiting_payment"
    done = await kiosk_hub.until(
        "sim_9", purchase["id"], lambda p: p["state"] in ("completed", "failed")
    )
    assert done["state"] == "completed"
    status, refused = await kiosk_hub.call(
        "POST",
        "/api/kiosk/sim_9/purchases",
        "sim_9",
        {"slot": "A1", "method": "card", "token": "anything"},
    )
    assert status == 400 and "token" in refused["error"]["message"]


# ---- purchases ------------------------------------------------------------------------------


async def test_a_card_purchase_runs_the_engine_to_completion(kiosk_hub: KioskHub) -> None:
    purchase = await kiosk_hub.buy("cafe_1", slot="a1", method="card")
    assert (purchase["slot"], purchase["product"], purchase["price"]) == ("A1", "Cola", 150)
    assert (purchase["simulated"], purchase["backend"]) == (False, "engine")
    assert purchase["state"] == "authorizing" and purchase["cancellable"]
    assert purchase["outcome"] is None and not purchase["finished"]
    assert purchase["provider"] == "instant"

    done = await kiosk_hub.until("cafe_1", purchase["id"])
    assert (done["state"], done["outcome"], done["reason"]) == ("completed", "completed", None)
    assert done["dispense"] == "dispensed" and not done["cancellable"]
    assert (done["change"], done["refunded"], done["refund_amount"]) == (0, False, 0)
    assert done["ended"] is not None and done["context_id"] == purchase["context_id"]
    assert kiosk_hub.stock("cafe_1", "A1") == "4"
    # The sale went through the engine: its events carry the session's id.
    completed = [
        event.data
        for event in kiosk_hub.events
        if event.event_type == "vend_completed" and event.data["session_id"] == purchase["id"]
    ]
    assert [(row["payment_method"], row["price"]) for row in completed] == [("card", 150)]
    # A finished purchase is not offered for resuming.
    assert (await kiosk_hub.kiosk("cafe_1"))["purchase"] is None
    # The simulated payment operations do not apply to it.
    for action, payload in (("pay", {}), ("cash", {"amount": 100})):
        status, body = await kiosk_hub.call(
            "POST", f"/api/kiosk/cafe_1/purchases/{purchase['id']}/{action}", "cafe_1", payload
        )
        assert status == 409 and body["error"]["code"] == "not_supported", body
        assert "vend engine" in body["error"]["message"]


async def test_cash_credit_left_comes_back_as_change(kiosk_hub: KioskHub) -> None:
    # instant_cash "inserts" 2.00 for a 1.50 product: 0.50 waits for another selection
    # (multi-vend) and is paid out as change when that wait (0.3 s) ends.
    purchase = await kiosk_hub.buy("cafe_1", slot="A1", method="cash")
    assert purchase["provider"] == "instant_cash" and purchase["due"] == 150
    done = await kiosk_hub.until("cafe_1", purchase["id"])
    assert (done["outcome"], done["credit_left"]) == ("completed", 50)
    paid_out = await kiosk_hub.until(
        "cafe_1", purchase["id"], lambda p: p["change"] > 0 and p["credit_left"] is None
    )
    assert paid_out["change"] == 50


async def test_a_declined_card_charges_nothing_and_the_token_is_never_shown(
    kiosk_hub: KioskHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    purchase = await kiosk_hub.buy("cafe_1", slot="A1", method="card", token=STOLEN_CARD)
    done = await kiosk_hub.until("cafe_1", purchase["id"])
    assert (done["state"], done["outcome"], done["reason"]) == ("failed", "declined", "declined")
    assert done["dispense"] is None and kiosk_hub.stock("cafe_1", "A1") == "5"
    assert_token_nowhere(kiosk_hub, caplog, STOLEN_CARD, [purchase, done])


async def test_a_wallet_pays_with_the_token_the_kiosk_sends(
    kiosk_hub: KioskHub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wallet = kiosk_hub.hub.services
    await wallet.async_call("wallet", "create_account", {"token": WALLET_TOKEN})
    await wallet.async_call(
        "wallet", "top_up", {"token": WALLET_TOKEN, "amount": 1000, "source_id": "till-1"}
    )

    status, refused = await kiosk_hub.call(
        "POST", "/api/kiosk/cafe_1/purchases", "cafe_1", {"slot": "A1", "method": "e_wallet"}
    )
    assert status == 400 and "token" in refused["error"]["message"]

    purchase = await kiosk_hub.buy("cafe_1", slot="A1", method="e_wallet", token=WALLET_TOKEN)
    assert purchase["provider"] == "wallet"
    done = await kiosk_hub.until("cafe_1", purchase["id"])
    assert done["outcome"] == "completed"
    balance = await wallet.async_call("wallet", "balance", {"token": WALLET_TOKEN})
    assert (balance["balance"], balance["held"]) == (850, 0)

    unknown = await kiosk_hub.buy("cafe_1", slot="A1", method="e_wallet", token="no-such-token")
    done_unknown = await kiosk_hub.until("cafe_1", unknown["id"])
    assert (done_unknown["outcome"], done_unknown["reason"]) == ("declined", "unknown_token")
    answers = [purchase, done, unknown, done_unknown]
    assert_token_nowhere(kiosk_hub, caplog, WALLET_TOKEN, answers)
    assert_token_nowhere(kiosk_hub, caplog, "no-such-token", answers)
    # The audit log has the kiosk's two selections, with the token hidden.
    owner = (await kiosk_hub.api.onboard())["access_token"]
    async with asyncio.timeout(5):
        while True:
            status, page, _ = await kiosk_hub.api.call(
                "GET", "/api/audit?action=vending.select", token=owner
            )
            assert status == 200, page
            if len(page["items"]) >= 2:  # the one without a token never reached the engine
                break
            await asyncio.sleep(0.05)
    assert WALLET_TOKEN not in json.dumps(page) and "no-such-token" not in json.dumps(page)
    assert {item["actor_type"] for item in page["items"]} == {"machine"}


def assert_token_nowhere(
    kiosk_hub: KioskHub,
    caplog: pytest.LogCaptureFixture,
    token: str,
    answers: list[dict[str, Any]],
) -> None:
    """The token is in no log line, no event on the bus and no answer."""
    assert token not in caplog.text
    selections = [
        event
        for event in kiosk_hub.events
        if event.event_type == "call_service" and event.data["domain"] == "vending"
    ]
    assert selections, "the kiosk's selection was a service call"
    for event in kiosk_hub.events:
        assert token not in json.dumps(event.data, default=str), event.event_type
    assert token not in json.dumps(answers)


async def test_no_payment_in_time_ends_in_payment_timeout(kiosk_hub: KioskHub) -> None:
    purchase = await kiosk_hub.buy("late_3", slot="A1", method="card")
    done = await kiosk_hub.until("late_3", purchase["id"])
    assert (done["state"], done["outcome"], done["reason"]) == (
        "failed",
        "payment_timeout",
        "payment_timeout",
    )
    assert kiosk_hub.stock("late_3", "A1") == "5"


async def test_the_customer_cancels_while_paying(kiosk_hub: KioskHub) -> None:
    purchase = await kiosk_hub.buy("slow_2", slot="A1", method="card")
    waiting = await kiosk_hub.until(
        "slow_2", purchase["id"], lambda p: p["progress"]["step"] == "processing"
    )
    assert waiting["state"] == "authorizing" and waiting["cancellable"]
    # A kiosk reloaded now resumes the purchase; another one cannot start meanwhile.
    resumed = (await kiosk_hub.kiosk("slow_2"))["purchase"]
    assert resumed is not None and resumed["id"] == purchase["id"]
    status, busy = await kiosk_hub.call(
        "POST", "/api/kiosk/slow_2/purchases", "slow_2", {"slot": "B1", "method": "card"}
    )
    assert status == 409 and busy["error"]["code"] == "busy", busy

    status, cancelled = await kiosk_hub.call(
        "POST", f"/api/kiosk/slow_2/purchases/{purchase['id']}/cancel", "slow_2", {}
    )
    assert status == 200, cancelled
    check(PurchaseView, "get", 200, cancelled)
    assert (cancelled["state"], cancelled["outcome"]) == ("failed", "cancelled")
    assert not cancelled["cancellable"] and kiosk_hub.stock("slow_2", "A1") == "5"
    # Cancelling again answers it as it is.
    status, again = await kiosk_hub.call(
        "POST", f"/api/kiosk/slow_2/purchases/{purchase['id']}/cancel", "slow_2", {}
    )
    assert status == 200 and again["outcome"] == "cancelled"
    assert (await kiosk_hub.kiosk("slow_2"))["purchase"] is None


async def test_a_jam_fails_the_vend_and_releases_the_payment(kiosk_hub: KioskHub) -> None:
    purchase = await kiosk_hub.buy("cafe_1", slot="B1", method="card")
    done = await kiosk_hub.until("cafe_1", purchase["id"])
    assert (done["state"], done["outcome"], done["reason"]) == (
        "failed",
        "dispense_failed",
        "jammed",
    )
    assert done["dispense"] == "jammed" and not done["refunded"]
    assert kiosk_hub.stock("cafe_1", "B1") == "3"
    status, body = await kiosk_hub.call(
        "POST", f"/api/kiosk/cafe_1/purchases/{purchase['id']}/cancel", "cafe_1", {}
    )
    assert status == 200 and body["outcome"] == "dispense_failed"  # finished: unchanged


async def test_refusals_at_selection(kiosk_hub: KioskHub) -> None:
    async def start(machine_id: str, **wanted: Any) -> tuple[int, Any]:
        return await kiosk_hub.call(
            "POST", f"/api/kiosk/{machine_id}/purchases", machine_id, wanted
        )

    status, body = await start("cafe_1", slot="A2", method="card")
    assert (status, body["error"]["code"]) == (409, "sold_out"), body
    assert body["error"]["details"] == {"outcome": "sold_out"}
    status, body = await start("cafe_1", slot="A1", method="crypto")
    assert (status, body["error"]["code"]) == (409, "method_not_accepted"), body
    assert "does not accept crypto" in body["error"]["message"]
    status, body = await start("cafe_1", slot="Z9", method="card")
    assert (status, body["error"]["code"]) == (404, "not_found"), body
    status, body = await start("cafe_1", slot="A1", method="bitcoin")
    assert status == 400, body
    status, body = await start("cafe_1", slot="A1", method="card", token="")
    assert status == 400, body
    unknown = "0" * 32
    status, body = await kiosk_hub.call("GET", f"/api/kiosk/cafe_1/purchases/{unknown}", "cafe_1")
    assert status == 404, body
    status, body = await kiosk_hub.call(
        "POST", f"/api/kiosk/cafe_1/purchases/{unknown}/cancel", "cafe_1", {}
    )
    assert status == 404, body


async def test_a_qr_payment_shows_the_gateways_qr_and_completes_when_paid(
    kiosk_hub: KioskHub,
) -> None:
    purchase = await kiosk_hub.buy("qr_4", slot="A1", method="qr")
    assert (purchase["currency"], purchase["provider"]) == ("RUB", "qr_gateway")
    shown = await kiosk_hub.until(
        "qr_4", purchase["id"], lambda p: p["progress"]["step"] == "scan_qr"
    )
    (payment,) = kiosk_hub.gateway.payments.values()
    qr = payment["confirmation"]["confirmation_data"]
    assert shown["payment_url"] == shown["progress"]["qr"] == qr
    assert shown["cancellable"]
    # qr_4's payment timeout (FAST) is 5 s, counted from the selection.
    left = datetime.fromisoformat(shown["expires"]) - datetime.fromisoformat(shown["started"])
    assert left.total_seconds() == pytest.approx(FAST["payment"], abs=0.01)
    await kiosk_hub.gateway.pay(payment["id"])  # the customer pays; YooKassa notifies the hub
    done = await kiosk_hub.until("qr_4", purchase["id"])
    assert (done["outcome"], done["provider"]) == ("completed", "qr_gateway")
    assert done["payment_url"] is None and done["expires"] is None  # nothing to pay any more
    assert kiosk_hub.stock("qr_4", "A1") == "4"


# ---- who may ---------------------------------------------------------------------------------


async def test_only_the_machine_itself_and_operators_reach_its_purchases(
    kiosk_hub: KioskHub,
) -> None:
    purchase = await kiosk_hub.buy("slow_2", slot="A1", method="card")
    path = f"/api/kiosk/slow_2/purchases/{purchase['id']}"
    # Another machine: its own machine only; the purchase is not found, and stays as it is.
    for method, route, payload in (
        ("GET", "/api/kiosk/slow_2", None),
        ("GET", path, None),
        ("POST", path + "/cancel", {}),
        ("POST", "/api/kiosk/slow_2/purchases", {"slot": "B1", "method": "card"}),
    ):
        status, body = await kiosk_hub.call(method, route, "cafe_1", payload)
        assert status == 404, (route, body)
    # Nor does a machine reach its purchase through its own URL.
    status, body = await kiosk_hub.call(
        "GET", f"/api/kiosk/cafe_1/purchases/{purchase['id']}", "cafe_1"
    )
    assert status == 404, body
    assert (await kiosk_hub.purchase("slow_2", purchase["id"]))["state"] == "authorizing"
    # No token, or a bad one.
    for token in (None, "not.a.token"):
        status, body, _ = await kiosk_hub.api.call("GET", path, token=token)
        assert status == 401, body
        status, body, _ = await kiosk_hub.api.call(
            "POST",
            "/api/kiosk/slow_2/purchases",
            token=token,
            json={"slot": "A1", "method": "card"},
        )
        assert status == 401, body
    # Users: operate_machines on the machine.
    owner = (await kiosk_hub.api.onboard())["access_token"]
    viewer = await kiosk_hub.api.add_user(owner, "vera", "viewer")
    status, body, _ = await kiosk_hub.api.call("GET", path, token=viewer)
    assert status == 403, body
    tech = await kiosk_hub.api.add_user(owner, "tom", "technician", machine_ids=["cafe_1"])
    status, body, _ = await kiosk_hub.api.call("POST", path + "/cancel", token=tech, json={})
    assert status == 404, body
    operator = await kiosk_hub.api.add_user(owner, "otto", "operator")
    status, cancelled, _ = await kiosk_hub.api.call(
        "POST", path + "/cancel", token=operator, json={}
    )
    assert status == 200 and cancelled["outcome"] == "cancelled", cancelled


async def test_the_services_api_answers_a_refused_selection_as_the_callers_error(
    kiosk_hub: KioskHub,
) -> None:
    """``vending.select`` through ``/api/services`` refuses a sold-out slot with 400 and the
    engine's outcome code (not 503: nothing is wrong with the hub)."""
    owner = (await kiosk_hub.api.onboard())["access_token"]
    status, body, _ = await kiosk_hub.api.call(
        "POST",
        "/api/services/vending/select",
        token=owner,
        json={"machine_id": "cafe_1", "slot": "A2", "method": "card", "wait": False},
    )
    assert status == 400, body
    assert body["error"]["details"] == {"service": "vending.select", "outcome": "sold_out"}
    assert "sold out" in body["error"]["message"]
