"""User records as stored, and the checks on names."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from vendhub.auth.roles import Role

_USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.@-]{1,63}$")


def username_problem(username: str) -> str | None:
    """Why ``username`` is not acceptable, or None if it is."""
    if not _USERNAME.match(username):
        return (
            "a username is 2 to 64 characters: lowercase letters, digits, '_', '.', '@' or '-', "
            "starting with a letter or a digit"
        )
    return None


@dataclass(frozen=True, slots=True)
class User:
    """A person (or a service account) who signs in."""

    id: str
    username: str
    name: str
    role: Role
    password_hash: str
    active: bool
    created: float
    machine_ids: tuple[str, ...] | None = None
    """The machines a technician is assigned to; None for the other roles (all machines)."""
    last_login: float | None = None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["role"] = str(self.role)
        data["machine_ids"] = None if self.machine_ids is None else list(self.machine_ids)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> User:
        machine_ids = data.get("machine_ids")
        return cls(
            **{
                **data,
                "role": Role(data["role"]),
                "machine_ids": None if machine_ids is None else tuple(machine_ids),
            }
        )

    def public(self) -> dict[str, Any]:
        """What the API shows of a user: never the password hash."""
        data = self.as_json()
        del data["password_hash"]
        return data
