"""Roles and what each may do.

A role is a fixed set of permissions; roles are ordered, and a user may only manage users of a
lower role than their own (the owner manages everyone).
"""

from __future__ import annotations

from enum import StrEnum


class Permission(StrEnum):
    """One kind of thing an identity may do."""

    read = "read"
    """See states, machines, sales, alarms, automations and history."""
    operate_machines = "operate_machines"
    """Send commands, restock, change a machine's mode, acknowledge its alarms."""
    manage_catalog = "manage_catalog"
    """Change products, planograms and prices."""
    manage_automations = "manage_automations"
    """Enable, disable, trigger and reload automations."""
    adopt_machines = "adopt_machines"
    """Adopt and remove machines."""
    manage_users = "manage_users"
    """Create, change and delete users and their tokens."""
    manage_hub = "manage_hub"
    """Reload the configuration, read the audit log, call any service."""


class Role(StrEnum):
    """A user's role, from the most to the least powerful."""

    owner = "owner"
    admin = "admin"
    operator = "operator"
    technician = "technician"
    viewer = "viewer"

    @property
    def rank(self) -> int:
        """Higher is more powerful."""
        return _RANKS[self]

    @property
    def permissions(self) -> frozenset[Permission]:
        return ROLE_PERMISSIONS[self]

    @property
    def machine_scoped(self) -> bool:
        """Whether a user of this role sees only the machines assigned to them."""
        return self is Role.technician


_RANKS = {Role.viewer: 0, Role.technician: 1, Role.operator: 2, Role.admin: 3, Role.owner: 4}

_ALL = frozenset(Permission)
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.owner: _ALL,
    Role.admin: _ALL,
    Role.operator: frozenset(
        {
            Permission.read,
            Permission.operate_machines,
            Permission.manage_catalog,
            Permission.manage_automations,
            Permission.adopt_machines,
        }
    ),
    Role.technician: frozenset({Permission.read, Permission.operate_machines}),
    Role.viewer: frozenset({Permission.read}),
}
