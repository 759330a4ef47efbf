"""The entity registry: a stable entity id for every (domain, integration, unique_id)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

from vendhub.core.errors import InvalidEntityId, VendHubError
from vendhub.core.events import Event
from vendhub.core.states import split_entity_id, valid_entity_id
from vendhub.helpers.storage import Store
from vendhub.registry.device_registry import (
    EVENT_DEVICE_REGISTRY_UPDATED,
    UNDEFINED,
    DisabledBy,
    UndefinedType,
)
from vendhub.util.dt import utcnow
from vendhub.util.slug import slugify

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

EVENT_ENTITY_REGISTRY_UPDATED: Final = "entity_registry_updated"
STORAGE_KEY: Final = "core.entity_registry"
STORAGE_VERSION: Final = 1
STORAGE_MINOR_VERSION: Final = 1
SAVE_DELAY: Final = 10.0

EntityKey: TypeAlias = tuple[str, str, str]
"""``(domain, integration, unique_id)``: what makes an entity the same across restarts."""


class EntityNotFound(VendHubError, LookupError):
    """No registry entry has the given entity id."""


class EntityIdInUse(VendHubError, ValueError):
    """Another entity already has the entity id asked for."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryEntry:
    """An entity's identity; ``name``, ``icon`` and ``disabled_by`` are the operator's."""

    entity_id: str
    unique_id: str
    integration: str
    domain: str
    device_id: str | None = None
    original_name: str | None = None
    name: str | None = None
    icon: str | None = None
    unit_of_measurement: str | None = None
    disabled_by: DisabledBy | None = None
    created_at: datetime
    modified_at: datetime

    @property
    def key(self) -> EntityKey:
        """``(domain, integration, unique_id)``."""
        return (self.domain, self.integration, self.unique_id)

    @property
    def disabled(self) -> bool:
        """True when someone disabled the entity."""
        return self.disabled_by is not None

    def as_storage(self) -> dict[str, Any]:
        """Return the entry as JSON-ready data."""
        return {
            "entity_id": self.entity_id,
            "unique_id": self.unique_id,
            "integration": self.integration,
            "domain": self.domain,
            "device_id": self.device_id,
            "original_name": self.original_name,
            "name": self.name,
            "icon": self.icon,
            "unit_of_measurement": self.unit_of_measurement,
            "disabled_by": self.disabled_by,
            "created_at": self.created_at.isoformat(),
            "modified_at": self.modified_at.isoformat(),
        }

    @classmethod
    def from_storage(cls, data: Mapping[str, Any]) -> RegistryEntry:
        """Build an entry from what ``as_storage`` returned."""
        disabled_by = data.get("disabled_by")
        return cls(
            entity_id=data["entity_id"],
            unique_id=data["unique_id"],
            integration=data["integration"],
            domain=data["domain"],
            device_id=data.get("device_id"),
            original_name=data.get("original_name"),
            name=data.get("name"),
            icon=data.get("icon"),
            unit_of_measurement=data.get("unit_of_measurement"),
            disabled_by=DisabledBy(disabled_by) if disabled_by else None,
            created_at=datetime.fromisoformat(data["created_at"]),
            modified_at=datetime.fromisoformat(data["modified_at"]),
        )


class EntityRegistry:
    """Registry entries by entity id; ids survive restarts, renames and reloads."""

    def __init__(self, hub: Hub, *, save_delay: float = SAVE_DELAY) -> None:
        self.hub = hub
        self.save_delay = save_delay
        self._store: Store[dict[str, Any]] = Store(
            hub, STORAGE_KEY, STORAGE_VERSION, minor_version=STORAGE_MINOR_VERSION
        )
        self._entities: dict[str, RegistryEntry] = {}
        self._by_key: dict[EntityKey, str] = {}
        hub.bus.async_listen(EVENT_DEVICE_REGISTRY_UPDATED, self._on_device_registry_updated)

    @property
    def entities(self) -> Mapping[str, RegistryEntry]:
        """Every entry by entity id (read-only)."""
        return MappingProxyType(self._entities)

    async def async_load(self) -> None:
        """Load the entries saved earlier."""
        data = await self._store.async_load()
        if data is None:
            return
        for item in data.get("entities", []):
            entry = RegistryEntry.from_storage(item)
            self._entities[entry.entity_id] = entry
            self._by_key[entry.key] = entry.entity_id

    async def async_flush(self) -> None:
        """Write any pending change now."""
        await self._store.async_flush()

    def async_get(self, entity_id: str) -> RegistryEntry | None:
        """Return the entry of ``entity_id``, or None."""
        return self._entities.get(entity_id)

    def async_get_entity_id(self, domain: str, integration: str, unique_id: str) -> str | None:
        """Return the entity id registered for this (domain, integration, unique_id)."""
        return self._by_key.get((domain, integration, unique_id))

    def entities_for_device(self, device_id: str) -> list[RegistryEntry]:
        """Return the entries that belong to a device."""
        return [entry for entry in self._entities.values() if entry.device_id == device_id]

    def async_generate_entity_id(self, domain: str, suggested_object_id: str) -> str:
        """Return ``domain.slug`` or, if taken by an entry or a state, ``domain.slug_2``, …"""
        base = f"{domain}.{slugify(suggested_object_id)}"
        candidate, counter = base, 1
        while candidate in self._entities or self.hub.states.get(candidate) is not None:
            counter += 1
            candidate = f"{base}_{counter}"
        return candidate

    def async_get_or_create(
        self,
        domain: str,
        integration: str,
        unique_id: str,
        *,
        suggested_object_id: str | None = None,
        device_id: str | None = None,
        original_name: str | None = None,
        unit_of_measurement: str | None = None,
    ) -> RegistryEntry:
        """Return the entry for (domain, integration, unique_id), creating it on first sight.

        The same key gives the same entry, and so the same entity id, after every restart.
        On an existing entry, given values that differ (device, original name, unit) are
        updated; None means "not given". The operator's overrides are never touched.
        """
        if not isinstance(unique_id, str) or not unique_id:
            raise ValueError(
                f"{integration}: unique_id of a {domain} entity must be a non-empty string, "
                f"got {unique_id!r}"
            )
        existing_id = self._by_key.get((domain, integration, unique_id))
        if existing_id is not None:
            entry = self._entities[existing_id]
            changes = {
                field: value
                for field, value in (
                    ("device_id", device_id),
                    ("original_name", original_name),
                    ("unit_of_measurement", unit_of_measurement),
                )
                if value is not None and value != getattr(entry, field)
            }
            return self._update(entry, changes)

        if not valid_entity_id(f"{domain}.x"):
            raise ValueError(
                f"{integration}: invalid entity domain {domain!r}: use lower-case letters, "
                "digits and single underscores"
            )
        now = utcnow()
        entry = RegistryEntry(
            entity_id=self.async_generate_entity_id(
                domain, suggested_object_id or original_name or unique_id
            ),
            unique_id=unique_id,
            integration=integration,
            domain=domain,
            device_id=device_id,
            original_name=original_name,
            unit_of_measurement=unit_of_measurement,
            created_at=now,
            modified_at=now,
        )
        self._entities[entry.entity_id] = entry
        self._by_key[entry.key] = entry.entity_id
        self._changed("create", entry.entity_id)
        return entry

    def async_update_entity(
        self,
        entity_id: str,
        *,
        name: str | UndefinedType | None = UNDEFINED,
        new_entity_id: str | UndefinedType = UNDEFINED,
        icon: str | UndefinedType | None = UNDEFINED,
        disabled_by: DisabledBy | UndefinedType | None = UNDEFINED,
    ) -> RegistryEntry:
        """Apply the operator's changes; None clears a field, an omitted argument keeps it.

        ``new_entity_id`` must be a valid id in the same domain that no other entity (or
        state) has.
        """
        entry = self._get_or_raise(entity_id)
        changes: dict[str, Any] = {}
        for field, value in (("name", name), ("icon", icon), ("disabled_by", disabled_by)):
            if value is not UNDEFINED and value != getattr(entry, field):
                changes[field] = value
        if changes.get("disabled_by") is not None:
            changes["disabled_by"] = DisabledBy(changes["disabled_by"])
        if new_entity_id is not UNDEFINED and new_entity_id != entity_id:
            self._check_new_entity_id(entry, new_entity_id)
            changes["entity_id"] = new_entity_id
        return self._update(entry, changes)

    def async_remove(self, entity_id: str) -> None:
        """Forget an entity; it gets a new entity id if it is ever added again."""
        entry = self._get_or_raise(entity_id)
        del self._entities[entity_id]
        del self._by_key[entry.key]
        self._changed("remove", entity_id)

    def _check_new_entity_id(self, entry: RegistryEntry, new_entity_id: str) -> None:
        if not valid_entity_id(new_entity_id):
            raise InvalidEntityId(
                f"cannot rename {entry.entity_id} to {new_entity_id!r}: expected "
                "'domain.object_id' in lower-case letters, digits and single underscores"
            )
        if split_entity_id(new_entity_id)[0] != entry.domain:
            raise InvalidEntityId(
                f"cannot rename {entry.entity_id} to {new_entity_id}: "
                f"the domain must stay {entry.domain!r}"
            )
        if new_entity_id in self._entities:
            raise EntityIdInUse(
                f"cannot rename {entry.entity_id} to {new_entity_id}: "
                "another entity in the registry already has that id"
            )
        if self.hub.states.get(new_entity_id) is not None:
            raise EntityIdInUse(
                f"cannot rename {entry.entity_id} to {new_entity_id}: "
                "a state with that id already exists"
            )

    def _get_or_raise(self, entity_id: str) -> RegistryEntry:
        entry = self._entities.get(entity_id)
        if entry is None:
            raise EntityNotFound(f"no entity {entity_id!r} in the entity registry")
        return entry

    def _update(self, entry: RegistryEntry, changes: dict[str, Any]) -> RegistryEntry:
        if not changes:
            return entry
        old_values = {field: getattr(entry, field) for field in changes}
        new_entry = dataclasses.replace(entry, **changes, modified_at=utcnow())
        if new_entry.entity_id != entry.entity_id:
            del self._entities[entry.entity_id]
        self._entities[new_entry.entity_id] = new_entry
        self._by_key[new_entry.key] = new_entry.entity_id
        self._changed("update", new_entry.entity_id, old_values, entry.entity_id)
        return new_entry

    def _changed(
        self,
        action: Literal["create", "update", "remove"],
        entity_id: str,
        old_values: dict[str, Any] | None = None,
        old_entity_id: str | None = None,
    ) -> None:
        self._store.async_delay_save(self._data_to_save, self.save_delay)
        data: dict[str, Any] = {"action": action, "entity_id": entity_id}
        if old_values is not None:
            data["changes"] = old_values
        if old_entity_id is not None and old_entity_id != entity_id:
            data["old_entity_id"] = old_entity_id
        self.hub.bus.async_fire(EVENT_ENTITY_REGISTRY_UPDATED, data)

    def _on_device_registry_updated(self, event: Event) -> None:
        if event.data["action"] != "remove":
            return
        for entry in self.entities_for_device(event.data["device_id"]):
            self.async_remove(entry.entity_id)

    def _data_to_save(self) -> dict[str, Any]:
        return {"entities": [entry.as_storage() for entry in self._entities.values()]}


__all__ = [
    "EVENT_ENTITY_REGISTRY_UPDATED",
    "EntityIdInUse",
    "EntityKey",
    "EntityNotFound",
    "EntityRegistry",
    "RegistryEntry",
]
