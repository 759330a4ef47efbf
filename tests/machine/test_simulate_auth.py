"""``vendhub simulate`` against a Mosquitto with one user per machine.

The broker runs with the password and ACL files the hub generates (``vendhub machine add``,
``vendhub machine mosquitto-files``; docs/mosquitto.md) and refuses anonymous clients; its
ACL lets a machine publish only under its own id. So a simulated machine that comes online at
the hub and sells has connected as itself, with its own password.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.mosquitto import Mosquitto
from vendhub.__main__ import main
from vendhub.bootstrap import async_start_hub, prepare
from vendhub.core.hub import Hub
from vendhub.machine.credentials import add_machine, ensure_hub_user, list_machines
from vendhub.machine.mosquitto_files import write_mosquitto_files
from vendhub.machine.simulate import machine_passwords, read_passwords
from vendhub.recorder.models import VendTransaction
from vendhub.recorder.recorder import get_recorder

REPO_ROOT = Path(__file__).resolve().parents[2]
SIM_IDS = ["sim_001", "sim_002", "sim_003"]
REFUSED = re.compile(r"Machine (\w+): the broker \S+ refused its credentials")


def _need_mosquitto() -> None:
    if shutil.which("mosquitto") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("mosquitto is not installed (CI=true: the broker tests must run)")
        pytest.skip("mosquitto is not installed")


# ---- the hub's side: credentials, the broker's files, Mosquitto, the hub ------------------


class Site:
    """A hub's configuration folder with credentials, and a Mosquitto using its files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config_dir = root / "config"
        self.config_dir.mkdir(parents=True)
        self.files_dir = root / "mosquitto-files"
        self.broker: Mosquitto | None = None

    def write_broker_files(self) -> None:
        write_mosquitto_files(self.config_dir, self.files_dir)

    def start_broker(self) -> Mosquitto:
        self.write_broker_files()
        broker = Mosquitto(
            self.root / "broker",
            allow_anonymous=False,
            password_file=self.files_dir / "vendhub.passwd",
            acl_file=self.files_dir / "vendhub.acl",
        )
        # As docs/mosquitto.md configures it: a client id cannot take another user's session.
        with broker.config.open("a") as conf:
            conf.write("use_username_as_clientid true\n")
        broker.start()
        self.broker = broker
        return broker

    def reload_broker(self) -> None:
        """Write the files again and SIGHUP Mosquitto, as docs/mosquitto.md says."""
        assert self.broker is not None and self.broker.process is not None
        self.write_broker_files()
        self.broker.process.send_signal(signal.SIGHUP)

    def write_hub_config(self, hub_password: str) -> None:
        assert self.broker is not None
        (self.config_dir / "secrets.yaml").write_text(f'vendhub_mqtt_password: "{hub_password}"\n')
        (self.config_dir / "configuration.yaml").write_text(
            "recorder:\n"
            f"  db_url: sqlite:///{self.config_dir / 'vendhub.db'}\n"
            "  commit_interval: 0.5\n"
            "mqtt:\n"
            "  broker:\n"
            "    host: 127.0.0.1\n"
            f"    port: {self.broker.port}\n"
            "    username: vendhub-hub\n"
            "    password: !secret vendhub_mqtt_password\n"
            "  auto_adopt: true\n"
            "  keepalive: 5\n"
        )

    async def start_hub(self) -> Hub:
        prepared = await asyncio.to_thread(prepare, self.config_dir)
        assert prepared.issues == []
        hub, report = await async_start_hub(prepared)
        assert report.failed == {}
        return hub


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    _need_mosquitto()
    instance = Site(tmp_path)
    yield instance
    if instance.broker is not None:
        instance.broker.stop()


async def running_hub(site: Site, hub_password: str) -> Hub:
    site.write_hub_config(hub_password)
    hub = await site.start_hub()
    mqtt = hub.data["mqtt"]
    assert await mqtt.connection.async_wait_connected(10), mqtt.connection.last_error
    return hub


def issue_with_the_cli(
    config_dir: Path, machine_id: str, capsys: pytest.CaptureFixture[str]
) -> tuple[str, str | None]:
    """``vendhub machine add``: the machine's printed password, and the hub's the first time."""
    assert main(["machine", "add", machine_id, "--config", str(config_dir)]) == 0
    out = capsys.readouterr().out
    found = re.search(r"^  password: (\S+)$", out, re.MULTILINE)
    assert found, out
    hub = re.search(r'^  vendhub_mqtt_password: "(\S+)"$', out, re.MULTILINE)
    return found[1], None if hub is None else hub[1]


# ---- the machines' side: the simulate command ----------------------------------------------


class Simulate:
    """``vendhub simulate ...`` in a child process; its log is read as it comes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, *args: str) -> Simulate:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "vendhub",
            "simulate",
            *args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        )
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for line in self.process.stderr:
            self.lines.append(line.decode(errors="replace").rstrip())

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    async def wait_log(self, pattern: str, timeout: float = 20) -> None:
        await wait_until(lambda: re.search(pattern, self.log) is not None, timeout, pattern)

    async def stop(self) -> int:
        """SIGTERM; the exit code once it ended (killed after 15 s)."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.process.wait(), 15)
        except TimeoutError:
            self.process.kill()
            code = await self.process.wait()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self._reader, 5)
        return code


@contextlib.asynccontextmanager
async def simulating(*args: str) -> AsyncIterator[Simulate]:
    child = await Simulate.start(*args)
    try:
        yield child
    finally:
        await child.stop()


def simulate_args(broker: Mosquitto, tmp_path: Path, machines: int, *extra: str) -> list[str]:
    return [
        "--machines", str(machines),
        "--hub", f"mqtt://127.0.0.1:{broker.port}",
        "--speed", "3600",  # a simulated day in 24 s: sales whatever the time of day
        "--tick", "0.2",
        "--sales-per-hour", "10",
        "--seed", "5",
        "--summary-interval", "0",
        "--keepalive", "5",
        "--outbox-dir", str(tmp_path / "outboxes"),
        *extra,
    ]  # fmt: skip


async def wait_until(condition: Callable[[], object], timeout: float, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        await asyncio.sleep(0.1)


def online(hub: Hub) -> set[str]:
    return {
        state.entity_id.removeprefix("machine.")
        for state in hub.states.async_all("machine")
        if state.state == "online"
    }


def sellers(session: Session) -> set[str]:
    """The machines with at least one vend in the ledger."""
    return set(session.execute(select(VendTransaction.machine_id).distinct()).scalars())


async def wait_selling(hub: Hub, machine_ids: set[str], timeout: float = 30) -> None:
    recorder = get_recorder(hub)
    assert recorder is not None
    deadline = time.monotonic() + timeout
    while not machine_ids <= (sold := await recorder.async_query(sellers)):
        assert time.monotonic() < deadline, f"no sale recorded from {machine_ids - sold}"
        await asyncio.sleep(0.3)


# ---- the tests -----------------------------------------------------------------------------


async def test_simulated_machines_with_their_own_credentials_come_online_and_sell(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The operator issues credentials and copies the printed passwords into a file.
    printed = [issue_with_the_cli(site.config_dir, machine_id, capsys) for machine_id in SIM_IDS]
    passwords = [password for password, _ in printed]
    hub_password = printed[0][1]  # the first 'machine add' creates the hub's user too
    assert hub_password is not None
    credentials = tmp_path / "sim.yaml"
    credentials.write_text(
        "".join(f"{machine_id}: {pw}\n" for machine_id, pw in zip(SIM_IDS, passwords, strict=True))
    )
    credentials.chmod(0o600)
    broker = site.start_broker()
    hub = await running_hub(site, hub_password)
    try:
        async with simulating(
            *simulate_args(broker, tmp_path, 3, "--credentials", str(credentials))
        ) as child:
            await wait_until(lambda: online(hub) == set(SIM_IDS), 30, "3 machines online")
            await wait_selling(hub, set(SIM_IDS))
        assert child.process.returncode == 0, child.log
        await wait_until(lambda: not online(hub), 10, "machines offline after the stop")
    finally:
        await hub.async_stop()
    assert "3 machines" in child.log
    assert "each as its own MQTT user (passwords from" in child.log
    assert not REFUSED.search(child.log), child.log
    assert "Traceback" not in child.log
    for password in passwords:  # a password never reaches the log
        assert password not in child.log


async def test_a_machine_with_a_wrong_password_gets_a_clear_error_and_the_others_sell(
    site: Site, tmp_path: Path
) -> None:
    passwords = {machine_id: add_machine(site.config_dir, machine_id)[1] for machine_id in SIM_IDS}
    hub_password = ensure_hub_user(site.config_dir)
    assert hub_password is not None
    passwords["sim_003"] = "not-" + passwords["sim_003"]
    credentials = tmp_path / "sim.yaml"
    credentials.write_text("".join(f'{key}: "{pw}"\n' for key, pw in passwords.items()))
    credentials.chmod(0o600)
    broker = site.start_broker()
    hub = await running_hub(site, hub_password)
    try:
        async with simulating(
            *simulate_args(broker, tmp_path, 3, "--credentials", str(credentials))
        ) as child:
            await wait_until(lambda: online(hub) == {"sim_001", "sim_002"}, 30, "2 online")
            await wait_selling(hub, {"sim_001", "sim_002"})
            await child.wait_log(r"Machine sim_003: the broker .* refused its credentials")
            await asyncio.sleep(2)  # a few more attempts: each only an info line
            assert "sim_003" not in online(hub)
        assert child.process.returncode == 0, child.log
    finally:
        await hub.async_stop()
    assert "Traceback" not in child.log
    refused = [line for line in child.log.splitlines() if REFUSED.search(line)]
    assert len(refused) == 1, child.log  # said once, clearly, not at every retry
    assert " ERROR " in refused[0]
    assert "MQTT user 'sim_003'" in refused[0] and "password is wrong" in refused[0]
    assert {match[1] for match in REFUSED.finditer(child.log)} == {"sim_003"}
    assert passwords["sim_003"] not in child.log
    hub_pending = Path(site.config_dir / ".storage" / "mqtt.machines").read_text()
    assert "sim_003" not in hub_pending  # it never reached the hub


async def test_simulate_issues_missing_credentials_and_the_machines_connect_after_a_reload(
    site: Site, tmp_path: Path
) -> None:
    hub_password = ensure_hub_user(site.config_dir)
    assert hub_password is not None
    broker = site.start_broker()  # knows only the hub's user so far
    hub = await running_hub(site, hub_password)
    credentials = tmp_path / "sim.yaml"
    args = simulate_args(
        broker, tmp_path, 3, "--credentials", str(credentials), "--config", str(site.config_dir)
    )
    try:
        async with simulating(*args) as child:
            await child.wait_log(r"Issued MQTT credentials in .* for 3 machines")
            # Not loaded by the broker yet: refused, with what to do about it.
            for machine_id in SIM_IDS:
                await child.wait_log(rf"Machine {machine_id}: the broker .* refused")
            assert [m.machine_id for m in list_machines(site.config_dir)] == SIM_IDS
            assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
            written = read_passwords(credentials)
            assert sorted(written) == SIM_IDS

            site.reload_broker()
            await wait_until(lambda: online(hub) == set(SIM_IDS), 40, "online after reload")
            await wait_selling(hub, set(SIM_IDS))
        assert child.process.returncode == 0, child.log
    finally:
        await hub.async_stop()
    assert "Traceback" not in child.log
    assert all(password not in child.log for password in written.values())
    # A later run issues nothing and uses the passwords in the file, checked against the hub's.
    again, issued = machine_passwords(SIM_IDS, credentials, site.config_dir)
    assert issued == [] and again == written


def test_simulate_refuses_missing_wrong_or_lost_passwords_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    _, good = add_machine(config_dir, "sim_001")
    add_machine(config_dir, "sim_002")  # its password is "lost": not in the file
    credentials = tmp_path / "sim.yaml"
    credentials.write_text(f"sim_001: {good}\n")
    credentials.chmod(0o600)
    hub = ["--hub", "mqtt://127.0.0.1:1", "--outbox-dir", str(tmp_path / "outboxes")]
    everything: list[str] = []

    def run(*args: str) -> tuple[int, str]:
        code = main(["simulate", *hub, *args])
        err = capsys.readouterr().err
        everything.append(err)
        return code, err

    code, err = run("--machines", "2", "--credentials", str(credentials))
    assert code == 1 and "has no password for sim_002" in err and "vendhub machine add" in err
    code, err = run("--machines", "2", "--credentials", str(credentials), "-c", str(config_dir))
    assert code == 1 and "credentials for sim_002 were issued" in err and "--rotate" in err
    credentials.write_text(f'sim_001: "{good}x"\n')
    code, err = run("--machines", "1", "--credentials", str(credentials), "-c", str(config_dir))
    assert code == 1 and "passwords of sim_001" in err and "not the ones the hub issued" in err
    code, err = run("--machines", "1", "--config", str(config_dir))
    assert code == 2 and "needs --credentials FILE" in err
    hub = ["--hub", "mqtt://u:p@127.0.0.1:1"]
    code, err = run("--credentials", str(credentials))
    assert code == 2 and "leave USER:PASSWORD@ out of --hub" in err
    hub = ["--hub", "mqtt://127.0.0.1:1", "--outbox-dir", str(tmp_path / "outboxes")]
    credentials.write_text("- sim_001\n")
    code, err = run("--credentials", str(credentials))
    assert code == 1 and "must map machine ids to passwords" in err
    credentials.write_text("sim_001: 12345\n")
    code, err = run("--credentials", str(credentials))
    assert code == 1 and "the password of sim_001 must be text; put it in quotes" in err
    code, err = run("--id-prefix", "Sim")
    assert code == 2 and "choose another --id-prefix" in err
    assert all("Traceback" not in err and "Cannot simulate: " in err for err in everything)
    assert not (tmp_path / "outboxes").exists()  # nothing started
