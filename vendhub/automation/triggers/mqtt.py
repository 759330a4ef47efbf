"""``mqtt``: a message on a topic (``+``/``#`` wildcards), from the ``mqtt_message_received``
event the MQTT integration fires; optionally only a given payload."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

import voluptuous as vol

from vendhub.automation.template import TemplateError
from vendhub.config import validators as cv

from . import options
from .base import AttachedTrigger

if TYPE_CHECKING:
    from vendhub.core.events import Event, Unsubscribe
    from vendhub.core.hub import Hub

PLATFORM = "mqtt"
EVENT_MQTT_MESSAGE_RECEIVED: Final = "mqtt_message_received"


def topic_filter(value: Any) -> str:
    """An MQTT topic filter: levels split by '/', '+' for one level, '#' last for the rest."""
    topic = cv.string(value)
    if not topic:
        raise vol.Invalid("expected an MQTT topic such as 'vendhub/+/status', got an empty text")
    levels = topic.split("/")
    for position, level in enumerate(levels):
        if "#" in level and (level != "#" or position != len(levels) - 1):
            raise vol.Invalid(
                f"'#' must be a whole level and the last one of a topic filter, got {topic!r}"
                " (e.g. 'vendhub/#')"
            )
        if "+" in level and level != "+":
            raise vol.Invalid(
                f"'+' must be a whole level of a topic filter, got {topic!r}"
                " (e.g. 'vendhub/+/status')"
            )
    return topic


def topic_matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches the MQTT ``topic_filter`` (per MQTT 3.1.1 section 4.7)."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for position, level in enumerate(filter_levels):
        if level == "#":
            return True
        if position >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[position]:
            return False
    return len(filter_levels) == len(topic_levels)


SCHEMA = options.PlatformSchema(
    PLATFORM,
    {
        vol.Required("topic"): topic_filter,
        vol.Optional("payload"): cv.string,
        vol.Optional("value_template"): options.template,
    },
)


def _as_text(payload: Any) -> str:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload).decode("utf-8", errors="replace")
    return "" if payload is None else str(payload)


def _as_json(payload: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(payload)
    except ValueError:
        return False, None


async def async_attach(hub: Hub, config: dict[str, Any], trigger: AttachedTrigger) -> Unsubscribe:
    """Listen for received MQTT messages; fire for those on a matching topic (and payload)."""
    wanted_topic: str = config["topic"]
    wanted_payload: str | None = config.get("payload")
    value_template = config.get("value_template")

    def message_data(event: Event) -> dict[str, Any] | None:
        topic = str(event.data.get("topic", ""))
        if not topic_matches(wanted_topic, topic):
            return None
        payload = _as_text(event.data.get("payload"))
        data: dict[str, Any] = {
            "topic": topic,
            "payload": payload,
            "qos": event.data.get("qos", 0),
            "retain": bool(event.data.get("retain", False)),
            "description": f"mqtt topic {topic}",
        }
        is_json, parsed = _as_json(payload)
        if is_json:
            data["payload_json"] = parsed
        return data

    def on_message(event: Event) -> None:
        data = message_data(event)
        if data is not None and (wanted_payload is None or data["payload"] == wanted_payload):
            trigger.fire(data, event.context)

    def on_message_with_template(event: Event) -> None:
        data = message_data(event)
        if data is None:
            return
        variables = trigger.template_variables(
            value=data["payload"], value_json=data.get("payload_json")
        )
        try:
            value = value_template.async_render(variables, parse_result=False)
        except TemplateError as error:
            trigger.error("its value_template failed on topic %s: %s", data["topic"], error)
            return
        if wanted_payload is None or str(value).strip() == wanted_payload:
            trigger.fire({**data, "value": value}, event.context)

    listener = on_message if value_template is None else on_message_with_template
    return hub.bus.async_listen(EVENT_MQTT_MESSAGE_RECEIVED, listener)
