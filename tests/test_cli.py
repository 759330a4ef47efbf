"""The vendhub command as an operator uses it: check-config, run, SIGTERM, plugins."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.plugins.conftest import write_integration

VENDHUB = [sys.executable, "-m", "vendhub"]


def vendhub(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*VENDHUB, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


def test_version() -> None:
    result = vendhub("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("vendhub 0.")


def test_shipped_config_is_valid() -> None:
    result = vendhub("check-config", "--config", str(REPO_ROOT / "config"))
    assert result.returncode == 0, result.stderr
    assert "is valid" in result.stdout and "simulator" in result.stdout


def test_missing_config_folder_is_explained(tmp_path: Path) -> None:
    result = vendhub("check-config", "--config", str(tmp_path / "nowhere"))
    assert result.returncode == 1
    assert "nowhere" in result.stderr
    assert "--config" in result.stderr


BASE = """\
vendhub:
  name: Test fleet
  currency: EUR
simulator:
  machines:
    - id: lobby_1
      name: Lobby 1
      slots:
        A1:
          product: Cola
          price: 150
          capacity: 10
"""


@pytest.mark.parametrize(
    ("replace", "by", "extra_files", "expected"),
    [
        pytest.param(
            "  currency: EUR",
            "  currncy: EUR",
            {},
            [
                "configuration.yaml:3:",
                "[vendhub]",
                "unknown key 'currncy'",
                "did you mean 'currency'",
            ],
            id="misspelt-key",
        ),
        pytest.param(
            "          price: 150",
            "          pirce: 150",
            {},
            ["configuration.yaml:11:", "simulator > machines > 0 > slots > A1", "'pirce'"],
            id="misspelt-nested-key",
        ),
        pytest.param(
            "          capacity: 10",
            "          capacity: ten",
            {},
            ["configuration.yaml:12:", "simulator > machines > 0 > slots > A1 > capacity", "'ten'"],
            id="wrong-type",
        ),
        pytest.param(
            "  name: Test fleet",
            "  name: !secret fleet_name",
            {"secrets.yaml": "other: 1\n"},
            ["configuration.yaml:2:", "fleet_name"],
            id="missing-secret",
        ),
        pytest.param(
            "  machines:\n",
            "  machines: !include machines.yaml\n",
            {},
            ["configuration.yaml:5:", "machines.yaml"],
            id="missing-include",
        ),
    ],
)
def test_config_errors_name_file_line_and_key_path(
    tmp_path: Path, replace: str, by: str, extra_files: dict[str, str], expected: list[str]
) -> None:
    text = BASE.replace(replace, by)
    if "machines.yaml" in by:  # drop the inline list that the include replaces
        text = text.split("  machines: !include machines.yaml\n")[0] + by
    assert text != BASE
    (tmp_path / "configuration.yaml").write_text(text)
    for name, content in extra_files.items():
        (tmp_path / name).write_text(content)

    result = vendhub("check-config", "--config", str(tmp_path))

    assert result.returncode == 1, result.stdout
    for fragment in expected:
        assert fragment in result.stderr, result.stderr


def test_secret_values_never_appear_in_errors(tmp_path: Path) -> None:
    (tmp_path / "secrets.yaml").write_text("fleet_currency: hunter2-not-a-currency\n")
    (tmp_path / "configuration.yaml").write_text(
        BASE.replace("  currency: EUR", "  currency: !secret fleet_currency")
    )
    result = vendhub("check-config", "--config", str(tmp_path))
    assert result.returncode == 1
    assert "fleet_currency" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout


class RunningHub:
    """``vendhub run`` in a subprocess, its log collected in a file."""

    def __init__(self, config_dir: Path, log_file: Path, env: dict[str, str] | None = None):
        self.log_file = log_file
        self._log = log_file.open("w")
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [*VENDHUB, "run", "--config", str(config_dir)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            # Any free port for the demo's HTTP API, so a hub running on 8700 is no matter.
            env={"VENDHUB_HTTP_PORT": "0", **(env if env is not None else os.environ)},
        )

    def log(self) -> str:
        return self.log_file.read_text()

    def wait_for(self, text: str, timeout: float = 15) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return time.monotonic() - self.started
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not logged within {timeout} s:\n{self.log()}")

    def stop(self, signum: int = signal.SIGTERM) -> tuple[int, float]:
        sent = time.monotonic()
        self.process.send_signal(signum)
        code = self.process.wait(timeout=10)
        self._log.close()
        return code, time.monotonic() - sent

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()


@pytest.fixture
def demo_config(tmp_path: Path) -> Path:
    """A copy of the shipped configuration, so the test's registries land in tmp_path."""
    config_dir = tmp_path / "config"
    shutil.copytree(
        REPO_ROOT / "config", config_dir, ignore=shutil.ignore_patterns(".storage", "*.db*")
    )
    return config_dir


@pytest.fixture
def running(demo_config: Path, tmp_path: Path) -> Iterator[list[RunningHub]]:
    hubs: list[RunningHub] = []
    yield hubs
    for hub in hubs:
        hub.kill()


def test_run_demo_then_sigterm_stops_within_5_s_and_saves_registries(
    demo_config: Path, tmp_path: Path, running: list[RunningHub]
) -> None:
    hub = RunningHub(demo_config, tmp_path / "hub.log")
    running.append(hub)
    seconds_to_running = hub.wait_for("is running")
    assert seconds_to_running < 15
    time.sleep(1.0)  # let the demo fleet sell something

    code, seconds_to_stop = hub.stop(signal.SIGTERM)

    log = hub.log()
    assert code == 0, log
    assert seconds_to_stop < 5, log
    assert "Received SIGTERM; stopping" in log
    assert "Hub stopped in" in log
    assert "Traceback" not in log
    entities = json.loads((demo_config / ".storage" / "core.entity_registry").read_text())
    devices = json.loads((demo_config / ".storage" / "core.device_registry").read_text())
    entity_ids = {entry["entity_id"] for entry in entities["data"]["entities"]}
    assert any(entity_id.startswith("slot.") for entity_id in entity_ids)
    assert any(entity_id.startswith("machine.") for entity_id in entity_ids)
    assert len(devices["data"]["devices"]) >= 1


def test_sigint_also_stops_gracefully(
    demo_config: Path, tmp_path: Path, running: list[RunningHub]
) -> None:
    hub = RunningHub(demo_config, tmp_path / "hub.log")
    running.append(hub)
    hub.wait_for("is running")
    code, seconds = hub.stop(signal.SIGINT)
    assert code == 0
    assert seconds < 5
    assert "Received SIGINT; stopping" in hub.log()


def test_failing_custom_integration_leaves_the_rest_running(
    demo_config: Path, tmp_path: Path, running: list[RunningHub]
) -> None:
    write_integration(
        demo_config,
        "flaky_reader",
        """
        from vendhub.plugins import hookimpl

        @hookimpl
        def vendhub_setup(hub, config):
            raise OSError("serial port /dev/ttyUSB7 not found")
        """,
    )
    write_integration(
        demo_config,
        "greeter",
        """
        from vendhub.plugins import hookimpl

        @hookimpl
        def vendhub_setup(hub, config):
            hub.states.async_set("sensor.greeting", "hello")
        """,
    )
    config_file = demo_config / "configuration.yaml"
    config_file.write_text(config_file.read_text() + "\nflaky_reader:\ngreeter:\n")

    hub = RunningHub(demo_config, tmp_path / "hub.log")
    running.append(hub)
    hub.wait_for("is running")
    code, _ = hub.stop()
    log = hub.log()
    assert code == 0
    assert "Integration flaky_reader failed" in log
    assert "OSError: serial port /dev/ttyUSB7 not found" in log
    assert "1 failed (flaky_reader:" in log
    assert "Set up greeter" in log and "Set up simulator" in log


def test_installed_package_with_entry_point_loads(
    demo_config: Path, tmp_path: Path, running: list[RunningHub]
) -> None:
    """A real ``pip install`` of a package declaring a ``vendhub.integrations`` entry point."""
    source = tmp_path / "acme-src"
    package = source / "acme_vendhub"
    package.mkdir(parents=True)
    (source / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [build-system]
            requires = ["setuptools"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "acme-vendhub"
            version = "2.0.0"

            [project.entry-points."vendhub.integrations"]
            acme = "acme_vendhub"

            [tool.setuptools]
            packages = ["acme_vendhub"]

            [tool.setuptools.package-data]
            acme_vendhub = ["manifest.json"]
            """
        )
    )
    (package / "manifest.json").write_text(
        json.dumps(
            {"domain": "acme", "name": "Acme", "version": "2.0.0", "iot_class": "cloud_push"}
        )
    )
    (package / "__init__.py").write_text(
        textwrap.dedent(
            """
            from vendhub.plugins import hookimpl

            @hookimpl
            def vendhub_setup(hub, config):
                hub.states.async_set("sensor.acme_gateway", "connected")
            """
        )
    )
    site = tmp_path / "site"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(site),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    assert list(site.glob("acme_vendhub-2.0.0.dist-info/entry_points.txt"))

    config_file = demo_config / "configuration.yaml"
    config_file.write_text(config_file.read_text() + "\nacme:\n")
    env = {**os.environ, "PYTHONPATH": str(site)}
    checked = vendhub("check-config", "--config", str(demo_config), env=env)
    assert checked.returncode == 0, checked.stderr
    assert "acme" in checked.stdout

    hub = RunningHub(demo_config, tmp_path / "hub.log", env=env)
    running.append(hub)
    hub.wait_for("is running")
    code, _ = hub.stop()
    assert code == 0
    assert "Set up acme 2.0.0 [entry point]" in hub.log()


def test_sigterm_during_a_slow_setup_stops_within_5_s(
    demo_config: Path, tmp_path: Path, running: list[RunningHub]
) -> None:
    marker = tmp_path / "setup-started"
    write_integration(
        demo_config,
        "slow_board",
        f"""
        import asyncio
        from pathlib import Path
        from vendhub.plugins import hookimpl

        @hookimpl
        def vendhub_setup(hub, config):
            async def setup():
                Path({str(marker)!r}).write_text("started")
                await asyncio.sleep(50)  # a board that never answers
            return setup()
        """,
    )
    config_file = demo_config / "configuration.yaml"
    config_file.write_text(config_file.read_text() + "\nslow_board:\n")
    hub = RunningHub(demo_config, tmp_path / "hub.log")
    running.append(hub)
    deadline = time.monotonic() + 15
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), hub.log()

    code, seconds = hub.stop(signal.SIGTERM)

    log = hub.log()
    assert code == 0, log
    assert seconds < 5, log
    assert "Received SIGTERM during start-up" in log
    assert "is running" not in log
    assert "Unloaded simulator" in log  # what was set up already is taken down
    assert "Traceback" not in log


def test_a_second_hub_on_the_same_folder_is_refused_and_the_first_runs_on(
    demo_config: Path, tmp_path: Path, running: list[RunningHub]
) -> None:
    first = RunningHub(demo_config, tmp_path / "first.log")
    running.append(first)
    first.wait_for("is running")
    second = RunningHub(demo_config, tmp_path / "second.log")
    running.append(second)
    assert second.process.wait(timeout=15) == 1
    log = second.log()
    assert f"VendHub not started: another VendHub (pid {first.process.pid}) runs on the " in log
    assert "Traceback" not in log and "is running" not in log
    assert first.process.poll() is None
    code, _ = first.stop(signal.SIGTERM)
    assert code == 0

    # Killed outright, a hub leaves no lock behind: the next one starts.
    third = RunningHub(demo_config, tmp_path / "third.log")
    running.append(third)
    third.wait_for("is running")
    third.process.kill()
    third.process.wait()
    fourth = RunningHub(demo_config, tmp_path / "fourth.log")
    running.append(fourth)
    fourth.wait_for("is running")
    assert fourth.stop(signal.SIGTERM)[0] == 0
