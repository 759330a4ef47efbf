"""The operator console in headless Chromium against a real hub: onboarding and sign-in, the
fleet overview updating live, a price change, a mode change, acknowledging an alarm,
automations, tokens, the language switch, and a screenshot of every main page."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT

from .conftest import DESKTOP, PHONE, Console, money_text
from .hub import OWNER_PASSWORD, start_hub

PAGES = {
    "fleet": ("#/fleet", "vh-page-fleet"),
    "machine": ("#/machines/gym_2", "vh-page-machine"),
    "alarms": ("#/alarms", "vh-page-alarms"),
    "analytics": ("#/analytics", "vh-page-analytics"),
    "automations": ("#/automations", "vh-page-automations"),
    "automation-traces": ("#/automations/empty_slot_alarm", "vh-page-automations"),
    "products": ("#/products/lobby_1", "vh-page-products"),
    "stock": ("#/stock", "vh-page-stock"),
    "users": ("#/users", "vh-page-users"),
    "settings": ("#/settings", "vh-page-settings"),
}


def card_text(console: Console, machine_id: str, field: str) -> str:
    return console.page.inner_text(f'[data-machine="{machine_id}"] [data-field="{field}"]')


def wait_for_text(console: Console, selector: str, expected: str) -> None:
    console.page.wait_for_function(
        "([selector, expected]) => { const el = document.querySelector(selector);"
        " return el && el.textContent.trim() === expected; }",
        arg=[selector, expected],
    )


# ---- onboarding and sign-in ----------------------------------------------------------------


def test_onboarding_then_the_live_fleet_then_sign_out_and_in(
    tab_factory: Any, tmp_path: Path
) -> None:
    hub = start_hub(tmp_path / "config")
    try:
        desktop = tab_factory(hub, DESKTOP)
        desktop.goto()
        desktop.page.wait_for_selector("vh-onboarding form")
        desktop.screenshot("onboarding-desktop")

        phone = tab_factory(hub, PHONE)
        phone.goto()
        page = phone.page
        page.wait_for_selector("vh-onboarding form")
        phone.screenshot("onboarding-phone")
        page.fill("#name", "Olga")
        page.fill("#username", "olga")
        page.fill("#password", OWNER_PASSWORD)
        page.fill("#confirm", OWNER_PASSWORD)
        page.click("[data-testid=create-owner]")
        page.wait_for_selector("vh-page-fleet[data-ready=true]")
        assert page.locator(".machine-card").count() == 2
        page.wait_for_selector("[data-testid=connection][data-status=connected]")
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        phone.screenshot("fleet-after-onboarding-phone")

        page.click("[data-testid=sign-out]")
        page.wait_for_selector("vh-login form")
        phone.screenshot("sign-in-phone")
        page.fill("#username", "olga")
        page.fill("#password", OWNER_PASSWORD)
        page.click("[data-testid=sign-in]")
        page.wait_for_selector("vh-page-fleet[data-ready=true]")

        # A new tab of the same browser is still signed in (the session cookie).
        page.reload()
        page.wait_for_selector("vh-page-fleet[data-ready=true]")
        desktop.goto()
        desktop.page.wait_for_selector("vh-login form")  # another browser: not signed in
        desktop.screenshot("sign-in-desktop")
    finally:
        hub.stop()


# ---- the fleet overview --------------------------------------------------------------------


def test_the_fleet_overview_updates_live_when_the_simulator_sells(console: Console, hub) -> None:
    page = console.page
    page.wait_for_selector("[data-testid=connection][data-status=connected]")
    before = card_text(console, "lobby_1", "stock")
    items, capacity = (int(part) for part in re.findall(r"\d+", before))
    sales = int(card_text(console, "lobby_1", "sales"))
    page.evaluate("window.__sameDocument = true")

    started = time.monotonic()
    result = hub.api("POST", "/api/machines/lobby_1/commands/vend", {"slot": "A2"})
    assert result["ok"], result
    wait_for_text(
        console, '[data-machine="lobby_1"] [data-field="stock"]', f"{items - 1} / {capacity}"
    )
    wait_for_text(console, '[data-machine="lobby_1"] [data-field="sales"]', str(sales + 1))
    latency = time.monotonic() - started
    print(f"\nfleet overview showed the sale {latency * 1000:.0f} ms after the vend call")
    assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"
    assert money_text(card_text(console, "lobby_1", "revenue")) != "0.00"


def test_the_console_reconnects_after_the_hub_restarts(tab_factory: Any, tmp_path: Path) -> None:
    hub = start_hub(tmp_path / "config")
    try:
        hub.onboard()
        console = tab_factory(hub, PHONE)
        console.sign_in()
        page = console.page
        page.wait_for_selector("[data-testid=connection][data-status=connected]")
        page.evaluate("window.__sameDocument = true")
        hub.restart()
        # While the hub was away the browser logged its refused connection attempts; those
        # are the only errors allowed here.
        page.wait_for_selector("[data-testid=connection][data-status=connected]", timeout=45_000)
        expected = [e for e in console.errors if "ERR_CONNECTION_REFUSED" in e]
        console.errors[:] = [e for e in console.errors if e not in expected]
        before = card_text(console, "lobby_1", "stock")
        items = int(before.split("/")[0])
        hub.api("POST", "/api/machines/lobby_1/commands/vend", {"slot": "A1"})
        page.wait_for_function(
            "n => document.querySelector('[data-machine=\"lobby_1\"] [data-field=stock]')"
            ".textContent.trim().startsWith(String(n) + ' ')",
            arg=items - 1,
        )
        assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"
    finally:
        hub.stop()


def test_the_fleet_filters_and_search(console: Console) -> None:
    page = console.page
    page.fill("input[type=search]", "gym")
    assert page.locator(".machine-card:visible").count() == 1
    page.fill("input[type=search]", "")
    page.click("[data-filter=low]")  # lobby_1's B1 is below its par level
    visible = page.locator(".machine-card:visible")
    assert visible.count() == 1
    assert visible.first.get_attribute("data-machine") == "lobby_1"
    page.click("[data-filter=all]")
    assert page.locator(".machine-card:visible").count() == 2


# ---- the machine page ----------------------------------------------------------------------


def test_changing_a_price_on_the_machine_page(console: Console, hub) -> None:
    page = console.page
    page.click('[data-machine="lobby_1"]')
    page.wait_for_selector("vh-page-machine[data-ready=true]")
    tile = '[data-slot="A1"]'
    assert money_text(page.inner_text(f"{tile} [data-field=price]")) == "1.50"
    page.click(tile)
    page.fill("#dlg-price", "1.75")
    page.click("dialog button[value=ok]")
    page.wait_for_function(
        "() => document.querySelector('[data-slot=\"A1\"] [data-field=price]')"
        ".textContent.includes('1.75')"
    )
    slot = hub.api("GET", "/api/machines/lobby_1/slots/A1")
    assert slot["price"] == 175
    state = hub.api("GET", "/api/states/slot.lobby_1_a1")
    assert state["attributes"]["price"] == 175
    page.reload()
    page.wait_for_selector("vh-page-machine[data-ready=true]")
    assert money_text(page.inner_text(f"{tile} [data-field=price]")) == "1.75"


def test_changing_the_mode_and_opening_for_service(console: Console, hub) -> None:
    page = console.page
    console.open("#/machines/gym_2", "vh-page-machine")
    page.select_option("[data-testid=mode-select]", "out_of_order")
    page.click("[data-testid=set-mode]")
    page.wait_for_function(
        "() => document.querySelector('h1 [data-field=mode]').textContent.trim() !== 'Normal'"
    )
    assert hub.api("GET", "/api/machines/gym_2")["mode"] == "out_of_order"

    page.click("[data-testid=open-service]")
    page.wait_for_function(
        "() => (document.querySelector('[data-field=door]') || {}).textContent === 'Open'"
    )
    assert hub.api("GET", "/api/machines/gym_2")["mode"] == "service"
    assert hub.api("GET", "/api/states/binary_sensor.gym_2_door")["state"] == "on"
    page.click("[data-testid=end-service]")
    page.wait_for_function(
        "() => (document.querySelector('[data-field=door]') || {}).textContent === 'Closed'"
    )
    assert hub.api("GET", "/api/machines/gym_2")["mode"] == "normal"


def test_the_machine_page_shows_sales_live(console: Console, hub) -> None:
    page = console.page
    console.open("#/machines/gym_2", "vh-page-machine")
    stock_a2 = int(page.inner_text('[data-slot="A2"] [data-field=stock]'))
    hub.api("POST", "/api/machines/gym_2/commands/vend", {"slot": "A2", "payment_method": "card"})
    wait_for_text(console, '[data-slot="A2"] [data-field=stock]', str(stock_a2 - 1))
    page.wait_for_selector("[data-testid=events] li[data-event=vend_completed]")
    assert "Still water" in page.inner_text("[data-testid=events]")


# ---- alarms --------------------------------------------------------------------------------


def test_acknowledging_an_alarm(console: Console, hub) -> None:
    raised = hub.api(
        "POST",
        "/api/services/alarm/raise",
        {
            "code": "fridge_warm",
            "machine_id": "gym_2",
            "severity": "critical",
            "message": "Gym fridge at 11 °C",
        },
    )["result"]
    page = console.page
    page.wait_for_function(
        "() => Number(document.querySelector('[data-testid=alarm-badge]').textContent) >= 1"
    )
    console.open("#/alarms", "vh-page-alarms")
    alarm = page.locator("article[data-alarm]", has_text="Gym fridge at 11 °C")
    alarm.wait_for()
    alarm_id = alarm.get_attribute("data-alarm")
    assert alarm_id == raised["id"]
    alarm.locator("[data-testid=ack]").click()
    page.wait_for_selector(f'article[data-alarm="{alarm_id}"][data-status=acknowledged]')
    found = [a for a in hub.api("GET", "/api/alarms?active=true") if a["id"] == alarm_id]
    assert found[0]["status"] == "acknowledged"
    assert found[0]["acknowledged_by"].startswith("user:")

    page.locator(f'article[data-alarm="{alarm_id}"] [data-testid=clear]').click()
    page.wait_for_selector(f'article[data-alarm="{alarm_id}"]', state="detached")
    page.click("[data-tab=history]")
    page.wait_for_selector(f'article[data-alarm="{alarm_id}"][data-status=cleared]')


# ---- automations and tokens ----------------------------------------------------------------


def test_automations_enable_run_and_trace(console: Console, hub) -> None:
    page = console.page
    console.open("#/automations", "vh-page-automations")
    item = '[data-automation="empty_slot_alarm"]'
    page.uncheck(f"{item} [data-testid=toggle]")
    page.wait_for_function(
        "() => !document.querySelector('[data-automation=\"empty_slot_alarm\"] input').disabled"
    )
    assert hub.api("GET", "/api/automations/empty_slot_alarm")["enabled"] is False
    page.check(f"{item} [data-testid=toggle]")
    page.wait_for_function(
        "() => !document.querySelector('[data-automation=\"empty_slot_alarm\"] input').disabled"
    )
    assert hub.api("GET", "/api/automations/empty_slot_alarm")["enabled"] is True

    page.click(f"{item} [data-testid=run]")
    page.wait_for_selector("vh-page-automations[data-ready=true] [data-testid=trace]")
    steps = page.locator("[data-testid=trace] .steps li")
    steps.first.wait_for()
    assert page.locator('[data-testid=trace] li[data-path="action/0"]').count() == 1
    assert "alarm.raise" in page.inner_text("[data-testid=trace]")


def test_creating_a_long_lived_token(console: Console) -> None:
    page = console.page
    console.open("#/users", "vh-page-users")
    page.click("[data-testid=create-token]")
    page.fill("#dlg-name", "kiosk script")
    page.click("dialog button[value=ok]")
    secret = page.wait_for_selector("[data-testid=token-secret]")
    assert len(secret.inner_text()) > 20
    assert page.locator("[data-testid=tokens] td", has_text="kiosk script").count() == 1


# ---- the language switch, every page in both languages ---------------------------------------


def _keys(tree: dict[str, Any], prefix: str = "") -> set[str]:
    keys = set()
    for key, value in tree.items():
        if isinstance(value, dict) and "other" not in value:
            keys |= _keys(value, f"{prefix}{key}.")
        else:
            keys.add(prefix + key)
    return keys


I18N_KEYS = _keys(json.loads((REPO_ROOT / "frontend/common/i18n/en.json").read_text()))


def untranslated(text: str) -> list[str]:
    """i18n keys shown as text (a string missing from both languages)."""
    return sorted(key for key in I18N_KEYS if key in text)


def test_the_language_switch_and_every_page_in_russian(console: Console) -> None:
    page = console.page
    warnings: list[str] = []
    page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    page.select_option("[data-testid=language-select]", "ru")
    page.wait_for_function("() => document.documentElement.lang === 'ru'")
    page.wait_for_selector("vh-page-fleet[data-ready=true]")
    assert page.inner_text("vh-page-fleet h1") == "Автоматы"
    assert page.inner_text('[data-nav="alarms"]').startswith("Тревоги")
    for name, (route, tag) in PAGES.items():
        console.open(route, tag)
        text = page.inner_text("body")
        assert not untranslated(text), (name, untranslated(text))
        assert re.search("[\u0430-\u044f\u0451]", text, re.IGNORECASE), name  # Cyrillic
    assert not [w for w in warnings if w.startswith("i18n:")], warnings

    # The choice is kept on this device, and switches back.
    console.goto("#/fleet")
    page.reload()
    page.wait_for_selector("vh-page-fleet[data-ready=true]")
    assert page.inner_text("vh-page-fleet h1") == "Автоматы"
    page.select_option("[data-testid=language-select]", "en")
    page.wait_for_function("() => document.documentElement.lang === 'en'")
    page.wait_for_selector("vh-page-fleet[data-ready=true]")
    assert page.inner_text("vh-page-fleet h1") == "Fleet"


# ---- screenshots of every main page ----------------------------------------------------------


@pytest.mark.timeout(180)
@pytest.mark.parametrize(("size", "viewport"), [("phone", PHONE), ("desktop", DESKTOP)])
def test_every_main_page_loads_and_is_saved_as_a_screenshot(
    tab_factory: Any, hub, size: str, viewport: dict[str, int]
) -> None:
    console = tab_factory(hub, viewport)
    console.sign_in()
    page = console.page
    for name, (route, tag) in PAGES.items():
        console.open(route, tag)
        page.wait_for_timeout(150)  # let the charts and the live data settle for the picture
        assert not untranslated(page.inner_text("body")), name
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= viewport["width"], f"{name} is {width} px wide on a {size}"
        path = console.screenshot(f"{name}-{size}")
        assert path.stat().st_size > 5000
    page.select_option("[data-testid=language-select]", "ru")
    page.wait_for_function("() => document.documentElement.lang === 'ru'")
    console.open("#/fleet", "vh-page-fleet")
    console.screenshot(f"fleet-ru-{size}")
    console.open("#/machines/lobby_1", "vh-page-machine")
    console.screenshot(f"machine-ru-{size}")
    console.open("#/settings", "vh-page-settings")
    page.click("[data-theme-choice=dark]")
    console.open("#/fleet", "vh-page-fleet")
    console.screenshot(f"fleet-dark-{size}")
    page.evaluate("localStorage.clear()")


def test_a_viewer_sees_every_page_but_no_commands(tab_factory: Any, hub) -> None:
    hub.api(
        "POST",
        "/api/users",
        {"username": "vera", "password": "viewer password 1", "role": "viewer"},
    )
    console = tab_factory(hub, PHONE)
    console.sign_in("vera", "viewer password 1")
    page = console.page
    for name, (route, tag) in PAGES.items():
        console.open(route, tag)
        assert not untranslated(page.inner_text("body")), name
    console.open("#/machines/lobby_1", "vh-page-machine")
    assert page.locator("[data-testid=set-mode]").count() == 0
    assert page.locator("[data-testid=ack]").count() == 0
    console.open("#/users", "vh-page-users")
    assert page.locator("[data-testid=add-user]").count() == 0  # only their own tokens
    assert page.locator("[data-testid=tokens]").count() == 1
    console.open("#/products/lobby_1", "vh-page-products")
    assert page.locator("[data-testid=save-planogram]").is_disabled()


# ---- the PWA -------------------------------------------------------------------------------


def test_the_console_is_installable_and_its_service_worker_runs(tab_factory: Any, hub) -> None:
    console = tab_factory(hub, PHONE, service_workers="allow")
    console.sign_in()
    page = console.page
    manifest = page.evaluate(
        "async () => (await fetch(document.querySelector('link[rel=manifest]').href)).json()"
    )
    assert manifest["display"] == "standalone"
    assert {icon["sizes"] for icon in manifest["icons"]} >= {"192x192", "512x512"}
    scope = page.evaluate("async () => (await navigator.serviceWorker.ready).scope")
    assert scope == hub.url + "/"
