"""Context: who or what caused a change, carried by every state, event and service call."""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

_COUNTER = itertools.count(1)
# Ids sort by process start time, then by creation order within one process; the random part
# keeps ids of two processes started in the same second apart.
_PREFIX = f"{int(time.time()):08x}{os.urandom(4).hex()}"


def new_context_id() -> str:
    """Return an id unique across processes and ordered by creation within one process."""
    return f"{_PREFIX}{next(_COUNTER):012x}"


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
