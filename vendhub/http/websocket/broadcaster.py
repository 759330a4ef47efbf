"""The hub-wide fan-out: one bus listener per event type, whatever the number of clients.

Every subscription of every connection is kept here, by the event type it needs
(``state_changed`` for ``subscribe_states``; ``*`` for ``subscribe_events`` without a type).
The broadcaster listens on the bus once per type that has subscriptions and stops
listening when the last one goes. For each event it works out, once, what the filters ask
(entity id, machine) and the JSON (the event's for ``subscribe_events``, the state change's
for ``subscribe_states``), then hands each matching connection a message made of the
subscription's prefix and those shared bytes. Handing over only appends to the
connection's queue: the hub never waits for a client.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final, Literal, Protocol

from vendhub.const import EVENT_STATE_CHANGED, MATCH_ALL
from vendhub.http.websocket.filters import EntityFilter, event_facts
from vendhub.http.websocket.messages import (
    StateJsonCache,
    event_json,
    event_message,
    event_prefix,
    state_change_json,
)

if TYPE_CHECKING:
    from vendhub.core.events import Event, Unsubscribe
    from vendhub.core.hub import Hub

Kind = Literal["events", "states"]
EVENTS: Final = "events"
STATES: Final = "states"


class Receiver(Protocol):
    """What a subscription delivers to: a connection's queue."""

    def async_send(self, message: bytes) -> None: ...


class Subscription:
    """One client subscription: where to send, what to let through, its message prefix."""

    __slots__ = (
        "event_types",
        "everything",
        "filter",
        "key",
        "kind",
        "prefix",
        "send",
        "subscription_id",
    )

    def __init__(
        self,
        receiver: Receiver,
        subscription_id: int,
        kind: Kind,
        event_types: tuple[str, ...],
        entity_filter: EntityFilter,
    ) -> None:
        self.send = receiver.async_send
        self.subscription_id = subscription_id
        self.kind = kind
        self.event_types = event_types
        self.filter = entity_filter
        self.everything = entity_filter.everything
        self.prefix = event_prefix(subscription_id)
        # Equal for subscriptions whose pushes are the same bytes (same kind and id).
        self.key = (b"s" if kind == STATES else b"e") + self.prefix


class _Group:
    """Subscriptions whose pushes are the same bytes: same kind, id and filter.

    Clients tend to number alike (the first subscription of each is 1 or 2) and to ask for
    the same things, so the filter is asked once per group and the message made once.
    """

    __slots__ = ("everything", "filter", "key", "kind", "prefix", "sends")

    def __init__(self, first: Subscription, sends: tuple[Callable[[bytes], None], ...]) -> None:
        self.key = first.key
        self.kind = first.kind
        self.prefix = first.prefix
        self.filter = first.filter
        self.everything = first.everything
        self.sends = sends


def _groups(subscriptions: Iterable[Subscription]) -> tuple[_Group, ...]:
    members: dict[tuple[bytes, EntityFilter], list[Subscription]] = {}
    for subscription in subscriptions:
        members.setdefault((subscription.key, subscription.filter), []).append(subscription)
    return tuple(
        _Group(group[0], tuple(member.send for member in group)) for group in members.values()
    )


class Broadcaster:
    """Subscriptions by event type, and the one bus listener of each type."""

    def __init__(self, hub: Hub, state_json: StateJsonCache) -> None:
        self._hub = hub
        self._state_json = state_json
        self._keys = itertools.count(1)
        self._subscriptions: dict[str, dict[int, Subscription]] = {}
        self._lists: dict[str, tuple[_Group, ...]] = {}
        self._unlisten: dict[str, Unsubscribe] = {}
        # The last event seen, with what was worked out for it: a `*` subscriber and a typed
        # one get the same event in two calls, and share the work.
        self._memo_event: Event | None = None
        self._memo_facts: tuple[str | None, str | None] = (None, None)
        self._memo_event_json: bytes | None = None
        self._memo_state_json: bytes | None = None
        self._memo_messages: dict[bytes, bytes] = {}
        self.events_dispatched = 0
        self.messages_sent = 0

    @property
    def listened_types(self) -> list[str]:
        """The event types the broadcaster listens to on the bus now."""
        return sorted(self._unlisten)

    def __len__(self) -> int:
        return sum(len(subs) for subs in self._subscriptions.values())

    def async_subscribe(
        self,
        receiver: Receiver,
        subscription_id: int,
        kind: Kind,
        event_types: tuple[str, ...],
        entity_filter: EntityFilter,
    ) -> Callable[[], None]:
        """Deliver matching events to ``receiver``; returns a callable that stops it.

        ``kind`` "states" listens to ``state_changed``; "events" to ``event_types`` (empty:
        every event).
        """
        if kind == STATES:
            event_types = (EVENT_STATE_CHANGED,)
        elif not event_types:
            event_types = (MATCH_ALL,)
        subscription = Subscription(receiver, subscription_id, kind, event_types, entity_filter)
        key = next(self._keys)
        for event_type in event_types:
            self._subscriptions.setdefault(event_type, {})[key] = subscription
            self._refresh(event_type)

        def unsubscribe() -> None:
            for event_type in event_types:
                subscriptions = self._subscriptions.get(event_type)
                if subscriptions is not None and subscriptions.pop(key, None) is not None:
                    self._refresh(event_type)

        return unsubscribe

    def _refresh(self, event_type: str) -> None:
        subscriptions = self._subscriptions.get(event_type)
        if subscriptions:
            self._lists[event_type] = _groups(subscriptions.values())
            if event_type not in self._unlisten:
                listener = self._on_any_event if event_type == MATCH_ALL else self._on_event
                self._unlisten[event_type] = self._hub.bus.async_listen(event_type, listener)
            return
        self._subscriptions.pop(event_type, None)
        self._lists.pop(event_type, None)
        unlisten = self._unlisten.pop(event_type, None)
        if unlisten is not None:
            unlisten()

    def _on_event(self, event: Event) -> None:
        subscriptions = self._lists.get(event.event_type)
        if subscriptions:
            self._dispatch(event, subscriptions)

    def _on_any_event(self, event: Event) -> None:
        subscriptions = self._lists.get(MATCH_ALL)
        if subscriptions:
            self._dispatch(event, subscriptions)

    def _dispatch(self, event: Event, groups: tuple[_Group, ...]) -> None:
        if event is not self._memo_event:
            self._memo_event = event
            self._memo_facts = event_facts(event)
            self._memo_event_json = None
            self._memo_state_json = None
            self._memo_messages = {}
            self.events_dispatched += 1
        entity_id, machine_id = self._memo_facts
        messages = self._memo_messages
        sent = 0
        for group in groups:
            if not group.everything and not group.filter.matches(entity_id, machine_id):
                continue
            message = messages.get(group.key)
            if message is None:
                if group.kind == STATES:
                    payload = self._memo_state_json
                    if payload is None:
                        payload = self._memo_state_json = self._state_change(event)
                else:
                    payload = self._memo_event_json
                    if payload is None:
                        payload = self._memo_event_json = event_json(event)
                message = messages[group.key] = event_message(group.prefix, payload)
            for send in group.sends:
                send(message)
            sent += len(group.sends)
        self.messages_sent += sent

    def _state_change(self, event: Event) -> bytes:
        entity_id = event.data["entity_id"]
        new_state = event.data.get("new_state")
        if new_state is None:
            self._state_json.drop(entity_id)
            return state_change_json(entity_id, None)
        return state_change_json(entity_id, self._state_json.get(new_state))
