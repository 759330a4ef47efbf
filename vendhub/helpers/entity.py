"""Entity: the base class for everything an integration shows in ``hub.states``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Required, TypedDict

from vendhub.core.context import Context

if TYPE_CHECKING:
    from vendhub.core.hub import Hub
    from vendhub.registry.entity_registry import RegistryEntry

_LOGGER = logging.getLogger(__name__)

STATE_UNAVAILABLE = "unavailable"
STATE_UNKNOWN = "unknown"
ATTR_FRIENDLY_NAME = "friendly_name"
ATTR_UNIT_OF_MEASUREMENT = "unit_of_measurement"
ATTR_ICON = "icon"
ATTR_DEVICE_ID = "device_id"

StateValue = str | int | float | None


class DeviceInfo(TypedDict, total=False):
    """What an entity tells the device registry about the machine or board it belongs to."""

    identifiers: Required[Iterable[tuple[str, str]]]
    name: str | None
    manufacturer: str | None
    model: str | None
    sw_version: str | None
    location: str | None


class Entity:
    """One thing with a state: a slot, a sensor, a machine, a door.

    Subclasses set ``domain`` and the ``_attr_*`` values (or override the properties) and
    call ``async_write_state()`` whenever something changed. ``hub``, ``entity_id`` and
    ``registry_entry`` are set by ``async_add_entities``.
    """

    domain: ClassVar[str]

    _attr_unique_id: str | None = None
    _attr_name: str | None = None
    _attr_state: StateValue = None
    _attr_extra_state_attributes: Mapping[str, Any] | None = None
    _attr_available: bool = True
    _attr_device_info: DeviceInfo | None = None
    _attr_unit_of_measurement: str | None = None
    _attr_icon: str | None = None
    _attr_suggested_object_id: str | None = None

    hub: Hub = None  # type: ignore[assignment]
    entity_id: str = None  # type: ignore[assignment]
    registry_entry: RegistryEntry | None = None
    _added = False
    _on_remove: list[Callable[[], Any]] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.entity_id or self.unique_id}>"

    @property
    def unique_id(self) -> str | None:
        """Identifies the entity within its integration and domain, for good."""
        return self._attr_unique_id

    @property
    def suggested_object_id(self) -> str | None:
        """The object id a new entity asks for; its name is used when this is None."""
        return self._attr_suggested_object_id

    @property
    def name(self) -> str | None:
        """The entity's own name; the operator's name in the registry wins over it."""
        return self._attr_name

    @property
    def state(self) -> StateValue:
        """The current state; None means unknown."""
        return self._attr_state

    @property
    def extra_state_attributes(self) -> Mapping[str, Any] | None:
        """Attributes written beside the state."""
        return self._attr_extra_state_attributes

    @property
    def available(self) -> bool:
        """False when the entity cannot be reached; its state is then ``unavailable``."""
        return self._attr_available

    @property
    def device_info(self) -> DeviceInfo | None:
        """The device this entity belongs to, if any."""
        return self._attr_device_info

    @property
    def unit_of_measurement(self) -> str | None:
        """The unit of a numeric state."""
        return self._attr_unit_of_measurement

    @property
    def icon(self) -> str | None:
        """The icon; the operator's icon in the registry wins over it."""
        return self._attr_icon

    @property
    def enabled(self) -> bool:
        """False when the registry entry is disabled."""
        return self.registry_entry is None or self.registry_entry.disabled_by is None

    async def async_added_to_hub(self) -> None:
        """Called after the first state is written: subscribe, start polling, …"""

    async def async_will_remove_from_hub(self) -> None:
        """Called before the entity leaves the hub: close what ``async_added_to_hub`` opened."""

    def async_on_remove(self, func: Callable[[], Any]) -> None:
        """Call ``func`` (e.g. an unsubscribe) when the entity is removed from the hub."""
        if self._on_remove is None:
            self._on_remove = []
        self._on_remove.append(func)

    def async_write_state(self, context: Context | None = None) -> None:
        """Write the entity's current state to ``hub.states``.

        Does nothing when the entity is disabled or was removed from the hub.
        """
        if self.hub is None:
            raise RuntimeError(
                f"{self!r} is not in a hub yet; add it with async_add_entities first"
            )
        if not self._added:
            _LOGGER.debug("Not writing the state of %s: it is disabled or removed", self)
            return
        self.hub.states.async_set(
            self.entity_id, self._state_string(), self._state_attributes(), context=context
        )

    def _state_string(self) -> str | int | float:
        if not self.available:
            return STATE_UNAVAILABLE
        state = self.state
        return STATE_UNKNOWN if state is None else state

    def _state_attributes(self) -> dict[str, Any]:
        attributes: dict[str, Any] = {}
        if self.available and (extra := self.extra_state_attributes):
            attributes.update(extra)
        entry = self.registry_entry
        for key, value in (
            (ATTR_FRIENDLY_NAME, (entry and entry.name) or self.name),
            (ATTR_UNIT_OF_MEASUREMENT, self.unit_of_measurement),
            (ATTR_ICON, (entry and entry.icon) or self.icon),
            (ATTR_DEVICE_ID, entry and entry.device_id),
        ):
            if value is not None:
                attributes[key] = value
        return attributes

    def _async_run_remove_callbacks(self) -> None:
        callbacks, self._on_remove = self._on_remove or [], None
        for func in callbacks:
            try:
                func()
            except Exception:
                _LOGGER.exception("Clean-up %r of %s failed", func, self)
