"""A real hub in its own process (``python -m vendhub run``) with the HTTP API on a free port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OWNER_PASSWORD = "correct horse battery"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def request(
    url: str,
    *,
    method: str = "GET",
    body: Any = None,
    token: str | None = None,
    timeout: float = 10,
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    call = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(call, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


@dataclass
class HubProcess:
    process: subprocess.Popen[bytes]
    url: str
    log: Path
    token: str = ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_hub(config_dir: Path, extra_yaml: str = "") -> HubProcess:
    """Start a hub with ``http`` (+ ``extra_yaml``), onboard the owner, make a long-lived token."""
    port = free_port()
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / "configuration.yaml").write_text(
        "vendhub:\n  name: Test fleet\n"
        f"http:\n  server_host: 127.0.0.1\n  server_port: {port}\n" + extra_yaml
    )
    log = config_dir / "hub.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "vendhub", "run", "--config", str(config_dir)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    hub = HubProcess(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the hub exited: {log.read_text()[-3000:]}")
        try:
            status, _ = request(hub.url + "/api/health")
            if status == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            hub.stop()
            raise RuntimeError(f"the hub did not answer in 30 s: {log.read_text()[-3000:]}")
        time.sleep(0.2)
    status, grant = request(
        hub.url + "/api/onboarding",
        method="POST",
        body={"username": "olga", "password": OWNER_PASSWORD},
    )
    assert status == 200, grant
    status, made = request(
        hub.url + "/api/auth/tokens",
        method="POST",
        body={"name": "tests"},
        token=grant["access_token"],
    )
    assert status == 201, made
    hub.token = made["access_token"]
    return hub
