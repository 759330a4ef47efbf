"""Triggers: what starts an automation. One module per platform.

Public contract (docs/automations-internals.md): ``TRIGGER_SCHEMA`` validates one trigger
config, ``async_attach_triggers`` attaches a list of them and returns one unsubscribe, and
``TriggerAction`` is what gets called when one fires. Platforms: state, numeric_state, event,
time, time_pattern, template, mqtt, machine, vend; integrations may add more with
``register_trigger_platform``. ``for:`` waits live in memory only and do not survive a restart.
"""

from .attach import async_attach_triggers
from .base import AttachedTrigger, ForPeriod, TriggerAction
from .clock import TriggerClock, get_trigger_clock, set_trigger_clock
from .mqtt import EVENT_MQTT_MESSAGE_RECEIVED, topic_matches
from .registry import (
    TRIGGER_PLATFORMS,
    TRIGGER_SCHEMA,
    TriggerPlatform,
    register_trigger_platform,
    validate_trigger,
)

__all__ = [
    "EVENT_MQTT_MESSAGE_RECEIVED",
    "TRIGGER_PLATFORMS",
    "TRIGGER_SCHEMA",
    "AttachedTrigger",
    "ForPeriod",
    "TriggerAction",
    "TriggerClock",
    "TriggerPlatform",
    "async_attach_triggers",
    "get_trigger_clock",
    "register_trigger_platform",
    "set_trigger_clock",
    "topic_matches",
    "validate_trigger",
]
