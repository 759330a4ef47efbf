"""The ``simulator:`` configuration block: defaults, and errors that say what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import voluptuous as vol

from vendhub.config import ConfigError, load_configuration, validate
from vendhub.plugins.discovery import discover_integrations
from vendhub.plugins.plan import plan_integrations
from vendhub_integrations.simulator import vendhub_config_schema

from .conftest import machine_config


def check(raw: dict[str, Any]) -> dict[str, Any]:
    return validate(vendhub_config_schema(), raw, root_path=("simulator",))


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        check(raw)
    return [str(issue) for issue in caught.value.issues]


def test_defaults() -> None:
    config = check(
        {
            "machines": [
                {
                    "id": "lobby_1",
                    "slots": {"A1": {"product": "Cola", "price": 150, "capacity": 10}},
                }
            ]
        }
    )
    assert config["speed"] == 1.0
    assert config["tick"] == 1.0
    assert config["telemetry_interval"] == 60.0
    assert "seed" not in config
    machine = config["machines"][0]
    assert machine["model"] == "VendHub Simulator"
    assert machine["refrigerated"] is False
    assert machine["target_temperature"] == 4.0
    assert machine["ambient_temperature"] == 22.0
    assert machine["sales_per_hour"] == 6.0
    assert machine["slots"]["A1"] == {
        "product": "Cola",
        "price": 150,
        "capacity": 10,
        "stock": 10,  # a full slot unless told otherwise
        "par": 2,  # a quarter of the capacity unless told otherwise
    }


def test_values_are_converted() -> None:
    config = check(
        {
            "speed": "60",
            "tick": "500ms",
            "seed": "7",
            "machines": [machine_config(refrigerated="yes", jam_rate="2%")],
        }
    )
    assert (config["speed"], config["tick"], config["seed"]) == (60.0, 0.5, 7)
    assert config["machines"][0]["refrigerated"] is True
    assert config["machines"][0]["jam_rate"] == pytest.approx(0.02)


def test_duplicate_machine_id_is_an_error_naming_the_id() -> None:
    found = problems({"machines": [machine_config("lobby_1"), machine_config("lobby_1")]})
    assert found == [
        "[simulator > machines > 1 > id] duplicate machine id: got 'lobby_1' a second time; "
        "every machine needs its own id"
    ]


def test_stock_over_capacity_is_an_error_naming_the_slot() -> None:
    slots = {"B4": {"product": "Cola", "price": 150, "capacity": 10, "stock": 12}}
    found = problems({"machines": [machine_config(slots=slots)]})
    assert found == [
        "[simulator > machines > 0 > slots > B4 > stock] slot B4: stock may be at most its "
        "capacity 10, got 12"
    ]


def test_daily_curve_needs_exactly_24_values() -> None:
    found = problems({"machines": [machine_config(daily_curve=[1] * 23)]})
    assert len(found) == 1
    assert "simulator > machines > 0 > daily_curve" in found[0]
    assert "expected exactly 24 numbers (one per hour, 0 to 23), got 23" in found[0]
    curve = [1] * 24
    curve[5] = -1
    found = problems({"machines": [machine_config(daily_curve=curve)]})
    assert "hour 5: expected a number 0 or more, got -1" in found[0]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({}, "at least one machine is needed"),
        ({"machines": []}, "at least one machine is needed"),
        ({"machines": [machine_config(id="Lobby 1")]}, "did you mean 'lobby_1'?"),
        ({"machines": [machine_config(jam_rate=1.5)]}, "percentage"),
        ({"machines": [machine_config(jam_rate=0.6, failure_rate=0.6)]}, "together may be"),
        (
            {
                "machines": [
                    machine_config(slots={"A1": {"product": "x", "price": 1.5, "capacity": 1}})
                ]
            },
            "minor units",
        ),
        (
            {
                "machines": [
                    machine_config(slots={"A1": {"product": "x", "price": 1, "capacity": 0}})
                ]
            },
            "a slot capacity from 1 to 10,000",
        ),
        ({"machines": [machine_config(slots={})]}, "at least one slot"),
        (
            {
                "machines": [
                    machine_config(
                        slots={
                            "a1": {"product": "x", "price": 1, "capacity": 1},
                            "A1": {"product": "y", "price": 1, "capacity": 1},
                        }
                    )
                ]
            },
            "differ only in case",
        ),
        ({"machines": [machine_config()], "speed": 0}, "more than 0"),
        ({"fleet": {"count": 0}}, "positive integer"),
        (
            {"machines": [machine_config("sim_002")], "fleet": {"count": 3}},
            "the fleet generates 'sim_002'",
        ),
        ({"machines": [machine_config(colour="red")]}, "unknown key 'colour'"),
    ],
)
def test_config_errors(raw: dict[str, Any], expected: str) -> None:
    found = problems(raw)
    assert any(expected in problem for problem in found), found


def test_errors_point_at_the_line_in_configuration_yaml(tmp_path: Path) -> None:
    (tmp_path / "configuration.yaml").write_text(
        "vendhub:\n"
        "  name: Test\n"
        "simulator:\n"
        "  machines:\n"
        "    - id: lobby_1\n"
        "      slots:\n"
        "        A1: {product: Cola, price: 150, capacity: 10}\n"
        "    - id: lobby_1\n"
        "      slots:\n"
        "        A1: {product: Cola, price: 150, capacity: 10, stock: 11}\n",
        encoding="utf-8",
    )
    config = load_configuration(tmp_path)
    plan = plan_integrations(config, discover_integrations(tmp_path))
    assert "simulator" in plan.excluded
    issues = {(issue.line, issue.message) for issue in plan.issues}
    assert (10, "slot A1: stock may be at most its capacity 10, got 11") in issues
    assert "simulator" not in plan.configs

    (tmp_path / "configuration.yaml").write_text(
        "simulator:\n  fleet: {count: 3, slots_per_machine: 4}\n", encoding="utf-8"
    )
    plan = plan_integrations(load_configuration(tmp_path), discover_integrations(tmp_path))
    assert plan.issues == []
    assert plan.configs["simulator"]["fleet"]["count"] == 3
    assert plan.integrations["simulator"].manifest.iot_class == "local_push"


def test_the_schema_is_a_voluptuous_schema() -> None:
    assert isinstance(vendhub_config_schema(), vol.Schema)


def test_par_above_capacity_is_refused() -> None:
    from vendhub_integrations.simulator import vendhub_config_schema

    with pytest.raises(vol.Invalid, match="par may be at most its capacity 4, got 5"):
        vendhub_config_schema()(
            {
                "machines": [
                    {
                        "id": "m",
                        "slots": {"A1": {"product": "Cola", "price": 100, "capacity": 4, "par": 5}},
                    }
                ]
            }
        )
