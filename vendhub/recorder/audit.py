"""The audit log: who changed what and when, with the before and after, committed at once.

Every change made through the service registry is audited on its own: ``ServiceAuditor``
observes each call (``ServiceRegistry.async_observe_calls``) except those of services
registered ``read_only=True``, and writes one ``audit_log`` row when the call ends:

- who: the actor of the call's context (``vendhub.core.context``: user, token, machine,
  system), or the automation whose run made the call;
- what: ``action`` is ``<domain>.<service>``; the target is the entity, alarm or machine the
  data names (``entity_id``, ``alarm_id``, ``machine_id``, else ``id`` typed by the domain);
- before and after: the states of the entities the data names and of those the call changed
  (state changes carrying the call's context or a child of it), as
  ``{"states": {entity_id: {"state", "attributes"} or null}}``; ``after`` also holds the
  ``service_data``, the ``result`` and, for a call that raised, the ``error``.

Other code (the API's sign-in, token and user management) writes its own entries with
``await async_audit(hub, AuditEntry(...))``.

Secrets never reach the row: ``before`` and ``after`` go through
``vendhub.util.redact.redact_data`` (values under keys such as ``password`` or ``token``,
card numbers, bearer tokens, URL credentials become ``***``), and any value found under such
a key is also hidden wherever else it appears (an echo in a result or an error message).
This module logs actions and actors, never data.

Rows are written by the recorder's writer together with the money events and committed at
once (``Recorder.async_write_durable``), not batched with history, and the history purge
never deletes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert

from vendhub.const import EVENT_AUTOMATION_TRIGGERED, EVENT_SERVICE_REMOVED, EVENT_STATE_CHANGED
from vendhub.core.context import (
    ACTOR_AUTOMATION,
    ACTOR_MACHINE,
    ACTOR_SYSTEM,
    ACTOR_TOKEN,
    ACTOR_TYPES,
    ACTOR_USER,
    Actor,
    Context,
)
from vendhub.recorder import queries
from vendhub.recorder.convert import context_id_to_bytes, to_json
from vendhub.recorder.models.auth import AuditLogEntry
from vendhub.recorder.recorder import RecorderNotRunning, get_recorder
from vendhub.util.dt import utcnow
from vendhub.util.redact import MASK, Redactor, redact_data, secret_values
from vendhub.util.slug import slugify

if TYPE_CHECKING:
    from vendhub.core.events import Event
    from vendhub.core.hub import Hub
    from vendhub.core.services import CallFinished, Service, ServiceCall
    from vendhub.core.states import State

_LOGGER = logging.getLogger(__name__)

DATA_AUDITOR = "recorder_auditor"
# Column sizes of ``audit_log`` (vendhub/recorder/models/auth.py): longer values are cut, so
# that no database refuses a row (a refused row would hold up the money written with it).
_ACTOR_ID_CHARS = 64
_ACTION_CHARS = 64
_TARGET_TYPE_CHARS = 32
_TARGET_ID_CHARS = 255
_REMOTE_ADDRESS_CHARS = 64
_CONTEXT_ID_BYTES = 16
# ``before``/``after`` are TEXT: 65,535 bytes on MariaDB. The JSON is ASCII (non-ASCII is
# escaped), so characters are bytes; larger values are cut, biggest parts first.
MAX_JSON_CHARS = 60_000
# Entities whose before and after one call's entry keeps.
MAX_STATES_PER_CALL = 25
# Contexts whose actor is remembered (automation runs, audited calls), for the calls they
# cause later.
_KNOWN_CONTEXTS = 10_000
# Actors whose calls come from a network peer, whose address is worth keeping.
_REMOTE_ACTORS = frozenset({ACTOR_USER, ACTOR_TOKEN, ACTOR_MACHINE})
# Service data keys naming the target of a call, in order of preference, and its type.
_TARGET_KEYS = (
    ("entity_id", "entity"),
    ("entity_ids", "entity"),
    ("alarm_id", "alarm"),
    ("machine_id", "machine"),
)

# The address of the network peer whose request is being handled: the API sets it around
# the work a request does (``with audit_remote_address(request.remote): ...``); asyncio
# copies it into the tasks that work starts.
REMOTE_ADDRESS: ContextVar[str | None] = ContextVar("vendhub_audit_remote_address", default=None)


@contextmanager
def audit_remote_address(address: str | None) -> Iterator[None]:
    """Audit entries written inside this block carry ``address`` as their remote address."""
    token = REMOTE_ADDRESS.set(address)
    try:
        yield
    finally:
        REMOTE_ADDRESS.reset(token)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One change for the audit log: who did what to which target, before and after.

    ``before`` and ``after`` are JSON-ready values; they are redacted when written, so raw
    data may be given. ``actor_type`` is one of ``ACTOR_TYPES``.
    """

    ts: datetime = field(default_factory=utcnow)
    actor_type: str
    actor_id: str | None
    action: str
    target_type: str | None = None
    target_id: str | None = None
    before: Any = None
    after: Any = None
    context_id: str | None = None
    remote_address: str | None = None

    def __post_init__(self) -> None:
        if self.actor_type not in ACTOR_TYPES:
            raise ValueError(
                f"actor_type must be one of {', '.join(ACTOR_TYPES)}, got {self.actor_type!r}"
            )
        if not self.action:
            raise ValueError("an audit entry needs an action")

    @classmethod
    def for_context(cls, context: Context, action: str, **values: Any) -> AuditEntry:
        """An entry for something ``context``'s actor did (see ``vendhub.core.context``)."""
        actor = context.actor
        return cls(
            actor_type=actor.type,
            actor_id=actor.id,
            action=action,
            context_id=context.id,
            **values,
        )

    def row(self) -> dict[str, Any]:
        """The ``audit_log`` column values: redacted, trimmed to the columns' sizes.

        Besides what ``redact_data`` masks, a value found under a secret key anywhere in
        ``before`` or ``after`` is masked wherever else it shows (a service that echoes a
        password in its result, an error message quoting it).
        """
        known = Redactor(secret_values([self.before, self.after]), mask=MASK)
        context_id = context_id_to_bytes(self.context_id)
        ts = self.ts.timestamp()
        return {
            "ts": ts if math.isfinite(ts) else utcnow().timestamp(),
            "actor_type": self.actor_type,
            "actor_id": _column_text(self.actor_id, _ACTOR_ID_CHARS),
            "action": _column_text(self.action, _ACTION_CHARS) or "?",
            "target_type": _column_text(self.target_type, _TARGET_TYPE_CHARS),
            "target_id": _column_text(self.target_id, _TARGET_ID_CHARS),
            "before": _json_column(self.before, known),
            "after": _json_column(self.after, known),
            "context_id": context_id
            if context_id and len(context_id) <= _CONTEXT_ID_BYTES
            else None,
            "remote_address": _column_text(self.remote_address, _REMOTE_ADDRESS_CHARS),
        }


def _column_text(value: Any, limit: int) -> str | None:
    if value is None:
        return None
    text = str(value).replace("\x00", "")
    # Lone surrogates cannot be encoded for the database; replace them.
    text = text.encode("utf-8", "replace").decode("utf-8")
    return text[:limit]


def _json_column(value: Any, known: Redactor) -> str | None:
    if value is None:
        return None
    redacted = redact_data(value, known)
    text = to_json(redacted)
    if len(text) <= MAX_JSON_CHARS:
        return text
    if isinstance(redacted, dict):
        # Cut the biggest parts first, so the small ones (the service data) stay readable.
        sizes = sorted(((len(to_json(item)), key) for key, item in redacted.items()), reverse=True)
        for size, key in sizes:
            redacted[key] = {"truncated": True, "chars": size}
            text = to_json(redacted)
            if len(text) <= MAX_JSON_CHARS:
                return text
    return to_json({"truncated": True, "chars": len(text)})


class _AuditRecord:
    """An audit row on its way through the recorder's writer (a ``DurableRecord``)."""

    __slots__ = ("_future", "_loop", "row_id", "values")

    def __init__(
        self,
        values: dict[str, Any],
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[int],
    ) -> None:
        self.values = values
        self.row_id = 0
        self._loop = loop
        self._future = future

    def write(self, connection: Connection) -> None:
        result = connection.execute(insert(AuditLogEntry).values(**self.values))
        self.row_id = int(result.inserted_primary_key[0])

    def committed(self) -> None:
        # A closed loop (the hub stopped) has nobody waiting any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(_resolve, self._future, self.row_id)


def _resolve(future: asyncio.Future[int], row_id: int) -> None:
    if not future.done():
        future.set_result(row_id)


def async_write_audit(hub: Hub, entry: AuditEntry) -> asyncio.Future[int]:
    """Queue ``entry`` for the audit log; the future resolves with its row id once committed.

    Raises ``RecorderNotRunning`` when there is no recorder. Nothing needs to wait for the
    future: while the database is away the entry waits in the writer with the money events.
    """
    recorder = get_recorder(hub)
    if entry.remote_address is None and REMOTE_ADDRESS.get() is not None:
        entry = replace(entry, remote_address=REMOTE_ADDRESS.get())
    future: asyncio.Future[int] = hub.loop.create_future()
    recorder.async_write_durable(_AuditRecord(entry.row(), hub.loop, future))
    return future


async def async_audit(hub: Hub, entry: AuditEntry, timeout: float | None = 30) -> int:
    """Write ``entry`` to the audit log and wait until it is committed; return its row id."""
    return await asyncio.wait_for(async_write_audit(hub, entry), timeout)


async def async_audit_log(
    hub: Hub,
    *,
    actor_type: str | None = None,
    actor_id: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> queries.Page[queries.AuditRow]:
    """Audit log entries, newest first, filtered and paginated (see ``queries.audit_log``)."""
    return await get_recorder(hub).async_query(
        lambda session: queries.audit_log(
            session,
            actor_type=actor_type,
            actor_id=actor_id,
            target_type=target_type,
            target_id=target_id,
            action=action,
            since=since,
            until=until,
            limit=limit,
            before_id=before_id,
        )
    )


# ---- auditing service calls ------------------------------------------------------------------


def _state_json(state: State | None) -> dict[str, Any] | None:
    if state is None:
        return None
    return {"state": state.state, "attributes": dict(state.attributes)}


def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list | tuple | set | frozenset):
        return list(value)
    return [value]


def _entity_ids_in(data: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    for key in ("entity_id", "entity_ids"):
        for value in _as_list(data.get(key) or []):
            if isinstance(value, str) and "." in value and value not in found:
                found.append(value)
    return found[:MAX_STATES_PER_CALL]


def _implied_entity_ids(domain: str, data: Mapping[str, Any]) -> list[str]:
    """Entities a call's data points at without naming them: ``machine.<machine_id>`` and,
    for ``<domain>.<service>`` with an ``id``, ``<domain>.<id>`` (``automation.turn_off``)."""
    found = [
        f"machine.{slugify(str(machine_id))}"
        for machine_id in _as_list(data.get("machine_id") or [])
    ]
    found.extend(f"{domain}.{slugify(str(item))}" for item in _as_list(data.get("id") or []))
    return found[:MAX_STATES_PER_CALL]


def _joined(value: Any) -> str | None:
    items = [str(item) for item in _as_list(value) if item is not None and item != ""]
    return ",".join(items) or None


class _AuditedCall:
    """A call being audited: what it named and changed, and the states before."""

    __slots__ = (
        "actor",
        "before",
        "call",
        "dropped_states",
        "maybe_created",
        "remote_address",
        "started",
    )

    def __init__(self, call: ServiceCall, actor: Actor, remote_address: str | None) -> None:
        self.call = call
        self.actor = actor
        self.remote_address = remote_address
        self.started = utcnow()
        self.before: dict[str, dict[str, Any] | None] = {}
        self.dropped_states = 0
        # Implied entities that did not exist when the call started: kept if the call made them.
        self.maybe_created: list[str] = []

    def changed(self, entity_id: str, old_state: State | None) -> None:
        if entity_id in self.before:
            return
        if entity_id in self.maybe_created:
            # It did not exist when the call started, whatever made it in between (an
            # integration may create it outside the call's context and update it within).
            old_state = None
        if len(self.before) >= MAX_STATES_PER_CALL:
            self.dropped_states += 1
            return
        self.before[entity_id] = _state_json(old_state)

    def entry(self, hub: Hub, result: Any, error: BaseException | None) -> AuditEntry:
        call = self.call
        for entity_id in self.maybe_created:
            if hub.states.get(entity_id) is not None:
                self.changed(entity_id, None)
        after: dict[str, Any] = {"service_data": dict(call.data)}
        if self.before:
            after["states"] = {
                entity_id: _state_json(hub.states.get(entity_id)) for entity_id in self.before
            }
        if self.dropped_states:
            after["states_not_kept"] = self.dropped_states
        if result is not None:
            after["result"] = result
        if error is not None:
            after["error"] = _describe(error)
        target_type, target_id = self._target()
        return AuditEntry(
            ts=self.started,
            actor_type=self.actor.type,
            actor_id=self.actor.id,
            action=f"{call.domain}.{call.service}",
            target_type=target_type,
            target_id=target_id,
            before={"states": self.before} if self.before else None,
            after=after,
            context_id=call.context.id,
            remote_address=self.remote_address,
        )

    def _target(self) -> tuple[str | None, str | None]:
        data = self.call.data
        for key, target_type in _TARGET_KEYS:
            target_id = _joined(data.get(key))
            if target_id:
                return target_type, target_id
        target_id = _joined(data.get("id"))
        if target_id:
            return self.call.domain, target_id
        if len(self.before) == 1:
            return "entity", next(iter(self.before))
        return None, None


def _describe(error: BaseException) -> str:
    if isinstance(error, asyncio.CancelledError):
        return "cancelled"
    if isinstance(error, TimeoutError) and not str(error):
        return "TimeoutError: timed out"
    return f"{type(error).__name__}: {error}"


class ServiceAuditor:
    """Writes an audit log entry for every service call that may change something."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.entries_queued = 0
        self.entries_lost = 0
        self._known: OrderedDict[str, Actor] = OrderedDict()
        self._pending: dict[str, list[_AuditedCall]] = {}
        self._stop_state_listener: Callable[[], None] | None = None
        self._unsubscribe: list[Callable[[], None]] = []

    def async_start(self) -> Callable[[], None]:
        """Start auditing; returns a callable that stops it."""
        self._unsubscribe = [
            self.hub.services.async_observe_calls(self._on_call),
            self.hub.bus.async_listen(EVENT_AUTOMATION_TRIGGERED, self._on_automation_run),
        ]
        return self.async_stop

    def async_stop(self) -> None:
        """Stop auditing (calls still running are not audited)."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe.clear()
        self._pending.clear()
        self._update_state_listener()

    def actor_of(self, context: Context) -> Actor:
        """Who acts in ``context``: an automation whose run it belongs to, else its user_id."""
        known = [self._known.get(key) for key in (context.id, context.parent_id) if key]
        for actor in known:
            if actor is not None and actor.type == ACTOR_AUTOMATION:
                return actor
        actor = context.actor
        if actor.type == ACTOR_SYSTEM:
            for known_actor in known:
                if known_actor is not None:
                    return known_actor
        return actor

    def _remember(self, context_id: str, actor: Actor) -> None:
        known = self._known
        known[context_id] = actor
        known.move_to_end(context_id)
        if len(known) > _KNOWN_CONTEXTS:
            known.popitem(last=False)

    def _on_automation_run(self, event: Event) -> None:
        entity_id = event.data.get("entity_id")
        if entity_id:
            self._remember(event.context.id, Actor(ACTOR_AUTOMATION, str(entity_id)))

    def _on_call(self, call: ServiceCall, service: Service) -> CallFinished | None:
        context = call.context
        actor = self.actor_of(context)
        if actor.type != ACTOR_SYSTEM:
            self._remember(context.id, actor)  # calls this call makes are its actor's too
        if service.read_only:
            return None
        remote = REMOTE_ADDRESS.get() if actor.type in _REMOTE_ACTORS else None
        audited = _AuditedCall(call, actor, remote)
        states = self.hub.states
        for entity_id in _entity_ids_in(call.data):
            audited.changed(entity_id, states.get(entity_id))
        for entity_id in _implied_entity_ids(call.domain, call.data):
            state = states.get(entity_id)
            if state is None:
                audited.maybe_created.append(entity_id)
            else:
                audited.changed(entity_id, state)
        self._pending.setdefault(context.id, []).append(audited)
        self._update_state_listener()

        def finished(result: Any, error: BaseException | None) -> None:
            calls = self._pending.get(context.id)
            if calls is not None and audited in calls:
                calls.remove(audited)
                if not calls:
                    del self._pending[context.id]
                self._update_state_listener()
            self._write(audited, result, error)

        return finished

    def _update_state_listener(self) -> None:
        # Listening to state changes only while audited calls run keeps the bus's busiest
        # event free of this listener the rest of the time.
        if self._pending and self._stop_state_listener is None:
            self._stop_state_listener = self.hub.bus.async_listen(
                EVENT_STATE_CHANGED, self._on_state_changed
            )
        elif not self._pending and self._stop_state_listener is not None:
            self._stop_state_listener()
            self._stop_state_listener = None

    def _on_state_changed(self, event: Event) -> None:
        context = event.context
        calls = self._pending.get(context.id, [])
        if context.parent_id is not None:
            calls = calls + self._pending.get(context.parent_id, [])
        for audited in calls:
            audited.changed(event.data["entity_id"], event.data.get("old_state"))

    def _write(self, audited: _AuditedCall, result: Any, error: BaseException | None) -> None:
        action = f"{audited.call.domain}.{audited.call.service}"
        try:
            entry = audited.entry(self.hub, result, error)
            recorder = get_recorder(self.hub)
            future: asyncio.Future[int] = self.hub.loop.create_future()
            recorder.async_write_durable(_AuditRecord(entry.row(), self.hub.loop, future))
        except RecorderNotRunning:
            self.entries_lost += 1
            _LOGGER.warning(
                "Audit entry for %s by %s %s not written: the recorder is not running",
                action,
                audited.actor.type,
                audited.actor.id,
            )
            return
        except Exception:
            self.entries_lost += 1
            _LOGGER.exception(
                "Audit entry for %s by %s %s not written",
                action,
                audited.actor.type,
                audited.actor.id,
            )
            return
        self.entries_queued += 1


def async_start_auditing(hub: Hub) -> ServiceAuditor:
    """Audit service calls from now until the recorder's ``audit_log`` service is removed
    (the recorder integration unloads); called by ``register_services``. An auditor started
    before on this hub is stopped, so no call is audited twice."""
    previous: ServiceAuditor | None = hub.data.pop(DATA_AUDITOR, None)
    if previous is not None:
        previous.async_stop()
    auditor = ServiceAuditor(hub)
    auditor.async_start()
    hub.data[DATA_AUDITOR] = auditor

    def on_service_removed(event: Event) -> None:
        removed = (str(event.data.get("domain")).lower(), str(event.data.get("service")).lower())
        if removed == ("recorder", "audit_log"):
            auditor.async_stop()
            if hub.data.get(DATA_AUDITOR) is auditor:
                del hub.data[DATA_AUDITOR]

    auditor._unsubscribe.append(hub.bus.async_listen(EVENT_SERVICE_REMOVED, on_service_removed))
    return auditor
