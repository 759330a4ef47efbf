"""Immutable State values and the StateMachine that holds the current state of every entity."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NoReturn

from vendhub.const import EVENT_STATE_CHANGED
from vendhub.core.context import Context
from vendhub.core.errors import InvalidEntityId, InvalidStateError
from vendhub.util.dt import utcnow

if TYPE_CHECKING:
    from vendhub.core.events import EventBus

MAX_STATE_LENGTH = 255
_ENTITY_ID = re.compile(r"^(?!_)[a-z0-9_]+(?<!_)\.(?!_)[a-z0-9_]+(?<!_)$")
_set = object.__setattr__


@lru_cache(maxsize=16384)
def valid_entity_id(entity_id: str) -> bool:
    """Return whether ``entity_id`` has the form ``domain.object_id`` (lower-case, a-z0-9_)."""
    return _ENTITY_ID.match(entity_id) is not None and "__" not in entity_id


def split_entity_id(entity_id: str) -> tuple[str, str]:
    """Split ``domain.object_id`` into its two parts."""
    domain, _, object_id = entity_id.partition(".")
    if not domain or not object_id:
        raise InvalidEntityId(f"invalid entity id {entity_id!r}: expected 'domain.object_id'")
    return domain, object_id


class ReadOnlyDict(dict[str, Any]):
    """A dict that refuses to change after it is made."""

    __slots__ = ()

    def _readonly(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("state attributes are read-only; set a new state instead")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _readonly
    __ior__ = _readonly  # type: ignore[assignment]


_EMPTY_ATTRIBUTES = ReadOnlyDict()


class State:
    """The state of one entity at one moment; never changed, only replaced.

    ``last_changed`` moves only when the state string changes; ``last_updated`` moves when the
    state string or any attribute changes.
    """

    __slots__ = (
        "attributes",
        "context",
        "domain",
        "entity_id",
        "last_changed",
        "last_updated",
        "object_id",
        "state",
    )

    entity_id: str
    domain: str
    object_id: str
    state: str
    attributes: ReadOnlyDict
    last_changed: datetime
    last_updated: datetime
    context: Context

    def __init__(
        self,
        entity_id: str,
        state: str,
        attributes: Mapping[str, Any] | None = None,
        last_changed: datetime | None = None,
        last_updated: datetime | None = None,
        context: Context | None = None,
        validate_entity_id: bool = True,
    ) -> None:
        if validate_entity_id and not valid_entity_id(entity_id):
            raise InvalidEntityId(
                f"invalid entity id {entity_id!r}: expected 'domain.object_id' in lower-case "
                "letters, digits and single underscores"
            )
        if len(state) > MAX_STATE_LENGTH:
            raise InvalidStateError(
                f"state of {entity_id} is {len(state)} characters long; "
                f"at most {MAX_STATE_LENGTH} are allowed"
            )
        domain, _, object_id = entity_id.partition(".")
        now = last_updated or utcnow()
        _set(self, "entity_id", entity_id)
        _set(self, "domain", domain)
        _set(self, "object_id", object_id)
        _set(self, "state", state)
        _set(
            self,
            "attributes",
            attributes
            if type(attributes) is ReadOnlyDict
            else ReadOnlyDict(attributes)
            if attributes
            else _EMPTY_ATTRIBUTES,
        )
        _set(self, "last_updated", now)
        _set(self, "last_changed", last_changed or now)
        _set(self, "context", context or Context())

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"State is immutable; cannot set {name!r}")

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, State)
            and self.entity_id == other.entity_id
            and self.state == other.state
            and self.attributes == other.attributes
            and self.last_changed == other.last_changed
            and self.last_updated == other.last_updated
            and self.context == other.context
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        attrs = ", ".join(f"{key}={value}" for key, value in self.attributes.items())
        attrs = f"; {attrs}" if attrs else ""
        return f"<State {self.entity_id}={self.state}{attrs} @ {self.last_changed.isoformat()}>"

    @property
    def name(self) -> str:
        """The friendly name, or the object id when none is set."""
        return str(self.attributes.get("friendly_name") or self.object_id.replace("_", " "))

    def as_dict(self) -> dict[str, Any]:
        """Return the state as JSON-ready data."""
        return {
            "entity_id": self.entity_id,
            "state": self.state,
            "attributes": dict(self.attributes),
            "last_changed": self.last_changed.isoformat(),
            "last_updated": self.last_updated.isoformat(),
            "context": self.context.as_dict(),
        }


class StateMachine:
    """Holds the current State of every entity and fires ``state_changed`` on real changes."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._states: dict[str, State] = {}
        self.writes = 0

    def get(self, entity_id: str) -> State | None:
        """Return the current state of ``entity_id``, or None."""
        return self._states.get(entity_id)

    def is_state(self, entity_id: str, state: str) -> bool:
        """Return whether ``entity_id`` exists and its state string is ``state``."""
        current = self._states.get(entity_id)
        return current is not None and current.state == state

    def async_entity_ids(self, domain: str | Iterable[str] | None = None) -> list[str]:
        """Return the entity ids, optionally only those of one or more domains."""
        if domain is None:
            return list(self._states)
        domains = {domain} if isinstance(domain, str) else set(domain)
        return [eid for eid, st in self._states.items() if st.domain in domains]

    def async_all(self, domain: str | Iterable[str] | None = None) -> list[State]:
        """Return every current state, optionally only of one or more domains."""
        if domain is None:
            return list(self._states.values())
        domains = {domain} if isinstance(domain, str) else set(domain)
        return [st for st in self._states.values() if st.domain in domains]

    def __len__(self) -> int:
        return len(self._states)

    def async_set(
        self,
        entity_id: str,
        new_state: str | int | float,
        attributes: Mapping[str, Any] | None = None,
        force_update: bool = False,
        context: Context | None = None,
    ) -> State | None:
        """Set the state of ``entity_id`` and fire ``state_changed`` if anything changed.

        Returns the new State, or None when nothing changed (and no event was fired).
        """
        if type(new_state) is not str:
            new_state = str(new_state)
        old_state = self._states.get(entity_id)
        if old_state is None:
            same_state = same_attributes = False
            last_changed = None
        else:
            same_state = old_state.state == new_state
            same_attributes = old_state.attributes == (attributes or _EMPTY_ATTRIBUTES)
            if same_state and same_attributes and not force_update:
                return None
            last_changed = old_state.last_changed if same_state else None

        now = utcnow()
        if context is None:
            context = Context()
        state = State(
            entity_id,
            new_state,
            old_state.attributes if same_attributes and old_state is not None else attributes,
            last_changed,
            now,
            context,
            validate_entity_id=old_state is None,
        )
        self._states[entity_id] = state
        self.writes += 1
        self._bus.async_fire(
            EVENT_STATE_CHANGED,
            {"entity_id": entity_id, "old_state": old_state, "new_state": state},
            context=context,
            time_fired=now,
        )
        return state

    def async_remove(self, entity_id: str, context: Context | None = None) -> bool:
        """Remove ``entity_id`` and fire ``state_changed`` with ``new_state`` None.

        Returns False when the entity had no state.
        """
        old_state = self._states.pop(entity_id, None)
        if old_state is None:
            return False
        self._bus.async_fire(
            EVENT_STATE_CHANGED,
            {"entity_id": entity_id, "old_state": old_state, "new_state": None},
            context=context,
        )
        return True
