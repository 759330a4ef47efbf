"""One local vending machine linked to the fleet hub through a ``MachineAgent``.

Where a sale is handed to the outbox, and why there:

- **Live**: a plain listener on the local bus for ``vend_completed`` / ``vend_failed`` /
  ``stock_refilled`` of this machine makes a task of the agent's ``publish_events``, whose
  first step writes the SQLite outbox (no network, no waiting for the fleet); unload waits
  for those tasks before it closes the outbox. The engine fires those events only after the
  vend journal has committed the session's end, so a crash between the fire and the write
  loses nothing: the backlog below finds the session at the next start. A vend that ends
  while the broker is down is on disk and goes out when the link is back.
- **Backlog** (``read_ledger_sessions`` of the vend journal, the last ``BACKLOG_DAYS``): the
  journal, read at start and again at unload. It covers what
  the live path cannot see: the sessions whose ledger event the engine fired again while the
  vending integration set up (before this listener existed), and sessions that finish while
  the hub shuts down, after the uplink (a dependent of ``vending``) has been unloaded but
  before the vending integration has stopped its engines. At unload, the link also waits a
  moment for a running session of its machine to end before it closes the outbox; what ends
  later is in the journal and stored at the next start.

Not the local recorder's ``money_recorded``: a machine hub may run without a recorder, and
the fleet needs the sale whether or not the Pi keeps its own copy. Not the journal's
``recorded`` flag: it belongs to the local recorder's bookkeeping, and the engine does not
wait on it to fire. Every path uses the session id as the event id, so the outbox keeps an
event once and the fleet's ledger (unique on machine and event id) writes it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vendhub.const import (
    EVENT_ALARM_RAISED,
    EVENT_STOCK_REFILLED,
    EVENT_VEND_COMPLETED,
    EVENT_VEND_FAILED,
)
from vendhub.core.context import Context
from vendhub.helpers.storage import Store
from vendhub.machine import protocol
from vendhub.machine.agent import CommandError, MachineAgent, UnknownCommand
from vendhub.vending.journal import read_ledger_sessions
from vendhub.vending.outcomes import ledger_data, ledger_event
from vendhub.vending.planogram import MachineMode

from . import messages

if TYPE_CHECKING:
    from vendhub.core.events import Event
    from vendhub.core.hub import Hub
    from vendhub.vending.dispenser import DispenserStatus
    from vendhub.vending.engine import VendEngine

    from .schema import LinkSettings

_LOGGER = logging.getLogger(__name__)

BACKLOG_DAYS = 7.0
"""How far back the journal's backlog looks; the outbox remembers acknowledged ids at least
this long."""
UNLOAD_SESSION_WAIT = 1.0
"""Seconds the unload waits for a running vend session of the machine to end (the hub gives
an unload 2 s; a session that ends later is found in the journal at the next start)."""
AGENT_STOP_TIMEOUT = 0.5
"""Seconds the agent gets to say ``offline`` and disconnect cleanly at unload."""
STATUS_TIMEOUT = 5.0
_PROTOCOL_VEND_EVENTS = {
    EVENT_VEND_COMPLETED: protocol.EVENT_VEND_COMPLETED,
    EVENT_VEND_FAILED: protocol.EVENT_VEND_FAILED,
}
"""The hub's ledger events → the machine protocol's events of the same meaning."""
PLAN_STORE_VERSION = 1
PLAN_OWNER = "uplink"
"""``VendEngine.plan_owner`` of a linked machine: its plan comes from the fleet hub."""


def tls_context(tls: Mapping[str, Any] | None) -> ssl.SSLContext | bool:
    """The agent's TLS setting from the ``tls:`` options (False: plain MQTT)."""
    if tls is None:
        return False
    context = ssl.create_default_context(cafile=tls.get("ca_certs"))
    if tls.get("certfile"):
        context.load_cert_chain(tls["certfile"], tls.get("keyfile"))
    if tls.get("insecure"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class MachineUplink:
    """Links one local machine (its ``VendEngine``) to the fleet hub."""

    def __init__(
        self,
        hub: Hub,
        engine: VendEngine,
        settings: LinkSettings,
        outbox_path: Path,
        journal_path: Path,
    ) -> None:
        self.hub = hub
        self.engine = engine
        self.settings = settings
        self.machine_id = engine.machine_id
        self.journal_path = journal_path
        self.refrigerated = False
        self.agent = MachineAgent(
            self.machine_id,
            broker_host=settings.host,
            broker_port=settings.port,
            username=settings.username,
            password=settings.password,
            prefix=settings.prefix,
            outbox_path=outbox_path,
            announce=messages.announce(engine),
            resend_after=settings.resend_after,
            keepalive=settings.keepalive,
            command_handler=self.async_handle_command,
            on_config=self.async_apply_config,
            tls=tls_context(settings.tls),
        )
        self._plan_store: Store[dict[str, Any]] = Store(
            hub, f"uplink.{self.machine_id}.plan", PLAN_STORE_VERSION
        )
        self._unsubscribe: list[Callable[[], None]] = []
        self._telemetry_task: asyncio.Task[None] | None = None
        self._door_open: bool | None = None
        """The door's state as last sent (None: the board does not say)."""
        self._stores: set[asyncio.Task[Any]] = set()

    # ---- life cycle ------------------------------------------------------------------------

    async def async_start(self) -> None:
        """Listen for the machine's events, store the journal's backlog, start the link."""
        # The fleet owns the slots' plan from now on: vending.set_slots refuses to change it.
        self.engine.plan_owner = PLAN_OWNER
        try:
            await self._async_start()
        except BaseException:
            self._release_plan()
            raise

    def _release_plan(self) -> None:
        if self.engine.plan_owner == PLAN_OWNER:
            self.engine.plan_owner = None

    async def _async_start(self) -> None:
        bus = self.hub.bus
        mine = self._is_mine
        self._unsubscribe = [
            bus.async_listen(EVENT_VEND_COMPLETED, self._on_vend, event_filter=mine),
            bus.async_listen(EVENT_VEND_FAILED, self._on_vend, event_filter=mine),
            bus.async_listen(EVENT_STOCK_REFILLED, self._on_restocked, event_filter=mine),
            bus.async_listen(EVENT_ALARM_RAISED, self._on_alarm, event_filter=mine),
        ]
        await self._async_restore_plan()
        status = await self._async_board_status()
        await self._async_note_thermometer(status)
        # The door's state at start goes with the first telemetry; its changes from now on go
        # as events, at once and through the outbox (an opening shorter than the telemetry
        # interval would otherwise never reach the fleet's door alarm).
        self._door_open = status.door_open if status is not None else None
        self._unsubscribe.append(self.engine.machine.dispenser.async_listen(self._note_door))
        await self.async_store_backlog()
        await self.agent.start()
        self._telemetry_task = self.hub.async_create_background_task(
            self._async_telemetry_loop(), name=f"uplink {self.machine_id} telemetry"
        )

    async def async_stop(self) -> None:
        """Let a running session end, store what the journal has, go offline, close."""
        active = self.engine.active_session
        if active is not None and not active.finished:
            _LOGGER.info(
                "Uplink %s: waiting for vend session %s to end before closing the outbox",
                self.machine_id,
                active.id,
            )
            with contextlib.suppress(TimeoutError, KeyError):
                await self.engine.async_wait(active.id, timeout=UNLOAD_SESSION_WAIT)
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        if self._stores:
            await asyncio.wait(list(self._stores))
        await self.async_store_backlog()
        if self._telemetry_task is not None:
            self._telemetry_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._telemetry_task
            self._telemetry_task = None
        await self.agent.stop(timeout=AGENT_STOP_TIMEOUT)
        self._release_plan()

    # ---- events to the fleet --------------------------------------------------------------

    def _is_mine(self, event: Event) -> bool:
        return event.data.get("machine_id") == self.machine_id

    def _on_vend(self, event: Event) -> None:
        self._store(messages.vend_event(_PROTOCOL_VEND_EVENTS[event.event_type], event.data))

    def _on_restocked(self, event: Event) -> None:
        self._store(messages.restocked_event(event.data))
        self._schedule_announce()

    def _on_alarm(self, event: Event) -> None:
        self._store(messages.error_event(event.data))

    def _store(self, message: dict[str, Any]) -> None:
        """Hand ``message`` to the outbox (see the module's docstring)."""
        self._track(
            self.hub.async_create_task(
                self._async_store(message), name=f"uplink {self.machine_id} store"
            )
        )

    async def _async_store(self, message: dict[str, Any]) -> None:
        try:
            await self.agent.publish_events([message])
        except protocol.ProtocolError as error:
            _LOGGER.error(
                "Uplink %s: cannot send event %s: %s", self.machine_id, message["event"], error
            )

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._stores.add(task)
        task.add_done_callback(self._stores.discard)

    def _schedule_announce(self) -> None:
        self._track(
            self.hub.async_create_task(
                self.agent.update_announce(messages.announce(self.engine, self.refrigerated)),
                name=f"uplink {self.machine_id} announce",
            )
        )

    async def async_store_backlog(self) -> int:
        """Store the journal's recent ledger events the outbox does not know; how many."""
        sessions = await asyncio.get_running_loop().run_in_executor(
            None,
            read_ledger_sessions,
            self.journal_path,
            self.machine_id,
            time.time() - BACKLOG_DAYS * 86400,
        )
        missing = []
        for session in sessions:
            if self.agent.outbox.contains(session.id):
                continue
            name = _PROTOCOL_VEND_EVENTS[ledger_event(session)]
            finished = datetime.fromtimestamp(session.finished_at or session.started_at, UTC)
            ts = protocol.format_time(finished)
            missing.append(messages.vend_event(name, ledger_data(session), ts=ts))
        if not missing:
            return 0
        stored = await self.agent.publish_events(missing)
        _LOGGER.info(
            "Uplink %s: %d vends from the journal were not in the outbox yet; queued for the "
            "fleet hub",
            self.machine_id,
            stored,
        )
        return stored

    # ---- telemetry -------------------------------------------------------------------------

    async def _async_board_status(self) -> DispenserStatus | None:
        try:
            async with asyncio.timeout(STATUS_TIMEOUT):
                return await self.engine.machine.dispenser.async_status()
        except Exception as error:  # a board that cannot say: telemetry goes on without it
            _LOGGER.debug("Uplink %s: no board status: %s", self.machine_id, error)
            return None

    async def _async_note_thermometer(self, status: DispenserStatus | None) -> bool:
        """Announce the machine as refrigerated the first time its board reports a
        temperature; whether it did now."""
        if status is None or status.temperature is None or self.refrigerated:
            return False
        self.refrigerated = True
        await self.agent.update_announce(messages.announce(self.engine, refrigerated=True))
        return True

    def _note_door(self, status: DispenserStatus) -> None:
        """Send ``door_opened`` / ``door_closed`` when ``status`` changes the door's state."""
        if status.door_open is None or status.door_open == self._door_open:
            return
        self._door_open = status.door_open
        self._store(messages.door_event(status.door_open))

    async def async_send_telemetry(self) -> bool:
        """Send the readings now; False when the link is down (they are not kept)."""
        status = await self._async_board_status()
        if status is not None:
            self._note_door(status)  # a board that reports its door only when asked
        # A board that had no temperature at start (a sensor plugged in later, a status that
        # timed out) is announced again before its reading, or the fleet has no sensor for it.
        if await self._async_note_thermometer(status):
            _LOGGER.info("Uplink %s: the board reports a temperature now", self.machine_id)
        return await self.agent.telemetry(messages.readings(self.engine, status))

    async def _async_telemetry_loop(self) -> None:
        interval = self.settings.telemetry_interval
        await self.agent.wait_connected()
        while True:
            await self.async_send_telemetry()
            await asyncio.sleep(interval)

    # ---- from the fleet --------------------------------------------------------------------

    async def async_apply_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """Apply the fleet's prices, products, capacities, par levels and mode to the engine;
        the slots it lacks (or cannot take) are answered as ``rejected``."""
        plans, rejected = messages.slot_plans(config)
        context = Context()
        rejected.update(
            await self.engine.async_apply_plan(plans, MachineMode(config["mode"]), context=context)
        )
        await self._plan_store.async_save(
            {"version": config["version"], "mode": config["mode"], "slots": config["slots"]}
        )
        await self.agent.update_announce(messages.announce(self.engine, self.refrigerated))
        if rejected:
            _LOGGER.warning(
                "Uplink %s: config version %s applied except %s",
                self.machine_id,
                config["version"],
                rejected,
            )
        return {"rejected": rejected}

    async def _async_restore_plan(self) -> None:
        """Sell at the fleet's last plan from the start, even when the fleet is unreachable
        now (the retained config, when it comes, is applied again and confirmed)."""
        stored = await self._plan_store.async_load()
        if not stored:
            return
        plans, _ = messages.slot_plans(stored)
        await self.engine.async_apply_plan(plans, MachineMode(stored["mode"]), Context())
        _LOGGER.info(
            "Uplink %s: selling at the fleet's config version %s until the fleet hub is reached",
            self.machine_id,
            stored["version"],
        )

    async def async_handle_command(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """``restock`` runs on the engine; ``vend`` is refused (a remote vend would give the
        product away without a customer); the rest are unknown to a local machine."""
        if name == protocol.COMMAND_RESTOCK:
            args = protocol.validate_command_args(name, args)
            slot = args.get("slot")
            if slot is not None and slot not in self.engine.machine.planogram:
                known = ", ".join(self.engine.machine.planogram)
                raise CommandError(
                    f"machine {self.machine_id} has no slot {slot!r}; known: {known}"
                )
            # Filled to par, never lowered: the fleet's restock command counts nothing.
            changes = await self.engine.async_restock(
                fill=None if slot is None else [slot], context=Context()
            )
            return {"slots": {code: change["stock"] for code, change in changes.items()}}
        if name == protocol.COMMAND_VEND:
            raise CommandError(
                f"machine {self.machine_id} is driven by its own hub; a remote vend would "
                "dispense without a customer paying, so it is not supported"
            )
        raise UnknownCommand(f"unknown command {name!r}")
