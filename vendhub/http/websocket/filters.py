"""What a subscription or ``get_states`` lets through: entity id globs and machines.

A filter is compiled once, when the client subscribes, and then asked two questions per
event: its entity id (or None) and its machine id (or None). ``machines`` is the client's
``machine_id`` filter narrowed to the identity's reach; a technician without a filter gets
their own machines, so events and states of other machines (and of no machine) never reach
them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import translate
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from vendhub.const import EVENT_STATE_CHANGED
from vendhub.http.scoping import machine_of_entity

if TYPE_CHECKING:
    from vendhub.auth.identity import Identity
    from vendhub.core.events import Event

MAX_PATTERNS = 100


class FilterError(ValueError):
    """A filter names a machine outside the caller's reach."""


def _as_list(value: str | list[str] | None) -> list[str] | None:
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


@lru_cache(maxsize=1024)
def compile_globs(patterns: tuple[str, ...]) -> Callable[[str], Any]:
    """One matcher for shell-style globs (``sensor.*_temperature``, ``slot.lobby_1_?1``).

    Cached, so equal filters share one matcher and compare equal (the broadcaster groups
    subscriptions with equal filters)."""
    if all(not any(ch in pattern for ch in "*?[") for pattern in patterns):
        exact = frozenset(patterns)
        return exact.__contains__
    return re.compile("|".join(f"(?:{translate(p)})" for p in patterns)).match


@dataclass(frozen=True, slots=True)
class EntityFilter:
    """Entity id globs and machines; None means "any" for each."""

    entity_match: Callable[[str], Any] | None = None
    machines: frozenset[str] | None = None

    @classmethod
    def build(
        cls,
        identity: Identity,
        entity_id: str | list[str] | None,
        machine_id: str | list[str] | None,
    ) -> EntityFilter:
        """The filter of a request, narrowed to what ``identity`` may see.

        Raises FilterError when ``machine_id`` names a machine outside the identity's reach
        (answered as "not found", as the REST API does).
        """
        globs = _as_list(entity_id)
        wanted = _as_list(machine_id)
        machines: frozenset[str] | None = None
        if wanted is not None:
            outside = sorted(m for m in wanted if not identity.sees_machine(m))
            if outside:
                raise FilterError(f"no machine {outside[0]!r}")
            machines = frozenset(wanted)
        elif identity.machine_ids is not None:
            machines = frozenset(identity.machine_ids)
        return cls(compile_globs(tuple(globs)) if globs else None, machines)

    @property
    def everything(self) -> bool:
        return self.entity_match is None and self.machines is None

    def matches(self, entity_id: str | None, machine_id: str | None) -> bool:
        if self.entity_match is not None and (
            entity_id is None or not self.entity_match(entity_id)
        ):
            return False
        return self.machines is None or (machine_id is not None and machine_id in self.machines)


def event_facts(event: Event) -> tuple[str | None, str | None]:
    """The entity id and the machine id an event is about (either may be None).

    ``state_changed``: its entity, and the machine of its new (or, when removed, old) state;
    other events: their ``entity_id`` and ``machine_id`` data, when they are strings (a
    machine is also read from the entity id, as for states).
    """
    data = event.data
    entity_id = data.get("entity_id")
    if not isinstance(entity_id, str):
        entity_id = None
    if event.event_type == EVENT_STATE_CHANGED and entity_id is not None:
        state = data.get("new_state") or data.get("old_state")
        attributes = getattr(state, "attributes", None)
        return entity_id, machine_of_entity(entity_id, attributes)
    machine_id = data.get("machine_id")
    if not isinstance(machine_id, str) or not machine_id:
        machine_id = machine_of_entity(entity_id) if entity_id is not None else None
    return entity_id, machine_id
