"""Conditions: every type true and false, their schemas and located errors, and traces."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
import voluptuous as vol

import vendhub.automation.template_helpers as template_helpers
from vendhub.automation.conditions import (
    CONDITION_SCHEMA,
    CONDITIONS_SCHEMA,
    ConditionChecker,
    async_condition_from_config,
    time_of_day,
)
from vendhub.automation.template import Template, TemplateError
from vendhub.automation.trace import RunTrace, trace_run
from vendhub.config.errors import ConfigError
from vendhub.config.validation import validate
from vendhub.config.yaml_loader import load_yaml
from vendhub.core.hub import CoreConfig, Hub

MONDAY_NOON = datetime(2024, 5, 6, 12, 0, tzinfo=UTC)


@pytest.fixture
def set_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[datetime], None]:
    """Make the hub clock that conditions read (``template.hub_now``) return ``moment``."""

    def set_to(moment: datetime) -> None:
        monkeypatch.setattr(template_helpers, "utcnow", lambda: moment)

    return set_to


@pytest.fixture
async def berlin_hub(tmp_path: Path) -> AsyncIterator[Hub]:
    """A hub whose time zone is Europe/Berlin (UTC+2 in May)."""
    instance = Hub(tmp_path, CoreConfig(time_zone="Europe/Berlin"))
    yield instance
    await instance.async_stop()


async def build(hub: Hub, config: Any, path: str = "condition/0") -> ConditionChecker:
    return await async_condition_from_config(hub, config, path=path)


def traced(checker: ConditionChecker, variables: dict[str, Any] | None = None) -> RunTrace:
    """Run ``checker`` inside a trace and return the trace."""
    run = RunTrace(item_id="automation.test")
    with trace_run(run):
        checker(variables or {})
    return run


def steps(run: RunTrace) -> list[tuple[str, bool, str | None]]:
    return [(step.path, step.result["result"], step.result.get("why")) for step in run.steps]


# ---- state -----------------------------------------------------------------------------------


async def test_state_condition(hub: Hub) -> None:
    hub.states.async_set("machine.fridge", "online")
    checker = await build(
        hub, {"condition": "state", "entity_id": "machine.fridge", "state": "online"}
    )
    assert checker({}) is True
    hub.states.async_set("machine.fridge", "offline")
    assert checker({}) is False
    assert steps(traced(checker)) == [
        ("condition/0", False, "machine.fridge is 'offline', not 'online'")
    ]
    assert checker.describe() == "machine.fridge is 'online'"


async def test_state_condition_with_several_states_and_entities(hub: Hub) -> None:
    hub.states.async_set("binary_sensor.door_1", "off")
    hub.states.async_set("binary_sensor.door_2", "on")
    config = {
        "condition": "state",
        "entity_id": ["binary_sensor.door_1", "binary_sensor.door_2"],
        "state": ["off", "closed"],
    }
    all_closed = await build(hub, config)
    any_closed = await build(hub, {**config, "match": "any"})
    assert all_closed({}) is False
    assert any_closed({}) is True
    assert steps(traced(all_closed)) == [
        (
            "condition/0",
            False,
            "binary_sensor.door_1 is 'off'; "
            "binary_sensor.door_2 is 'on', not one of 'off', 'closed'",
        )
    ]
    hub.states.async_set("binary_sensor.door_2", "closed")
    assert all_closed({}) is True


async def test_state_condition_on_a_missing_entity_is_false(hub: Hub) -> None:
    checker = await build(hub, {"condition": "state", "entity_id": "lock.none", "state": "on"})
    assert steps(traced(checker)) == [("condition/0", False, "lock.none does not exist")]


async def test_state_condition_on_an_attribute(hub: Hub) -> None:
    hub.states.async_set("slot.m_a1", "4", {"locked": True, "product": "Cola"})
    locked = await build(
        hub, {"condition": "state", "entity_id": "slot.m_a1", "attribute": "locked", "state": True}
    )
    cola = await build(
        hub,
        {"condition": "state", "entity_id": "slot.m_a1", "attribute": "product", "state": "Water"},
    )
    missing = await build(
        hub, {"condition": "state", "entity_id": "slot.m_a1", "attribute": "nope", "state": 1}
    )
    assert locked({}) is True
    assert steps(traced(cola)) == [
        ("condition/0", False, "slot.m_a1 attribute product is 'Cola', not 'Water'")
    ]
    assert steps(traced(missing)) == [("condition/0", False, "slot.m_a1 has no attribute 'nope'")]


async def test_state_condition_for_a_duration(
    hub: Hub, set_clock: Callable[[datetime], None]
) -> None:
    hub.states.async_set("binary_sensor.door", "on")
    changed = hub.states.get("binary_sensor.door").last_changed
    checker = await build(
        hub,
        {
            "condition": "state",
            "entity_id": "binary_sensor.door",
            "state": "on",
            "for": {"minutes": 10},
        },
    )
    set_clock(changed + timedelta(minutes=9, seconds=30))
    assert steps(traced(checker)) == [
        (
            "condition/0",
            False,
            "binary_sensor.door is 'on' for 9 min 30 s, less than 10 min",
        )
    ]
    set_clock(changed + timedelta(minutes=10))
    assert checker({}) is True
    # An attribute update does not restart the duration of the state.
    hub.states.async_set("binary_sensor.door", "on", {"opened_by": "driver"})
    assert checker({}) is True
    hub.states.async_set("binary_sensor.door", "off")
    hub.states.async_set("binary_sensor.door", "on")
    assert checker({}) is False
    assert checker.describe() == "binary_sensor.door is 'on' for 10 min"


# ---- numeric_state ----------------------------------------------------------------------------


async def test_numeric_state_above_and_below(hub: Hub) -> None:
    hub.states.async_set("sensor.fridge_temperature", "9.1")
    below = await build(
        hub, {"condition": "numeric_state", "entity_id": "sensor.fridge_temperature", "below": 8}
    )
    between = await build(
        hub,
        {
            "condition": "numeric_state",
            "entity_id": "sensor.fridge_temperature",
            "above": 2,
            "below": 10,
        },
    )
    assert steps(traced(below)) == [
        ("condition/0", False, "sensor.fridge_temperature is 9.1, not below 8")
    ]
    assert steps(traced(between)) == [
        ("condition/0", True, "sensor.fridge_temperature is 9.1, above 2 and below 10")
    ]
    hub.states.async_set("sensor.fridge_temperature", "7")
    assert below({}) is True
    hub.states.async_set("sensor.fridge_temperature", "10")
    assert between({}) is False
    assert between.describe() == "sensor.fridge_temperature above 2 and below 10"


async def test_numeric_state_limits_from_entities(hub: Hub) -> None:
    hub.states.async_set("slot.m_a1", "2")
    hub.states.async_set("number.par_level", "3")
    checker = await build(
        hub, {"condition": "numeric_state", "entity_id": "slot.m_a1", "below": "number.par_level"}
    )
    assert steps(traced(checker)) == [
        ("condition/0", True, "slot.m_a1 is 2, below number.par_level (3)")
    ]
    hub.states.async_set("number.par_level", "none yet")
    assert steps(traced(checker)) == [
        ("condition/0", False, "number.par_level (the limit) is 'none yet', not a number")
    ]


async def test_numeric_state_not_a_number_is_false_with_the_reason(hub: Hub) -> None:
    hub.states.async_set("sensor.t", "unavailable")
    checker = await build(hub, {"condition": "numeric_state", "entity_id": "sensor.t", "above": 5})
    assert checker({}) is False
    assert steps(traced(checker)) == [
        ("condition/0", False, "sensor.t is 'unavailable', not a number")
    ]
    missing = await build(hub, {"condition": "numeric_state", "entity_id": "sensor.no", "above": 5})
    assert steps(traced(missing)) == [("condition/0", False, "sensor.no does not exist")]


async def test_numeric_state_attribute_and_value_template(hub: Hub) -> None:
    hub.states.async_set("machine.m", "online", {"cash_level": 92, "cash_capacity": 100})
    on_attribute = await build(
        hub,
        {
            "condition": "numeric_state",
            "entity_id": "machine.m",
            "attribute": "cash_level",
            "above": 90,
        },
    )
    share = await build(
        hub,
        {
            "condition": "numeric_state",
            "entity_id": "machine.m",
            "attribute": "cash_level",
            "value_template": "{{ value / state.attributes.cash_capacity * 100 - offset }}",
            "above": 90,
        },
    )
    assert steps(traced(on_attribute)) == [
        ("condition/0", True, "machine.m attribute cash_level is 92, above 90")
    ]
    assert share({"offset": 0}) is True
    assert steps(traced(share, {"offset": 5})) == [
        (
            "condition/0",
            False,
            "machine.m attribute cash_level (by value_template) is 87, not above 90",
        )
    ]


# ---- template --------------------------------------------------------------------------------


async def test_template_condition_and_shorthand(hub: Hub) -> None:
    hub.states.async_set("slot.m_a1", "2")
    full = await build(
        hub, {"condition": "template", "value_template": "{{ stock('m', 'A1') < limit }}"}
    )
    shorthand = await build(hub, "{{ stock('m', 'A1') < limit }}")
    assert full({"limit": 3}) is True
    assert shorthand({"limit": 3}) is True
    assert steps(traced(full, {"limit": 1})) == [
        ("condition/0", False, "the template rendered False")
    ]
    assert shorthand.describe() == "template {{ stock('m', 'A1') < limit }}"
    word = await build(hub, "{{ 'on' }}")
    assert word({}) is True


async def test_template_condition_error_is_traced_and_raised(hub: Hub) -> None:
    checker = await build(
        hub, {"condition": "template", "value_template": "{{ true }}\n{{ 1 / 0 }}"}
    )
    run = RunTrace(item_id="automation.test")
    with trace_run(run), pytest.raises(TemplateError) as caught:
        checker({})
    assert caught.value.template_name == "condition/0/value_template"
    assert caught.value.line == 2
    assert steps(run) == [
        (
            "condition/0",
            False,
            "error: template 'condition/0/value_template' line 2: "
            "ZeroDivisionError: division by zero",
        )
    ]


# ---- time ------------------------------------------------------------------------------------


async def test_time_condition_within_a_day(hub: Hub, set_clock: Callable[[datetime], None]) -> None:
    checker = await build(hub, {"condition": "time", "after": "08:00", "before": "18:30"})
    set_clock(MONDAY_NOON)
    assert steps(traced(checker)) == [
        ("condition/0", True, "12:00:00 is between 08:00:00 and 18:30:00")
    ]
    set_clock(MONDAY_NOON.replace(hour=18, minute=30))
    assert steps(traced(checker)) == [
        ("condition/0", False, "18:30:00 is not between 08:00:00 and 18:30:00")
    ]
    set_clock(MONDAY_NOON.replace(hour=7, minute=59, second=59))
    assert checker({}) is False


@pytest.mark.parametrize(
    ("hour", "minute", "expected"),
    [(23, 30, True), (2, 0, True), (22, 0, True), (6, 0, False), (12, 0, False), (21, 59, False)],
)
async def test_time_condition_across_midnight(
    hub: Hub, set_clock: Callable[[datetime], None], hour: int, minute: int, expected: bool
) -> None:
    checker = await build(hub, {"condition": "time", "after": "22:00", "before": "06:00"})
    set_clock(MONDAY_NOON.replace(hour=hour, minute=minute))
    assert checker({}) is expected


async def test_time_condition_uses_the_hub_time_zone(
    berlin_hub: Hub, set_clock: Callable[[datetime], None]
) -> None:
    checker = await build(berlin_hub, {"condition": "time", "after": "13:00"})
    set_clock(MONDAY_NOON.replace(hour=11))  # 13:00 in Berlin
    assert steps(traced(checker)) == [("condition/0", True, "13:00:00 is after 13:00:00")]
    set_clock(MONDAY_NOON.replace(hour=10, minute=59))
    assert checker({}) is False


async def test_time_condition_weekdays(hub: Hub, set_clock: Callable[[datetime], None]) -> None:
    checker = await build(hub, {"condition": "time", "before": "20:00", "weekday": ["sat", "sun"]})
    set_clock(MONDAY_NOON)
    assert steps(traced(checker)) == [
        ("condition/0", False, "12:00:00 is before 20:00:00; today is mon, not sat, sun")
    ]
    set_clock(MONDAY_NOON + timedelta(days=5))  # Saturday
    assert checker({}) is True
    set_clock(MONDAY_NOON + timedelta(days=5, hours=9))  # Saturday 21:00
    assert checker({}) is False
    assert checker.describe() == "time before 20:00:00 on sat, sun"


def test_time_of_day_values() -> None:
    assert time_of_day("22:00") == time(22, 0)
    assert time_of_day("06:30:15") == time(6, 30, 15)
    assert time_of_day(time(1, 2)) == time(1, 2)
    # YAML 1.1 reads unquoted 22:00 as 1320 and 22:00:30 as 79230.
    assert time_of_day(1320) == time(22, 0)
    assert time_of_day(79230) == time(22, 0, 30)
    for wrong in ("25:00", "7", "12:60", True, None, -5):
        with pytest.raises(vol.Invalid, match="expected a time of day"):
            time_of_day(wrong)
    with pytest.raises(vol.Invalid, match=r"put the time in quotes \('22:00'\)"):
        time_of_day(1500)  # an unquoted 25:00


# ---- and / or / not ------------------------------------------------------------------------


async def test_and_or_not_record_each_condition(hub: Hub) -> None:
    hub.states.async_set("machine.m", "online")
    hub.states.async_set("sensor.t", "9")
    online = {"condition": "state", "entity_id": "machine.m", "state": "online"}
    warm = {"condition": "numeric_state", "entity_id": "sensor.t", "above": 8}
    cold = {"condition": "numeric_state", "entity_id": "sensor.t", "below": 3}

    both = await build(hub, {"condition": "and", "conditions": [online, warm]})
    assert both({}) is True
    assert steps(traced(both)) == [
        ("condition/0/conditions/0", True, "machine.m is 'online'"),
        ("condition/0/conditions/1", True, "sensor.t is 9, above 8"),
        ("condition/0", True, "all 2 conditions passed"),
    ]
    failing = await build(hub, {"and": [cold, online]}, path="condition/1")
    assert steps(traced(failing)) == [
        ("condition/1/conditions/0", False, "sensor.t is 9, not below 3"),
        ("condition/1", False, "condition 0 failed: sensor.t below 3"),
    ]
    either = await build(hub, {"condition": "or", "conditions": [cold, warm]})
    assert steps(traced(either)) == [
        ("condition/0/conditions/0", False, "sensor.t is 9, not below 3"),
        ("condition/0/conditions/1", True, "sensor.t is 9, above 8"),
        ("condition/0", True, "condition 1 passed: sensor.t above 8"),
    ]
    neither = await build(hub, {"or": [cold]})
    assert neither({}) is False
    not_cold = await build(hub, {"condition": "not", "conditions": [cold]})
    assert not_cold({}) is True
    not_warm = await build(hub, {"not": [cold, warm]})
    assert steps(traced(not_warm))[-1] == (
        "condition/0",
        False,
        "condition 1 passed, so 'not' fails: sensor.t above 8",
    )
    assert both.describe() == "all of (machine.m is 'online'), (sensor.t above 8)"


async def test_nested_logic_with_a_template_shorthand(hub: Hub) -> None:
    hub.states.async_set("sensor.t", "4")
    checker = await build(
        hub,
        {"or": [{"and": ["{{ states('sensor.t') | float > 3 }}", "{{ false }}"]}, "{{ true }}"]},
    )
    assert checker({}) is True
    assert [path for path, _, _ in steps(traced(checker))] == [
        "condition/0/conditions/0/conditions/0",
        "condition/0/conditions/0/conditions/1",
        "condition/0/conditions/0",
        "condition/0/conditions/1",
        "condition/0",
    ]


# ---- trigger, alias, enabled ------------------------------------------------------------------


async def test_trigger_condition(hub: Hub) -> None:
    checker = await build(hub, {"condition": "trigger", "id": ["low_stock", "empty"]})
    assert checker({"trigger": {"id": "empty"}}) is True
    assert steps(traced(checker, {"trigger": {"id": "door"}})) == [
        ("condition/0", False, "the trigger id is 'door', not one of 'low_stock', 'empty'")
    ]
    assert steps(traced(checker, {})) == [("condition/0", False, "the run has no trigger id")]
    numeric_id = await build(hub, {"condition": "trigger", "id": 1})
    assert numeric_id({"trigger": {"id": 1}}) is True


async def test_alias_and_disabled_conditions(hub: Hub) -> None:
    checker = await build(
        hub,
        {"condition": "state", "entity_id": "lock.x", "state": "on", "alias": "Lock engaged"},
    )
    assert checker.describe() == "Lock engaged"
    disabled = await build(
        hub, {"condition": "state", "entity_id": "lock.x", "state": "on", "enabled": False}
    )
    assert steps(traced(disabled)) == [("condition/0", True, "disabled, so it passes")]


async def test_checker_without_a_trace_records_nothing(hub: Hub) -> None:
    checker = await build(hub, "{{ true }}")
    assert checker({}) is True
    assert checker() is True


# ---- schemas ---------------------------------------------------------------------------------


def test_schema_normalises_conditions() -> None:
    state = CONDITION_SCHEMA({"condition": "state", "entity_id": "lock.x", "state": 1})
    assert state == {
        "condition": "state",
        "entity_id": ["lock.x"],
        "state": ["1"],
        "match": "all",
        "enabled": True,
    }
    shorthand = CONDITION_SCHEMA("{{ true }}")
    assert shorthand["condition"] == "template"
    assert isinstance(shorthand["value_template"], Template)
    logical = CONDITION_SCHEMA({"and": ["{{ true }}"], "alias": "all good"})
    assert logical["condition"] == "and"
    assert logical["alias"] == "all good"
    assert logical["conditions"][0]["condition"] == "template"
    duration = CONDITION_SCHEMA(
        {"condition": "state", "entity_id": "lock.x", "state": "on", "for": "5min"}
    )
    assert duration["for"] == timedelta(minutes=5)
    numeric = CONDITION_SCHEMA(
        {"condition": "numeric_state", "entity_id": "sensor.t", "above": "2", "below": "sensor.b"}
    )
    assert (numeric["above"], numeric["below"]) == (2.0, "sensor.b")
    assert (
        CONDITION_SCHEMA({"condition": "STATE", "entity_id": "a.b", "state": "x"})["condition"]
        == "state"
    )
    assert CONDITION_SCHEMA(CONDITION_SCHEMA("{{ 1 }}"))["condition"] == "template"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"condition": "stat", "entity_id": "a.b", "state": "x"}, "did you mean 'state'"),
        ({"entity_id": "a.b"}, "a condition needs 'condition:'"),
        ("plain words", "expected a condition"),
        (["{{ 1 }}"], "expected a condition"),
        ({"condition": "state", "entity_id": "a.b"}, "required key not provided"),
        ({"condition": "state", "entity_id": "A.B", "state": "x"}, "did you mean 'a.b'"),
        ({"condition": "state", "entity_id": "a.b", "state": True}, "put the state in quotes"),
        ({"condition": "state", "entity_id": "a.b", "state": "x", "for": "soon"}, "time period"),
        ({"condition": "state", "entity": "a.b", "state": "x"}, "did you mean 'entity_id'"),
        ({"condition": "numeric_state", "entity_id": "a.b"}, "needs 'above', 'below' or both"),
        (
            {"condition": "numeric_state", "entity_id": "a.b", "above": 9, "below": 3},
            "'above' (9) must be less than 'below' (3)",
        ),
        (
            {"condition": "numeric_state", "entity_id": "a.b", "above": "warm"},
            "expected a number or an entity id",
        ),
        ({"condition": "template", "value_template": "{{ 1 +"}, "invalid template on line 1"),
        ({"condition": "time"}, "needs 'after', 'before' or 'weekday'"),
        ({"condition": "time", "after": "7pm"}, "expected a time of day"),
        ({"condition": "time", "weekday": ["monday"]}, "did you mean 'mon'"),
        ({"condition": "and", "conditions": []}, "at least one"),
        ({"or": [{"condition": "state"}]}, "required key not provided"),
        ({"condition": "trigger"}, "required key not provided"),
    ],
)
def test_schema_errors_say_what_is_wrong(config: Any, message: str) -> None:
    with pytest.raises(vol.Invalid) as caught:
        CONDITION_SCHEMA(config)
    assert message in str(caught.value)


def test_schema_errors_point_at_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "conditions.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            - condition: state
              entity_id: machine.m
              state: online
            - and:
                - condition: numeric_state
                  entity_id: sensor.t
                  abov: 5
                  below: 9
            - condition: time
              after: "7pm"
            - "{{ states('sensor.t') | float > }}"
            """
        )
    )
    with pytest.raises(ConfigError) as caught:
        validate(CONDITIONS_SCHEMA, load_yaml(path))
    issues = {(issue.line, issue.message) for issue in caught.value.issues}
    assert (
        7,
        "invalid key 'abov': not a key of a numeric_state condition, did you mean 'above'?",
    ) in issues
    assert any(line == 10 and "expected a time of day" in text for line, text in issues)
    assert any(line == 11 and "invalid template on line 1" in text for line, text in issues)
    assert len(issues) == 3


async def test_conditions_schema_builds_after_yaml_validation(hub: Hub, tmp_path: Path) -> None:
    path = tmp_path / "conditions.yaml"
    path.write_text('- condition: time\n  after: 22:00\n  before: "06:00"\n')
    validated = validate(CONDITIONS_SCHEMA, load_yaml(path))
    assert validated[0]["after"] == time(22, 0)
    checker = await build(hub, validated[0])
    assert checker.describe() == "time between 22:00:00 and 06:00:00"
