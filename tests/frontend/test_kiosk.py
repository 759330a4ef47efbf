"""The customer kiosk in headless Chromium against a real hub: setup and machine sign-in, a
full purchase by cash with change, card and QR payments, a jam that refunds, sold-out slots,
only the machine's payment methods, the keyboard, the language switch to Russian with no
untranslated string, recovery after a hub restart, and a screenshot of every screen at the
touchscreen sizes (1080x1920 portrait, 1280x800 landscape). Any console error fails a test.

The kiosk's strings (frontend/kiosk/i18n/) are checked here without a browser too.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT
from vendhub.machine.credentials import add_machine

from .conftest import Console, browser_problem, money_text
from .hub import Hub, start_hub

PORTRAIT = {"width": 1080, "height": 1920}
LANDSCAPE = {"width": 1280, "height": 800}
KIOSK_I18N = REPO_ROOT / "frontend" / "kiosk" / "i18n"
KIOSK_JS = REPO_ROOT / "frontend" / "kiosk"
COMMON_I18N = REPO_ROOT / "frontend" / "common" / "i18n"
# Outcomes go back to the attract screen after 3 s, idle screens after 30 s.
KIOSK_QUERY = "?outcome=3&idle=30"

KIOSK_FLEET = """
simulator:
  speed: 1
  tick: 1
  seed: 5
  summary_interval: 0
  purchase:
    approval_delay: 4
    dispense_time: 1
    payment_timeout: 60
  machines:
    - id: lobby_1
      name: Lobby snacks
      location: Main lobby
      sales_per_hour: 0
      door_openings_per_day: 0
      jam_rate: 0
      failure_rate: 0
      slots:
        A1: {product: Cola, price: 150, capacity: 10, stock: 8, par: 2}
        A2: {product: Sparkling water, price: 120, capacity: 10, stock: 6, par: 2}
        B1: {product: Chocolate bar, price: 130, capacity: 12, stock: 2, par: 3}
        B2: {product: Salted crisps, price: 110, capacity: 12, stock: 0, par: 3}
    - id: gym_2
      name: Gym drinks
      sales_per_hour: 0
      door_openings_per_day: 0
      jam_rate: 1
      failure_rate: 0
      payment_methods: [cash, card]
      slots:
        A1: {product: Isotonic drink, price: 220, capacity: 12}
        A2: {product: Still water, price: 150, capacity: 12, stock: 7}
"""


@pytest.fixture(scope="module")
def kiosk_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Hub, dict[str, str]]]:
    """A running hub whose machines lobby_1 and gym_2 (always jams) have kiosk credentials."""
    if browser_problem() is not None:
        pytest.skip(browser_problem() or "")
    config = tmp_path_factory.mktemp("kiosk") / "config"
    config.mkdir(parents=True)
    passwords = {machine: add_machine(config, machine)[1] for machine in ("lobby_1", "gym_2")}
    hub = start_hub(config, KIOSK_FLEET)
    try:
        hub.onboard()
        yield hub, passwords
    finally:
        hub.stop()


def stock(hub: Hub, machine_id: str, code: str) -> int:
    slot = hub.api("GET", f"/api/machines/{machine_id}/slots/{code}")
    return int(slot["stock"])


def open_kiosk(
    tab_factory: Any,
    kiosk_hub: tuple[Hub, dict[str, str]],
    machine_id: str = "lobby_1",
    viewport: dict[str, int] = PORTRAIT,
    screenshot: str | None = None,
) -> Console:
    """A tab on /kiosk/<machine_id>, set up with the machine's credentials, on attract."""
    hub, passwords = kiosk_hub
    tab = tab_factory(hub, viewport)
    tab.goto(f"kiosk/{machine_id}{KIOSK_QUERY}")
    page = tab.page
    page.wait_for_selector("vh-kiosk[data-screen=setup] [data-testid=setup]")
    assert page.input_value("#machine-id") == machine_id  # from the URL
    if screenshot:
        tab.screenshot(screenshot)
    page.fill("#machine-password", passwords[machine_id])
    page.click("[data-testid=setup-sign-in]")
    wait_screen(tab, "attract")
    return tab


def wait_screen(tab: Console, screen: str, timeout: float = 10_000) -> None:
    tab.page.wait_for_selector(f"vh-kiosk[data-screen={screen}][data-ready=true]", timeout=timeout)


def shot(tab: Console, name: str) -> Path:
    tab.page.wait_for_timeout(150)  # let the entry animations settle
    return tab.screenshot(name)


def untranslated(tab: Console) -> list[str]:
    """What the page shows that looks like a string key (``kiosk.x.y``)."""
    text = tab.page.inner_text("vh-kiosk")
    return re.findall(r"\bkiosk\.[a-z_.]+", text)


# ---- the kiosk's strings (no browser) --------------------------------------------------------


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        plural = isinstance(value, dict) and "other" in value
        if isinstance(value, dict) and not plural:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def test_the_kiosk_strings_exist_in_english_and_russian() -> None:
    english = flatten(json.loads((KIOSK_I18N / "en.json").read_text()))
    russian = flatten(json.loads((KIOSK_I18N / "ru.json").read_text()))
    assert set(english) == set(russian), set(english) ^ set(russian)
    for key, value in russian.items():
        if isinstance(value, dict):
            assert {"one", "few", "many", "other"} <= set(value), key
    code = "\n".join(path.read_text() for path in KIOSK_JS.glob("*.js"))
    asked = set(re.findall(r"""\bt\(\s*["'`](kiosk\.[a-z0-9_.]+)["'`]""", code))
    assert len(asked) > 60
    assert not sorted(key for key in asked if key not in english)
    # Keys built at run time: every payment method and failure reason has its words.
    for method in ("card", "qr", "cash"):
        assert f"kiosk.methods.{method}" in english and f"kiosk.method.hint_{method}" in english
    for reason in ("jam", "motor", "locked", "sold_out", "error", "stopped", "replaced"):
        assert f"kiosk.reasons.{reason}" in english
    # No key of the kiosk clashes with the console's.
    common = flatten(json.loads((COMMON_I18N / "en.json").read_text()))
    assert not any(key.startswith("kiosk.") for key in common)


def test_no_kiosk_code_writes_markup_from_strings() -> None:
    code = re.sub(r"//.*", "", "\n".join(p.read_text() for p in KIOSK_JS.glob("*.js")))
    for sink in (
        ".innerHTML",
        ".outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "http://",
        "https://",
    ):
        if sink.startswith("http"):
            # Only the SVG namespace may name a host (it is never fetched).
            assert set(re.findall(r"https?://[^\"'\s]+", code)) <= {"http://www.w3.org/2000/svg"}
        else:
            assert sink not in code, sink


def test_the_kiosk_page_is_served_at_its_machine_url(kiosk_hub: Any) -> None:
    hub, _ = kiosk_hub
    for path in ("/kiosk/lobby_1", "/kiosk/lobby_1?idle=5", "/kiosk"):
        with urllib.request.urlopen(hub.url + path, timeout=10) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/html")
            assert response.headers["Cache-Control"] == "no-cache"
            html = response.read().decode()
        assert re.search(r'"/static/v/[0-9a-f]+/kiosk/app\.js"', html), html
        assert "<script>" not in html  # the CSP allows no inline script
    for path in ("/kiosk/Lobby-1", "/kiosk/lobby_1/x", "/kiosk/.."):
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(hub.url + path, timeout=10)
        assert caught.value.code == 404, path


# ---- purchases ---------------------------------------------------------------------------------


def test_a_full_purchase_by_cash_with_change(tab_factory: Any, kiosk_hub: Any) -> None:
    hub, _ = kiosk_hub
    before = stock(hub, "lobby_1", "A1")
    tab = open_kiosk(tab_factory, kiosk_hub, screenshot="kiosk-setup-portrait")
    page = tab.page
    shot(tab, "kiosk-attract-portrait")

    page.click("[data-testid=start]")
    wait_screen(tab, "grid")
    assert page.locator(".product").count() == 4
    sold_out = page.locator("[data-slot=B2]")
    assert sold_out.get_attribute("aria-disabled") == "true"
    assert sold_out.locator("[data-testid=sold-out]").inner_text() == "Sold out"
    assert "Sold out" in (sold_out.get_attribute("aria-label") or "")
    assert not sold_out.is_enabled()
    sold_out.click(force=True)  # a sold-out product does not open
    assert page.get_attribute("vh-kiosk", "data-screen") == "grid"
    assert money_text(page.inner_text("[data-slot=A1] .price")) == "1.50"
    shot(tab, "kiosk-grid-portrait")

    page.click("[data-slot=A1]")
    wait_screen(tab, "detail")
    assert page.inner_text("[data-testid=detail-name]") == "Cola"
    shot(tab, "kiosk-detail-portrait")
    page.click("[data-testid=buy]")
    wait_screen(tab, "method")
    methods = page.eval_on_selector_all("[data-method]", "els => els.map(e => e.dataset.method)")
    assert methods == ["card", "qr", "cash"]
    shot(tab, "kiosk-method-portrait")

    page.click("[data-testid=method-cash]")
    wait_screen(tab, "payment")
    assert money_text(page.inner_text("[data-field=due]")) == "1.50"
    shot(tab, "kiosk-payment-cash-portrait")
    page.click("[data-testid=coin-100]")
    page.wait_for_function(
        "() => document.querySelector('[data-field=credit]')?.textContent.includes('1.00')"
    )
    assert money_text(page.inner_text("[data-field=due]")) == "0.50"
    assert stock(hub, "lobby_1", "A1") == before  # nothing moves before the vend
    page.click("[data-testid=coin-100]")
    wait_screen(tab, "dispensing")
    shot(tab, "kiosk-dispensing-portrait")
    wait_screen(tab, "outcome")
    assert page.get_attribute("[data-testid=outcome]", "data-outcome") == "completed"
    assert money_text(page.inner_text("[data-testid=change]")) == "0.50"
    shot(tab, "kiosk-outcome-change-portrait")
    assert stock(hub, "lobby_1", "A1") == before - 1

    # The outcome goes back to the attract screen by itself.
    wait_screen(tab, "attract", timeout=8_000)
    vends = hub.api("GET", "/api/transactions?machine_id=lobby_1&limit=5")["items"]
    assert any(v.get("payment_method") == "cash" for v in vends) or vends == []


def test_card_approves_by_itself_and_qr_shows_its_code(tab_factory: Any, kiosk_hub: Any) -> None:
    hub, _ = kiosk_hub
    before = stock(hub, "lobby_1", "A2")
    tab = open_kiosk(tab_factory, kiosk_hub, viewport=LANDSCAPE)
    page = tab.page
    shot(tab, "kiosk-attract-landscape")
    # The keyboard alone: Enter starts, a product button takes Enter.
    page.keyboard.press("Enter")
    wait_screen(tab, "grid")
    shot(tab, "kiosk-grid-landscape")
    page.focus("[data-slot=A2]")
    page.keyboard.press("Enter")
    wait_screen(tab, "detail")
    shot(tab, "kiosk-detail-landscape")
    page.click("[data-testid=buy]")
    page.click("[data-testid=method-card]")
    wait_screen(tab, "payment")
    shot(tab, "kiosk-payment-card-landscape")
    # The simulated card approves after 4 s without a touch.
    wait_screen(tab, "outcome", timeout=15_000)
    assert page.get_attribute("[data-testid=outcome]", "data-outcome") == "completed"
    assert stock(hub, "lobby_1", "A2") == before - 1
    page.click("[data-testid=done]")
    wait_screen(tab, "attract")

    page.click("[data-testid=start]")
    wait_screen(tab, "grid")
    page.click("[data-slot=B1]")
    page.click("[data-testid=buy]")
    page.click("[data-testid=method-qr]")
    wait_screen(tab, "payment")
    payload = page.get_attribute("[data-testid=qr]", "data-payload") or ""
    assert payload.startswith("vendhub-sim://pay/lobby_1/")
    assert page.locator("[data-testid=qr] path").get_attribute("d")
    shot(tab, "kiosk-payment-qr-landscape")
    page.click("[data-testid=decline]")
    wait_screen(tab, "outcome")
    assert page.get_attribute("[data-testid=outcome]", "data-reason") == "declined"
    shot(tab, "kiosk-outcome-declined-landscape")


def test_a_jam_refunds_and_only_accepted_methods_are_offered(
    tab_factory: Any, kiosk_hub: Any
) -> None:
    hub, _ = kiosk_hub
    before = stock(hub, "gym_2", "A2")
    tab = open_kiosk(tab_factory, kiosk_hub, machine_id="gym_2")
    page = tab.page
    page.click("[data-testid=start]")
    wait_screen(tab, "grid")
    page.click("[data-slot=A2]")
    page.click("[data-testid=buy]")
    wait_screen(tab, "method")
    methods = page.eval_on_selector_all("[data-method]", "els => els.map(e => e.dataset.method)")
    assert methods == ["cash", "card"]  # gym_2 takes no QR
    page.click("[data-testid=method-card]")
    wait_screen(tab, "payment")
    page.click("[data-testid=approve]")
    wait_screen(tab, "outcome", timeout=15_000)
    assert page.get_attribute("[data-testid=outcome]", "data-outcome") == "failed"
    assert page.get_attribute("[data-testid=outcome]", "data-reason") == "jam"
    assert money_text(page.inner_text("[data-testid=refund]")).rstrip(".") == "1.50"
    shot(tab, "kiosk-outcome-refund-portrait")
    assert stock(hub, "gym_2", "A2") == before

    # Cancelling a cash purchase gives the inserted coins back.
    page.click("[data-testid=done]")
    wait_screen(tab, "attract")
    page.click("[data-testid=start]")
    page.click("[data-slot=A1]")
    page.click("[data-testid=buy]")
    page.click("[data-testid=method-cash]")
    wait_screen(tab, "payment")
    page.click("[data-testid=coin-50]")
    page.wait_for_function(
        "() => document.querySelector('[data-field=credit]')?.textContent.includes('0.50')"
    )
    page.click("[data-testid=cancel]")
    wait_screen(tab, "outcome")
    assert page.get_attribute("[data-testid=outcome]", "data-outcome") == "cancelled"
    assert money_text(page.inner_text("[data-testid=refund]")).rstrip(".") == "0.50"
    shot(tab, "kiosk-outcome-cancelled-portrait")


def test_the_language_switch_to_russian(tab_factory: Any, kiosk_hub: Any) -> None:
    tab = open_kiosk(tab_factory, kiosk_hub)
    page = tab.page
    warnings: list[str] = []
    page.on("console", lambda m: warnings.append(m.text) if m.type == "warning" else None)
    assert page.inner_text("h1") == "Hello!"
    page.click("[data-testid=lang-ru]")
    page.wait_for_function("() => document.documentElement.lang === 'ru'")
    wait_screen(tab, "attract")
    assert page.inner_text("h1") == "Здравствуйте!"
    shot(tab, "kiosk-attract-ru-portrait")
    page.click("[data-testid=start]")
    wait_screen(tab, "grid")
    assert page.inner_text("[data-slot=B2] [data-testid=sold-out]") == "Нет в наличии"
    shot(tab, "kiosk-grid-ru-portrait")
    screens = []
    page.click("[data-slot=A1]")
    wait_screen(tab, "detail")
    screens.append(untranslated(tab))
    page.click("[data-testid=buy]")
    wait_screen(tab, "method")
    assert page.inner_text("[data-testid=method-cash] .method-name") == "Наличные"
    screens.append(untranslated(tab))
    page.click("[data-testid=method-cash]")
    wait_screen(tab, "payment")
    screens.append(untranslated(tab))
    shot(tab, "kiosk-payment-cash-ru-portrait")
    page.click("[data-testid=coin-200]")
    wait_screen(tab, "outcome", timeout=15_000)
    screens.append(untranslated(tab))
    assert "Заберите сдачу" in page.inner_text("[data-testid=change]")
    shot(tab, "kiosk-outcome-ru-portrait")
    assert not any(screens), screens
    assert not [w for w in warnings if "i18n" in w], warnings
    # The next customer starts in the hub's default language again.
    page.click("[data-testid=done]")
    wait_screen(tab, "attract")
    page.wait_for_function("() => document.documentElement.lang === 'en'")


def test_sound_and_animations_can_be_turned_off(tab_factory: Any, kiosk_hub: Any) -> None:
    tab = open_kiosk(tab_factory, kiosk_hub)
    page = tab.page
    page.click("[data-testid=toggle-motion]")
    page.wait_for_function("() => document.documentElement.dataset.motion === 'off'")
    assert page.eval_on_selector(".pulse", "e => getComputedStyle(e).animationName") == "none"
    page.click("[data-testid=toggle-sound]")
    assert page.get_attribute("[data-testid=toggle-sound]", "aria-pressed") == "false"
    page.reload()
    wait_screen(tab, "attract")  # signs in by itself from the kept credentials
    assert page.get_attribute("[data-testid=toggle-sound]", "aria-pressed") == "false"
    assert page.evaluate("document.documentElement.dataset.motion") == "off"


def test_reduced_motion_starts_with_animations_off(tab_factory: Any, kiosk_hub: Any) -> None:
    hub, passwords = kiosk_hub
    tab = tab_factory(hub, LANDSCAPE)
    tab.page.emulate_media(reduced_motion="reduce")
    tab.goto(f"kiosk/lobby_1{KIOSK_QUERY}")
    tab.page.fill("#machine-password", passwords["lobby_1"])
    tab.page.click("[data-testid=setup-sign-in]")
    wait_screen(tab, "attract")
    assert tab.page.evaluate("document.documentElement.dataset.motion") == "off"
    assert tab.page.get_attribute("[data-testid=toggle-motion]", "aria-pressed") == "false"


# ---- the hub goes away -------------------------------------------------------------------------


def test_the_kiosk_recovers_after_the_hub_restarts(tab_factory: Any, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    password = add_machine(config, "lobby_1")[1]
    hub = start_hub(config, KIOSK_FLEET)
    try:
        tab = open_kiosk(tab_factory, (hub, {"lobby_1": password}))
        page = tab.page
        page.evaluate("window.__sameDocument = true")
        hub.stop()
        page.click("[data-testid=start]")
        page.wait_for_selector("vh-kiosk[data-offline=true] [data-testid=offline]")
        shot(tab, "kiosk-offline-portrait")
        hub.restart()
        # The old machine token is gone with the old process: the kiosk signs in again, and
        # goes on where the customer was.
        wait_screen(tab, "grid", timeout=45_000)
        assert page.get_attribute("vh-kiosk", "data-offline") == "false"
        page.click("[data-slot=A1]")
        page.click("[data-testid=buy]")
        page.click("[data-testid=method-cash]")
        wait_screen(tab, "payment")
        page.click("[data-testid=coin-200]")
        wait_screen(tab, "outcome", timeout=15_000)
        assert page.get_attribute("[data-testid=outcome]", "data-outcome") == "completed"
        assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"
        # While the hub was away the browser logged refused connections, and the first call
        # with the old token its 401: the only errors allowed here.
        expected = [e for e in tab.errors if "ERR_CONNECTION_REFUSED" in e or "status of 401" in e]
        tab.errors[:] = [e for e in tab.errors if e not in expected]
    finally:
        hub.stop()
