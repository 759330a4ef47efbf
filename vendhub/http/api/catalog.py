"""``/api/products`` and ``/api/planograms``: what the fleet's slots sell, and at what price.

There is no product catalog of its own yet (products with ids, translations, images: a later
issue): a product is the name a slot plan carries, and ``/api/products`` gathers the slots
that sell it. Prices change per slot (``PUT /api/machines/{id}/slots/{code}``) or for a whole
planogram at once (``PUT /api/planograms/{id}``: one config version for the machine).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from vendhub.auth.roles import Permission
from vendhub.http.api.calls import SERVICE_ERRORS, json_answer
from vendhub.http.api.machines import (
    DELIVERY,
    SLOT,
    SLOT_CHANGES,
    SLOT_CODE,
    TEXT_OR_NULL,
    WHOLE_OR_NULL,
    change_config,
    machine_in_reach,
    slot_changes,
)
from vendhub.http.api.schemas import MACHINE_ID
from vendhub.http.errors import bad_request
from vendhub.http.view import ApiView, body, identity_of, operation, params, query
from vendhub.machine.fleet import Fleet, FleetMachine

PRODUCT: dict[str, Any] = {
    "type": "object",
    "required": [
        "product",
        "currency",
        "price_min",
        "price_max",
        "machines",
        "slots",
        "stock",
    ],
    "properties": {
        "product": {"type": "string", "description": "The name the slot plans give it."},
        "currency": TEXT_OR_NULL,
        "price_min": {"type": "integer"},
        "price_max": {"type": "integer"},
        "machines": {"type": "array", "items": {"type": "string"}},
        "slots": {"type": "integer", "description": "Slots that sell it."},
        "stock": {"type": "integer", "description": "Items in those slots (known stock)."},
    },
}
PLANOGRAM: dict[str, Any] = {
    "type": "object",
    "required": ["machine_id", "mode", "currency", "slots"],
    "properties": {
        "machine_id": {"type": "string"},
        "mode": TEXT_OR_NULL,
        "currency": TEXT_OR_NULL,
        "slots": {"type": "array", "items": SLOT},
    },
}
PLANOGRAM_RESULT: dict[str, Any] = {
    **PLANOGRAM,
    "required": [*PLANOGRAM["required"], "delivery", "config_version"],
    "properties": {
        **PLANOGRAM["properties"],
        "delivery": DELIVERY,
        "config_version": WHOLE_OR_NULL,
    },
}


def planogram_json(fleet: Fleet, machine: FleetMachine) -> dict[str, Any]:
    return {
        "machine_id": machine.machine_id,
        "mode": mode if isinstance(mode := machine.state.attributes.get("mode"), str) else None,
        "currency": machine.currency,
        "slots": [slot.as_json() for slot in fleet.slots(machine.machine_id)],
    }


class ProductsView(ApiView):
    url = "/api/products"
    name = "api:products"

    @operation(
        summary="The products the fleet's slots sell: price range, machines, stock.",
        description=(
            "Gathered from the slot plans of the machines you may see (technicians: their "
            "machines), one entry per product name and currency. This is not yet a product "
            "catalog: products have no ids, translations or images, and cannot be created or "
            "renamed here; change what a slot sells with PUT /api/machines/{id}/slots/{code}."
        ),
        permission=Permission.read,
        query={"machine_id": MACHINE_ID},
        responses={200: {"type": "array", "items": PRODUCT}},
        tags=("catalog",),
    )
    async def get(self, request: web.Request) -> web.Response:
        fleet = Fleet(self.hub)
        only = query(request).get("machine_id")
        products: dict[tuple[str, str | None], dict[str, Any]] = {}
        for machine in fleet.visible(identity_of(request)):
            if only is not None and machine.machine_id != only:
                continue
            for slot in fleet.slots(machine.machine_id):
                if slot.product is None or slot.price is None:
                    continue
                entry = products.setdefault(
                    (slot.product, slot.currency),
                    {
                        "product": slot.product,
                        "currency": slot.currency,
                        "price_min": slot.price,
                        "price_max": slot.price,
                        "machines": [],
                        "slots": 0,
                        "stock": 0,
                    },
                )
                entry["price_min"] = min(entry["price_min"], slot.price)
                entry["price_max"] = max(entry["price_max"], slot.price)
                if machine.machine_id not in entry["machines"]:
                    entry["machines"].append(machine.machine_id)
                entry["slots"] += 1
                entry["stock"] += slot.stock or 0
        return json_answer(
            sorted(products.values(), key=lambda p: (p["product"].lower(), p["currency"] or ""))
        )


class PlanogramView(ApiView):
    url = "/api/planograms/{machine_id}"
    name = "api:planogram"
    path_params = {"machine_id": MACHINE_ID}

    @operation(
        summary="A machine's planogram: its slots with product, price, capacity, par, stock.",
        permission=Permission.read,
        responses={200: PLANOGRAM},
        tags=("catalog",),
    )
    async def get(self, request: web.Request) -> web.Response:
        fleet, machine = machine_in_reach(self.hub, request, params(request)["machine_id"])
        return json_answer(planogram_json(fleet, machine))

    @operation(
        summary="Change several slots at once (prices, products, capacities).",
        description=(
            "One config version for the whole change. Each slot takes the fields of PUT "
            "/api/machines/{id}/slots/{code}; a new code needs product, price and capacity. "
            "Slots not named stay as they are."
        ),
        permission=Permission.manage_catalog,
        body={
            "type": "object",
            "required": ["slots"],
            "additionalProperties": False,
            "properties": {
                "slots": {
                    "type": "object",
                    "minProperties": 1,
                    "maxProperties": 1000,
                    "propertyNames": SLOT_CODE,
                    "additionalProperties": SLOT_CHANGES,
                }
            },
        },
        responses={200: PLANOGRAM_RESULT, 409: None, **SERVICE_ERRORS},
        tags=("catalog",),
    )
    async def put(self, request: web.Request) -> web.Response:
        fleet, machine = machine_in_reach(self.hub, request, params(request)["machine_id"])
        slots: dict[str, dict[str, Any]] = {}
        for code, given in body(request)["slots"].items():
            changes = dict(given)
            own = slot_changes(fleet, machine, code, changes)
            if any(own.lower() == other.lower() for other in slots):
                raise bad_request(f"slot {code!r} is given twice (slot codes ignore case)")
            slots[own] = changes
        delivery, version = await change_config(self.hub, request, machine, slots=slots)
        fleet = Fleet(self.hub)
        answer = planogram_json(fleet, fleet.get(machine.machine_id) or machine)
        return json_answer({**answer, "delivery": delivery, "config_version": version})


VIEWS = (ProductsView, PlanogramView)
