"""Every string of the console is translatable and translated: English and Russian have the
same keys and placeholders, every key the code asks for exists, and every code the hub may
send (modes, roles, severities, movement kinds, run outcomes) has its words."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.conftest import REPO_ROOT
from vendhub.auth.roles import Role
from vendhub.automation.trace import OUTCOMES
from vendhub.machine import protocol
from vendhub.machine.virtual import PAYMENT_METHODS
from vendhub.recorder.models.stock import MOVEMENT_KINDS
from vendhub_integrations.alarm.alarms import SEVERITIES

FRONTEND = REPO_ROOT / "frontend"
LANGUAGES = ("en", "ru")
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def is_plural(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and "other" in value
        and all(isinstance(form, str) for form in value.values())
    )


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and not is_plural(value):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def strings(language: str) -> dict[str, Any]:
    return flatten(json.loads((FRONTEND / "common" / "i18n" / f"{language}.json").read_text()))


def forms(value: Any) -> list[str]:
    return list(value.values()) if is_plural(value) else [value]


def sources() -> str:
    return "\n".join(
        path.read_text()
        for path in FRONTEND.rglob("*.js")
        if "kiosk" not in path.parts  # the kiosk will bring its own test
    )


def test_english_and_russian_have_the_same_keys_and_placeholders() -> None:
    english, russian = strings("en"), strings("ru")
    assert set(english) == set(russian), set(english) ^ set(russian)
    for key, value in english.items():
        for text in forms(value) + forms(russian[key]):
            assert isinstance(text, str) and text.strip(), key
        wanted = {name for text in forms(value) for name in PLACEHOLDER.findall(text)}
        for text in forms(russian[key]):
            assert set(PLACEHOLDER.findall(text)) <= wanted, (key, text)


def test_russian_plurals_have_their_forms() -> None:
    for key, value in strings("ru").items():
        if is_plural(value):
            assert {"one", "few", "many", "other"} <= set(value), key


def test_every_key_the_code_asks_for_exists() -> None:
    english = strings("en")
    code = sources()
    asked = set(re.findall(r"""\bt\(\s*["']([a-z0-9_.]+)["']""", code))
    asked |= set(re.findall(r"""label:\s*["']([a-z0-9_.]+)["']""", code))
    asked |= set(re.findall(r"""data-i18n(?:-[a-z-]+)?=["']([a-z0-9_.]+)["']""", code))
    assert len(asked) > 150
    missing = sorted(key for key in asked if key not in english)
    assert not missing, missing
    groups = set(re.findall(r"""\blabel\(\s*["']([a-z0-9_.]+)["']""", code))
    for group in groups:
        assert any(key.startswith(group + ".") for key in english), group


@pytest.mark.parametrize(
    ("group", "codes"),
    [
        ("modes", protocol.MODES),
        ("roles", [role.value for role in Role]),
        ("severity", SEVERITIES),
        ("alarm_status", ("raised", "acknowledged", "cleared")),
        ("stock.kinds", MOVEMENT_KINDS),
        ("automations.outcomes", OUTCOMES),
        ("payment_methods", PAYMENT_METHODS),
        ("delivery", ("applied", "published", "queued")),
        ("connection", ("connecting", "connected", "disconnected")),
        (
            "events",
            (
                "vend_completed",
                "vend_failed",
                "machine_online",
                "machine_offline",
                "stock_refilled",
                "cash_collected",
                "alarm_raised",
                "alarm_cleared",
            ),
        ),
    ],
)
def test_every_code_the_hub_sends_has_words(group: str, codes: Any) -> None:
    for language in LANGUAGES:
        table = strings(language)
        missing = [code for code in codes if f"{group}.{code}" not in table]
        assert not missing, (language, group, missing)


def test_no_page_writes_markup_from_strings() -> None:
    """Pages build elements (dom.js's h), never innerHTML: hub data is never parsed as HTML."""
    code = re.sub(r"//.*", "", sources())  # comments may name them
    for sink in (".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write"):
        assert sink not in code, sink
