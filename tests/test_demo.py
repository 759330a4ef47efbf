"""The shipped demo configuration's rules work: low stock in the demo sends a real email."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.notify.conftest import SmtpServer, smtp_server  # noqa: F401 - the fixture
from vendhub.bootstrap import async_start_hub, prepare


@pytest.fixture
def demo_config(tmp_path: Path) -> Path:
    config_dir = tmp_path / "config"
    shutil.copytree(
        REPO_ROOT / "config", config_dir, ignore=shutil.ignore_patterns(".storage", "*.db*")
    )
    return config_dir


async def test_low_stock_in_the_demo_raises_an_alarm_and_emails_the_driver(
    demo_config: Path,
    smtp_server: SmtpServer,  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VENDHUB_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("VENDHUB_SMTP_PORT", str(smtp_server.port))
    monkeypatch.setenv("VENDHUB_DRIVER_EMAIL", "route-7@example.com")
    monkeypatch.setenv("VENDHUB_HTTP_PORT", "0")
    prepared = await asyncio.to_thread(prepare, demo_config)
    assert prepared.issues == []
    hub, report = await async_start_hub(prepared)
    try:
        assert report.failed == {}
        assert "automation" in report.loaded
        # Orange juice in lobby_1 A3 starts at 5 of 8 (par 2); sell until it is below par.
        for _ in range(20):
            state = hub.states.get("slot.lobby_1_a3")
            assert state is not None
            if int(state.state) < state.attributes["par_level"]:
                break
            await hub.services.async_call(
                "simulator", "vend", {"machine_id": "lobby_1", "slot": "A3"}
            )
        for _ in range(400):  # up to 20 s: the automation, then SMTP, on a loaded machine
            mails = [m for m in smtp_server.handler.messages if "slot A3" in m.body()]
            if mails:
                break
            await asyncio.sleep(0.05)
        [mail] = mails
        assert mail.rcpt_tos == ["route-7@example.com"]
        assert "Low stock: lobby_1" in str(mail.message["Subject"])
        assert "Orange juice 0.33 l in slot A3 of lobby_1 is down to" in mail.body()
        alarm = hub.states.get("alarm.lobby_1_low_stock_a3")
        assert alarm is not None and alarm.state == "raised"
        # The run's trace is stored when its last action returns, just after the alarm.
        for _ in range(100):
            traces = await hub.services.async_call("automation", "traces", {"id": "low_stock"})
            if any(trace["outcome"] == "ran" for trace in traces):
                break
            await asyncio.sleep(0.05)
        assert any(trace["outcome"] == "ran" for trace in traces), traces
    finally:
        await hub.async_stop()


async def test_the_demos_own_machine_sells_through_the_vend_engine(
    demo_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """demo_kiosk is a machine of the vending: block (the engine, a simulator board, the
    instant test providers): a card sale completes and shows in the fleet's figures."""
    monkeypatch.setenv("VENDHUB_HTTP_PORT", "0")
    prepared = await asyncio.to_thread(prepare, demo_config)
    assert prepared.issues == []
    hub, report = await async_start_hub(prepared)
    try:
        assert report.failed == {}
        assert hub.data["vending"].broken == {}
        machine = hub.states.get("machine.demo_kiosk")
        assert machine is not None and machine.state == "online"
        assert machine.attributes["mode"] == "normal"
        sold = await hub.services.async_call(
            "vending",
            "select",
            {"machine_id": "demo_kiosk", "slot": "A1", "method": "card", "timeout": 30},
        )
        assert (sold["outcome"], sold["price"], sold["stock_after"]) == ("completed", 180, 5)
        assert hub.states.get("slot.demo_kiosk_a1").state == "5"
        machine = hub.states.get("machine.demo_kiosk")
        assert (machine.attributes["sales_today"], machine.attributes["revenue_today"]) == (1, 180)
    finally:
        await hub.async_stop()
