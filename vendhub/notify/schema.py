"""Schemas: the ``notify:`` block of configuration.yaml and the ``notify.send`` service."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

import voluptuous as vol

from vendhub.automation.template_helpers import MAX_OUTPUT_CHARS
from vendhub.config import validators as cv
from vendhub.config.nodes import NodeDict, NodeList
from vendhub.notify.const import SEVERITIES, SEVERITY_INFO
from vendhub.notify.platform import NotifyPlatform
from vendhub.notify.platforms import BUILTIN_PLATFORMS

CONF_SECRET_VALUES = "secret_values"

TARGET_BASE = {
    vol.Required("name"): cv.slug,
    vol.Required("platform"): cv.slug,
}


def _positive_period(value: Any) -> timedelta:
    period = cv.time_period(value)
    if period.total_seconds() <= 0:
        raise vol.Invalid(f"expected a time period longer than 0, got {value!r}")
    return period


def validate_target(platform: type[NotifyPlatform], value: Mapping[str, Any]) -> dict[str, Any]:
    """Validate one target's options against ``platform`` (built-in or from a plugin)."""
    config = vol.Schema({**TARGET_BASE, **platform.OPTIONS})(value)
    return platform.validate_config(dict(config))


class TargetSchema:
    """One item of ``targets``: validated by the schema of the platform it names.

    A platform that is not built in is left for setup, when plugins are asked for it; a name
    that is a near miss of a built-in one is refused here. ``validators`` lets the
    configuration checker suggest the keys of every built-in platform.
    """

    def __init__(self, platforms: Mapping[str, type[NotifyPlatform]]) -> None:
        self.platforms = dict(platforms)
        self.validators = [
            vol.Schema({**TARGET_BASE, **platform.OPTIONS}) for platform in platforms.values()
        ]

    def __call__(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise vol.Invalid(
                f"expected a target (a mapping with name, platform and its options), "
                f"got {cv.describe_value(value)}"
            )
        base = vol.Schema(TARGET_BASE, extra=vol.ALLOW_EXTRA)(value)
        platform = self.platforms.get(base["platform"])
        if platform is not None:
            return validate_target(platform, value)
        close = difflib.get_close_matches(base["platform"], list(self.platforms), n=1)
        if close:
            raise vol.Invalid(
                f"unknown notify platform, got {base['platform']!r}; did you mean "
                f"{close[0]!r}? (built in: {', '.join(self.platforms)})",
                path=["platform"],
            )
        return dict(base)


CONFIG_BASE = vol.Schema(
    {
        vol.Required("targets"): cv.list_of(TargetSchema(BUILTIN_PLATFORMS)),
        vol.Optional("default_targets"): vol.All(cv.ensure_list, [cv.slug]),
        vol.Optional("dedupe_window", default="10min"): cv.time_period,
        vol.Optional("rate_limit", default=dict): {
            vol.Optional("count", default=10): cv.positive_int,
            vol.Optional("period", default="1min"): _positive_period,
        },
        vol.Optional("retry", default=dict): {
            vol.Optional("attempts"): cv.positive_int,
            vol.Optional("first_delay", default="2s"): cv.time_period,
            vol.Optional("max_delay", default="5min"): cv.time_period,
        },
        vol.Optional("dead_letter_after", default=5): cv.positive_int,
        vol.Optional("timeout", default="10s"): _positive_period,
        vol.Optional("keep_dead_letters", default=200): cv.positive_int,
    }
)


def yaml_secret_values(value: Any) -> set[str]:
    """Every scalar in ``value`` that was loaded with ``!secret`` (marked by the loader)."""
    found: set[str] = set()
    if isinstance(value, NodeDict):
        for key, item in value.items():
            if value.secret_name(key) is not None:
                found.update(_scalars(item))
            found.update(yaml_secret_values(item))
    elif isinstance(value, NodeList):
        for index, item in enumerate(value):
            if value.secret_name(index) is not None:
                found.update(_scalars(item))
            found.update(yaml_secret_values(item))
    elif isinstance(value, dict):
        for item in value.values():
            found.update(yaml_secret_values(item))
    elif isinstance(value, list):
        for item in value:
            found.update(yaml_secret_values(item))
    return found


def _scalars(value: Any) -> Iterable[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _scalars(item)
    elif isinstance(value, list):
        for item in value:
            yield from _scalars(item)
    elif value is not None and not isinstance(value, bool):
        yield str(value)


def _cross_checks(config: dict[str, Any]) -> dict[str, Any]:
    names: dict[str, int] = {}
    for index, target in enumerate(config["targets"]):
        if target["name"] in names:
            raise vol.Invalid(
                f"target name {target['name']!r} is used twice (also by target "
                f"{names[target['name']] + 1}); names must be unique",
                path=["targets", index, "name"],
            )
        names[target["name"]] = index
    for index, name in enumerate(config.get("default_targets", ())):
        if name not in names:
            raise vol.Invalid(
                f"{unknown_targets_message([name], list(names))}",
                path=["default_targets", index],
            )
    if "default_targets" not in config:
        config["default_targets"] = list(names)
    retry = config["retry"]
    if retry["max_delay"] < retry["first_delay"]:
        raise vol.Invalid(
            "max_delay is shorter than first_delay; the backoff could never grow",
            path=["retry", "max_delay"],
        )
    return config


class NotifyConfigSchema:
    """The ``notify:`` block; remembers which values came from ``!secret`` so they are
    redacted from logs, events and results (as ``secret_values``)."""

    def __init__(self) -> None:
        self.validators = [CONFIG_BASE]

    def __call__(self, value: Any) -> dict[str, Any]:
        secrets = yaml_secret_values(value)
        config = _cross_checks(dict(CONFIG_BASE(value)))
        config[CONF_SECRET_VALUES] = sorted(secrets)
        return config


CONFIG_SCHEMA = vol.Schema(NotifyConfigSchema())


# -- the notify.send service ----------------------------------------------------------------


def unknown_targets_message(unknown: Iterable[str], known: Iterable[str]) -> str:
    """``unknown notify target 'x' (did you mean 'y'?); known targets: a, b``."""
    unknown, known = list(unknown), sorted(known)
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, known, n=1)
        parts.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    plural = "s" if len(unknown) > 1 else ""
    listed = ", ".join(known) if known else "none are configured"
    return f"unknown notify target{plural} {', '.join(parts)}; known targets: {listed}"


def target_names(known: Iterable[str], broken: Mapping[str, str] | None = None) -> vol.All:
    """One target name or a list of them, each of which must be configured and set up.

    ``broken`` maps targets that are configured but failed to set up to the reason.
    """
    known_set = frozenset(known)
    broken = dict(broken or {})

    def check(names: list[str]) -> list[str]:
        failed = [name for name in names if name in broken]
        if failed:
            raise vol.Invalid(
                "; ".join(
                    f"notify target {name!r} is configured but could not be set up: {broken[name]}"
                    for name in failed
                )
            )
        unknown = [name for name in names if name not in known_set]
        if unknown:
            raise vol.Invalid(unknown_targets_message(unknown, known_set))
        return list(dict.fromkeys(names))

    return vol.All(cv.ensure_list, vol.Length(min=1), [cv.string], check)


def _at_most_output_chars(text: str) -> str:
    """As long as a template may render: a notification is for a person to read."""
    if len(text) > MAX_OUTPUT_CHARS:
        raise vol.Invalid(
            f"{len(text):,} characters, more than the {MAX_OUTPUT_CHARS:,} a notification takes"
        )
    return text


def send_schema(
    known_targets: Iterable[str], broken_targets: Mapping[str, str] | None = None
) -> vol.Schema:
    """The data of ``notify.send`` for a hub with ``known_targets``."""
    names = target_names(known_targets, broken_targets)
    return vol.Schema(
        {
            vol.Required("message"): vol.All(cv.string, _at_most_output_chars),
            vol.Optional("title"): vol.Any(None, vol.All(cv.string, _at_most_output_chars)),
            vol.Optional("target"): names,
            vol.Optional("data", default=dict): vol.Any(None, dict),
            vol.Optional("severity", default=SEVERITY_INFO): cv.one_of(*SEVERITIES),
            vol.Optional("dedupe_key"): vol.Any(None, cv.string),
            vol.Optional("escalate"): {
                vol.Required("after"): cv.time_period,
                vol.Required("target"): names,
                vol.Optional("unless"): vol.Schema(
                    {vol.Required("event"): cv.string}, extra=vol.ALLOW_EXTRA
                ),
            },
        }
    )


DEAD_LETTER_IDS_SCHEMA = vol.Schema({vol.Optional("id"): vol.All(cv.ensure_list, [cv.string])})
CANCEL_ESCALATION_SCHEMA = vol.Schema({vol.Required("id"): cv.string})
