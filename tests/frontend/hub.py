"""A real hub in its own process for the browser tests: the API and the console on a free
port, a small simulated fleet that sells nothing by itself (the tests make every sale)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.http.hub_process import free_port, request

OWNER = "olga"
OWNER_PASSWORD = "correct horse battery"

FLEET = """
simulator:
  speed: 1
  tick: 1
  seed: 5
  summary_interval: 0
  machines:
    - id: lobby_1
      name: Lobby snacks
      location: Main lobby
      sales_per_hour: 0
      door_openings_per_day: 0
      jam_rate: 0
      failure_rate: 0
      slots:
        A1: {product: Cola, price: 150, capacity: 10, stock: 8, par: 2}
        A2: {product: Sparkling water, price: 120, capacity: 10, stock: 6, par: 2}
        B1: {product: Chocolate bar, price: 130, capacity: 12, stock: 2, par: 3}
    - id: gym_2
      name: Gym drinks
      location: Fitness centre
      refrigerated: true
      target_temperature: 5.0
      sales_per_hour: 0
      door_openings_per_day: 0
      jam_rate: 0
      failure_rate: 0
      slots:
        A1: {product: Isotonic drink, price: 220, capacity: 12}
        A2: {product: Still water, price: 150, capacity: 12, stock: 7}
"""

# 200 virtual machines that sell slowly: the fleet of the time-to-interactive measurement.
BIG_FLEET = """
simulator:
  speed: 1
  tick: 5
  seed: 11
  summary_interval: 0
  fleet:
    count: 200
    slots_per_machine: 12
    sales_per_hour: 2
    door_openings_per_day: 0
"""


def call(
    url: str, *, method: str = "GET", body: Any = None, token: str | None = None
) -> tuple[int, Any]:
    return request(url, method=method, body=body, token=token, timeout=30)


@dataclass
class Hub:
    process: subprocess.Popen[bytes]
    url: str
    log: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call the API as the owner (signing in first); assert a 2xx answer."""
        status, answer = call(self.url + path, method=method, body=body, token=self.owner_token())
        assert 200 <= status < 300, (method, path, status, answer)
        return answer

    def owner_token(self) -> str:
        if "owner" not in self.tokens:
            status, grant = call(
                self.url + "/api/auth/login",
                method="POST",
                body={"grant_type": "password", "username": OWNER, "password": OWNER_PASSWORD},
            )
            assert status == 200, grant
            self.tokens["owner"] = grant["access_token"]
        return self.tokens["owner"]

    def onboard(self) -> None:
        """Create the owner through the API (the tests that do not test onboarding)."""
        status, grant = call(
            self.url + "/api/onboarding",
            method="POST",
            body={"username": OWNER, "password": OWNER_PASSWORD, "name": "Olga"},
        )
        assert status == 200, grant
        self.tokens["owner"] = grant["access_token"]

    def restart(self, timeout: float = 60) -> None:
        """Stop the hub and start it again on the same configuration (and port)."""
        self.stop()
        runs = self.log.read_text().count("is running")
        self.process = subprocess.Popen(
            self.process.args,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        wait_until_running(self, timeout, runs + 1)
        self.tokens.clear()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_hub(config_dir: Path, fleet: str = FLEET, *, timeout: float = 60) -> Hub:
    """``python -m vendhub run`` on a fresh configuration (not onboarded) with ``fleet``."""
    port = free_port()
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "configuration.yaml").write_text(
        textwrap.dedent(
            f"""
            vendhub:
              name: Console test fleet
              currency: EUR
              time_zone: Europe/Berlin
              languages: [en, ru]
            http:
              server_host: 127.0.0.1
              server_port: {port}
            recorder:
              commit_interval: 1
            alarm:
            automation:
              - id: empty_slot_alarm
                alias: Empty slot alarm
                mode: queued
                trigger:
                  - platform: state
                    entity_id: slot.lobby_1_b1
                    to: "0"
                action:
                  - service: alarm.raise
                    data:
                      code: empty_b1
                      machine_id: lobby_1
                      severity: critical
                      message: "Lobby B1 is empty"
            """
        )
        + textwrap.dedent(fleet)
    )
    log = config_dir / "hub.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "vendhub", "run", "--config", str(config_dir)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    hub = Hub(process, f"http://127.0.0.1:{port}", log)
    wait_until_running(hub, timeout)
    return hub


def wait_until_running(hub: Hub, timeout: float, runs: int = 1) -> None:
    """Until the hub answers and has logged its ``runs``-th "is running" line."""
    deadline = time.monotonic() + timeout
    while True:
        if hub.process.poll() is not None:
            raise RuntimeError(f"the hub exited: {hub.log.read_text()[-3000:]}")
        try:
            status, _ = call(hub.url + "/api/health")
            if status == 200 and hub.log.read_text().count("is running") >= runs:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            hub.stop()
            raise RuntimeError(
                f"the hub did not start in {timeout} s: {hub.log.read_text()[-3000:]}"
            )
        time.sleep(0.2)
