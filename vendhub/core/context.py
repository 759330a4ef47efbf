"""Context: who or what caused a change, carried by every state, event and service call.

Who acted is carried in ``Context.user_id``; this module is the one place that defines how:

    None                       system      the hub itself (start-up, timers, the machine link)
    "user:<user id>"           user        a person signed in to the console or the API
    "token:<token id>"         token       an API token (its id, never the token itself)
    "machine:<machine id>"     machine     a vending machine
    "automation:<entity id>"   automation  a run of an automation
    anything else              user        (user ids written before this convention)

Build one with ``actor_user_id("token", token_id)`` or ``Context.for_actor("token",
token_id)`` and read it back with ``context.actor``. Children copy ``user_id``, so whatever a
user's call causes stays that user's. The audit log (``vendhub.recorder.audit``) also knows the
contexts of automation runs, which copy the ``user_id`` of what triggered them, and records
what they do as the automation's.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any, NamedTuple

_COUNTER = itertools.count(1)
# Ids sort by process start time, then by creation order within one process; the random part
# keeps ids of two processes started in the same second apart.
_PREFIX = f"{int(time.time()):08x}{os.urandom(4).hex()}"


def new_context_id() -> str:
    """Return an id unique across processes and ordered by creation within one process."""
    return f"{_PREFIX}{next(_COUNTER):012x}"


ACTOR_USER = "user"
ACTOR_TOKEN = "token"
ACTOR_MACHINE = "machine"
ACTOR_AUTOMATION = "automation"
ACTOR_SYSTEM = "system"
ACTOR_TYPES = (ACTOR_USER, ACTOR_TOKEN, ACTOR_MACHINE, ACTOR_AUTOMATION, ACTOR_SYSTEM)
_PREFIXED_ACTOR_TYPES = frozenset(ACTOR_TYPES) - {ACTOR_SYSTEM}


class Actor(NamedTuple):
    """Who acted: a type from ``ACTOR_TYPES`` and an id (None for ``system``)."""

    type: str
    id: str | None

    @property
    def user_id(self) -> str | None:
        """The ``Context.user_id`` that stands for this actor."""
        return None if self.type == ACTOR_SYSTEM else actor_user_id(self.type, self.id or "")


SYSTEM = Actor(ACTOR_SYSTEM, None)


def actor_user_id(actor_type: str, actor_id: str) -> str:
    """The ``Context.user_id`` of an actor: ``"token:3f2a"``, ``"machine:lobby_1"``, ..."""
    if actor_type not in _PREFIXED_ACTOR_TYPES:
        raise ValueError(
            f"actor type must be one of {', '.join(sorted(_PREFIXED_ACTOR_TYPES))}, "
            f"got {actor_type!r}"
        )
    if not actor_id:
        raise ValueError(f"a {actor_type} actor needs an id")
    return f"{actor_type}:{actor_id}"


def parse_actor(user_id: str | None) -> Actor:
    """The actor a ``Context.user_id`` stands for (see the module docstring)."""
    if not user_id:
        return SYSTEM
    actor_type, separator, actor_id = user_id.partition(":")
    if separator and actor_id and actor_type in _PREFIXED_ACTOR_TYPES:
        return Actor(actor_type, actor_id)
    return Actor(ACTOR_USER, user_id)


class Context:
    """Who or what caused a change: a user, a machine, an automation, or the hub itself.

    ``parent_id`` chains cause to effect: a vend's context is the parent of its payment's.
    """

    __slots__ = ("id", "parent_id", "user_id")

    id: str
    user_id: str | None
    parent_id: str | None

    def __init__(
        self,
        user_id: str | None = None,
        parent_id: str | None = None,
        id: str | None = None,
    ) -> None:
        object.__setattr__(self, "id", id or new_context_id())
        object.__setattr__(self, "user_id", user_id)
        object.__setattr__(self, "parent_id", parent_id)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Context is immutable; cannot set {name!r}")

    @classmethod
    def for_actor(cls, actor_type: str, actor_id: str, parent_id: str | None = None) -> Context:
        """A new context of an actor: ``Context.for_actor("token", token_id)``."""
        return cls(user_id=actor_user_id(actor_type, actor_id), parent_id=parent_id)

    @property
    def actor(self) -> Actor:
        """Who acted, read from ``user_id`` (see the module docstring)."""
        return parse_actor(self.user_id)

    def child(self, user_id: str | None = None) -> Context:
        """Return a new context caused by this one."""
        return Context(user_id=user_id or self.user_id, parent_id=self.id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Context) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        return f"<Context id={self.id} user_id={self.user_id} parent_id={self.parent_id}>"

    def as_dict(self) -> dict[str, str | None]:
        """Return the context as JSON-ready data."""
        return {"id": self.id, "user_id": self.user_id, "parent_id": self.parent_id}
