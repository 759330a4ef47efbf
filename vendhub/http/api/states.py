"""``/api/states`` and ``/api/entities``: the current state of everything, and the registry.

States are immutable and replaced on every change, so each one's JSON is made once and kept
beside it (``StateJsonCache``): listing 10,000 states joins cached bytes. Technicians see
only their machines' entities (``vendhub.http.scoping``).
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from vendhub.auth.roles import Permission
from vendhub.http.api.filters import UNAVAILABLE_RESPONSE, unavailable
from vendhub.http.api.schemas import MACHINE_ID
from vendhub.http.errors import not_found
from vendhub.http.scoping import machine_of_entity, sees_state
from vendhub.http.view import ApiView, identity_of, operation, params, query, require_machine
from vendhub.registry import DATA_DEVICE_REGISTRY, DATA_ENTITY_REGISTRY

if TYPE_CHECKING:
    from vendhub.core.hub import Hub
    from vendhub.core.states import State
    from vendhub.registry.device_registry import DeviceRegistry
    from vendhub.registry.entity_registry import EntityRegistry, RegistryEntry

_DATA_CACHE: Final = "http.state_json"
ENTITY_ID_PATTERN: Final = r"^[a-z0-9_]+\.[a-z0-9_]+$"
DOMAIN: dict[str, Any] = {"type": "string", "pattern": "^[a-z0-9_]{1,64}$"}
ENTITY_GLOB: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": 255,
    "description": "Entity ids matching this glob (* and ?), e.g. sensor.*_temperature.",
}
CONTEXT: dict[str, Any] = {
    "type": "object",
    "required": ["id", "user_id", "parent_id"],
    "properties": {
        "id": {"type": "string"},
        "user_id": {"type": ["string", "null"]},
        "parent_id": {"type": ["string", "null"]},
    },
}
STATE: dict[str, Any] = {
    "type": "object",
    "required": [
        "entity_id",
        "state",
        "attributes",
        "last_changed",
        "last_updated",
        "context",
    ],
    "properties": {
        "entity_id": {"type": "string"},
        "state": {"type": "string"},
        "attributes": {"type": "object"},
        "last_changed": {"type": "string", "format": "date-time"},
        "last_updated": {"type": "string", "format": "date-time"},
        "context": CONTEXT,
    },
}
ENTITY: dict[str, Any] = {
    "type": "object",
    "required": [
        "entity_id",
        "unique_id",
        "integration",
        "domain",
        "device_id",
        "machine_id",
        "name",
        "original_name",
        "icon",
        "unit_of_measurement",
        "disabled_by",
        "created_at",
        "modified_at",
    ],
    "properties": {
        "entity_id": {"type": "string"},
        "unique_id": {"type": "string"},
        "integration": {"type": "string"},
        "domain": {"type": "string"},
        "device_id": {"type": ["string", "null"]},
        "machine_id": {"type": ["string", "null"]},
        "name": {"type": ["string", "null"]},
        "original_name": {"type": ["string", "null"]},
        "icon": {"type": ["string", "null"]},
        "unit_of_measurement": {"type": ["string", "null"]},
        "disabled_by": {"type": ["string", "null"]},
        "created_at": {"type": "string", "format": "date-time"},
        "modified_at": {"type": "string", "format": "date-time"},
    },
}


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def dumps(value: Any) -> str:
    """Compact JSON; values JSON does not know (datetimes, sets, ...) become strings/lists."""
    # ASCII output: a lone surrogate from a machine's JSON stays an escape, never an error.
    return json.dumps(value, separators=(",", ":"), default=_json_default)


class StateJsonCache:
    """The JSON of each current State, made once per State object.

    The unfiltered list is also kept in blocks of ``BLOCK`` states (in the state machine's
    order) with their joined JSON: a block whose State objects are all the same as last time
    is reused whole, so listing 10,000 states touches only the blocks that changed.
    """

    BLOCK: Final = 256

    def __init__(self) -> None:
        self._cache: dict[str, tuple[State, bytes]] = {}
        self._blocks: list[tuple[tuple[State, ...], bytes]] = []

    def encode(self, state: State) -> bytes:
        cached = self._cache.get(state.entity_id)
        if cached is not None and cached[0] is state:
            return cached[1]
        encoded = dumps(state.as_dict()).encode()
        self._cache[state.entity_id] = (state, encoded)
        return encoded

    def array(self, states: Iterable[State]) -> bytes:
        """A JSON array of ``states``."""
        encode = self.encode
        return b"[" + b",".join([encode(state) for state in states]) + b"]"

    def full_array(self, states: list[State]) -> bytes:
        """A JSON array of every state (``states`` is all of them, in the machine's order)."""
        size = self.BLOCK
        blocks = self._blocks
        parts: list[bytes] = []
        for index, start in enumerate(range(0, len(states), size)):
            chunk = tuple(states[start : start + size])
            # Tuple equality checks identity first: unchanged blocks compare at C speed.
            if index < len(blocks) and blocks[index][0] == chunk:
                parts.append(blocks[index][1])
                continue
            joined = b",".join([self.encode(state) for state in chunk])
            if index < len(blocks):
                blocks[index] = (chunk, joined)
            else:
                blocks.append((chunk, joined))
            parts.append(joined)
        del blocks[len(parts) :]
        return b"[" + b",".join(parts) + b"]"

    def forget_old(self, hub: Hub) -> None:
        """Forget the JSON of states that were replaced or removed, when many have been."""
        if len(self._cache) > 2 * len(hub.states) + 1000:
            self._cache = {
                entity_id: cached
                for entity_id, cached in self._cache.items()
                if hub.states.get(entity_id) is cached[0]
            }


def state_json_cache(hub: Hub) -> StateJsonCache:
    """The hub's cache of state JSON (made on first use)."""
    cache: StateJsonCache | None = hub.data.get(_DATA_CACHE)
    if cache is None:
        cache = hub.data[_DATA_CACHE] = StateJsonCache()
    return cache


def _json(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


class StatesView(ApiView):
    url = "/api/states"
    name = "api:states"

    @operation(
        summary="The current state of every entity (technicians: their machines' only).",
        description="Filters combine: entity id glob, domain and machine.",
        permission=Permission.read,
        query={"entity_id": ENTITY_GLOB, "domain": DOMAIN, "machine_id": MACHINE_ID},
        responses={200: {"type": "array", "items": STATE}},
        tags=("states",),
    )
    async def get(self, request: web.Request) -> web.Response:
        values = query(request)
        identity = identity_of(request)
        domain = values.get("domain")
        states = self.hub.states.async_all(domain)
        glob = values.get("entity_id")
        if glob is not None:
            match = re.compile(fnmatch.translate(glob)).match
            states = [state for state in states if match(state.entity_id)]
        machine_id = values.get("machine_id")
        if machine_id is not None:
            require_machine(request, machine_id)
            states = [
                state
                for state in states
                if machine_of_entity(state.entity_id, state.attributes) == machine_id
            ]
        if identity.machine_ids is not None:
            states = [state for state in states if sees_state(identity, state)]
        cache = state_json_cache(self.hub)
        cache.forget_old(self.hub)
        if len(values) == 0 and identity.machine_ids is None:
            return _json(cache.full_array(states))
        return _json(cache.array(states))


class StateView(ApiView):
    url = "/api/states/{entity_id}"
    name = "api:state"
    path_params = {"entity_id": {"type": "string", "pattern": ENTITY_ID_PATTERN}}

    @operation(
        summary="The current state of one entity.",
        permission=Permission.read,
        responses={200: STATE},
        tags=("states",),
    )
    async def get(self, request: web.Request) -> web.Response:
        entity_id = params(request)["entity_id"]
        state = self.hub.states.get(entity_id)
        if state is None or not sees_state(identity_of(request), state):
            raise not_found(f"no entity {entity_id!r}")
        return _json(state_json_cache(self.hub).encode(state))


def _machine_of_entry(entry: RegistryEntry, devices: DeviceRegistry | None, hub: Hub) -> str | None:
    """The machine of a registry entry: its device's identifier, else its state's."""
    if entry.device_id is not None and devices is not None:
        device = devices.async_get(entry.device_id)
        if device is not None:
            for namespace, key in sorted(device.identifiers):
                if namespace == device.integration:
                    return key
    state = hub.states.get(entry.entity_id)
    return machine_of_entity(entry.entity_id, state.attributes if state else None)


class EntitiesView(ApiView):
    url = "/api/entities"
    name = "api:entities"

    @operation(
        summary="The entity registry: every entity the hub knows, with or without a state.",
        permission=Permission.read,
        query={
            "domain": DOMAIN,
            "integration": {"type": "string", "minLength": 1, "maxLength": 64},
            "machine_id": MACHINE_ID,
        },
        responses={200: {"type": "array", "items": ENTITY}, 503: UNAVAILABLE_RESPONSE},
        tags=("states",),
    )
    async def get(self, request: web.Request) -> web.Response:
        entities: EntityRegistry | None = self.hub.data.get(DATA_ENTITY_REGISTRY)
        if entities is None:
            raise unavailable("the entity registry is not loaded yet; try again in a moment")
        devices: DeviceRegistry | None = self.hub.data.get(DATA_DEVICE_REGISTRY)
        values = query(request)
        identity = identity_of(request)
        if "machine_id" in values:
            require_machine(request, values["machine_id"])
        answer = []
        for entry in sorted(entities.entities.values(), key=lambda e: e.entity_id):
            if "domain" in values and entry.domain != values["domain"]:
                continue
            if "integration" in values and entry.integration != values["integration"]:
                continue
            machine_id = _machine_of_entry(entry, devices, self.hub)
            if "machine_id" in values and machine_id != values["machine_id"]:
                continue
            if identity.machine_ids is not None and (
                machine_id is None or not identity.sees_machine(machine_id)
            ):
                continue
            item = entry.as_storage()
            item["disabled_by"] = None if entry.disabled_by is None else str(entry.disabled_by)
            item["machine_id"] = machine_id
            answer.append(item)
        return web.json_response(answer)


VIEWS = (StatesView, StateView, EntitiesView)
