"""The browser tests' fixtures: a real hub in a subprocess, Debian's headless Chromium driven
by Playwright, console errors collected per page (any fails the test), screenshots saved.

Without /usr/bin/chromium or the playwright package the tests skip with the reason, or fail
under CI=true (``scripts/test`` installs chromium, ``scripts/setup`` playwright).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT

from .hub import Hub, start_hub

CHROMIUM = Path(os.environ.get("VENDHUB_CHROMIUM", "/usr/bin/chromium"))  # Debian's
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 900}
TIMEOUT_MS = 10_000


def browser_problem() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not CHROMIUM.exists():
        return (
            f"Debian's chromium is not installed ({CHROMIUM}): run scripts/test as root, or "
            "apt-get install chromium"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed: run scripts/setup"
    return None


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and the browser tests cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium, per test module: Playwright's sync API keeps its event loop marked
    running in this thread while it lives, which the suite's asyncio tests cannot share."""
    problem = browser_problem()
    if problem is not None:
        _skip_or_fail(problem)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        try:
            instance = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
        except Exception as error:  # the browser itself does not start
            _skip_or_fail(f"chromium does not start: {str(error).splitlines()[0]}")
        yield instance
        instance.close()


@dataclass
class Console:
    """A browser tab on the hub's console, with what it logged."""

    hub: Hub
    page: Any
    context: Any
    errors: list[str] = field(default_factory=list)

    def goto(self, route: str = "") -> None:
        self.page.goto(f"{self.hub.url}/{route}")

    def sign_in(self, username: str = "olga", password: str = "correct horse battery") -> None:
        self.goto()
        self.page.fill("#username", username)
        self.page.fill("#password", password)
        self.page.click("[data-testid=sign-in]")
        self.page.wait_for_selector("vh-page-fleet[data-ready=true]")

    def open(self, route: str, tag: str) -> Any:
        """Go to ``#/route`` and wait until its page (``tag``) has loaded its data."""
        self.page.evaluate("route => { location.hash = route; }", route)
        return self.page.wait_for_selector(f"{tag}[data-ready=true]")

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


def _console_tab(
    browser: Any, hub: Hub, viewport: dict[str, int], locale: str, service_workers: str
) -> Console:
    context = browser.new_context(viewport=viewport, locale=locale, service_workers=service_workers)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    console = Console(hub, page, context)

    def on_console(message: Any) -> None:
        if message.type == "error":
            location = message.location or {}
            console.errors.append(f"{message.text} ({location.get('url', '')})")

    page.on("console", on_console)
    page.on("pageerror", lambda error: console.errors.append(f"uncaught: {error}"))
    return console


@pytest.fixture
def tab_factory(browser: Any) -> Iterator[Any]:
    """``tab_factory(hub, viewport)`` → a Console; each is closed and checked for console
    errors at the end of the test."""
    tabs: list[Console] = []

    def make(
        hub: Hub,
        viewport: dict[str, int] = DESKTOP,
        locale: str = "en-US",
        service_workers: str = "block",
    ) -> Console:
        tab = _console_tab(browser, hub, viewport, locale, service_workers)
        tabs.append(tab)
        return tab

    yield make
    errors = [error for tab in tabs for error in tab.errors]
    for tab in tabs:
        tab.context.close()
    if errors:
        pytest.fail("console errors:\n" + "\n".join(errors), pytrace=False)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """A running hub with the small test fleet, its owner created through the API."""
    if browser_problem() is not None:
        _skip_or_fail(browser_problem() or "")
    instance = start_hub(tmp_path_factory.mktemp("console") / "config")
    try:
        instance.onboard()
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def console(tab_factory: Any, hub: Hub) -> Console:
    """A desktop-sized tab, signed in as the owner, on the fleet overview."""
    tab = tab_factory(hub)
    tab.sign_in()
    return tab


def money_text(text: str) -> str:
    """The digits of a money amount as shown (€1.75 → 1.75; 1,75 € → 1.75)."""
    return re.sub(r"[^0-9.,]", "", text).replace(",", ".")
