"""How fast the console's first page is usable with 200 simulated machines on localhost.

Times are taken in the browser with performance.now(), from the start of the navigation:

- ``data``: the machine list has arrived (``vh-fleet-data`` mark);
- ``rendered``: the fleet overview shows all 200 machines, its links live (``vh-fleet-ready``);
- ``clicked``: a click on the first machine has been handled (the ``hashchange`` it causes).
  In-page runs click from the page itself in the task right after the page says it is ready
  (what a person's click would meet); Playwright runs click with a real mouse event sent from
  the test, so the test's own round trips to the browser count against the console too.

Cold runs (each in a new browser context: empty cache) and warm reloads are printed and
written to test-artifacts/time-to-interactive.json; the best cold run and the median warm
run, clicked in-page, must be under 1 s.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import DESKTOP, SCREENSHOTS
from .hub import BIG_FLEET, OWNER, OWNER_PASSWORD, Hub, start_hub

BUDGET_MS = 1000
MACHINES = 200
SETTLE_SECONDS = 5
COLD_RUNS = 3

# On every page load: record when the first hashchange happens; with ?click=page, click the
# first machine card from the page itself as soon as the fleet overview says it is ready.
INIT_SCRIPT = """
window.addEventListener("hashchange", () => {
  if (window.__clicked === undefined) window.__clicked = performance.now();
});
if (location.search.includes("click=page")) {
  new MutationObserver((records, observer) => {
    const page = document.querySelector("vh-page-fleet[data-ready=true]");
    if (!page) return;
    observer.disconnect();
    setTimeout(() => page.querySelector(".machine-card").click(), 0);
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-ready"] });
}
"""

MARKS = """
(() => {
  const mark = (name) => (performance.getEntriesByName(name)[0] || {}).startTime;
  const nav = performance.getEntriesByType("navigation")[0];
  return {
    dom: nav.domContentLoadedEventEnd,
    data: mark("vh-fleet-data"),
    rendered: mark("vh-fleet-ready"),
    clicked: window.__clicked,
    cards: document.querySelectorAll(".machine-card").length,
  };
})()
"""


@pytest.fixture(scope="module")
def big_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    from .conftest import _skip_or_fail, browser_problem

    if browser_problem() is not None:
        _skip_or_fail(browser_problem() or "")
    instance = start_hub(tmp_path_factory.mktemp("big") / "config", BIG_FLEET, timeout=150)
    try:
        instance.onboard()
        yield instance
    finally:
        instance.stop()


def load(console: Any, hub: Hub, *, in_page: bool, reload: bool) -> dict[str, float]:
    page = console.page
    url = f"{hub.url}/{'?click=page' if in_page else ''}#/fleet"
    if reload:
        page.reload()
    else:
        page.goto(url)
    if in_page:
        page.wait_for_selector("vh-page-machine[data-ready=true]", timeout=30_000)
    else:
        page.wait_for_selector("vh-page-fleet[data-ready=true]", timeout=30_000)
        page.click(".machine-card >> nth=0")
        page.wait_for_selector("vh-page-machine[data-ready=true]")
    result: dict[str, float] = page.evaluate(MARKS)
    page.evaluate("location.hash = '#/fleet'")
    page.wait_for_selector("vh-page-fleet[data-ready=true]")
    result["cards"] = page.locator(".machine-card").count()
    return result


def line(label: str, run: dict[str, float]) -> str:
    return (
        f"\n  {label:<26} DOMContentLoaded {run['dom']:4.0f}, machines fetched "
        f"{run['data']:4.0f}, fleet rendered {run['rendered']:4.0f}, click handled "
        f"{run['clicked']:4.0f}"
    )


def signed_in_tab(tab_factory: Any, hub: Hub) -> Any:
    """A new browser context (empty cache) with a console session, no page loaded yet."""
    console = tab_factory(hub, DESKTOP)
    console.context.add_init_script(INIT_SCRIPT)
    answer = console.context.request.post(
        f"{hub.url}/api/auth/login",
        data={
            "grant_type": "password",
            "username": OWNER,
            "password": OWNER_PASSWORD,
            "session": True,
        },
    )
    assert answer.ok, answer.text()
    return console


@pytest.mark.timeout(300)
def test_the_fleet_overview_is_interactive_within_a_second_with_200_machines(
    tab_factory: Any, big_hub: Hub
) -> None:
    # Measure a hub that runs, not one still busy starting: its first recorder commits and
    # registry saves of 2,400 new entities take a few seconds on two cores.
    time.sleep(SETTLE_SECONDS)
    # Cold: each in a new browser context, so nothing is cached. The machine is shared (two
    # cores, other test processes): the best of three is the console's figure, all are shown.
    cold = []
    for _ in range(COLD_RUNS):
        console = signed_in_tab(tab_factory, big_hub)
        cold.append(load(console, big_hub, in_page=True, reload=False))
    warm = [load(console, big_hub, in_page=True, reload=True) for _ in range(4)]
    driven = [load(console, big_hub, in_page=False, reload=i > 0) for i in range(3)]
    console.screenshot("fleet-200-machines-desktop")

    best_cold = min(cold, key=lambda run: run["clicked"])
    median = {key: statistics.median(run[key] for run in warm) for key in best_cold}
    print(
        f"\n{MACHINES}-machine fleet, ms from the start of the navigation:"
        + "".join(line("cold cache, in-page click", run) for run in cold)
        + "".join(line("warm, in-page click", run) for run in warm)
        + line("warm median", median)
        + "".join(line("Playwright mouse click", run) for run in driven)
    )
    (SCREENSHOTS.parent / "time-to-interactive.json").write_text(
        json.dumps(
            {"machines": MACHINES, "cold": cold, "warm": warm, "playwright_click": driven},
            indent=2,
        )
    )
    assert all(run["cards"] == MACHINES for run in cold + warm)
    assert best_cold["clicked"] < BUDGET_MS, cold
    assert median["clicked"] < BUDGET_MS, warm
