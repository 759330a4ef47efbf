"""``/api/stock`` and ``/api/stock/movements``: slot levels now, and every change.

Levels are the slot entities' current states (``slot.<machine>_<code>``: the stock, with
product, price, capacity and par level as attributes), so they need no recorder and show
every slot; movements come from the recorder's ledger, newest first and keyset-paged.
Technicians see their machines only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from vendhub.auth.roles import Permission
from vendhub.http.api.filters import (
    NULLABLE_STRING,
    PAGED_QUERY,
    TIMESTAMP_STRING,
    UNAVAILABLE_RESPONSE,
    before_id,
    optional_time,
    page_answer,
    page_schema,
    recorder_of,
    run_query,
)
from vendhub.http.api.ledger import RANGE_QUERY, text
from vendhub.http.api.schemas import MACHINE_ID
from vendhub.http.scoping import machine_of_state
from vendhub.http.view import ApiView, identity_of, operation, query, require_machine
from vendhub.recorder import stock_queries
from vendhub.recorder.models.stock import MOVEMENT_KINDS

if TYPE_CHECKING:
    from vendhub.core.states import State

SLOT_DOMAIN: Final = "slot"

STOCK_LEVEL: dict[str, Any] = {
    "type": "object",
    "required": [
        "entity_id",
        "machine_id",
        "slot_code",
        "product",
        "quantity",
        "capacity",
        "par_level",
        "price",
        "currency",
        "locked",
        "updated",
    ],
    "properties": {
        "entity_id": {"type": "string"},
        "machine_id": {"type": "string"},
        "slot_code": {"type": ["string", "null"]},
        "product": NULLABLE_STRING,
        "quantity": {
            "type": ["integer", "null"],
            "description": "Items in the slot now; null while unknown or unavailable.",
        },
        "capacity": {"type": ["integer", "null"]},
        "par_level": {"type": ["integer", "null"]},
        "price": {"type": ["integer", "null"], "description": "Minor units."},
        "currency": NULLABLE_STRING,
        "locked": {"type": ["boolean", "null"]},
        "updated": TIMESTAMP_STRING,
    },
}
STOCK_MOVEMENT: dict[str, Any] = {
    "type": "object",
    "required": [
        "id",
        "machine_id",
        "slot_code",
        "product",
        "kind",
        "quantity",
        "stock_after",
        "source_event_id",
        "user_id",
        "time",
        "context_id",
    ],
    "properties": {
        "id": {"type": "integer"},
        "machine_id": {"type": "string"},
        "slot_code": {"type": "string"},
        "product": NULLABLE_STRING,
        "kind": {"type": "string", "description": ", ".join(MOVEMENT_KINDS)},
        "quantity": {"type": "integer", "description": "Signed: -1 for a vend."},
        "stock_after": {"type": ["integer", "null"]},
        "source_event_id": NULLABLE_STRING,
        "user_id": {**NULLABLE_STRING, "description": "Who caused it (a context user id)."},
        "time": TIMESTAMP_STRING,
        "context_id": NULLABLE_STRING,
    },
}
SLOT_CODE: dict[str, Any] = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,16}$"}


def _machines_in_reach(request: web.Request, machine_id: str | None) -> frozenset[str] | None:
    """The technician's machines when no machine is named (None: no restriction)."""
    if machine_id is not None:
        require_machine(request, machine_id)
        return None
    return identity_of(request).machine_ids


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def stock_level(state: State, machine_id: str) -> dict[str, Any]:
    """A slot entity's state as a stock level."""
    attributes = state.attributes
    product = attributes.get("product")
    currency = attributes.get("currency")
    slot_code = attributes.get("slot")
    locked = attributes.get("locked")
    return {
        "entity_id": state.entity_id,
        "machine_id": machine_id,
        "slot_code": slot_code if isinstance(slot_code, str) else None,
        "product": product if isinstance(product, str) else None,
        "quantity": _integer(state.state),
        "capacity": _integer(attributes.get("capacity")),
        "par_level": _integer(attributes.get("par_level")),
        "price": _integer(attributes.get("price")),
        "currency": currency if isinstance(currency, str) else None,
        "locked": locked if isinstance(locked, bool) else None,
        "updated": state.last_updated.isoformat(),
    }


class StockView(ApiView):
    url = "/api/stock"
    name = "api:stock"

    @operation(
        summary="The stock of every slot now, by machine and slot.",
        description="From the slot entities (`slot.*`), which machines keep up to date; "
        "`below_par=true` lists the slots to refill (quantity below par level).",
        permission=Permission.read,
        query={
            "machine_id": MACHINE_ID,
            "product": text(128, "The product's name."),
            "below_par": {"type": "boolean"},
        },
        responses={200: {"type": "array", "items": STOCK_LEVEL}},
        tags=("stock",),
    )
    async def get(self, request: web.Request) -> web.Response:
        values = query(request)
        machine_id = values.get("machine_id")
        if machine_id is not None:
            require_machine(request, machine_id)
        identity = identity_of(request)
        product = values.get("product")
        below_par = values.get("below_par")
        levels = []
        for state in self.hub.states.async_all(SLOT_DOMAIN):
            machine = machine_of_state(state)
            if machine is None or not identity.sees_machine(machine):
                continue
            if machine_id is not None and machine != machine_id:
                continue
            level = stock_level(state, machine)
            if product is not None and level["product"] != product:
                continue
            if below_par is not None:
                low = (
                    level["quantity"] is not None
                    and level["par_level"] is not None
                    and level["quantity"] < level["par_level"]
                )
                if low != below_par:
                    continue
            levels.append(level)
        levels.sort(
            key=lambda level: (level["machine_id"], level["slot_code"] or "", level["entity_id"])
        )
        return web.json_response(levels)


class StockMovementsView(ApiView):
    url = "/api/stock/movements"
    name = "api:stock:movements"

    @operation(
        summary="Stock movements (vends, refills, corrections, spoilage), newest first.",
        permission=Permission.read,
        query={
            "machine_id": MACHINE_ID,
            "slot": SLOT_CODE,
            "product": text(128, "The product's name."),
            "kind": {"enum": list(MOVEMENT_KINDS)},
            **RANGE_QUERY,
            **PAGED_QUERY,
        },
        responses={200: page_schema(STOCK_MOVEMENT), 503: UNAVAILABLE_RESPONSE},
        tags=("stock",),
    )
    async def get(self, request: web.Request) -> web.Response:
        recorder_of(self.hub)
        values = query(request)
        machine_id = values.get("machine_id")
        machine_ids = _machines_in_reach(request, machine_id)
        filters = {
            "machine_id": machine_id,
            "machine_ids": machine_ids,
            "slot_code": values.get("slot"),
            "product": values.get("product"),
            "kind": values.get("kind"),
            "start": optional_time(values, "since"),
            "end": optional_time(values, "until"),
            "limit": values.get("limit", 100),
            "before_id": before_id(values),
        }
        page = await run_query(
            self.hub, lambda session: stock_queries.stock_movements(session, **filters)
        )
        return page_answer(request, [row.as_dict() for row in page.items], page.next_before_id)


VIEWS = (StockView, StockMovementsView)
