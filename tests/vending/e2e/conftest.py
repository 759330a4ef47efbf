"""A whole vending machine for the end-to-end tests, as an operator would configure one.

Each test starts a hub from a ``configuration.yaml`` written into its ``tmp_path``: the
recorder (SQLite), alarms, the HTTP server on a free port, the integrations that provide
the board and the payment platforms, and a ``vending:`` block with one local machine. The
machine's board is the ``serial_board`` dispenser talking to ``SerialBoardEmulator`` over
its own socat pty pair; the card reader and cash devices are the ``mdb`` / ``mdb_cash``
providers talking to ``MdbAdapterEmulator`` over another pty pair; the QR and crypto
gateways are the emulated YooKassa and BTCPay servers, whose notifications reach the hub's
real HTTP server. Nothing of ours is mocked: the tests watch the emulators' records, the
gateways' state, the hub's events and the recorder's ledger.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from tests.integrations.crypto.btcpay_server import BTCPayServer
from tests.integrations.qr_gateway.yookassa_server import YooKassaServer
from tests.serial_pty import pty_pair
from vendhub.bootstrap import async_start_hub, prepare
from vendhub.const import EVENT_MONEY_RECORDED
from vendhub.core.events import Event
from vendhub.core.hub import Hub
from vendhub.http.server import get_http
from vendhub.recorder.convert import context_id_to_bytes
from vendhub.recorder.models import Payment, StockMovement, VendTransaction
from vendhub.recorder.recorder import get_recorder
from vendhub.vending.engine import VendEngine
from vendhub.vending.session import VendSession
from vendhub_integrations.crypto.webhook import URL_WEBHOOK as CRYPTO_WEBHOOK
from vendhub_integrations.mdb.emulator import MdbAdapterEmulator
from vendhub_integrations.qr_gateway.webhook import URL_WEBHOOK as QR_WEBHOOK
from vendhub_integrations.serial_board.board import SerialBoardDispenser
from vendhub_integrations.serial_board.emulator import SerialBoardEmulator

MACHINE = "lobby_1"
PLANOGRAM: dict[str, dict[str, Any]] = {
    "A1": {"product": "Cola", "price": 150, "capacity": 10, "stock": 5},
    "B2": {"product": "Water", "price": 120, "capacity": 10, "stock": 5},
    "C3": {"product": "Sandwich", "price": 620, "capacity": 6, "stock": 3},
}
SELECTION = {"A1": 1, "B2": 12, "C3": 23}
"""The board's selection numbers of the slots (the default mapping: row * 10 + column)."""

FAST_TIMEOUTS = {"payment": 5, "dispense": 5, "capture": 2, "void": 2, "multi_vend": 0.3}
BOARD_POLL_INTERVAL = 0.1
"""The board may be told to poll every 100 ms; the serial_board tests use that too."""

# What a session fires besides its progress updates (vend_session_updated).
SALE_EVENTS = ["vend_started", "payment_authorized", "payment_captured", "vend_completed"]
VOIDED_DISPENSE_EVENTS = ["vend_started", "payment_authorized", "payment_voided", "vend_failed"]


async def wait_until(
    condition: Callable[[], Any], timeout: float = 5.0, what: str = "the condition"
) -> None:
    """Wait for emulator or gateway state, which has no event to await."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"{what} was not reached within {timeout} s")
        await asyncio.sleep(0.01)


class EventLog:
    """Every event the hub fires from the moment it is attached; awaitable by condition."""

    def __init__(self, hub: Hub) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Event()
        self.unsubscribe = hub.bus.async_listen("*", self._append)

    def _append(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    def of(self, *types: str) -> list[Event]:
        return [event for event in self.events if not types or event.event_type in types]

    def in_context(self, session: VendSession) -> list[Event]:
        return [event for event in self.events if event.context.id == session.context.id]

    def about(self, session: VendSession, *types: str) -> list[Event]:
        """Events of ``types`` whose data names the session."""
        return [event for event in self.of(*types) if event.data.get("session_id") == session.id]

    async def wait_for(self, predicate: Callable[[Event], bool], timeout: float = 5.0) -> Event:
        async with asyncio.timeout(timeout):
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                self._changed.clear()
                await self._changed.wait()


@dataclass(frozen=True)
class Ledger:
    """The recorder's money rows (all of them: each test runs on its own database)."""

    vends: list[dict[str, Any]]
    payments: list[dict[str, Any]]
    stock_movements: list[dict[str, Any]]


def _read_ledger(session: Session) -> Ledger:
    def rows(model: Any) -> list[dict[str, Any]]:
        table = model.__table__
        return [dict(row._mapping) for row in session.execute(select(table)).all()]

    return Ledger(rows(VendTransaction), rows(Payment), rows(StockMovement))


@dataclass
class VendingHub:
    """A running hub with one local machine, and what watches it."""

    hub: Hub
    engine: VendEngine
    events: EventLog
    board: SerialBoardEmulator

    async def select(self, slot: str, method: str, token: str | None = None) -> VendSession:
        return await self.engine.async_select(slot=slot, method=method, token=token)

    async def finish(self, started: VendSession, timeout: float = 10.0) -> VendSession:
        return await self.engine.async_wait(started.id, timeout=timeout)

    async def recorded(self, session: VendSession, timeout: float = 5.0) -> Ledger:
        """The ledger once the recorder has committed the session's money event."""
        await self.events.wait_for(
            lambda event: (
                event.event_type == EVENT_MONEY_RECORDED
                and event.data.get("event_id") == session.id
            ),
            timeout,
        )
        return await self.ledger()

    async def ledger(self) -> Ledger:
        return await get_recorder(self.hub).async_query(_read_ledger)

    def alarms(self) -> list[dict[str, Any]]:
        """The active alarms, as the alarm integration holds them."""
        return [alarm.as_dict() for alarm in self.hub.data["alarm"].active.values()]

    def drives(self) -> list[int]:
        """The selection numbers the board acted on, one per real vend."""
        return [drive.selection for drive in self.board.record.drives]

    def slot_state(self, slot: str) -> str:
        state = self.hub.states.get(f"slot.{MACHINE}_{slot.lower()}")
        assert state is not None, f"no entity for slot {slot}"
        return state.state


@dataclass(frozen=True)
class SerialLine:
    """An emulated device on the device end of a pty pair; ``host`` is the hub's port."""

    emulator: Any
    host: str


@pytest.fixture
async def board_line() -> AsyncIterator[SerialLine]:
    async with pty_pair() as pair:
        board = SerialBoardEmulator(
            pair.device, poll_interval=BOARD_POLL_INTERVAL, dispense_time=0.1, temperature=4
        )
        await board.async_start()
        try:
            yield SerialLine(board, pair.host)
        finally:
            await board.async_stop()


@pytest.fixture
async def mdb_line() -> AsyncIterator[SerialLine]:
    """The MDB adapter with a card reader, a coin changer (tubes stocked) and a validator."""
    async with pty_pair() as pair:
        adapter = MdbAdapterEmulator(pair.device)
        for coin, count in {50: 10, 20: 10, 10: 10, 5: 10}.items():
            adapter.set_tube(coin, count)
        async with adapter:
            yield SerialLine(adapter, pair.host)


@pytest.fixture
async def yookassa() -> AsyncIterator[YooKassaServer]:
    server = YooKassaServer()  # notifications come from 127.0.0.2
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def btcpay() -> AsyncIterator[BTCPayServer]:
    server = BTCPayServer()
    await server.start()
    yield server
    await server.stop()


def card_payment(mdb: SerialLine) -> dict[str, Any]:
    return {"platform": "mdb", "port": mdb.host, "reply_timeout": 2}


def cash_payment(mdb: SerialLine) -> dict[str, Any]:
    return {"platform": "mdb_cash", "port": mdb.host, "poll_interval": 0.02}


def qr_payment(gateway: YooKassaServer) -> dict[str, Any]:
    """Polling once a minute: within a test only the notification can confirm a payment."""
    return {
        "platform": "qr_gateway",
        "shop_id": gateway.shop_id,
        "secret_key": gateway.secret_key,
        "api_url": gateway.api_url,
        "poll_interval": 60,
        "request_timeout": 5,
        "allowed_sources": ["127.0.0.2/32"],
    }


def crypto_payment(server: BTCPayServer) -> dict[str, Any]:
    """Polling once a minute: within a test only the webhook can settle an invoice."""
    return {
        "platform": "crypto",
        "server_url": server.server_url,
        "store_id": server.store_id,
        "api_key": server.api_key,
        "webhook_secret": server.webhook_secret,
        "poll_interval": 60,
        "request_timeout": 5,
    }


StartHub = Callable[..., Awaitable[VendingHub]]


@pytest.fixture
async def start_hub(tmp_path: Path, board_line: SerialLine) -> AsyncIterator[StartHub]:
    """Start a hub whose machine ``lobby_1`` takes ``payments`` (``vending:`` entries)."""
    hubs: list[Hub] = []

    async def start(
        payments: Iterable[dict[str, Any]],
        *,
        currency: str = "EUR",
        timeouts: dict[str, float] | None = None,
        blocks: dict[str, Any] | None = None,
        webhook_senders: Iterable[YooKassaServer | BTCPayServer] = (),
    ) -> VendingHub:
        dispenser = {
            "platform": "serial_board",
            "port": board_line.host,
            "dispense_timeout": 3,
            "offline_after": 0.8,
            "status_interval": 0.5,
            "reconnect_interval": 0.2,
        }
        configuration: dict[str, Any] = {
            "vendhub": {"name": "End to end", "currency": currency},
            "recorder": {"db_url": f"sqlite:///{tmp_path / 'vendhub.db'}", "commit_interval": 0.1},
            "alarm": None,
            "http": {"server_host": "127.0.0.1", "server_port": 0},
            "serial_board": None,
            "mdb": None,
            "qr_gateway": None,
            "crypto": None,
            **(blocks or {}),
            "vending": {
                "machines": {
                    MACHINE: {
                        "name": "Lobby",
                        "currency": currency,
                        "planogram": PLANOGRAM,
                        "dispenser": dispenser,
                        "payments": list(payments),
                        "timeouts": {**FAST_TIMEOUTS, **(timeouts or {})},
                    }
                }
            },
        }
        (tmp_path / "configuration.yaml").write_text(
            yaml.safe_dump(configuration, sort_keys=False), encoding="utf-8"
        )
        prepared = await asyncio.to_thread(prepare, tmp_path)
        assert prepared.issues == []
        hub, report = await async_start_hub(prepared)
        hubs.append(hub)
        assert report.failed == {}
        runtime = hub.data["vending"]
        assert runtime.broken == {}
        engine = runtime.engine(MACHINE)
        dispenser_instance = engine.machine.dispenser
        assert isinstance(dispenser_instance, SerialBoardDispenser)
        await wait_until(lambda: dispenser_instance.online, what="the board online")
        for provider in engine.machine.providers:
            # Gateways take notifications only when the HTTP server was up before them.
            assert getattr(provider, "webhooks_served", True), f"{provider!r} has no webhook"
        base_url = get_http(hub).url
        for sender in webhook_senders:
            webhook = QR_WEBHOOK if isinstance(sender, YooKassaServer) else CRYPTO_WEBHOOK
            sender.webhook_url = base_url + webhook
        return VendingHub(hub, engine, EventLog(hub), board_line.emulator)

    yield start
    for hub in hubs:
        if not hub.is_stopping:
            await hub.async_stop()


def assert_one_context(log: EventLog, session: VendSession, expected: list[str]) -> None:
    """The session's vend and payment events are ``expected``, in order, and every event
    about the session (its progress updates too) carries the session's one context."""
    in_context = [
        event.event_type
        for event in log.in_context(session)
        if event.event_type.startswith(("vend_", "payment_"))
        and event.event_type != "vend_session_updated"
    ]
    assert in_context == expected
    about = log.about(session, *expected, "vend_session_updated")
    assert about, "the session fired nothing"
    assert {event.context.id for event in about} == {session.context.id}


def assert_stock_change_caused_by(log: EventLog, session: VendSession, slot: str) -> None:
    """The slot entity's change came from the session (its context's parent)."""
    (change,) = [
        event
        for event in log.of("state_changed")
        if event.data["entity_id"] == f"slot.{MACHINE}_{slot.lower()}"
    ]
    assert change.context.parent_id == session.context.id


def assert_sale_in_ledger(
    ledger: Ledger,
    session: VendSession,
    *,
    provider: str,
    method: str,
    reference: str,
    amount: int,
    stock_after: int,
) -> None:
    """One vend row, one captured payment and one stock movement, keyed by the session."""
    (vend,) = ledger.vends
    assert (vend["machine_id"], vend["source_event_id"], vend["vend_id"]) == (
        MACHINE,
        session.id,
        session.id,
    )
    assert (vend["slot_code"], vend["product"], vend["outcome"]) == (
        session.slot,
        session.product,
        "completed",
    )
    assert (vend["price"], vend["currency"], vend["payment_method"]) == (
        amount,
        session.price.currency,
        method,
    )
    assert vend["context_id"] == context_id_to_bytes(session.context.id)
    (payment,) = ledger.payments
    assert payment["transaction_id"] == vend["id"]
    assert (payment["provider"], payment["method"], payment["status"]) == (
        provider,
        method,
        "captured",
    )
    assert (payment["amount"], payment["provider_reference"]) == (amount, reference)
    (movement,) = ledger.stock_movements
    assert (movement["slot_code"], movement["kind"], movement["quantity"]) == (
        session.slot,
        "vend",
        -1,
    )
    assert (movement["stock_after"], movement["source_event_id"]) == (stock_after, session.id)


def assert_failure_in_ledger(ledger: Ledger, session: VendSession, reason: str) -> None:
    """One failed vend row; no payment, no stock movement."""
    (vend,) = ledger.vends
    assert (vend["source_event_id"], vend["slot_code"], vend["outcome"]) == (
        session.id,
        session.slot,
        "failed",
    )
    assert vend["failure_reason"] == reason
    assert vend["context_id"] == context_id_to_bytes(session.context.id)
    assert ledger.payments == []
    assert ledger.stock_movements == []
