"""Which machine an entity belongs to, so technicians see only their machines' entities.

An entity belongs to a machine when its state has a ``machine_id`` attribute (slots,
alarms), when it is the machine itself (``machine.<machine id>``), or when its object id is
one of the per-machine names of ``vendhub/machine/entities.py``
(``<machine id>_temperature``, ``_door``, ``_cash_box``, ``_link_errors``). Anything else
belongs to no machine: the whole fleet's entities, which a technician does not see.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from vendhub.auth.identity import Identity
    from vendhub.core.states import State

ATTR_MACHINE_ID: Final = "machine_id"
MACHINE_DOMAIN: Final = "machine"
# The object ids vendhub.machine.entities gives a machine's sensors: <machine id><suffix>.
MACHINE_ENTITY_SUFFIXES: Final = ("_temperature", "_door", "_cash_box", "_link_errors")


def machine_of_entity(entity_id: str, attributes: Mapping[str, Any] | None = None) -> str | None:
    """The machine id ``entity_id`` (with these state attributes) belongs to, or None."""
    if attributes:
        machine_id = attributes.get(ATTR_MACHINE_ID)
        if isinstance(machine_id, str) and machine_id:
            return machine_id
    domain, _, object_id = entity_id.partition(".")
    if domain == MACHINE_DOMAIN:
        return object_id or None
    for suffix in MACHINE_ENTITY_SUFFIXES:
        if object_id.endswith(suffix) and len(object_id) > len(suffix):
            return object_id[: -len(suffix)]
    return None


def machine_of_state(state: State) -> str | None:
    """The machine id the entity of ``state`` belongs to, or None (see the module docstring)."""
    return machine_of_entity(state.entity_id, state.attributes)


def sees_entity(
    identity: Identity, entity_id: str, attributes: Mapping[str, Any] | None = None
) -> bool:
    """Whether ``identity`` may see ``entity_id``: everyone but technicians sees everything."""
    if identity.machine_ids is None and not identity.is_machine:
        return True
    machine_id = machine_of_entity(entity_id, attributes)
    return machine_id is not None and identity.sees_machine(machine_id)


def sees_state(identity: Identity, state: State) -> bool:
    """Whether ``identity`` may see ``state``."""
    return sees_entity(identity, state.entity_id, state.attributes)
