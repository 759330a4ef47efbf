"""Script: action schemas, every action type, modes under overlapping runs, and traces."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest
import voluptuous as vol

from vendhub.automation.actions import MAX_TRACED_STEPS, TRUNCATED_PATH
from vendhub.automation.script import (
    ACTION_SCHEMA,
    MAX_REPEAT_ITERATIONS,
    MODES,
    SEQUENCE_SCHEMA,
    Script,
    ScriptRunResult,
)
from vendhub.automation.trace import RunTrace, trace_run, trace_step
from vendhub.config.errors import ConfigError
from vendhub.config.validation import validate
from vendhub.config.yaml_loader import load_yaml
from vendhub.core.context import Context
from vendhub.core.events import Event
from vendhub.core.hub import Hub
from vendhub.core.services import ServiceCall

Calls = list[ServiceCall]


@pytest.fixture
def calls(hub: Hub) -> Calls:
    """``test.record`` records each call; ``test.fail`` raises; ``test.echo`` returns data."""
    recorded: Calls = []

    def record(call: ServiceCall) -> None:
        recorded.append(call)

    def fail(call: ServiceCall) -> None:
        raise RuntimeError(f"board jammed: {call.data.get('slot', '?')}")

    def echo(call: ServiceCall) -> dict[str, Any]:
        recorded.append(call)
        return {"stock": 7, "slot": call.data.get("slot")}

    hub.services.async_register("test", "record", record)
    hub.services.async_register("test", "fail", fail)
    hub.services.async_register("test", "echo", echo)
    return recorded


def record(**data: Any) -> dict[str, Any]:
    return {"service": "test.record", "data": data}


def paths(result: ScriptRunResult) -> list[str]:
    return [step.path for step in result.trace.steps]


def step(result: ScriptRunResult, path: str) -> Any:
    found = [item for item in result.trace.steps if item.path == path]
    assert len(found) == 1, f"{path} in {paths(result)}"
    return found[0]


async def run(
    hub: Hub, sequence: list[dict[str, Any]], variables: dict[str, Any] | None = None, **kw: Any
) -> ScriptRunResult:
    context = kw.pop("context", None)
    script = Script(hub, sequence, name=kw.pop("name", "test_script"), **kw)
    result = await script.async_run(variables or {}, context)
    assert result is not None
    return result


# -- schema ---------------------------------------------------------------------------------


def test_sequence_schema_normalizes_every_action_type() -> None:
    sequence = SEQUENCE_SCHEMA(
        [
            {"action": "test.record", "data": {"slot": "{{ slot }}"}},
            {"delay": "00:00:05"},
            {"wait_template": "{{ true }}", "timeout": 3},
            {"choose": {"conditions": "{{ true }}", "sequence": {"delay": 1}}},
            {"if": "{{ true }}", "then": [{"delay": 1}]},
            {"repeat": {"count": 2, "sequence": [{"delay": 1}]}},
            {"condition": "template", "value_template": "{{ true }}"},
            {"event": "restocked", "event_data": {"slot": "A1"}},
            {"notify": "Slot A1 low", "title": "Stock"},
            {"stop": "done", "error": True},
            {"variables": {"limit": 3}},
            {"parallel": [{"delay": 1}, [{"delay": 2}, {"delay": 3}]]},
            {"sequence": {"delay": 1}},
        ]
    )
    assert sequence[0]["service"] == "test.record" and "action" not in sequence[0]
    assert sequence[1]["delay"].total_seconds() == 5
    assert sequence[2]["continue_on_timeout"] is True
    assert sequence[3]["choose"][0]["sequence"][0]["delay"].total_seconds() == 1
    assert sequence[8]["notify"] == {"message": "Slot A1 low", "title": "Stock"}
    assert "title" not in sequence[8]
    assert sequence[9]["error"] is True
    assert [len(branch) for branch in sequence[11]["parallel"]] == [1, 2]
    assert all(action["enabled"] is True for action in sequence)
    assert SEQUENCE_SCHEMA(sequence) == sequence  # validating twice changes nothing
    assert ACTION_SCHEMA({"delay": 2})["delay"].total_seconds() == 2


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ({"dely": 5}, "did you mean 'delay' instead of 'dely'?"),
        ({"servce": "test.record"}, "did you mean 'service' instead of 'servce'?"),
        ({"service": "test.record", "dta": {}}, "unknown key 'dta', did you mean 'data'?"),
        ({"delay": 1, "event": "x"}, "exactly one type, got 'delay' and 'event'"),
        ({"service": "Test.Record"}, "did you mean 'test.record'?"),
        ({"wait_template": "{{ states('x') "}, "invalid template on line 1"),
        ({"repeat": {"sequence": []}}, "exactly one of 'count', 'while', 'until', 'for_each'"),
        ({"repeat": {"count": 1, "until": "{{ 1 }}", "sequence": []}}, "got 'count', 'until'"),
        ({"delay": "5 fortnights"}, "unknown unit 'fortnights'"),
        ({"variables": {"2fast": 1}}, "expected a variable name"),
        ({"notify": {"title": "no message"}}, "required key not provided"),
        ({"repeat": {"cuont": 2, "sequence": []}}, "unknown key 'cuont', did you mean 'count'?"),
        ("delay 5", "expected an action: a mapping"),
    ],
)
def test_invalid_actions_are_explained(action: Any, message: str) -> None:
    with pytest.raises(vol.Invalid) as caught:
        SEQUENCE_SCHEMA([action])
    assert message in str(caught.value)


def test_schema_errors_point_at_the_yaml_line(tmp_path: Path) -> None:
    file = tmp_path / "automations.yaml"
    file.write_text(
        "actions:\n"
        "  - service: test.record\n"
        '  - if: "{{ true }}"\n'
        "    then:\n"
        "      - dealy: 5\n"
        "  - service: test.record\n"
        "    dat: {}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        validate(vol.Schema({"actions": SEQUENCE_SCHEMA}), load_yaml(file))
    issues = {issue.line: issue for issue in caught.value.issues}
    assert set(issues) == {5, 7}
    assert issues[5].path == ("actions", 1, "then", 0)
    assert "did you mean 'delay' instead of 'dealy'?" in issues[5].message
    assert issues[7].message == "a 'service' action got an unknown key 'dat', did you mean 'data'?"


def test_script_rejects_an_unknown_mode(hub: Hub) -> None:
    assert MODES == ("single", "restart", "queued", "parallel")
    with pytest.raises(ValueError, match="unknown script mode 'serial'"):
        Script(hub, [], name="x", mode="serial")


# -- service --------------------------------------------------------------------------------


async def test_service_renders_data_merges_target_and_uses_a_child_context(
    hub: Hub, calls: Calls
) -> None:
    caller = Context(user_id="operator")
    result = await run(
        hub,
        [
            {
                "action": "test.record",
                "data": {"slot": "{{ slot }}", "count": "{{ left * 2 }}", "tags": ["{{ slot }}"]},
                "target": {"entity_id": "slot.lobby_1_a1"},
            }
        ],
        {"slot": "A1", "left": 2},
        context=caller,
    )
    assert result.outcome == "ran"
    assert [dict(call.data) for call in calls] == [
        {"slot": "A1", "count": 4, "tags": ["A1"], "entity_id": "slot.lobby_1_a1"}
    ]
    assert calls[0].context is result.context
    assert result.context.parent_id == caller.id
    assert result.context.user_id == "operator"
    assert step(result, "action/0").result == {
        "service": "test.record",
        "data": {"slot": "A1", "count": 4, "tags": ["A1"], "entity_id": "slot.lobby_1_a1"},
    }


async def test_templated_service_name(hub: Hub, calls: Calls) -> None:
    result = await run(hub, [{"service": "test.{{ what }}", "data": {"n": 1}}], {"what": "record"})
    assert result.outcome == "ran"
    assert [call.service for call in calls] == ["record"]


async def test_response_variable_keeps_a_blocking_call_result(hub: Hub, calls: Calls) -> None:
    result = await run(
        hub,
        [
            {"service": "test.echo", "data": {"slot": "B2"}, "response_variable": "answer"},
            record(message="{{ answer.slot }} has {{ answer.stock }}"),
        ],
    )
    assert result.outcome == "ran"
    assert result.variables["answer"] == {"stock": 7, "slot": "B2"}
    assert calls[-1].data["message"] == "B2 has 7"
    assert step(result, "action/0").changed_variables == {"answer": {"stock": 7, "slot": "B2"}}
    assert step(result, "action/0").result["response"] == {"stock": 7, "slot": "B2"}


async def test_failing_step_ends_the_run_with_error_and_logs_script_and_path(
    hub: Hub, calls: Calls, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    result = await run(
        hub,
        [record(n=1), {"service": "test.fail", "data": {"slot": "C3"}}, record(n=2)],
        name="jam_watch",
    )
    assert result.outcome == "error"
    assert result.error == "RuntimeError: board jammed: C3"
    assert result.trace.outcome == "error"
    assert result.trace.error == "RuntimeError: board jammed: C3"
    assert result.trace.finished is not None
    assert [call.data["n"] for call in calls] == [1]
    assert paths(result) == ["action/0", "action/1"]
    assert step(result, "action/1").error == "RuntimeError: board jammed: C3"
    assert "Script 'jam_watch' failed at step action/1: RuntimeError: board jammed: C3" in (
        caplog.text
    )


async def test_unknown_service_is_an_error_naming_the_nested_step(
    hub: Hub, calls: Calls, caplog: pytest.LogCaptureFixture
) -> None:
    result = await run(
        hub, [{"if": "{{ true }}", "then": [record(n=1), {"service": "test.nope"}]}], name="nested"
    )
    assert result.outcome == "error"
    assert "service test.nope is not registered" in (result.error or "")
    assert step(result, "action/0/then/1").error.startswith("ServiceNotFound: service test.nope")
    assert step(result, "action/0").error.startswith("failed at action/0/then/1: ServiceNotFound")
    assert "Script 'nested' failed at step action/0/then/1" in caplog.text


async def test_continue_on_error_goes_on_after_a_failure(hub: Hub, calls: Calls) -> None:
    result = await run(
        hub,
        [
            {"service": "test.fail", "data": {"slot": "A1"}, "continue_on_error": True},
            {"if": "{{ true }}", "then": [{"service": "test.fail"}], "continue_on_error": True},
            record(n=2),
        ],
    )
    assert result.outcome == "ran"
    assert result.error is None
    assert [call.data["n"] for call in calls] == [2]
    assert step(result, "action/0").error == "RuntimeError: board jammed: A1"
    assert step(result, "action/0").result["continued_on_error"] is True
    assert (
        step(result, "action/1").error == "failed at action/1/then/0: RuntimeError: board jammed: ?"
    )


async def test_template_error_names_the_script_step(hub: Hub, calls: Calls) -> None:
    result = await run(hub, [{"wait_template": "{{ 1 / 0 }}"}], name="automation fridge")
    assert result.outcome == "error"
    assert result.error == (
        "TemplateError: template 'automation fridge action/0/wait_template' line 1: "
        "ZeroDivisionError: division by zero"
    )


async def test_disabled_action_is_skipped_and_alias_recorded(hub: Hub, calls: Calls) -> None:
    result = await run(
        hub,
        [
            {"service": "test.record", "data": {"n": 1}, "enabled": False},
            {"service": "test.record", "data": {"n": 2}, "alias": "Tell the driver"},
        ],
    )
    assert [call.data["n"] for call in calls] == [2]
    assert step(result, "action/0").result == {"enabled": False}
    assert step(result, "action/1").result["alias"] == "Tell the driver"


# -- delay ----------------------------------------------------------------------------------


async def test_delay_waits_and_traces_seconds(hub: Hub, calls: Calls) -> None:
    started = time.monotonic()
    result = await run(hub, [{"delay": 0.05}, {"delay": "{{ pause }}"}], {"pause": 0.03})
    elapsed = time.monotonic() - started
    assert result.outcome == "ran"
    assert 0.08 <= elapsed < 1.0
    assert step(result, "action/0").result == {"delay": 0.05, "done": True}
    assert step(result, "action/1").result == {"delay": 0.03, "done": True}


async def test_delay_from_a_mapping_with_a_template(hub: Hub) -> None:
    result = await run(hub, [{"delay": {"milliseconds": "{{ ms }}"}}], {"ms": 20})
    assert step(result, "action/0").result["delay"] == pytest.approx(0.02)


async def test_delay_that_renders_to_nonsense_is_an_error(hub: Hub) -> None:
    result = await run(hub, [{"delay": "{{ 'soon' }}"}])
    assert result.outcome == "error"
    assert "expected a time period" in (result.error or "")


async def test_delay_is_cancelled_by_stop(hub: Hub, calls: Calls) -> None:
    script = Script(hub, [{"delay": 5}, record(n=1)], name="long_wait")
    task = asyncio.create_task(script.async_run({}))
    await asyncio.sleep(0.02)
    assert script.is_running and script.runs == 1
    started = time.monotonic()
    await script.async_stop()
    result = await task
    assert time.monotonic() - started < 0.5
    assert result is not None and result.outcome == "aborted"
    assert result.error == "stopped (async_stop)"
    assert step(result, "action/0").error == "CancelledError"
    assert calls == []
    assert not script.is_running and script.runs == 0


# -- waits ----------------------------------------------------------------------------------


async def test_wait_template_completes_when_the_state_changes(hub: Hub, calls: Calls) -> None:
    hub.states.async_set("binary_sensor.lobby_1_door", "on")

    async def close_door() -> None:
        await asyncio.sleep(0.03)
        hub.states.async_set("binary_sensor.lobby_1_door", "off")

    closer = asyncio.create_task(close_door())
    result = await run(
        hub,
        [
            {"wait_template": "{{ is_state('binary_sensor.lobby_1_door', 'off') }}", "timeout": 2},
            record(completed="{{ wait.completed }}"),
        ],
    )
    await closer
    assert result.outcome == "ran"
    wait = result.variables["wait"]
    assert wait["completed"] is True
    assert 1.0 < wait["remaining"] < 2.0
    assert calls[0].data["completed"] is True
    assert step(result, "action/0").result["wait"] == wait


async def test_wait_template_already_true_does_not_wait(hub: Hub) -> None:
    started = time.monotonic()
    result = await run(hub, [{"wait_template": "{{ 1 == 1 }}"}])
    assert time.monotonic() - started < 0.5
    assert result.variables["wait"] == {"completed": True, "remaining": None}


async def test_wait_template_timeout_continues_by_default(hub: Hub, calls: Calls) -> None:
    hub.states.async_set("sensor.lobby_1_temperature", "9")
    result = await run(
        hub,
        [
            {
                "wait_template": "{{ states('sensor.lobby_1_temperature') | float < 8 }}",
                "timeout": 0.05,
            },
            record(completed="{{ wait.completed }}"),
        ],
    )
    assert result.outcome == "ran"
    assert result.variables["wait"] == {"completed": False, "remaining": 0.0}
    assert calls[0].data["completed"] is False


async def test_wait_timeout_can_stop_the_run(hub: Hub, calls: Calls) -> None:
    result = await run(
        hub,
        [
            {"wait_template": "{{ false }}", "timeout": 0.02, "continue_on_timeout": False},
            record(n=1),
        ],
    )
    assert result.outcome == "stopped"
    assert result.stop_reason == "the wait timed out after 0.02 s (continue_on_timeout: false)"
    assert calls == []
    assert step(result, "action/0").error is None


async def test_wait_for_trigger_gets_the_event(hub: Hub, calls: Calls) -> None:
    async def fire_later() -> None:
        await asyncio.sleep(0.02)
        hub.bus.async_fire("door_closed", {"machine_id": "lobby_1"})

    firing = asyncio.create_task(fire_later())
    result = await run(
        hub,
        [
            {"wait_for_trigger": {"platform": "event", "event_type": "door_closed"}, "timeout": 2},
            record(machine="{{ wait.trigger.event.data.machine_id }}"),
        ],
    )
    await firing
    assert result.outcome == "ran"
    wait = result.variables["wait"]
    assert wait["completed"] is True
    assert wait["trigger"]["platform"] == "event"
    assert isinstance(wait["trigger"]["event"], Event)
    assert calls[0].data["machine"] == "lobby_1"
    assert hub.bus.async_listeners().get("door_closed") is None  # detached after the wait


async def test_wait_for_trigger_timeout(hub: Hub, calls: Calls) -> None:
    result = await run(
        hub,
        [
            {"wait_for_trigger": [{"platform": "event", "event_type": "never"}], "timeout": 0.03},
            record(completed="{{ wait.completed }}", trigger="{{ wait.trigger is none }}"),
        ],
    )
    assert result.variables["wait"]["completed"] is False
    assert result.variables["wait"]["trigger"] is None
    assert dict(calls[0].data) == {"completed": False, "trigger": True}
    assert hub.bus.async_listeners().get("never") is None


# -- choose, if -----------------------------------------------------------------------------

CHOOSE = [
    {
        "choose": [
            {"conditions": "{{ level == 'low' }}", "sequence": record(branch="low")},
            {
                "conditions": ["{{ level == 'empty' }}", "{{ true }}"],
                "sequence": [record(branch="empty")],
            },
        ],
        "default": [record(branch="default")],
    }
]


@pytest.mark.parametrize(
    ("level", "branch", "choice", "checked"),
    [
        ("low", "low", 0, ["action/0/choose/0/conditions/0"]),
        (
            "empty",
            "empty",
            1,
            [
                "action/0/choose/0/conditions/0",
                "action/0/choose/1/conditions/0",
                "action/0/choose/1/conditions/1",
            ],
        ),
        (
            "full",
            "default",
            "default",
            ["action/0/choose/0/conditions/0", "action/0/choose/1/conditions/0"],
        ),
    ],
)
async def test_choose_runs_the_first_matching_option_or_default(
    hub: Hub, calls: Calls, level: str, branch: str, choice: Any, checked: list[str]
) -> None:
    result = await run(hub, CHOOSE, {"level": level})
    assert [call.data["branch"] for call in calls] == [branch]
    assert step(result, "action/0").result == {"choice": choice}
    assert [path for path in paths(result) if "/conditions/" in path] == checked
    executed = (
        "action/0/default/0" if choice == "default" else f"action/0/choose/{choice}/sequence/0"
    )
    assert paths(result)[-1] == executed


async def test_choose_without_match_and_default_does_nothing(hub: Hub, calls: Calls) -> None:
    result = await run(hub, [{"choose": CHOOSE[0]["choose"]}], {"level": "full"})
    assert calls == []
    assert step(result, "action/0").result == {"choice": None}
    assert step(result, "action/0/choose/1/conditions/0").result["result"] is False


@pytest.mark.parametrize(("stock", "branch"), [(1, "then"), (9, "else")])
async def test_if_then_else(hub: Hub, calls: Calls, stock: int, branch: str) -> None:
    result = await run(
        hub,
        [
            {
                "if": ["{{ stock < 3 }}"],
                "then": [record(said="refill")],
                "else": [record(said="fine")],
            }
        ],
        {"stock": stock},
    )
    assert [call.data["said"] for call in calls] == ["refill" if branch == "then" else "fine"]
    assert step(result, "action/0").result == {"result": branch == "then", "choice": branch}
    assert paths(result) == ["action/0", "action/0/if/0", f"action/0/{branch}/0"]


async def test_if_without_else(hub: Hub, calls: Calls) -> None:
    result = await run(hub, [{"if": "{{ false }}", "then": [record(n=1)]}])
    assert calls == []
    assert step(result, "action/0").result == {"result": False, "choice": None}


async def test_state_conditions_read_the_hub(hub: Hub, calls: Calls) -> None:
    hub.states.async_set("machine.lobby_1", "online")
    result = await run(
        hub,
        [
            {
                "if": [{"condition": "state", "entity_id": "machine.lobby_1", "state": "online"}],
                "then": [record(n=1)],
            }
        ],
    )
    assert [call.data["n"] for call in calls] == [1]
    assert step(result, "action/0/if/0").result["result"] is True


# -- repeat ---------------------------------------------------------------------------------


async def test_repeat_count_sets_index_first_last(hub: Hub, calls: Calls) -> None:
    result = await run(
        hub,
        [
            {
                "repeat": {
                    "count": "{{ times }}",
                    "sequence": [
                        record(
                            i="{{ repeat.index }}", f="{{ repeat.first }}", l="{{ repeat.last }}"
                        )
                    ],
                }
            }
        ],
        {"times": 3},
    )
    assert [dict(call.data) for call in calls] == [
        {"i": 1, "f": True, "l": False},
        {"i": 2, "f": False, "l": False},
        {"i": 3, "f": False, "l": True},
    ]
    assert "repeat" not in result.variables
    assert step(result, "action/0").result == {"iterations": 3}
    assert paths(result) == ["action/0"] + ["action/0/repeat/sequence/0"] * 3


async def test_repeat_for_each_sets_item(hub: Hub, calls: Calls) -> None:
    result = await run(
        hub,
        [
            {
                "repeat": {
                    "for_each": "{{ slots }}",
                    "sequence": record(slot="{{ repeat.item.name }}", n="{{ repeat.index }}"),
                }
            },
            {"repeat": {"for_each": ["x", "{{ 'y' }}"], "sequence": record(s="{{ repeat.item }}")}},
        ],
        {"slots": [{"name": "A1"}, {"name": "B2"}]},
    )
    assert [dict(call.data) for call in calls] == [
        {"slot": "A1", "n": 1},
        {"slot": "B2", "n": 2},
        {"s": "x"},
        {"s": "y"},
    ]
    assert step(result, "action/1").result == {"iterations": 2}


async def test_repeat_while_and_until(hub: Hub, calls: Calls) -> None:
    result = await run(
        hub,
        [
            {"variables": {"left": 3}},
            {
                "repeat": {
                    "while": "{{ left > 0 }}",
                    "sequence": [
                        record(left="{{ left }}", i="{{ repeat.index }}"),
                        {"variables": {"left": "{{ left - 1 }}"}},
                    ],
                }
            },
            {
                "repeat": {
                    "until": ["{{ repeat.index >= 2 }}"],
                    "sequence": [record(until="{{ repeat.index }}")],
                }
            },
        ],
    )
    assert result.outcome == "ran"
    assert [dict(call.data) for call in calls] == [
        {"left": 3, "i": 1},
        {"left": 2, "i": 2},
        {"left": 1, "i": 3},
        {"until": 1},
        {"until": 2},
    ]
    assert result.variables["left"] == 0
    assert step(result, "action/1").result == {"iterations": 3}
    assert step(result, "action/2").result == {"iterations": 2}
    assert paths(result).count("action/1/repeat/while/0") == 4
    assert paths(result).count("action/2/repeat/until/0") == 2


async def test_nested_repeat_restores_the_outer_repeat_variable(hub: Hub, calls: Calls) -> None:
    await run(
        hub,
        [
            {
                "repeat": {
                    "count": 2,
                    "sequence": [
                        {"repeat": {"count": 2, "sequence": record(inner="{{ repeat.index }}")}},
                        record(outer="{{ repeat.index }}"),
                    ],
                }
            }
        ],
        {"repeat": "caller's"},
    )
    assert [dict(call.data) for call in calls] == [
        {"inner": 1},
        {"inner": 2},
        {"outer": 1},
        {"inner": 1},
        {"inner": 2},
        {"outer": 2},
    ]


async def test_repeat_is_bounded(hub: Hub) -> None:
    too_many = await run(
        hub, [{"repeat": {"count": MAX_REPEAT_ITERATIONS + 1, "sequence": {"delay": 0}}}]
    )
    assert too_many.outcome == "error"
    assert too_many.error == ("ScriptError: repeat of 10001 iterations is over the limit of 10000")
    forever = await run(
        hub,
        [{"repeat": {"while": "{{ true }}", "sequence": {"variables": {"x": 1}}}}],
    )
    assert forever.outcome == "error"
    assert forever.error == (
        "ScriptError: repeat stopped after 10000 iterations (the limit): "
        "its 'while' condition never ended it"
    )
    steps = forever.trace.steps
    assert len(steps) == MAX_TRACED_STEPS + 1
    assert steps[-1].path == TRUNCATED_PATH
    assert steps[-1].result["after_steps"] == MAX_TRACED_STEPS


async def test_repeat_of_exactly_the_limit_runs(hub: Hub) -> None:
    result = await run(
        hub,
        [
            {"variables": {"n": 0}},
            {
                "repeat": {
                    "until": "{{ n >= 10000 }}",
                    "sequence": {"variables": {"n": "{{ n + 1 }}"}},
                }
            },
        ],
    )
    assert result.outcome == "ran"
    assert result.variables["n"] == MAX_REPEAT_ITERATIONS


# -- condition ------------------------------------------------------------------------------


async def test_false_condition_stops_the_run_quietly(hub: Hub, calls: Calls) -> None:
    hub.states.async_set("slot.lobby_1_a1", "5")
    result = await run(
        hub,
        [
            record(n=1),
            {
                "condition": "template",
                "value_template": "{{ states('slot.lobby_1_a1') | int < 3 }}",
            },
            record(n=2),
        ],
    )
    assert result.outcome == "ran"
    assert result.error is None
    assert [call.data["n"] for call in calls] == [1]
    condition = step(result, "action/1")
    assert condition.result["result"] is False
    assert condition.result["stopped"] == (
        "the condition is false: the rest of this sequence was skipped"
    )
    assert condition.error is None
    assert paths(result) == ["action/0", "action/1"]


async def test_disabled_condition_action_is_skipped(hub: Hub, calls: Calls) -> None:
    result = await run(hub, [{"condition": "{{ false }}", "enabled": False}, record(n=1)])
    assert [call.data["n"] for call in calls] == [1]
    assert step(result, "action/0").result == {"enabled": False}


async def test_true_condition_and_template_shorthand_continue(hub: Hub, calls: Calls) -> None:
    result = await run(hub, [{"condition": "{{ 2 > 1 }}"}, record(n=2)])
    assert [call.data["n"] for call in calls] == [2]
    assert step(result, "action/0").result["result"] is True


async def test_false_condition_in_a_branch_stops_only_that_branch(hub: Hub, calls: Calls) -> None:
    result = await run(
        hub,
        [
            {"if": "{{ true }}", "then": [{"condition": "{{ false }}"}, record(n=1)]},
            {"sequence": [{"condition": "{{ false }}"}, record(n=2)]},
            record(n=3),
        ],
    )
    assert result.outcome == "ran"
    assert [call.data["n"] for call in calls] == [3]


async def test_condition_that_cannot_be_evaluated_is_false(hub: Hub, calls: Calls) -> None:
    hub.states.async_set("sensor.lobby_1_temperature", "unavailable")
    result = await run(
        hub,
        [
            {
                "condition": "numeric_state",
                "entity_id": "sensor.lobby_1_temperature",
                "below": 8,
            },
            record(n=1),
        ],
    )
    assert result.outcome == "ran"
    assert calls == []
    assert step(result, "action/0").result["result"] is False
    assert "why" in step(result, "action/0").result


# -- event, notify --------------------------------------------------------------------------


async def test_event_fires_with_rendered_data_and_the_run_context(hub: Hub, calls: Calls) -> None:
    seen: list[Event] = []
    hub.bus.async_listen("restock_needed", seen.append)
    caller = Context()
    result = await run(
        hub,
        [
            {
                "event": "restock_needed",
                "event_data": {"slot": "{{ slot }}", "left": "{{ 1 + 1 }}"},
            },
            record(n=1),
        ],
        {"slot": "A1"},
        context=caller,
    )
    assert [dict(event.data) for event in seen] == [{"slot": "A1", "left": 2}]
    assert seen[0].context is result.context
    assert seen[0].context.parent_id == caller.id
    assert calls[0].context.id == seen[0].context.id
    assert step(result, "action/0").result == {
        "event": "restock_needed",
        "event_data": {"slot": "A1", "left": 2},
    }


async def test_event_without_a_context_gets_a_fresh_root(hub: Hub) -> None:
    seen: list[Event] = []
    hub.bus.async_listen("ping", seen.append)
    result = await run(hub, [{"event": "ping"}])
    assert seen[0].context is result.context
    assert seen[0].context.parent_id is None
    assert dict(seen[0].data) == {}


async def test_notify_calls_notify_send(hub: Hub) -> None:
    sent: list[ServiceCall] = []
    hub.services.async_register("notify", "send", sent.append)
    result = await run(
        hub,
        [
            {"notify": "Slot {{ slot }} is low", "title": "Stock", "target": ["driver"]},
            {
                "notify": {
                    "message": "Door open on {{ machine }}",
                    "data": {"priority": "{{ 'high' }}"},
                    "severity": "warning",
                }
            },
        ],
        {"slot": "A1", "machine": "lobby_1"},
    )
    assert result.outcome == "ran"
    assert [dict(call.data) for call in sent] == [
        {"message": "Slot A1 is low", "title": "Stock", "target": ["driver"]},
        {"message": "Door open on lobby_1", "data": {"priority": "high"}, "severity": "warning"},
    ]
    assert sent[0].context is result.context
    assert step(result, "action/0").result == {
        "service": "notify.send",
        "data": {"message": "Slot A1 is low", "title": "Stock", "target": ["driver"]},
    }


# -- stop -----------------------------------------------------------------------------------


async def test_stop_ends_the_run(hub: Hub, calls: Calls) -> None:
    result = await run(
        hub,
        [
            {"if": "{{ true }}", "then": [{"stop": "nothing to do for {{ slot }}"}]},
            record(n=1),
        ],
        {"slot": "A1"},
    )
    assert result.outcome == "stopped"
    assert result.stop_reason == "nothing to do for A1"
    assert result.error is None
    assert result.trace.outcome == "stopped"
    assert calls == []
    assert step(result, "action/0/then/0").result == {
        "stop": "nothing to do for A1",
        "error": False,
    }
    assert step(result, "action/0").error is None
    assert step(result, "action/0/then/0").error is None


async def test_stop_with_error(hub: Hub, calls: Calls, caplog: pytest.LogCaptureFixture) -> None:
    result = await run(hub, [{"stop": "price list missing", "error": True}, record(n=1)], name="p")
    assert result.outcome == "error"
    assert result.error == "price list missing"
    assert result.trace.error == "price list missing"
    assert calls == []
    assert "Script 'p' stopped with an error: price list missing" in caplog.text


# -- variables ------------------------------------------------------------------------------


async def test_variables_are_rendered_in_order_and_seen_later(hub: Hub, calls: Calls) -> None:
    given = {"price": 150}
    result = await run(
        hub,
        [
            {"variables": {"euros": "{{ price / 100 }}", "label": "{{ euros }} EUR"}},
            record(label="{{ label }}"),
        ],
        given,
    )
    assert calls[0].data["label"] == "1.5 EUR"
    assert result.variables == {"price": 150, "euros": 1.5, "label": "1.5 EUR"}
    assert given == {"price": 150}  # the caller's mapping is not changed
    assert step(result, "action/0").changed_variables == {"euros": 1.5, "label": "1.5 EUR"}


async def test_variable_scopes(hub: Hub, calls: Calls) -> None:
    result = await run(
        hub,
        [
            {"variables": {"where": "top"}},
            {"if": "{{ true }}", "then": [{"variables": {"where": "then"}}]},
            record(after_if="{{ where }}"),
            {
                "parallel": [
                    [{"variables": {"where": "branch"}}, record(branch="{{ where }}")],
                    [{"delay": 0.02}, record(other="{{ where }}")],
                ]
            },
            record(after_parallel="{{ where }}"),
        ],
    )
    assert [dict(call.data) for call in calls] == [
        {"after_if": "then"},
        {"branch": "branch"},
        {"other": "then"},
        {"after_parallel": "then"},
    ]
    assert result.variables["where"] == "then"


# -- parallel, sequence ---------------------------------------------------------------------


async def test_parallel_branches_run_together(hub: Hub, calls: Calls) -> None:
    started = time.monotonic()
    result = await run(
        hub,
        [
            {
                "parallel": [
                    [{"delay": 0.1}, record(branch=0)],
                    [{"delay": 0.1}, record(branch=1)],
                    record(branch=2),
                ]
            }
        ],
    )
    assert time.monotonic() - started < 0.19  # one after the other would take 0.2 s
    assert result.outcome == "ran"
    assert sorted(call.data["branch"] for call in calls) == [0, 1, 2]
    assert calls[0].data["branch"] == 2
    assert step(result, "action/0").result == {"branches": 3}
    assert set(paths(result)) == {
        "action/0",
        "action/0/parallel/0/sequence/0",
        "action/0/parallel/0/sequence/1",
        "action/0/parallel/1/sequence/0",
        "action/0/parallel/1/sequence/1",
        "action/0/parallel/2/sequence/0",
    }


async def test_parallel_failure_cancels_the_other_branches(hub: Hub, calls: Calls) -> None:
    started = time.monotonic()
    result = await run(
        hub,
        [
            {
                "parallel": [
                    [{"delay": 1}, record(slow=True)],
                    [{"delay": 0.02}, {"service": "test.fail", "data": {"slot": "D4"}}],
                ]
            },
            record(after=True),
        ],
    )
    assert time.monotonic() - started < 0.5
    assert result.outcome == "error"
    assert result.error == "RuntimeError: board jammed: D4"
    assert calls == []
    assert step(result, "action/0/parallel/1/sequence/1").error == "RuntimeError: board jammed: D4"
    assert step(result, "action/0/parallel/0/sequence/0").error == "CancelledError"
    await asyncio.sleep(0)
    assert [task for task in asyncio.all_tasks() if "parallel" in task.get_name()] == []


async def test_stop_in_a_parallel_branch_stops_everything(hub: Hub, calls: Calls) -> None:
    result = await run(
        hub,
        [{"parallel": [[{"delay": 1}, record(slow=True)], {"stop": "enough"}]}, record(n=1)],
    )
    assert result.outcome == "stopped"
    assert result.stop_reason == "enough"
    assert calls == []


async def test_sequence_action_groups_steps(hub: Hub, calls: Calls) -> None:
    result = await run(hub, [{"sequence": [record(n=1), record(n=2)]}])
    assert [call.data["n"] for call in calls] == [1, 2]
    assert paths(result) == ["action/0", "action/0/sequence/0", "action/0/sequence/1"]


# -- modes ----------------------------------------------------------------------------------


async def test_single_mode_drops_a_second_run(
    hub: Hub, calls: Calls, caplog: pytest.LogCaptureFixture
) -> None:
    script = Script(hub, [{"delay": 0.05}, record(n="{{ n }}")], name="low_stock")
    first = asyncio.create_task(script.async_run({"n": 1}))
    await asyncio.sleep(0.01)
    assert await script.async_run({"n": 2}) is None
    result = await first
    assert result is not None and result.outcome == "ran"
    assert [call.data["n"] for call in calls] == [1]
    assert "Script 'low_stock' is already running: the new run was dropped (mode single)" in (
        caplog.text
    )
    again = await script.async_run({"n": 3})  # free again once the first has ended
    assert again is not None and again.outcome == "ran"


async def test_restart_mode_aborts_the_running_run(hub: Hub, calls: Calls) -> None:
    script = Script(hub, [{"delay": 0.05}, record(n="{{ n }}")], name="r", mode="restart")
    first = asyncio.create_task(script.async_run({"n": 1}))
    await asyncio.sleep(0.01)
    second = await script.async_run({"n": 2})
    aborted = await first
    assert aborted is not None and aborted.outcome == "aborted"
    assert aborted.error == "restarted by a new run (mode restart)"
    assert aborted.trace.outcome == "aborted"
    assert step(aborted, "action/0").error == "CancelledError"
    assert second is not None and second.outcome == "ran"
    assert [call.data["n"] for call in calls] == [2]


async def test_restart_mode_many_runs_in_one_tick(hub: Hub, calls: Calls) -> None:
    script = Script(hub, [{"delay": 0.02}, record(n="{{ n }}")], name="r", mode="restart")
    results = await asyncio.gather(*(script.async_run({"n": n}) for n in range(4)))
    assert [result.outcome for result in results if result] == ["aborted"] * 3 + ["ran"]
    assert [call.data["n"] for call in calls] == [3]
    assert script.runs == 0


async def test_queued_mode_runs_in_order_up_to_max(
    hub: Hub, calls: Calls, caplog: pytest.LogCaptureFixture
) -> None:
    script = Script(
        hub,
        [record(start="{{ n }}"), {"delay": 0.02}, record(end="{{ n }}")],
        name="queue",
        mode="queued",
        max_runs=3,
    )
    tasks = [asyncio.create_task(script.async_run({"n": n})) for n in range(3)]
    await asyncio.sleep(0.005)
    assert script.runs == 3
    assert await script.async_run({"n": 99}) is None
    results = await asyncio.gather(*tasks)
    assert [result.outcome for result in results if result] == ["ran"] * 3
    assert [dict(call.data) for call in calls] == [
        {"start": 0},
        {"end": 0},
        {"start": 1},
        {"end": 1},
        {"start": 2},
        {"end": 2},
    ]
    assert "Script 'queue' already has 3 runs: the new run was dropped (mode queued, max 3)" in (
        caplog.text
    )


async def test_queued_runs_are_aborted_by_stop(hub: Hub, calls: Calls) -> None:
    script = Script(hub, [{"delay": 1}, record(n=1)], name="q", mode="queued")
    tasks = [asyncio.create_task(script.async_run({})) for _ in range(3)]
    await asyncio.sleep(0.01)
    await script.async_stop()
    results = await asyncio.gather(*tasks)
    assert [result.outcome for result in results if result] == ["aborted"] * 3
    assert [len(result.trace.steps) for result in results if result] == [1, 0, 0]
    assert calls == []


async def test_parallel_mode_runs_together_up_to_max(
    hub: Hub, calls: Calls, caplog: pytest.LogCaptureFixture
) -> None:
    script = Script(
        hub, [{"delay": 0.1}, record(n="{{ n }}")], name="par", mode="parallel", max_runs=2
    )
    started = time.monotonic()
    tasks = [asyncio.create_task(script.async_run({"n": n})) for n in range(2)]
    await asyncio.sleep(0.01)
    assert script.runs == 2
    assert await script.async_run({"n": 2}) is None
    results = await asyncio.gather(*tasks)
    assert time.monotonic() - started < 0.19  # one after the other would take 0.2 s
    assert [result.outcome for result in results if result] == ["ran", "ran"]
    assert sorted(call.data["n"] for call in calls) == [0, 1]
    assert "(mode parallel, max 2)" in caplog.text


async def test_a_failing_run_does_not_touch_the_others(hub: Hub, calls: Calls) -> None:
    script = Script(
        hub,
        [{"delay": "{{ pause }}"}, {"service": "{{ service }}", "data": {"n": "{{ n }}"}}],
        name="mixed",
        mode="parallel",
    )
    results = await asyncio.gather(
        script.async_run({"pause": 0.01, "service": "test.fail", "n": 1}),
        script.async_run({"pause": 0.03, "service": "test.record", "n": 2}),
    )
    assert [result.outcome for result in results if result] == ["error", "ran"]
    assert [call.data["n"] for call in calls] == [2]


async def test_run_from_an_event_listener_keeps_errors_away_from_the_bus(
    hub: Hub, calls: Calls, caplog: pytest.LogCaptureFixture
) -> None:
    script = Script(hub, [{"service": "test.fail"}], name="listener_script")
    outcomes: list[str] = []

    async def on_event(event: Event) -> None:
        result = await script.async_run({}, event.context)
        outcomes.append(result.outcome if result else "dropped")

    hub.bus.async_listen("go", on_event)
    hub.bus.async_fire("go")
    await hub.async_block_till_done()
    assert outcomes == ["error"]
    assert "Listener" not in caplog.text
    assert "Task" not in caplog.text
    assert "Script 'listener_script' failed at step action/0" in caplog.text


async def test_cancelling_the_caller_aborts_the_run(hub: Hub, calls: Calls) -> None:
    script = Script(hub, [{"delay": 1}, record(n=1)], name="c")
    caller = asyncio.create_task(script.async_run({}))
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await asyncio.sleep(0.01)
    assert not script.is_running
    assert calls == []


async def test_stop_before_a_run_started(hub: Hub) -> None:
    script = Script(hub, [{"delay": 1}], name="early", mode="parallel")
    caller = asyncio.create_task(script.async_run({}))
    await asyncio.sleep(0)  # async_run has created the run's task, which has not run yet
    await script.async_stop()
    result = await caller
    assert result is not None and result.outcome == "aborted"
    assert result.trace.finished is not None
    assert script.runs == 0


# -- traces ---------------------------------------------------------------------------------


async def test_trace_paths_of_a_nested_script(hub: Hub, calls: Calls) -> None:
    result = await run(
        hub,
        [
            record(n=0),
            {"variables": {"x": 1}},
            {"if": "{{ x == 1 }}", "then": [{"delay": 0}, record(n=1)]},
            {"repeat": {"count": 2, "sequence": [record(n="{{ repeat.index }}")]}},
            {"choose": [{"conditions": "{{ x == 2 }}", "sequence": []}], "default": [record(n=9)]},
        ],
        name="nested_paths",
    )
    assert paths(result) == [
        "action/0",
        "action/1",
        "action/2",
        "action/2/if/0",
        "action/2/then/0",
        "action/2/then/1",
        "action/3",
        "action/3/repeat/sequence/0",
        "action/3/repeat/sequence/0",
        "action/4",
        "action/4/choose/0/conditions/0",
        "action/4/default/0",
    ]
    trace = result.trace
    assert trace.item_id == "nested_paths"
    assert trace.outcome == "ran"
    assert trace.error is None
    assert trace.context_id == result.context.id
    assert all(item.finished is not None and item.finished >= item.started for item in trace.steps)
    assert step(result, "action/2/then/0").result == {"delay": 0.0, "done": True}
    assert trace.as_dict()["steps"][4]["path"] == "action/2/then/0"


async def test_a_given_trace_is_continued_and_finished(hub: Hub, calls: Calls) -> None:
    trace = RunTrace(item_id="fridge", trigger={"platform": "event"}, context_id="ctx-1")
    with trace_run(trace), trace_step("condition/0"):
        pass
    script = Script(hub, [record(n=1)], name="automation fridge")
    result = await script.async_run({"trigger": {"platform": "event"}}, Context(), trace=trace)
    assert result is not None and result.trace is trace
    assert [item.path for item in trace.steps] == ["condition/0", "action/0"]
    assert trace.outcome == "ran"
    assert trace.finished is not None
    assert trace.context_id == "ctx-1"
    assert trace.trigger == {"platform": "event"}


async def test_trace_records_initial_variables(hub: Hub) -> None:
    result = await run(hub, [{"variables": {"b": 2}}], {"a": 1})
    assert result.trace.variables == {"a": 1}
    assert result.variables == {"a": 1, "b": 2}
