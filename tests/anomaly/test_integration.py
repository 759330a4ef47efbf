"""The ``anomaly`` integration: its block, set-up and unload, alarms across restarts, and
a simulated fleet's ordinary traffic raising nothing."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO_ROOT
from vendhub.anomaly.failure_rate import FAILURE_CODE
from vendhub.config import ConfigError, load_configuration, validate
from vendhub.core.hub import Hub
from vendhub.plugins.discovery import discover_integrations
from vendhub.plugins.plan import plan_integrations
from vendhub_integrations.anomaly import vendhub_config_schema, vendhub_setup, vendhub_unload

from .conftest import (
    FakeClock,
    anomaly_alarms,
    fire_vend,
    machine_config,
    start_anomaly,
    start_simulator,
)


def problems(raw: Any) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate(vendhub_config_schema(), raw, root_path=("anomaly",))
    return [str(issue) for issue in caught.value.issues]


def test_an_empty_block_turns_every_rule_on_with_defaults() -> None:
    config = validate(vendhub_config_schema(), {}, root_path=("anomaly",))
    assert sorted(config) == [
        "cash",
        "credentials",
        "declines",
        "door",
        "failure_rate",
        "sales_rate",
    ]
    assert all(block["enabled"] for block in config.values())
    assert config["sales_rate"]["min_samples"] == 7
    assert config["sales_rate"]["history"] == timedelta(days=28)
    assert config["failure_rate"]["max_failure_rate"] == 0.3
    assert config["door"]["grace"] == timedelta(minutes=2)
    assert config["declines"]["max_declines"] == 3
    assert config["credentials"]["mqtt_sessions"] is False
    assert validate(vendhub_config_schema(), {"door": None}, root_path=("anomaly",))["door"][
        "enabled"
    ]


def test_bad_settings_say_what_is_wrong() -> None:
    assert problems({"sales_rat": {}}) == [
        "[anomaly] unknown key 'sales_rat', did you mean 'sales_rate'?"
    ]
    assert problems({"sales_rate": {"compare_with": "weekly"}}) == [
        "[anomaly > sales_rate > compare_with] expected one of 'hour_of_day', 'hour_of_week', "
        "'recent_hours', got 'weekly' (str)"
    ]
    assert problems({"sales_rate": {"sensitivity": 12}}) == [
        "[anomaly > sales_rate > sensitivity] expected a number of at most 7, got 12"
    ]
    assert problems({"failure_rate": {"max_failure_rate": 30}}) == [
        "[anomaly > failure_rate > max_failure_rate] a percentage without '%' is a fraction "
        "from 0 to 1, got 30; did you mean '30%'?"
    ]
    assert problems({"failure_rate": {"window_vends": 5}}) == [
        "[anomaly > failure_rate > min_vends] expected at most window_vends (5), got 10: a "
        "window of 5 vends never holds 10"
    ]
    assert problems({"door": {"grace": "soon"}}) == [
        "[anomaly > door > grace] expected a time period such as 30 (seconds), '10s', '5min', "
        "'1h30min', '00:05:00' or {minutes: 5}, got 'soon' (str)"
    ]
    assert problems({"cash": {"tolerance": 0.5}}) == [
        "[anomaly > cash > tolerance] money is written in minor units (cents) as a whole "
        "number, got 0.5; did you mean 50?"
    ]
    assert problems({"declines": {"max_declines": 1, "severity": "panic"}}) == [
        "[anomaly > declines > max_declines] expected 2 or more: one decline is no pattern, "
        "got 1 (int)",
        "[anomaly > declines > severity] expected one of 'info', 'warning', 'critical', got "
        "'panic' (str)",
    ]


def test_errors_in_configuration_yaml_name_the_line(tmp_path: Path) -> None:
    (tmp_path / "configuration.yaml").write_text(
        "alarm:\nanomaly:\n  door:\n    enabled: true\n    grace: later\n", encoding="utf-8"
    )
    plan = plan_integrations(load_configuration(tmp_path), discover_integrations(tmp_path))
    assert "anomaly" in plan.excluded
    assert [(issue.line, issue.message) for issue in plan.issues] == [
        (
            5,
            "expected a time period such as 30 (seconds), '10s', '5min', '1h30min', "
            "'00:05:00' or {minutes: 5}, got 'later' (str)",
        )
    ]


def test_the_demo_configuration_loads_the_anomaly_block(tmp_path: Path) -> None:
    config_dir = tmp_path / "config"
    shutil.copytree(
        REPO_ROOT / "config", config_dir, ignore=shutil.ignore_patterns(".storage", "*.db*")
    )
    plan = plan_integrations(load_configuration(config_dir), discover_integrations(config_dir))
    assert [issue for issue in plan.issues if "anomaly" in str(issue)] == []
    assert "anomaly" in plan.configs
    assert plan.integrations["anomaly"].manifest.dependencies == ("alarm",)


async def test_setup_through_the_hook_and_unload(hub: Hub) -> None:
    assert await vendhub_setup(hub=hub, config=None) is True
    runtime = hub.data["anomaly"]
    assert sorted(runtime.detectors) == [
        "cash",
        "credentials",
        "declines",
        "door",
        "failure_rate",
        "sales_rate",
    ]
    assert hub.services.has_service("anomaly", "service_login")
    assert hub.services.has_service("anomaly", "report_cash_count")
    listeners = sum(hub.bus.async_listeners().values())
    await vendhub_unload(hub=hub)
    assert "anomaly" not in hub.data
    assert sum(hub.bus.async_listeners().values()) < listeners
    assert all(not detector.started for detector in runtime.detectors.values())


async def test_turned_off_rules_are_not_built(hub: Hub, clock: FakeClock) -> None:
    runtime = await start_anomaly(
        hub, clock, {"door": {"enabled": False}, "cash": {"enabled": "off"}}
    )
    assert "door" not in runtime.detectors and "cash" not in runtime.detectors
    result = await hub.services.async_call(
        "anomaly", "report_cash_count", {"machine_id": "lobby_1", "amount": 100}
    )
    assert result == {"status": "not_checked", "detail": "the cash rule is turned off"}


async def test_an_alarm_from_before_a_restart_is_cleared_when_the_condition_passes(
    hub: Hub, clock: FakeClock
) -> None:
    await hub.services.async_call(
        "alarm",
        "raise",
        {"code": FAILURE_CODE, "machine_id": "lobby_1", "message": "raised before a restart"},
    )
    await start_anomaly(hub, clock)
    for _ in range(10):
        fire_vend(hub, "lobby_1", clock.advance(minutes=1))
    await hub.async_block_till_done()
    assert anomaly_alarms(hub) == {}


async def test_a_simulated_fleet_with_faults_raises_only_door_alarms(
    hub: Hub, clock: FakeClock
) -> None:
    """Two simulated days of a demo-like fleet (jams, motor faults, random door openings):
    the rules stay quiet, except that every door opening is one without a login (the
    simulator signs nobody in)."""
    simulator = await start_simulator(
        hub,
        machine_config(
            "lobby_1", sales_per_hour=12, jam_rate=0.01, failure_rate=0.005, door_openings_per_day=1
        ),
        machine_config(
            "gym_drinks",
            sales_per_hour=10,
            jam_rate=0.01,
            failure_rate=0.005,
            door_openings_per_day=2,
            refrigerated=True,
        ),
    )
    runtime = await start_anomaly(hub, clock, {"door": {"grace": 0}})
    for _ in range(2 * 24 * 6):
        await simulator.async_step(600)
        clock.advance(minutes=10)
        if clock.now.minute == 0:
            await runtime.detectors["sales_rate"].async_evaluate(clock.now + timedelta(minutes=2))
    await hub.async_block_till_done()
    codes = {code for _machine, code in anomaly_alarms(hub)}
    assert codes <= {"anomaly_door_no_login"}
    assert sum(machine.vends_failed for machine in simulator.machines.values()) > 0
