"""The schema of the top-level `vendhub:` block."""

from __future__ import annotations

from typing import Any

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.config.nodes import NodeDict
from vendhub.config.validation import validate

CORE_DOMAIN = "vendhub"

DEFAULT_NAME = "VendHub"
DEFAULT_CURRENCY = "EUR"
DEFAULT_TIME_ZONE = "UTC"
DEFAULT_LANGUAGES = ("en",)
UNIT_SYSTEMS = ("metric", "imperial")


def _unique_languages(languages: list[str]) -> list[str]:
    seen: set[str] = set()
    for code in languages:
        if code in seen:
            raise vol.Invalid(f"language {code!r} is listed twice; list each language once")
        seen.add(code)
    return languages


CORE_SCHEMA = vol.Schema(
    {
        vol.Optional("name", default=DEFAULT_NAME): cv.string,
        vol.Optional("currency", default=DEFAULT_CURRENCY): cv.currency,
        vol.Optional("time_zone", default=DEFAULT_TIME_ZONE): cv.time_zone,
        # The first language is the default one.
        vol.Optional("languages", default=list(DEFAULT_LANGUAGES)): vol.All(
            cv.ensure_list,
            [cv.language],
            vol.Length(min=1, msg="list at least one language, e.g. 'languages: [en]'"),
            _unique_languages,
        ),
        vol.Optional("units", default=UNIT_SYSTEMS[0]): cv.one_of(*UNIT_SYSTEMS),
        vol.Optional("internal_url"): cv.url,
    },
    extra=vol.PREVENT_EXTRA,
)


def validate_core(tree: NodeDict) -> dict[str, Any]:
    """The validated `vendhub:` block of a loaded configuration; missing or empty = defaults.

    Raises ConfigError naming file, line and key for every problem.
    """
    block = tree.get(CORE_DOMAIN)
    default_source = tree.value_source(CORE_DOMAIN) if isinstance(tree, NodeDict) else None
    if block is None:
        block = NodeDict(source=default_source)
    validated = validate(
        CORE_SCHEMA, block, root_path=(CORE_DOMAIN,), default_source=default_source
    )
    return dict(validated)
