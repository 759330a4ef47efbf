"""Adding an integration's entities to the hub, and taking them out again on unload.

The live entities are kept per integration in ``hub.data``. Changes in the entity registry
reach them at once: a renamed entity moves its state, a disabled one leaves the hub, an
enabled one comes back, a new name or icon is written.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from vendhub.core.errors import VendHubError
from vendhub.core.events import Event
from vendhub.core.states import valid_entity_id
from vendhub.helpers.entity import Entity
from vendhub.registry import device_registry, entity_registry
from vendhub.registry.device_registry import EVENT_DEVICE_REGISTRY_UPDATED
from vendhub.registry.entity_registry import (
    EVENT_ENTITY_REGISTRY_UPDATED,
    EntityKey,
    RegistryEntry,
)

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)
DATA_ENTITY_PLATFORM: Final = "helpers.entity_platform"


class DuplicateEntityError(VendHubError, ValueError):
    """Two live entities share (domain, integration, unique_id)."""


class _LiveEntities:
    """Every entity added through ``async_add_entities``, enabled or not."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.by_integration: dict[str, list[Entity]] = {}
        self.by_entity_id: dict[str, Entity] = {}
        self.keys: set[EntityKey] = set()
        hub.bus.async_listen(EVENT_ENTITY_REGISTRY_UPDATED, self._on_entity_registry_updated)
        hub.bus.async_listen(EVENT_DEVICE_REGISTRY_UPDATED, self._on_device_registry_updated)

    def track(self, integration: str, entity: Entity, entry: RegistryEntry) -> None:
        self.by_integration.setdefault(integration, []).append(entity)
        self.by_entity_id[entry.entity_id] = entity
        self.keys.add(entry.key)

    def untrack(self, entity: Entity) -> None:
        entry = entity.registry_entry
        if entry is None:
            return
        entities = self.by_integration.get(entry.integration, [])
        if entity in entities:
            entities.remove(entity)
        if not entities:
            self.by_integration.pop(entry.integration, None)
        if self.by_entity_id.get(entity.entity_id) is entity:
            del self.by_entity_id[entity.entity_id]
        self.keys.discard(entry.key)

    async def async_activate(self, entity: Entity) -> bool:
        """Write the first state and run the added hook; undo all of it if either fails."""
        if entity._added or self.by_entity_id.get(entity.entity_id) is not entity:
            return False  # already in, or taken out while this was pending
        entity._added = True
        try:
            entity.async_write_state()
            await entity.async_added_to_hub()
        except Exception:
            _LOGGER.exception("Could not add %s; it stays out of the hub", entity)
            self._deactivate_now(entity)
            return False
        return True

    async def async_deactivate(self, entity: Entity) -> None:
        """Run the remove hook and the clean-ups, then remove the entity's state."""
        if not entity._added:
            return
        try:
            await entity.async_will_remove_from_hub()
        except Exception:
            _LOGGER.exception("async_will_remove_from_hub of %s failed", entity)
        self._deactivate_now(entity)

    def _deactivate_now(self, entity: Entity) -> None:
        entity._added = False
        entity._async_run_remove_callbacks()
        self.hub.states.async_remove(entity.entity_id)

    def _on_entity_registry_updated(self, event: Event) -> None:
        entity = self.by_entity_id.get(event.data.get("old_entity_id", event.data["entity_id"]))
        if entity is None:
            return
        if event.data["action"] == "remove":
            self.untrack(entity)
            self.hub.async_create_task(
                self.async_deactivate(entity), name=f"remove {entity.entity_id}"
            )
            return
        entry = entity_registry(self.hub).async_get(event.data["entity_id"])
        if entry is None:
            return
        if entry.entity_id != entity.entity_id:
            self._move(entity, entry)
        entity.registry_entry = entry
        self._sync_with_registry(entity, entry)

    def _on_device_registry_updated(self, event: Event) -> None:
        if event.data["action"] != "update" or "disabled_by" not in event.data["changes"]:
            return
        for entity in list(self.by_entity_id.values()):
            entry = entity.registry_entry
            if entry is not None and entry.device_id == event.data["device_id"]:
                self._sync_with_registry(entity, entry)

    def _sync_with_registry(self, entity: Entity, entry: RegistryEntry) -> None:
        """Enable, disable or rewrite the entity as its entry and device now say."""
        should_run = _should_run(self.hub, entry)
        if entity._added and not should_run:
            self.hub.async_create_task(
                self.async_deactivate(entity), name=f"disable {entity.entity_id}"
            )
        elif not entity._added and should_run:
            self.hub.async_create_task(
                self.async_activate(entity), name=f"enable {entity.entity_id}"
            )
        else:
            entity.async_write_state()

    def _move(self, entity: Entity, entry: RegistryEntry) -> None:
        """Give a renamed entity its new id; its state moves with it."""
        old_id = entity.entity_id
        del self.by_entity_id[old_id]
        self.by_entity_id[entry.entity_id] = entity
        entity.entity_id = entry.entity_id
        if entity._added:
            self.hub.states.async_remove(old_id)


def _live_entities(hub: Hub) -> _LiveEntities:
    live: _LiveEntities | None = hub.data.get(DATA_ENTITY_PLATFORM)
    if live is None:
        live = hub.data[DATA_ENTITY_PLATFORM] = _LiveEntities(hub)
    return live


def _should_run(hub: Hub, entry: RegistryEntry) -> bool:
    if entry.disabled_by is not None:
        return False
    device = device_registry(hub).async_get(entry.device_id) if entry.device_id else None
    return device is None or device.disabled_by is None


def _check_new_entities(live: _LiveEntities, integration: str, entities: list[Entity]) -> None:
    seen: set[EntityKey] = set()
    for entity in entities:
        domain = getattr(type(entity), "domain", None)
        if not domain:
            raise TypeError(
                f"{type(entity).__name__} of {integration} has no class attribute 'domain' "
                "(e.g. domain = 'sensor')"
            )
        if not valid_entity_id(f"{domain}.x"):
            raise ValueError(
                f"{type(entity).__name__} of {integration} has an invalid domain {domain!r}: "
                "use lower-case letters, digits and single underscores"
            )
        if not entity.unique_id:
            raise ValueError(
                f"{entity!r} of {integration} has no unique_id; every entity needs one so "
                "its id survives restarts"
            )
        if live.by_entity_id.get(entity.entity_id) is entity:
            raise ValueError(f"{entity!r} of {integration} was already added")
        key = (domain, integration, entity.unique_id)
        if key in live.keys or key in seen:
            raise DuplicateEntityError(
                f"{integration} added two {domain} entities with unique_id "
                f"{entity.unique_id!r}; unique ids must be unique per integration and domain"
            )
        seen.add(key)


async def async_add_entities(
    hub: Hub, integration: str, entities: Iterable[Entity]
) -> list[Entity]:
    """Register ``entities`` (and their devices) and bring the enabled ones into the hub.

    Each entity gets its device from the device registry, its entry and entity id from the
    entity registry, its first state written, then ``async_added_to_hub`` awaited. Disabled
    entities (or entities of a disabled device) are registered but stay out of
    ``hub.states`` until enabled. Nothing is added when two entities share (domain,
    integration, unique_id). Returns the entities now in the hub; one that fails to add is
    logged and left out.
    """
    devices = device_registry(hub)
    registry = entity_registry(hub)
    new_entities = list(entities)
    live = _live_entities(hub)
    _check_new_entities(live, integration, new_entities)
    added: list[Entity] = []
    for entity in new_entities:
        device_id = None
        if (info := entity.device_info) is not None:
            device_id = devices.async_get_or_create(
                integration=integration,
                identifiers=info["identifiers"],
                name=info.get("name"),
                manufacturer=info.get("manufacturer"),
                model=info.get("model"),
                sw_version=info.get("sw_version"),
                location=info.get("location"),
            ).id
        entry = registry.async_get_or_create(
            entity.domain,
            integration,
            entity.unique_id,  # type: ignore[arg-type]  # checked above
            suggested_object_id=entity.suggested_object_id,
            device_id=device_id,
            original_name=entity.name,
            unit_of_measurement=entity.unit_of_measurement,
        )
        entity.hub = hub
        entity.entity_id = entry.entity_id
        entity.registry_entry = entry
        live.track(integration, entity, entry)
        if not _should_run(hub, entry):
            _LOGGER.debug("%s is disabled; not adding it to the hub", entry.entity_id)
            continue
        if await live.async_activate(entity):
            added.append(entity)
        else:
            live.untrack(entity)
    return added


async def async_remove_entities(hub: Hub, integration: str) -> int:
    """Take every entity of ``integration`` out of the hub and return how many there were.

    Runs ``async_will_remove_from_hub`` and the clean-ups and removes the states; the
    registry entries stay, so the entities get the same ids when they are added again.
    """
    live = _live_entities(hub)
    entities = list(live.by_integration.get(integration, []))
    for entity in entities:
        await live.async_deactivate(entity)
        live.untrack(entity)
    return len(entities)


def async_entities(hub: Hub, integration: str) -> list[Entity]:
    """Return the entities ``integration`` added (enabled or not)."""
    live: _LiveEntities | None = hub.data.get(DATA_ENTITY_PLATFORM)
    return list(live.by_integration.get(integration, [])) if live else []


__all__ = [
    "DuplicateEntityError",
    "async_add_entities",
    "async_entities",
    "async_remove_entities",
]
