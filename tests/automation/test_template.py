"""Templates: hub helpers, filters, the sandbox, limits, located errors and tracking."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import voluptuous as vol

import vendhub.automation.template as template_module
import vendhub.automation.template_helpers as template_helpers
from vendhub.automation.template import (
    MAX_OUTPUT_CHARS,
    RenderInfo,
    Template,
    TemplateError,
    async_track_template_result,
    hub_now,
    render_complex,
    result_as_boolean,
    template_environment,
    template_validator,
)
from vendhub.core.hub import CoreConfig, Hub

MOMENT = datetime(2024, 5, 6, 10, 30, 0, tzinfo=UTC)  # a Monday; 12:30 in Berlin


@pytest.fixture
def set_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[datetime], None]:
    """Make the template clock (``now()``, ``utcnow()``, time conditions) read ``moment``."""

    def set_to(moment: datetime) -> None:
        monkeypatch.setattr(template_helpers, "utcnow", lambda: moment)

    return set_to


@pytest.fixture
async def berlin_hub(tmp_path: Path) -> Any:
    """A hub whose time zone is Europe/Berlin."""
    instance = Hub(tmp_path, CoreConfig(time_zone="Europe/Berlin"))
    yield instance
    await instance.async_stop()


def render(hub: Hub | None, source: str, variables: dict[str, Any] | None = None) -> Any:
    return Template(source, hub, name="test").async_render(variables)


def render_info(hub: Hub, source: str) -> RenderInfo:
    return Template(source, hub, name="test").async_render_with_info()


# ---- states and entity helpers ----------------------------------------------------------


async def test_states_function_returns_the_state_or_unknown(hub: Hub) -> None:
    hub.states.async_set("sensor.lobby_1_temperature", "7.5")
    assert render(hub, "{{ states('sensor.lobby_1_temperature') }}") == 7.5
    assert render(hub, "{{ states('sensor.missing') }}") == "unknown"
    assert render(hub, "{{ 'sensor.lobby_1_temperature' | states }}") == 7.5


async def test_states_domain_proxy_gives_state_and_attributes(hub: Hub) -> None:
    hub.states.async_set("slot.lobby_1_a1", "4", {"product": "Cola", "price": 150})
    assert render(hub, "{{ states.slot.lobby_1_a1.state }}") == 4
    assert render(hub, "{{ states.slot.lobby_1_a1.attributes.product }}") == "Cola"
    assert render(hub, "{{ states.slot.lobby_1_a1.attributes['price'] }}") == 150
    assert render(hub, "{{ states.slot['lobby_1_a1'].state }}") == 4
    assert render(hub, "{{ states.slot.missing is none }}") is True
    assert render(hub, "[{{ states.slot.missing.state }}]") == []


async def test_iterating_a_domain_lists_its_states_sorted(hub: Hub) -> None:
    hub.states.async_set("slot.m_b1", "2")
    hub.states.async_set("slot.m_a1", "5")
    hub.states.async_set("sensor.m_temperature", "4")
    source = "{% for slot in states.slot %}{{ slot.entity_id }}={{ slot.state }};{% endfor %}"
    assert render(hub, source) == "slot.m_a1=5;slot.m_b1=2;"
    assert render(hub, "{{ states.slot | list | length }}") == 2
    assert render(hub, "{{ states | count }}") == 3


async def test_state_attr_is_state_is_state_attr_has_value(hub: Hub) -> None:
    hub.states.async_set("binary_sensor.door", "on", {"opened_by": "driver", "count": 3})
    hub.states.async_set("sensor.unknown_one", "unknown")
    hub.states.async_set("sensor.gone", "unavailable")
    assert render(hub, "{{ state_attr('binary_sensor.door', 'opened_by') }}") == "driver"
    assert render(hub, "{{ state_attr('binary_sensor.door', 'nope') is none }}") is True
    assert render(hub, "{{ state_attr('binary_sensor.missing', 'x') is none }}") is True
    assert render(hub, "{{ is_state('binary_sensor.door', 'on') }}") is True
    assert render(hub, "{{ is_state('binary_sensor.door', 'off') }}") is False
    assert render(hub, "{{ is_state('binary_sensor.door', ['off', 'on']) }}") is True
    assert render(hub, "{{ is_state('binary_sensor.missing', 'on') }}") is False
    assert render(hub, "{{ is_state_attr('binary_sensor.door', 'count', 3) }}") is True
    assert render(hub, "{{ is_state_attr('binary_sensor.door', 'count', 4) }}") is False
    assert render(hub, "{{ has_value('binary_sensor.door') }}") is True
    assert render(hub, "{{ has_value('sensor.unknown_one') }}") is False
    assert render(hub, "{{ has_value('sensor.gone') }}") is False
    assert render(hub, "{{ has_value('sensor.missing') }}") is False
    assert render(hub, "{{ 'binary_sensor.door' is has_value }}") is True
    assert render(hub, "{{ 'binary_sensor.door' | is_state('on') }}") is True


async def test_machine_and_stock(hub: Hub) -> None:
    hub.states.async_set("machine.lobby_1", "online", {"mode": "normal", "firmware": "1.2"})
    hub.states.async_set("slot.lobby_1_a1", "3")
    hub.states.async_set("slot.lobby_1_b2", "unavailable")
    assert render(hub, "{{ machine('lobby_1').state }}") == "online"
    assert render(hub, "{{ machine('lobby_1').online }}") is True
    assert render(hub, "{{ machine('lobby_1').attributes }}") == {
        "mode": "normal",
        "firmware": "1.2",
    }
    assert render(hub, "{{ machine('lobby_1').attributes.mode }}") == "normal"
    assert render(hub, "{{ machine('nowhere') is none }}") is True
    assert render(hub, "{{ stock('lobby_1', 'A1') }}") == 3
    assert render(hub, "{{ stock('lobby_1', 'A1') < 5 }}") is True
    assert render(hub, "{{ stock('lobby_1', 'B2') is none }}") is True
    assert render(hub, "{{ stock('lobby_1', 'C9') is none }}") is True


# ---- time ------------------------------------------------------------------------------------


async def test_now_is_in_the_hub_time_zone(
    berlin_hub: Hub, set_clock: Callable[[datetime], None]
) -> None:
    set_clock(MOMENT)
    assert render(berlin_hub, "{{ now().hour }}") == 12
    assert render(berlin_hub, "{{ now().tzinfo }}") == "Europe/Berlin"
    assert render(berlin_hub, "{{ utcnow().hour }}") == 10
    assert render(berlin_hub, "{{ now() == utcnow() }}") is True
    assert hub_now(berlin_hub) == MOMENT
    assert hub_now(berlin_hub).utcoffset() == timedelta(hours=2)


async def test_timedelta_and_date_arithmetic(
    hub: Hub, set_clock: Callable[[datetime], None]
) -> None:
    set_clock(MOMENT)
    assert render(hub, "{{ (now() - timedelta(hours=3)).hour }}") == 7
    assert render(hub, "{{ timedelta(minutes=90).total_seconds() }}") == 5400.0


async def test_as_timestamp_and_as_datetime(berlin_hub: Hub) -> None:
    hub = berlin_hub
    expected = MOMENT.timestamp()
    assert render(hub, "{{ as_timestamp('2024-05-06T10:30:00+00:00') }}") == expected
    # A naive moment is read in the hub's time zone: 12:30 in Berlin is 10:30 UTC.
    assert render(hub, "{{ as_timestamp('2024-05-06 12:30:00') }}") == expected
    assert render(hub, "{{ as_timestamp(value) }}", {"value": MOMENT}) == expected
    assert render(hub, "{{ '2024-05-06T10:30:00Z' | as_timestamp }}") == expected
    assert render(hub, "{{ as_timestamp('never', 0) }}") == 0
    assert render(hub, f"{{{{ as_datetime({expected:.0f}).isoformat() }}}}") == MOMENT.isoformat()
    assert render(hub, "{{ as_datetime('2024-05-06 12:30').utcoffset().total_seconds() }}") == (
        7200.0
    )
    assert render(hub, "{{ as_datetime('soon', none) is none }}") is True
    with pytest.raises(TemplateError, match="as_timestamp"):
        render(hub, "{{ as_timestamp('never') }}")


async def test_timestamp_filters_and_relative_time(
    berlin_hub: Hub, set_clock: Callable[[datetime], None]
) -> None:
    hub = berlin_hub
    stamp = MOMENT.timestamp()
    assert render(hub, f"{{{{ {stamp:.0f} | timestamp_local }}}}") == "2024-05-06T12:30:00+02:00"
    assert render(hub, f"{{{{ {stamp:.0f} | timestamp_utc }}}}") == "2024-05-06T10:30:00+00:00"
    assert render(hub, "{{ 'x' | timestamp_utc('none') }}") == "none"
    set_clock(MOMENT)
    earlier = MOMENT - timedelta(hours=2, minutes=5)
    assert render(hub, "{{ relative_time(then) }}", {"then": earlier}) == "2 hours"
    assert render(hub, "{{ then | relative_time }}", {"then": MOMENT - timedelta(seconds=1)}) == (
        "1 second"
    )
    later = MOMENT + timedelta(days=1)
    assert render(hub, "{{ relative_time(then) == then }}", {"then": later}) is True


# ---- numbers ---------------------------------------------------------------------------------


async def test_float_and_int_with_and_without_default(hub: Hub) -> None:
    hub.states.async_set("sensor.t", "7.25")
    assert render(hub, "{{ states('sensor.t') | float + 1 }}") == 8.25
    assert render(hub, "{{ float(states('sensor.t')) * 2 }}") == 14.5
    assert render(hub, "{{ 'abc' | float(0) }}") == 0
    assert render(hub, "{{ float('abc', -1) }}") == -1
    assert render(hub, "{{ states('sensor.t') | int }}") == 7
    assert render(hub, "{{ int('12') + 1 }}") == 13
    assert render(hub, "{{ 'ff' | int(base=16) }}") == 255
    assert render(hub, "{{ 'x' | int(5) }}") == 5
    with pytest.raises(TemplateError, match=r"float\(\) got 'abc'"):
        render(hub, "{{ 'abc' | float }}")
    with pytest.raises(TemplateError, match=r"int\(\) got"):
        render(hub, "{{ int('nope') }}")


async def test_round_multiply_min_max(hub: Hub) -> None:
    assert render(hub, "{{ '9.14' | round(1) }}") == 9.1
    assert render(hub, "{{ 9.5 | round }}") == 10
    assert render(hub, "{{ 9.12 | round(1, 'ceil') }}") == 9.2
    assert render(hub, "{{ 9.19 | round(1, 'floor') }}") == 9.1
    assert render(hub, "{{ round(2.567, 2) }}") == 2.57
    assert render(hub, "{{ 'x' | round(1, default=0) }}") == 0
    assert render(hub, "{{ 150 | multiply(0.01) }}") == 1.5
    assert render(hub, "{{ multiply('3', 4) }}") == 12.0
    assert render(hub, "{{ 'x' | multiply(2, 0) }}") == 0
    assert render(hub, "{{ min(3, 1, 2) }}") == 1
    assert render(hub, "{{ max([3, 9, 2]) }}") == 9
    assert render(hub, "{{ [4, 2, 8] | min }}") == 2
    assert render(hub, "{{ [4, 2, 8] | max }}") == 8
    assert render(hub, "{{ '4.5' is is_number }}") is True
    assert render(hub, "{{ is_number('nan') }}") is False


# ---- results -------------------------------------------------------------------------------


async def test_results_are_parsed_as_python_literals(hub: Hub) -> None:
    assert render(hub, "{{ 1 + 1 }}") == 2
    assert render(hub, "{{ 2.5 }}") == 2.5
    assert render(hub, "{{ true }}") is True
    assert render(hub, "{{ [1, 'a'] }}") == [1, "a"]
    assert render(hub, "{{ {'a': 1} }}") == {"a": 1}
    assert render(hub, "{{ none }}") is None
    assert render(hub, "{{ '007' }}") == "007"
    assert render(hub, "{{ '1_000' }}") == "1_000"
    assert render(hub, "  {{ 'padded' }}  ") == "padded"
    template = Template("{{ 1 + 1 }}", hub)
    assert template.async_render(parse_result=False) == "2"


async def test_static_templates(hub: Hub) -> None:
    assert Template("plain text", hub).is_static is True
    assert Template("{{ x }}", hub).is_static is False
    assert Template("{# note #}", hub).is_static is False
    assert Template("42", hub).async_render() == 42
    assert Template("42", hub).async_render(parse_result=False) == "42"
    info = Template("hello", hub).async_render_with_info()
    assert (info.result, info.entities, info.error) == ("hello", frozenset(), None)


async def test_variables_reach_the_template(hub: Hub) -> None:
    variables = {"trigger": {"id": "low", "to_state": {"state": "2"}}, "limit": 3}
    assert render(
        hub, "{{ trigger.id }}-{{ trigger.to_state.state | int < limit }}", variables
    ) == ("low-True")


def test_result_as_boolean() -> None:
    assert [result_as_boolean(value) for value in (True, 1, 0.5, "on", "Yes", "true", "2")] == [
        True
    ] * 7
    assert [result_as_boolean(value) for value in (False, 0, "off", "no", "", None, [1])] == [
        False
    ] * 7


# ---- sandbox ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__ }}",
        "{{ states._hub }}",
        "{{ now.__self__ }}",
        "{{ machine.__globals__ }}",
        "{{ states.sensor._hub }}",
        "{{ cycler.__init__.__globals__ }}",
    ],
)
async def test_sandbox_refuses_unsafe_attributes(hub: Hub, source: str) -> None:
    with pytest.raises(TemplateError, match="not allowed in templates") as caught:
        render(hub, source)
    assert caught.value.line == 1


async def test_sandbox_refuses_changing_lists_and_dicts(hub: Hub) -> None:
    with pytest.raises(TemplateError, match="append"):
        render(hub, "{% set items = [1] %}{{ items.append(2) }}")
    with pytest.raises(TemplateError, match="update"):
        render(hub, "{% set data = {} %}{{ data.update({'a': 1}) }}")


async def test_attributes_of_a_state_cannot_be_changed(hub: Hub) -> None:
    hub.states.async_set("sensor.x", "1", {"a": 1})
    with pytest.raises(TemplateError, match="not allowed"):
        render(hub, "{{ states.sensor.x.attributes.__setitem__('a', 2) }}")
    assert hub.states.get("sensor.x").attributes["a"] == 1


# ---- limits ----------------------------------------------------------------------------------


async def test_a_billion_iterations_end_quickly(hub: Hub) -> None:
    started = time.perf_counter()
    with pytest.raises(TemplateError, match="Range too big"):
        render(hub, "{% for i in range(10**9) %}{% endfor %}")
    assert time.perf_counter() - started < 0.5


async def test_nested_loops_stop_at_the_deadline(hub: Hub) -> None:
    source = (
        "start\n{% for i in range(100000) %}\n{% for j in range(100000) %}{% endfor %}{% endfor %}"
    )
    started = time.perf_counter()
    with pytest.raises(TemplateError, match="longer than 1 s") as caught:
        render(hub, source)
    elapsed = time.perf_counter() - started
    assert 0.9 < elapsed < 2.5
    assert caught.value.template_name == "test"
    assert caught.value.line in (2, 3)


async def test_the_deadline_applies_to_loops_over_any_iterable(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(template_module, "MAX_RENDER_SECONDS", 0.2)
    source = (
        "{% set items = range(100000) | list %}"
        "{% for a in items %}{% for b in items %}{% endfor %}{% endfor %}"
    )
    started = time.perf_counter()
    with pytest.raises(TemplateError, match=r"longer than 0\.2 s"):
        render(hub, source)
    assert time.perf_counter() - started < 1.0


async def test_huge_output_is_refused(hub: Hub) -> None:
    source = "header\n{% for i in range(100000) %}0123456789{% endfor %}"
    started = time.perf_counter()
    with pytest.raises(
        TemplateError, match=f"larger than the limit of {MAX_OUTPUT_CHARS}"
    ) as caught:
        render(hub, source)
    assert time.perf_counter() - started < 0.5
    assert caught.value.line == 2


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ 'x' * 10**9 }}", "repeating a sequence"),
        ("{{ [0] * 10**8 }}", "repeating a sequence"),
        ("{{ 2 ** 10000000 }}", "bits"),
        ("{{ 'a'.center(10**9) }}", "center"),
        ("{{ 'a' | center(10**9) }}", "center"),
        ("{{ '{:>99999999}'.format(1) }}", "format width"),
        ("{{ '%099999999d' % 1 }}", "format width"),
        ("{{ ('x' * 200000).join(['a'] * 1000) }}", "join"),
        ("{{ ('a' * 1000) | replace('a', 'b' * 1000) }}", "replace"),
        (
            "{% set ns = namespace(text='x') %}"
            "{% for i in range(40) %}{% set ns.text = ns.text ~ ns.text %}{% endfor %}",
            "larger than the limit",
        ),
    ],
)
async def test_values_that_would_grow_too_large_are_refused(
    hub: Hub, source: str, message: str
) -> None:
    started = time.perf_counter()
    with pytest.raises(TemplateError, match=message):
        render(hub, source)
    assert time.perf_counter() - started < 0.5


async def test_recursion_is_an_error(hub: Hub) -> None:
    with pytest.raises(TemplateError, match="recursion"):
        render(hub, "{% macro down(n) %}{{ down(n + 1) }}{% endmacro %}{{ down(0) }}")


# ---- located errors --------------------------------------------------------------------------


async def test_syntax_error_names_template_and_line(hub: Hub) -> None:
    source = "Stock report\n{% for slot in states.slot %}\n  {{ slot.state }\n{% endfor %}"
    template = Template(source, hub, name="automation.low_stock action/0")
    with pytest.raises(TemplateError) as caught:
        template.async_render()
    error = caught.value
    assert error.template_name == "automation.low_stock action/0"
    assert error.line == 3
    assert str(error).startswith("template 'automation.low_stock action/0' line 3: ")
    with pytest.raises(TemplateError) as again:
        template.ensure_valid()
    assert again.value.line == 3


async def test_runtime_errors_name_the_line(hub: Hub) -> None:
    source = "line one\nline two {{ 1 }}\n{% set x = 2 %}\nthen {{ 10 / (x - 2) }}\nend"
    with pytest.raises(TemplateError) as caught:
        Template(source, hub, name="divide").async_render()
    assert caught.value.line == 4
    assert "ZeroDivisionError" in caught.value.message
    assert str(caught.value) == "template 'divide' line 4: ZeroDivisionError: division by zero"


async def test_undefined_variable_error_line_inside_a_loop_and_macro(hub: Hub) -> None:
    in_loop = "a\n{% for i in [1, 2] %}\n{{ i }}\n{{ missing.attribute }}\n{% endfor %}"
    with pytest.raises(TemplateError, match="'missing' is undefined") as caught:
        render(hub, in_loop)
    assert caught.value.line == 4
    in_macro = "{% macro show(x) %}\n{{ x.a.b }}\n{% endmacro %}\n\n{{ show({}) }}"
    with pytest.raises(TemplateError) as macro_error:
        render(hub, in_macro)
    assert macro_error.value.line == 2


async def test_render_with_info_returns_the_error(hub: Hub) -> None:
    hub.states.async_set("sensor.x", "abc")
    info = render_info(hub, "{{ states('sensor.x') }}\n{{ states('sensor.x') | float }}")
    assert info.result is None
    assert info.error is not None
    assert info.error.line == 2
    assert info.entities == frozenset({"sensor.x"})


# ---- what a render read ---------------------------------------------------------------------


async def test_render_info_lists_entities_domains_all_states(hub: Hub) -> None:
    hub.states.async_set("sensor.a", "1")
    info = render_info(
        hub,
        "{{ states('sensor.a') }}{{ states.sensor.b }}{{ state_attr('slot.c', 'x') }}"
        "{{ is_state('binary_sensor.d', 'on') }}{{ has_value('sensor.e') }}"
        "{{ machine('m1') }}{{ stock('m1', 'A1') }}{{ is_state_attr('sensor.f', 'a', 1) }}",
    )
    assert info.entities == frozenset(
        {
            "sensor.a",
            "sensor.b",
            "slot.c",
            "binary_sensor.d",
            "sensor.e",
            "machine.m1",
            "slot.m1_a1",
            "sensor.f",
        }
    )
    assert info.domains == frozenset()
    assert info.all_states is False
    domain_info = render_info(hub, "{% for s in states.slot %}{{ s.state }}{% endfor %}")
    assert (domain_info.domains, domain_info.all_states) == (frozenset({"slot"}), False)
    all_info = render_info(hub, "{{ states | list | length }}")
    assert all_info.all_states is True


async def test_compiled_templates_are_cached_per_hub(hub: Hub) -> None:
    environment = template_environment(hub)
    first = environment.compile_cached("{{ 1 }}")
    assert environment.compile_cached("{{ 1 }}") is first
    assert template_environment(hub) is environment
    assert template_environment(None) is not environment


# ---- render_complex and the validator -------------------------------------------------------


async def test_render_complex_renders_nested_templates(hub: Hub) -> None:
    hub.states.async_set("slot.m_a1", "2")
    data = {
        "message": "Slot A1 has {{ states('slot.m_a1') }} left",
        "count": "{{ stock('m', 'a1') }}",
        "plain": "no template",
        "list": ["{{ 1 + 1 }}", 3, {"deep": "{{ name }}"}],
        "template": Template("{{ name | upper }}"),
        "{{ name }}_key": True,
    }
    rendered = render_complex(data, {"name": "driver"}, hub)
    assert rendered == {
        "message": "Slot A1 has 2 left",
        "count": 2,
        "plain": "no template",
        "list": [2, 3, {"deep": "driver"}],
        "template": "DRIVER",
        "driver_key": True,
    }


def test_template_validator() -> None:
    template = template_validator("{{ 1 }}")
    assert isinstance(template, Template)
    assert template.hub is None
    assert template_validator(template) is template
    assert template_validator(5).source == "5"
    with pytest.raises(vol.Invalid, match="invalid template on line 3: Expected an expression"):
        template_validator("ok\n{{ 1 }}}\n{% if %}")
    with pytest.raises(vol.Invalid, match="expected a template"):
        template_validator(["{{ 1 }}"])
    with pytest.raises(vol.Invalid, match="expected a template"):
        template_validator(True)


async def test_attach_binds_a_validated_template(hub: Hub) -> None:
    hub.states.async_set("sensor.x", "5")
    template = template_validator("{{ states('sensor.x') }}")
    assert template.async_render() == "unknown"
    assert template.attach(hub) is template
    assert template.async_render() == 5


# ---- tracking --------------------------------------------------------------------------------


async def test_tracking_renders_again_only_when_a_read_entity_changes(hub: Hub) -> None:
    hub.states.async_set("slot.m_a1", "5")
    hub.states.async_set("sensor.other", "1")
    calls: list[tuple[Any, Any]] = []
    template = Template("{{ stock('m', 'A1') < 3 }}", hub, name="low stock")
    tracker = async_track_template_result(hub, template, lambda new, old: calls.append((new, old)))
    assert (tracker.renders, tracker.result, calls) == (1, False, [])

    hub.states.async_set("sensor.other", "2")
    hub.states.async_set("machine.m", "online")
    assert tracker.renders == 1

    hub.states.async_set("slot.m_a1", "4")  # read again, same result: no action
    assert (tracker.renders, calls) == (2, [])
    hub.states.async_set("slot.m_a1", "2")
    assert (tracker.renders, calls) == (3, [(True, False)])
    hub.states.async_set("slot.m_a1", "2", {"price": 150})  # attribute change re-renders
    assert (tracker.renders, calls) == (4, [(True, False)])
    hub.states.async_set("slot.m_a1", "9")
    assert calls == [(True, False), (False, True)]

    tracker()
    hub.states.async_set("slot.m_a1", "1")
    assert tracker.renders == 5
    assert calls == [(True, False), (False, True)]


async def test_tracking_follows_the_entities_of_the_last_render(hub: Hub) -> None:
    hub.states.async_set("input.mode", "a")
    hub.states.async_set("sensor.a", "1")
    hub.states.async_set("sensor.b", "10")
    source = (
        "{% if is_state('input.mode', 'a') %}{{ states('sensor.a') }}"
        "{% else %}{{ states('sensor.b') }}{% endif %}"
    )
    calls: list[tuple[Any, Any]] = []
    tracker = async_track_template_result(
        hub, Template(source, hub), lambda new, old: calls.append((new, old))
    )
    hub.states.async_set("sensor.b", "11")
    assert tracker.renders == 1
    hub.states.async_set("input.mode", "b")
    assert (tracker.renders, calls) == (2, [(11, 1)])
    hub.states.async_set("sensor.a", "2")  # no longer read
    assert tracker.renders == 2
    hub.states.async_set("sensor.b", "12")
    assert (tracker.renders, calls[-1]) == (3, (12, 11))
    tracker()


async def test_tracking_a_domain_and_all_states(hub: Hub) -> None:
    hub.states.async_set("slot.m_a1", "1")
    domain_calls: list[Any] = []
    all_calls: list[Any] = []
    by_domain = async_track_template_result(
        hub,
        Template("{{ states.slot | map(attribute='state') | map('int') | sum }}", hub),
        lambda new, old: domain_calls.append(new),
    )
    everything = async_track_template_result(
        hub, Template("{{ states | count }}", hub), lambda new, old: all_calls.append(new)
    )
    hub.states.async_set("sensor.elsewhere", "1")
    assert (by_domain.renders, domain_calls) == (1, [])
    assert (everything.renders, all_calls) == (2, [2])
    hub.states.async_set("slot.m_b1", "4")  # a new entity of the domain
    assert domain_calls == [5]
    assert all_calls == [2, 3]
    by_domain()
    everything()
    hub.states.async_set("slot.m_c1", "4")
    assert (domain_calls, all_calls) == ([5], [2, 3])


async def test_tracking_reports_errors_and_keeps_the_last_result(hub: Hub) -> None:
    hub.states.async_set("sensor.t", "5")
    errors: list[TemplateError] = []
    calls: list[tuple[Any, Any]] = []
    tracker = async_track_template_result(
        hub,
        Template("{{ states('sensor.t') | float > 8 }}", hub, name="fridge warm"),
        lambda new, old: calls.append((new, old)),
        on_error=errors.append,
    )
    hub.states.async_set("sensor.t", "broken")
    assert len(errors) == 1
    assert errors[0].template_name == "fridge warm"
    assert errors[0].line == 1
    assert tracker.result is False
    hub.states.async_set("sensor.t", "9")
    assert calls == [(True, False)]
    tracker()


async def test_tracking_with_variables_and_a_coroutine_action(hub: Hub) -> None:
    hub.states.async_set("slot.m_a1", "5")
    seen: asyncio.Queue[tuple[Any, Any]] = asyncio.Queue()

    async def action(new: Any, old: Any) -> None:
        await seen.put((new, old))

    tracker = async_track_template_result(
        hub, Template("{{ stock(machine_id, 'A1') <= par }}"), action, {"machine_id": "m", "par": 3}
    )
    hub.states.async_set("slot.m_a1", "3")
    assert await asyncio.wait_for(seen.get(), 1) == (True, False)
    tracker()
