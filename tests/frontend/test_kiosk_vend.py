"""The customer kiosk on machines of the vend engine, in headless Chromium against a real hub
(a subprocess) whose ``vending:`` block has the ``simulator`` board and the ``instant``,
``instant_cash`` and ``wallet`` providers, and a ``qr_gateway`` machine paid through the
emulated YooKassa (run on its own event loop in a thread of this process).

A card purchase runs to "enjoy", a jam tells the customer they were not charged, the customer
cancels while paying (in Russian, with no untranslated string), a wallet pays with the code
typed into the kiosk, cash credit left is offered for another product, and the QR code the
kiosk draws is the gateway's. Any console error fails a test.

The words for every outcome code, method, decline and dispense reason are checked here
without a browser too.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from tests.conftest import REPO_ROOT
from tests.integrations.qr_gateway.yookassa_server import YooKassaServer
from vendhub.http.api.kiosk_vend import ENGINE_METHODS, OUTCOMES, REFUSALS
from vendhub.machine.credentials import add_machine
from vendhub.vending.dispenser import DispenseOutcome
from vendhub_integrations.qr_gateway.webhook import URL_WEBHOOK as QR_WEBHOOK

from .conftest import Console, browser_problem, money_text
from .hub import Hub, start_hub
from .test_kiosk import LANDSCAPE, PORTRAIT, flatten, open_kiosk, shot, untranslated, wait_screen

KIOSK_I18N = REPO_ROOT / "frontend" / "kiosk" / "i18n"
WALLET_CODE = "4921-7730-0155"
MACHINES = ("cafe_1", "slow_2", "qr_3")

T = TypeVar("T")


def vending_block(gateway: YooKassaServer) -> str:
    return f"""
wallet:
qr_gateway:
vending:
  machines:
    cafe_1:
      name: Cafe corner
      planogram:
        A1: {{product: Cola, price: 150, capacity: 10, stock: 8}}
        A2: {{product: Sparkling water, price: 120, capacity: 10, stock: 6}}
        B1: {{product: Chocolate bar, price: 130, capacity: 6, stock: 4}}
        B2: {{product: Salted crisps, price: 110, capacity: 6, stock: 0}}
      dispenser:
        platform: simulator
        dispense_time: 1
        jam_slots: [B1]
      payments:
        - platform: instant
          methods: [card]
          approval_delay: 1.5
        - platform: wallet
        - platform: instant_cash
          insert: 200
      timeouts:
        payment: 30
        multi_vend: 5
    slow_2:
      name: Slow reader
      planogram:
        A1: {{product: Cola, price: 150, capacity: 10, stock: 8}}
      dispenser:
        platform: simulator
        dispense_time: 0.2
      payments:
        - platform: instant
          methods: [card]
          approval_delay: 60
      timeouts:
        payment: 90
    qr_3:
      name: QR kiosk
      currency: RUB
      planogram:
        A1: {{product: Kvass, price: 150, capacity: 10, stock: 5}}
      dispenser:
        platform: simulator
        dispense_time: 0.5
      payments:
        - platform: qr_gateway
          shop_id: "{gateway.shop_id}"
          secret_key: "{gateway.secret_key}"
          api_url: {gateway.api_url}
          poll_interval: 60
          request_timeout: 5
          allowed_sources: [127.0.0.2/32]
      timeouts:
        payment: 60
"""


class LoopThread:
    """An asyncio loop in a thread of its own (Playwright's sync API holds this thread's)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, make: Callable[[], Awaitable[T]], timeout: float = 10) -> T:
        async def call() -> T:
            return await make()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[YooKassaServer, LoopThread]]:
    if browser_problem() is not None:
        pytest.skip(browser_problem() or "")
    thread = LoopThread()
    server = YooKassaServer()  # its notifications come from 127.0.0.2
    thread.run(server.start)
    yield server, thread
    thread.run(server.stop)
    thread.close()


@pytest.fixture(scope="module")
def vend_hub(
    tmp_path_factory: pytest.TempPathFactory, gateway: tuple[YooKassaServer, LoopThread]
) -> Iterator[tuple[Hub, dict[str, str]]]:
    """A running hub with the local machines, each with kiosk credentials."""
    server, _ = gateway
    config = tmp_path_factory.mktemp("kiosk_vend") / "config"
    config.mkdir(parents=True)
    passwords = {machine: add_machine(config, machine)[1] for machine in MACHINES}
    hub = start_hub(config, vending_block(server))
    server.webhook_url = hub.url + QR_WEBHOOK
    try:
        hub.onboard()
        yield hub, passwords
    finally:
        hub.stop()


def stock(hub: Hub, machine_id: str, code: str) -> int:
    return int(hub.api("GET", f"/api/machines/{machine_id}/slots/{code}")["stock"])


def choose(tab: Console, slot: str) -> None:
    """From the attract screen to the payment methods of ``slot``."""
    page = tab.page
    page.click("[data-testid=start]")
    wait_screen(tab, "grid")
    page.click(f"[data-slot={slot}]")
    wait_screen(tab, "detail")
    page.click("[data-testid=buy]")
    wait_screen(tab, "method")


def outcome(tab: Console) -> str:
    wait_screen(tab, "outcome", timeout=15_000)
    assert tab.page.get_attribute("[data-testid=outcome]", "data-backend") == "engine"
    return tab.page.get_attribute("[data-testid=outcome]", "data-outcome") or ""


# ---- the words (no browser) ------------------------------------------------------------------


def test_every_outcome_method_and_reason_of_the_engine_has_words() -> None:
    for language in ("en", "ru"):
        words = flatten(json.loads((KIOSK_I18N / f"{language}.json").read_text()))
        for code in OUTCOMES:
            for part in ("title", "hint"):
                assert words.get(f"kiosk.outcomes.{code}.{part}"), (language, code, part)
        for method in ENGINE_METHODS:
            assert words.get(f"kiosk.methods.{method}"), (language, method)
            assert words.get(f"kiosk.method.hint_{method}"), (language, method)
        for reason in DispenseOutcome:
            if reason is not DispenseOutcome.dispensed:
                assert words.get(f"kiosk.dispense_reasons.{reason.value}"), (language, reason)
        # The decline reasons providers use (vendhub/vending/payment.py); "declined" and
        # "cancelled" say no more than the outcome's title does.
        for reason in ("insufficient_funds", "expired", "unknown_token", "amount_mismatch"):
            assert words.get(f"kiosk.declines.{reason}"), (language, reason)
        for code in {*REFUSALS.values(), "slot_locked"}:
            assert words.get(f"kiosk.errors.{code}"), (language, code)


# ---- purchases -------------------------------------------------------------------------------


def test_a_card_purchase_through_the_engine_ends_in_enjoy(
    tab_factory: Any, vend_hub: tuple[Hub, dict[str, str]]
) -> None:
    hub, _ = vend_hub
    before = stock(hub, "cafe_1", "A1")
    tab = open_kiosk(tab_factory, vend_hub, machine_id="cafe_1")
    page = tab.page
    choose(tab, "A1")
    methods = page.eval_on_selector_all("[data-method]", "els => els.map(e => e.dataset.method)")
    assert methods == ["card", "e_wallet", "cash"]
    shot(tab, "kiosk-engine-method-portrait")

    page.click("[data-testid=method-card]")
    wait_screen(tab, "payment")
    # Until the provider's first step (polled every 500 ms) the card reader is shown; then
    # the instant provider is processing (it approves after 1.5 s). Nothing is simulated here.
    page.wait_for_selector("[data-testid=engine-payment][data-step=present_card]")
    assert page.inner_text("[data-testid=engine-payment] h1") == "Present your card"
    page.wait_for_selector("[data-testid=engine-payment][data-step=processing]")
    assert page.inner_text("[data-testid=engine-payment] h1") == "Processing your payment…"
    assert page.locator(".demo").count() == 0
    assert page.is_visible("[data-testid=cancel]")
    shot(tab, "kiosk-engine-payment-processing-portrait")
    wait_screen(tab, "dispensing")
    assert page.inner_text(".approved") == "Payment approved"
    assert outcome(tab) == "completed"
    assert page.inner_text("[data-testid=outcome] h1") == "Enjoy your Cola!"
    shot(tab, "kiosk-engine-outcome-completed-portrait")
    assert stock(hub, "cafe_1", "A1") == before - 1
    page.click("[data-testid=done]")
    wait_screen(tab, "attract")


def test_a_jam_tells_the_customer_they_were_not_charged(
    tab_factory: Any, vend_hub: tuple[Hub, dict[str, str]]
) -> None:
    hub, _ = vend_hub
    before = stock(hub, "cafe_1", "B1")
    tab = open_kiosk(tab_factory, vend_hub, machine_id="cafe_1", viewport=LANDSCAPE)
    page = tab.page
    choose(tab, "B1")
    page.click("[data-testid=method-card]")
    wait_screen(tab, "payment")
    assert outcome(tab) == "dispense_failed"
    assert page.get_attribute("[data-testid=outcome]", "data-reason") == "jammed"
    assert page.inner_text("[data-testid=outcome] h1") == (
        "Sorry, we could not dispense your Chocolate bar"
    )
    assert page.inner_text("[data-testid=money]") == "You were not charged."
    assert "The product got stuck." in page.inner_text("[data-testid=outcome]")
    shot(tab, "kiosk-engine-outcome-jam-landscape")
    assert stock(hub, "cafe_1", "B1") == before  # nothing dropped, nothing taken


def test_the_customer_cancels_while_paying_in_russian(
    tab_factory: Any, vend_hub: tuple[Hub, dict[str, str]]
) -> None:
    tab = open_kiosk(tab_factory, vend_hub, machine_id="slow_2")
    page = tab.page
    page.click("[data-testid=lang-ru]")
    page.wait_for_function("() => document.documentElement.lang === 'ru'")
    wait_screen(tab, "attract")
    choose(tab, "A1")
    screens = [untranslated(tab)]
    assert page.inner_text("[data-testid=method-card] .method-name") == "Карта"
    page.click("[data-testid=method-card]")
    wait_screen(tab, "payment")
    page.wait_for_selector("[data-testid=engine-payment][data-step=processing]")
    screens.append(untranslated(tab))
    assert page.inner_text("[data-testid=cancel]") == "Отмена"
    shot(tab, "kiosk-engine-payment-processing-ru-portrait")
    page.keyboard.press("Escape")  # Escape cancels, as the button does
    assert outcome(tab) == "cancelled"
    screens.append(untranslated(tab))
    assert page.inner_text("[data-testid=outcome] h1") == "Покупка отменена"
    assert page.inner_text("[data-testid=money]") == "Деньги не списаны."
    shot(tab, "kiosk-engine-outcome-cancelled-ru-portrait")
    assert not any(screens), screens


def test_a_wallet_pays_with_the_code_typed_into_the_kiosk(
    tab_factory: Any, vend_hub: tuple[Hub, dict[str, str]]
) -> None:
    hub, _ = vend_hub
    hub.api("POST", "/api/services/wallet/create_account", {"token": WALLET_CODE})
    hub.api(
        "POST",
        "/api/services/wallet/top_up",
        {"token": WALLET_CODE, "amount": 500, "source_id": "kiosk-test"},
    )
    tab = open_kiosk(tab_factory, vend_hub, machine_id="cafe_1")
    page = tab.page
    choose(tab, "A2")
    page.click("[data-testid=method-e_wallet]")
    wait_screen(tab, "token")
    # The field has the focus: a scanner types the code and Enter.
    assert page.evaluate("document.activeElement.id") == "wallet-token"
    assert page.get_attribute("#wallet-token", "type") == "password"
    shot(tab, "kiosk-engine-token-portrait")
    page.keyboard.type(WALLET_CODE)
    page.keyboard.press("Enter")
    assert outcome(tab) == "completed"
    balance = hub.api("POST", "/api/services/wallet/balance", {"token": WALLET_CODE})["result"]
    assert balance["balance"] == 500 - 120

    # An unknown code is declined, and the customer is told so.
    page.click("[data-testid=done]")
    wait_screen(tab, "attract")
    choose(tab, "A2")
    page.click("[data-testid=method-e_wallet]")
    wait_screen(tab, "token")
    page.fill("#wallet-token", "0000-0000-0000")
    page.click("[data-testid=token-pay]")
    assert outcome(tab) == "declined"
    assert "This wallet code is not known." in page.inner_text("[data-testid=outcome]")
    assert page.inner_text("[data-testid=money]").startswith("You were not charged.")
    shot(tab, "kiosk-engine-outcome-declined-portrait")
    log = hub.log.read_text()
    assert WALLET_CODE not in log and "0000-0000-0000" not in log


def test_cash_credit_left_is_offered_for_another_product(
    tab_factory: Any, vend_hub: tuple[Hub, dict[str, str]]
) -> None:
    tab = open_kiosk(tab_factory, vend_hub, machine_id="cafe_1", viewport=LANDSCAPE)
    page = tab.page
    choose(tab, "A1")
    page.click("[data-testid=method-cash]")
    # instant_cash "inserts" 2.00 for 1.50: 0.50 is left for another product.
    assert outcome(tab) == "completed"
    assert money_text(page.inner_text("[data-testid=credit-left]")).rstrip(".") == "0.50"
    shot(tab, "kiosk-engine-outcome-credit-landscape")
    page.click("[data-testid=another]")
    wait_screen(tab, "grid")


def test_the_qr_code_on_screen_is_the_gateways_and_paying_it_sells(
    tab_factory: Any,
    vend_hub: tuple[Hub, dict[str, str]],
    gateway: tuple[YooKassaServer, LoopThread],
) -> None:
    server, thread = gateway
    hub, _ = vend_hub
    tab = open_kiosk(tab_factory, vend_hub, machine_id="qr_3", viewport=PORTRAIT)
    page = tab.page
    choose(tab, "A1")
    assert page.eval_on_selector_all("[data-method]", "els => els.map(e => e.dataset.method)") == [
        "qr"
    ]
    page.click("[data-testid=method-qr]")
    page.wait_for_selector("[data-testid=engine-payment][data-step=scan_qr] [data-testid=qr]")

    async def payments() -> list[dict[str, Any]]:
        return [dict(payment) for payment in server.payments.values()]

    (payment,) = thread.run(payments)
    confirmation = payment["confirmation"]["confirmation_data"]
    assert page.get_attribute("[data-testid=qr]", "data-payload") == confirmation
    assert page.locator("[data-testid=qr] path").get_attribute("d")
    # The time left to pay counts down from the machine's payment timeout.
    first = page.inner_text("[data-testid=engine-payment] [data-field=expires]")
    assert re.fullmatch(r"Time left: \d+ s", first), first
    page.wait_for_function(
        "first => document.querySelector('[data-field=expires]').textContent !== first", arg=first
    )
    shot(tab, "kiosk-engine-payment-qr-portrait")

    thread.run(lambda: server.pay(payment["id"]))  # the customer pays; YooKassa notifies
    assert outcome(tab) == "completed"
    assert stock(hub, "qr_3", "A1") == 4
