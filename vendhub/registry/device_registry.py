"""The device registry: every vending machine and board the hub knows, kept across restarts."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum, StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

from vendhub.core.errors import VendHubError
from vendhub.helpers.storage import Store
from vendhub.util.dt import utcnow

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

EVENT_DEVICE_REGISTRY_UPDATED: Final = "device_registry_updated"
STORAGE_KEY: Final = "core.device_registry"
STORAGE_VERSION: Final = 1
STORAGE_MINOR_VERSION: Final = 1
SAVE_DELAY: Final = 10.0

Identifier: TypeAlias = tuple[str, str]
"""``(namespace, id)``, e.g. ``("simulator", "lobby_1")``."""


class UndefinedType(Enum):
    """The type of ``UNDEFINED``: an argument that was not given (None means "clear it")."""

    UNDEFINED = "UNDEFINED"


UNDEFINED: Final = UndefinedType.UNDEFINED


class DisabledBy(StrEnum):
    """Who disabled a device or entity."""

    user = "user"
    integration = "integration"


class DeviceNotFound(VendHubError, LookupError):
    """No device has the given id."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceEntry:
    """A vending machine or board; ``name_by_user`` and ``location`` are the operator's."""

    id: str
    identifiers: frozenset[Identifier]
    integration: str
    name: str | None = None
    name_by_user: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    sw_version: str | None = None
    location: str | None = None
    disabled_by: DisabledBy | None = None
    created_at: datetime
    modified_at: datetime

    @property
    def display_name(self) -> str:
        """The operator's name, else the integration's, else the id."""
        return self.name_by_user or self.name or self.id

    @property
    def disabled(self) -> bool:
        """True when someone disabled the device."""
        return self.disabled_by is not None

    def as_storage(self) -> dict[str, Any]:
        """Return the entry as JSON-ready data."""
        return {
            "id": self.id,
            "identifiers": sorted([namespace, key] for namespace, key in self.identifiers),
            "integration": self.integration,
            "name": self.name,
            "name_by_user": self.name_by_user,
            "manufacturer": self.manufacturer,
            "model": self.model,
            "sw_version": self.sw_version,
            "location": self.location,
            "disabled_by": self.disabled_by,
            "created_at": self.created_at.isoformat(),
            "modified_at": self.modified_at.isoformat(),
        }

    @classmethod
    def from_storage(cls, data: Mapping[str, Any]) -> DeviceEntry:
        """Build an entry from what ``as_storage`` returned."""
        disabled_by = data.get("disabled_by")
        return cls(
            id=data["id"],
            identifiers=_as_identifiers(data["identifiers"]),
            integration=data["integration"],
            name=data.get("name"),
            name_by_user=data.get("name_by_user"),
            manufacturer=data.get("manufacturer"),
            model=data.get("model"),
            sw_version=data.get("sw_version"),
            location=data.get("location"),
            disabled_by=DisabledBy(disabled_by) if disabled_by else None,
            created_at=datetime.fromisoformat(data["created_at"]),
            modified_at=datetime.fromisoformat(data["modified_at"]),
        )


def _as_identifiers(identifiers: Iterable[Iterable[str]]) -> frozenset[Identifier]:
    result: set[Identifier] = set()
    for identifier in identifiers:
        pair = () if isinstance(identifier, str) else tuple(identifier)
        if len(pair) != 2 or not all(isinstance(part, str) and part for part in pair):
            raise ValueError(
                f"invalid device identifier {identifier!r}: expected (namespace, id) strings"
            )
        result.add((pair[0], pair[1]))
    return frozenset(result)


def _jsonable(field: str, value: Any) -> Any:
    if field == "identifiers":
        return sorted([namespace, key] for namespace, key in value)
    return value


class DeviceRegistry:
    """Devices by id; integrations create them, operators name, place and disable them."""

    def __init__(self, hub: Hub, *, save_delay: float = SAVE_DELAY) -> None:
        self.hub = hub
        self.save_delay = save_delay
        self._store: Store[dict[str, Any]] = Store(
            hub, STORAGE_KEY, STORAGE_VERSION, minor_version=STORAGE_MINOR_VERSION
        )
        self._devices: dict[str, DeviceEntry] = {}
        self._by_identifier: dict[Identifier, str] = {}

    @property
    def devices(self) -> Mapping[str, DeviceEntry]:
        """Every device by id (read-only)."""
        return MappingProxyType(self._devices)

    async def async_load(self) -> None:
        """Load the devices saved earlier."""
        data = await self._store.async_load()
        if data is None:
            return
        for item in data.get("devices", []):
            entry = DeviceEntry.from_storage(item)
            self._devices[entry.id] = entry
            for identifier in entry.identifiers:
                self._by_identifier[identifier] = entry.id

    async def async_flush(self) -> None:
        """Write any pending change now."""
        await self._store.async_flush()

    def async_get(self, device_id: str) -> DeviceEntry | None:
        """Return the device with this id, or None."""
        return self._devices.get(device_id)

    def async_get_device(self, identifiers: Iterable[Identifier]) -> DeviceEntry | None:
        """Return the device that has any of ``identifiers``, or None."""
        for identifier in _as_identifiers(identifiers):
            if (device_id := self._by_identifier.get(identifier)) is not None:
                return self._devices[device_id]
        return None

    def async_devices_for_integration(self, integration: str) -> list[DeviceEntry]:
        """Return the devices an integration created."""
        return [entry for entry in self._devices.values() if entry.integration == integration]

    def async_get_or_create(
        self,
        *,
        integration: str,
        identifiers: Iterable[Identifier],
        name: str | None = None,
        manufacturer: str | None = None,
        model: str | None = None,
        sw_version: str | None = None,
        location: str | None = None,
    ) -> DeviceEntry:
        """Return the device with any of ``identifiers``, creating or updating it.

        The integration's facts (name, manufacturer, model, sw_version) are updated when
        they differ; None means "unknown, keep what is known". ``location`` is a suggestion:
        it fills an empty location and never replaces one, which the operator may have set.
        ``name_by_user`` is never touched. New identifiers are added to the device.
        """
        wanted = _as_identifiers(identifiers)
        if not wanted:
            raise ValueError(f"{integration}: a device needs at least one identifier")
        matches = {
            self._by_identifier[identifier]
            for identifier in wanted
            if identifier in self._by_identifier
        }
        if len(matches) > 1:
            raise ValueError(
                f"{integration}: identifiers {sorted(wanted)} belong to {len(matches)} "
                f"different devices ({', '.join(sorted(matches))}); they must name one device"
            )
        if not matches:
            now = utcnow()
            entry = DeviceEntry(
                id=uuid.uuid4().hex,
                identifiers=wanted,
                integration=integration,
                name=name,
                manufacturer=manufacturer,
                model=model,
                sw_version=sw_version,
                location=location,
                created_at=now,
                modified_at=now,
            )
            self._store_entry(entry)
            self._changed("create", entry.id)
            return entry

        entry = self._devices[matches.pop()]
        changes: dict[str, Any] = {}
        if not wanted <= entry.identifiers:
            changes["identifiers"] = entry.identifiers | wanted
        for field, value in (
            ("name", name),
            ("manufacturer", manufacturer),
            ("model", model),
            ("sw_version", sw_version),
        ):
            if value is not None and value != getattr(entry, field):
                changes[field] = value
        if location is not None and entry.location is None:
            changes["location"] = location
        return self._update(entry, changes)

    def async_update_device(
        self,
        device_id: str,
        *,
        name_by_user: str | UndefinedType | None = UNDEFINED,
        location: str | UndefinedType | None = UNDEFINED,
        disabled_by: DisabledBy | UndefinedType | None = UNDEFINED,
    ) -> DeviceEntry:
        """Apply the operator's changes; None clears a field, an omitted argument keeps it."""
        entry = self._get_or_raise(device_id)
        changes: dict[str, Any] = {}
        for field, value in (
            ("name_by_user", name_by_user),
            ("location", location),
            ("disabled_by", disabled_by),
        ):
            if value is not UNDEFINED and value != getattr(entry, field):
                changes[field] = value
        if "disabled_by" in changes and changes["disabled_by"] is not None:
            changes["disabled_by"] = DisabledBy(changes["disabled_by"])
        return self._update(entry, changes)

    def async_remove_device(self, device_id: str) -> None:
        """Forget a device (the entity registry then forgets its entities)."""
        entry = self._get_or_raise(device_id)
        del self._devices[device_id]
        for identifier in entry.identifiers:
            self._by_identifier.pop(identifier, None)
        self._changed("remove", device_id)

    def _get_or_raise(self, device_id: str) -> DeviceEntry:
        entry = self._devices.get(device_id)
        if entry is None:
            raise DeviceNotFound(f"no device with id {device_id!r}")
        return entry

    def _update(self, entry: DeviceEntry, changes: dict[str, Any]) -> DeviceEntry:
        if not changes:
            return entry
        old_values = {field: _jsonable(field, getattr(entry, field)) for field in changes}
        new_entry = dataclasses.replace(entry, **changes, modified_at=utcnow())
        self._store_entry(new_entry)
        self._changed("update", entry.id, old_values)
        return new_entry

    def _store_entry(self, entry: DeviceEntry) -> None:
        self._devices[entry.id] = entry
        for identifier in entry.identifiers:
            self._by_identifier[identifier] = entry.id

    def _changed(
        self,
        action: Literal["create", "update", "remove"],
        device_id: str,
        old_values: dict[str, Any] | None = None,
    ) -> None:
        self._store.async_delay_save(self._data_to_save, self.save_delay)
        data: dict[str, Any] = {"action": action, "device_id": device_id}
        if old_values is not None:
            data["changes"] = old_values
        self.hub.bus.async_fire(EVENT_DEVICE_REGISTRY_UPDATED, data)

    def _data_to_save(self) -> dict[str, Any]:
        return {"devices": [entry.as_storage() for entry in self._devices.values()]}


__all__ = [
    "EVENT_DEVICE_REGISTRY_UPDATED",
    "UNDEFINED",
    "DeviceEntry",
    "DeviceNotFound",
    "DeviceRegistry",
    "DisabledBy",
    "Identifier",
    "UndefinedType",
]
