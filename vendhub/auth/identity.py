"""Identity: who a validated access token stands for, and what they may do."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from vendhub.auth.roles import Permission, Role


class IdentityKind(StrEnum):
    """How the caller signed in."""

    user = "user"
    """A person, with an access token from a password sign-in or a console session."""
    token = "token"
    """A long-lived token a user created for an integration or a script."""
    machine = "machine"
    """A vending machine, with its own credentials; it reaches only its own resources."""


@dataclass(frozen=True, slots=True)
class Identity:
    """The caller of one request or WebSocket connection."""

    kind: IdentityKind
    name: str
    """The username, the token's name or the machine id: for logs and the audit log."""
    role: Role | None = None
    """None for a machine."""
    user_id: str | None = None
    token_id: str | None = None
    machine_id: str | None = None
    """For a machine identity: the machine itself."""
    machine_ids: frozenset[str] | None = None
    """For a technician: the machines assigned to them; None means every machine."""

    @property
    def actor_id(self) -> str:
        """The id the audit log and contexts use for this caller."""
        if self.kind is IdentityKind.machine:
            return f"machine:{self.machine_id}"
        if self.kind is IdentityKind.token:
            return f"token:{self.token_id}"
        return f"user:{self.user_id}"

    @property
    def is_machine(self) -> bool:
        return self.kind is IdentityKind.machine

    def has(self, permission: Permission) -> bool:
        """Whether this identity holds ``permission`` at all (machines hold none)."""
        return self.role is not None and permission in self.role.permissions

    def sees_machine(self, machine_id: str) -> bool:
        """Whether ``machine_id`` is within this identity's reach."""
        if self.kind is IdentityKind.machine:
            return machine_id == self.machine_id
        return self.machine_ids is None or machine_id in self.machine_ids

    def can(self, permission: Permission, machine_id: str | None = None) -> bool:
        """Whether this identity may do ``permission`` (on ``machine_id``, when given)."""
        if not self.has(permission):
            return False
        return machine_id is None or self.sees_machine(machine_id)
