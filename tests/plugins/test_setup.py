"""Planning and setting up integrations: ordering, concurrency, isolation, config errors."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from tests.plugins.conftest import recording, write_config, write_integration
from vendhub.bootstrap import async_start_hub, prepare
from vendhub.core.hub import Hub


async def _start(config_dir: Path, setup_timeout: float | None = None) -> tuple[Hub, object]:
    prepared = await asyncio.to_thread(prepare, config_dir)
    return await async_start_hub(prepared, setup_timeout=setup_timeout)


async def test_dependencies_set_up_first_independent_ones_concurrently(tmp_path: Path) -> None:
    write_integration(tmp_path, "base", recording("base", 0.2))
    write_integration(tmp_path, "other", recording("other", 0.2))
    write_integration(tmp_path, "top", recording("top"), dependencies=["base"])
    write_config(tmp_path, "top:\nother:\n")

    hub, report = await _start(tmp_path)
    order = hub.data["order"]
    await hub.async_stop()

    assert sorted(report.loaded) == ["base", "other", "top"]
    assert order.index("end base") < order.index("start top")
    # base and other ran side by side: both started before either ended. (The order says
    # it; a bound on the elapsed time said it too, and failed on a loaded machine.)
    assert order.index("start base") < order.index("end other")
    assert order.index("start other") < order.index("end base")


async def test_after_dependencies_order_only_when_loaded(tmp_path: Path) -> None:
    write_integration(tmp_path, "early", recording("early", 0.05))
    write_integration(tmp_path, "late", recording("late"), after_dependencies=["early", "absent"])
    write_config(tmp_path, "late:\nearly:\n")
    hub, report = await _start(tmp_path)
    order = hub.data["order"]
    await hub.async_stop()
    assert order.index("end early") < order.index("start late")
    assert sorted(report.loaded) == ["early", "late"]


async def test_unconfigured_integration_is_not_imported(tmp_path: Path) -> None:
    write_integration(tmp_path, "idle", "raise RuntimeError('must not be imported')\n")
    write_integration(tmp_path, "used", recording("used"))
    write_config(tmp_path, "used:\n")
    prepared = prepare(tmp_path)
    assert prepared.issues == []
    assert prepared.plan.order == ["used"]


async def test_failing_setup_is_isolated_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_integration(
        tmp_path,
        "broken",
        """
        from vendhub.plugins import hookimpl

        @hookimpl
        def vendhub_setup(hub, config):
            raise ConnectionError("payment gateway unreachable")
        """,
    )
    write_integration(tmp_path, "needs_broken", recording("needs_broken"), dependencies=["broken"])
    write_integration(tmp_path, "fine", recording("fine"))
    write_config(tmp_path, "broken:\nneeds_broken:\nfine:\n")

    with caplog.at_level(logging.ERROR):
        hub, report = await _start(tmp_path)
    assert hub.is_running
    await hub.async_stop()

    assert report.loaded == ["fine"]
    assert "ConnectionError: payment gateway unreachable" in report.failed["broken"]
    assert "dependency 'broken' failed" in report.failed["needs_broken"]
    assert "Integration broken failed" in caplog.text
    assert "payment gateway unreachable" in caplog.text


async def test_setup_timeout_and_false_result_are_failures(tmp_path: Path) -> None:
    write_integration(
        tmp_path,
        "slow",
        """
        import asyncio
        from vendhub.plugins import hookimpl

        @hookimpl
        def vendhub_setup(hub):
            return asyncio.sleep(30)
        """,
    )
    write_integration(
        tmp_path,
        "refuses",
        """
        from vendhub.plugins import hookimpl

        @hookimpl
        def vendhub_setup():
            return False
        """,
    )
    write_integration(tmp_path, "fine", recording("fine"))
    write_config(tmp_path, "slow:\nrefuses:\nfine:\n")
    hub, report = await _start(tmp_path, setup_timeout=0.2)
    await hub.async_stop()
    assert report.loaded == ["fine"]
    assert report.failed["slow"] == "setup did not finish within 0.2 s"
    assert "returned False" in report.failed["refuses"]


async def test_import_error_is_reported_and_the_rest_loads(tmp_path: Path) -> None:
    write_integration(tmp_path, "typo", "import does_not_exist_anywhere\n")
    write_integration(tmp_path, "fine", recording("fine"))
    write_config(tmp_path, "typo:\nfine:\n")
    prepared = prepare(tmp_path)
    assert prepared.plan.order == ["fine"]
    [issue] = prepared.issues
    assert issue.file is not None and issue.file.name == "configuration.yaml"
    assert issue.line == 1
    assert "ModuleNotFoundError" in issue.message and "does_not_exist_anywhere" in issue.message


def test_unknown_integration_names_file_line_and_suggestion(tmp_path: Path) -> None:
    write_config(tmp_path, "vendhub:\n  name: Test\nsimulater:\n  machines: []\n")
    prepared = prepare(tmp_path)
    [issue] = prepared.issues
    assert (issue.file.name, issue.line) == ("configuration.yaml", 3)
    assert "did you mean 'simulator'" in issue.message
    assert str(issue).startswith("configuration.yaml:3: [simulater]")


def test_missing_dependency_and_cycle_are_named(tmp_path: Path) -> None:
    write_integration(tmp_path, "lonely", "", dependencies=["nowhere"])
    write_integration(tmp_path, "chicken", "", dependencies=["egg"])
    write_integration(tmp_path, "egg", "", dependencies=["chicken"])
    write_config(tmp_path, "lonely:\nchicken:\n")
    prepared = prepare(tmp_path)
    messages = "\n".join(str(issue) for issue in prepared.issues)
    assert "'lonely' depends on 'nowhere', which is not installed" in messages
    assert "dependency cycle:" in messages
    assert "chicken" in messages and "egg" in messages
    assert prepared.plan.order == []


def test_missing_python_requirement_is_named(tmp_path: Path) -> None:
    write_integration(tmp_path, "needy", "", requirements=["surely-not-installed-pkg>=1.0"])
    write_integration(tmp_path, "old", "", requirements=["pluggy<0.1"])
    write_config(tmp_path, "needy:\nold:\n")
    prepared = prepare(tmp_path)
    messages = "\n".join(str(issue) for issue in prepared.issues)
    assert "surely-not-installed-pkg>=1.0 (not installed)" in messages
    assert "pluggy<0.1 (installed: " in messages


SCHEMA_INTEGRATION = """
import voluptuous as vol
from vendhub.plugins import hookimpl

@hookimpl
def vendhub_config_schema():
    return vol.Schema({vol.Required("port"): int, vol.Optional("name", default="x"): str})

@hookimpl
def vendhub_setup(hub, config):
    hub.data["configured"] = config
"""


async def test_integration_block_is_validated_with_its_schema(tmp_path: Path) -> None:
    write_integration(tmp_path, "board", SCHEMA_INTEGRATION)
    write_config(tmp_path, "board:\n  port: 8080\n")
    hub, _ = await _start(tmp_path)
    assert hub.data["configured"] == {"port": 8080, "name": "x"}
    await hub.async_stop()

    write_config(tmp_path, "board:\n  port: eighty\n  nmae: y\n")
    prepared = prepare(tmp_path)
    assert prepared.plan.order == []
    text = "\n".join(str(issue) for issue in prepared.issues)
    assert "configuration.yaml:2: [board > port]" in text
    assert "configuration.yaml:3: [board] unknown key 'nmae', did you mean 'name'?" in text


async def test_unload_on_stop_calls_hook_and_removes_services(tmp_path: Path) -> None:
    write_integration(
        tmp_path,
        "svc",
        """
        from vendhub.plugins import hookimpl

        @hookimpl
        def vendhub_setup(hub):
            hub.services.async_register("svc", "ping", lambda call: "pong")

        @hookimpl
        def vendhub_unload(hub):
            hub.data["unloaded"] = True
        """,
    )
    write_config(tmp_path, "svc:\n")
    hub, _ = await _start(tmp_path)
    assert await hub.services.async_call("svc", "ping") == "pong"
    await hub.async_stop()
    assert hub.data["unloaded"] is True
    assert not hub.services.has_service("svc", "ping")


async def test_setup_early_integrations_come_first(tmp_path: Path) -> None:
    write_integration(tmp_path, "helper", recording("helper", 0.05))
    write_integration(
        tmp_path, "store", recording("store", 0.05), setup_early=True, dependencies=["helper"]
    )
    write_integration(tmp_path, "producer", recording("producer"))
    write_config(tmp_path, "producer:\nstore:\n")
    hub, report = await _start(tmp_path)
    order = hub.data["order"]
    await hub.async_stop()
    assert sorted(report.loaded) == ["helper", "producer", "store"]
    # What the early integration needs comes before it; everything else after it.
    assert order.index("end helper") < order.index("start store")
    assert order.index("end store") < order.index("start producer")
