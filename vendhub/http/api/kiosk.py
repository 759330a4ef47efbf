"""``/api/kiosk/{machine_id}``: what a machine's customer touchscreen shows, and its purchases.

The kiosk (``frontend/kiosk/``) signs in as its machine (``grant_type: machine``): every
operation here takes machine identities, which reach only their own machine (another machine
is "not found"); users need ``operate_machines`` on the machine (a technician: one of theirs).

Two backends sell here:

- machines of the ``vending:`` block run the **vend engine** and its real payment providers:
  ``kiosk_vend.py`` starts, reads and cancels their vend sessions through the ``vending.*``
  services (answers with ``simulated: false``, ``backend: engine``);
- machines linked by the simulator sell with SIMULATED payment through the simulator's
  ``purchase_*`` services (``integrations/simulator/purchase.py``; ``simulated: true``); only
  they take the simulated ``.../pay`` and ``.../cash``.

For any other machine (linked over MQTT) the purchase operations answer 409
``not_supported``. The core names the services, never imports an integration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from vendhub.auth.roles import Permission
from vendhub.http.api import kiosk_vend
from vendhub.http.api.calls import SERVICE_ERRORS, call_service, json_answer
from vendhub.http.api.kiosk_vend import ENGINE_PURCHASE, TOKEN
from vendhub.http.api.schemas import MACHINE_ID
from vendhub.http.errors import ApiError, bad_request, not_found
from vendhub.http.view import ApiView, body, operation, params, require_machine
from vendhub.machine.fleet import LINK_SIMULATOR, Fleet, FleetMachine

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

TAGS: Final = ("kiosk",)
PURCHASE_METHODS: Final = ("card", "qr", "cash")
"""The simulated machines' methods; the vend engine's are ``kiosk_vend.ENGINE_METHODS``."""
BACKEND_SIMULATOR: Final = "simulator"
PURCHASE_STATES: Final = (
    "selecting",
    "awaiting_payment",
    "authorized",
    "dispensing",
    "completed",
    "failed",
    "cancelled",
)
WAITING: Final = frozenset({"selecting", "awaiting_payment"})
FINAL: Final = frozenset({"completed", "failed", "cancelled"})
NOT_SELLING_MODES: Final = frozenset({"service", "out_of_order"})
SERVICE_DOMAIN: Final = LINK_SIMULATOR
MAX_CASH: Final = 100_000

TEXT_OR_NULL: Final = {"type": ["string", "null"]}
WHOLE_OR_NULL: Final = {"type": ["integer", "null"]}
MONEY: Final = {"type": "integer", "minimum": 0, "description": "Minor units (cents)."}
PURCHASE_ID: dict[str, Any] = {"type": "string", "pattern": "^[0-9a-f]{32}$"}
SLOT_CODE: dict[str, Any] = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,16}$"}

PURCHASE: dict[str, Any] = {
    "type": "object",
    "description": "One purchase session (SIMULATED payment).",
    "required": [
        "id",
        "machine_id",
        "slot",
        "product",
        "price",
        "currency",
        "method",
        "state",
        "credit",
        "due",
        "change",
        "refunded",
        "refund_amount",
        "reason",
        "created",
        "updated",
        "expires",
        "payment_url",
        "vend",
        "seq",
        "simulated",
    ],
    "properties": {
        "id": PURCHASE_ID,
        "machine_id": {"type": "string"},
        "slot": {"type": "string"},
        "product": {"type": "string"},
        "price": MONEY,
        "currency": {"type": "string"},
        "method": {"enum": list(PURCHASE_METHODS)},
        "state": {
            "enum": list(PURCHASE_STATES),
            "description": (
                "selecting → awaiting_payment → authorized → dispensing → completed; or failed "
                "(declined, or the vend failed: then refunded), or cancelled (by the customer "
                "or a timeout; inserted cash is returned)."
            ),
        },
        "credit": {**MONEY, "description": "Cash inserted so far."},
        "due": {**MONEY, "description": "Cash still to insert (0 for card and QR)."},
        "change": {**MONEY, "description": "Cash given back after a completed purchase."},
        "refunded": {"type": "boolean"},
        "refund_amount": {**MONEY, "description": "What was given back or voided."},
        "reason": {
            **TEXT_OR_NULL,
            "description": (
                "Why it failed or was cancelled: declined, jam, motor, locked, sold_out, error, "
                "cancelled, timeout, replaced, stopped."
            ),
        },
        "created": {"type": "string"},
        "updated": {"type": "string"},
        "expires": {**TEXT_OR_NULL, "description": "When the wait for payment times out."},
        "payment_url": {**TEXT_OR_NULL, "description": "What the QR code carries (qr only)."},
        "vend": {
            "type": ["object", "null"],
            "description": "The simulated vend's outcome, once it ran.",
        },
        "seq": {"type": "integer", "description": "Counts the session's updates."},
        "simulated": {"type": "boolean"},
        "context_id": {"type": "string"},
    },
}
KIOSK_SLOT: dict[str, Any] = {
    "type": "object",
    "required": [
        "code",
        "product",
        "price",
        "currency",
        "stock",
        "sold_out",
        "locked",
        "available",
    ],
    "properties": {
        "code": {"type": "string"},
        "product": TEXT_OR_NULL,
        "price": WHOLE_OR_NULL,
        "currency": TEXT_OR_NULL,
        "stock": WHOLE_OR_NULL,
        "sold_out": {"type": "boolean"},
        "locked": {"type": "boolean"},
        "available": {
            "type": "boolean",
            "description": "Whether a customer can buy it now (in stock, selling, online).",
        },
    },
}
KIOSK: dict[str, Any] = {
    "type": "object",
    "required": [
        "machine_id",
        "name",
        "location",
        "online",
        "mode",
        "selling",
        "currency",
        "languages",
        "default_language",
        "payment_methods",
        "simulated",
        "backend",
        "free_vend",
        "purchases",
        "payment_timeout",
        "slots",
        "purchase",
    ],
    "properties": {
        "machine_id": {"type": "string"},
        "name": {"type": "string"},
        "location": TEXT_OR_NULL,
        "online": {"type": "boolean"},
        "mode": TEXT_OR_NULL,
        "selling": {
            "type": "boolean",
            "description": "Online, and not in service or out_of_order mode.",
        },
        "backend": {
            "enum": [BACKEND_SIMULATOR, kiosk_vend.BACKEND_ENGINE, None],
            "description": (
                "Who sells here: the vend engine (a machine of the `vending:` block, real "
                "payment providers), the simulator (simulated payment), or nobody (null)."
            ),
        },
        "free_vend": {
            "type": "boolean",
            "description": "The vend engine's free_vend mode: products are given, not sold.",
        },
        "currency": {"type": "string"},
        "languages": {"type": "array", "items": {"type": "string"}},
        "default_language": {"type": "string"},
        "payment_methods": {
            "type": "array",
            "items": {"enum": list(kiosk_vend.ENGINE_METHODS)},
            "description": (
                "What this machine accepts (empty when it cannot sell here): card, qr, cash on "
                "simulated machines; any method of the machine's payment providers on the "
                "vend engine's."
            ),
        },
        "simulated": {"type": "boolean", "description": "The payment is the simulator's."},
        "purchases": {
            "type": "boolean",
            "description": "Whether purchases can be made here (vend engine or simulator).",
        },
        "payment_timeout": {
            "type": ["number", "null"],
            "description": "Seconds to pay (simulated machines; null for the vend engine's).",
        },
        "slots": {"type": "array", "items": KIOSK_SLOT},
        "purchase": {
            "oneOf": [PURCHASE, ENGINE_PURCHASE, {"type": "null"}],
            "description": "The machine's purchase in progress, if any (to resume after a reload).",
        },
    },
}
ANY_PURCHASE: dict[str, Any] = {
    "oneOf": [PURCHASE, ENGINE_PURCHASE],
    "description": "A simulated purchase (`simulated: true`) or a vend engine's (false).",
}
PURCHASE_RESPONSES: dict[int, dict[str, Any] | None] = {
    200: ANY_PURCHASE,
    409: None,
    **SERVICE_ERRORS,
}
SIMULATED_RESPONSES: dict[int, dict[str, Any] | None] = {
    200: PURCHASE,
    409: None,
    **SERVICE_ERRORS,
}


def _conflict(code: str, message: str) -> ApiError:
    return ApiError(409, code, message)


def _machine(hub: Hub, request: web.Request) -> tuple[Fleet, FleetMachine]:
    machine_id = params(request)["machine_id"]
    require_machine(request, machine_id)
    fleet = Fleet(hub)
    machine = fleet.get(machine_id)
    if machine is None:
        raise not_found(f"no machine {machine_id!r}")
    return fleet, machine


def _simulated(machine: FleetMachine) -> bool:
    return machine.link == LINK_SIMULATOR


def _require_simulated(machine: FleetMachine) -> None:
    if _simulated(machine):
        return
    if kiosk_vend.is_engine_machine(machine):
        raise _conflict(
            "not_supported",
            f"machine {machine.machine_id} sells through the vend engine: its payment comes "
            "from its payment provider (card reader, QR, cash, wallet), not from this API",
        )
    raise _conflict(
        "not_supported",
        f"machine {machine.machine_id} is linked through {machine.link or 'an unknown link'}: "
        "the kiosk sells on machines of the vend engine (the `vending:` block) and, with "
        "simulated payment, on simulated machines",
    )


def _selling(machine: FleetMachine) -> bool:
    mode = machine.state.attributes.get("mode")
    return machine.online and mode not in NOT_SELLING_MODES


async def _options(hub: Hub, request: web.Request, machine: FleetMachine) -> dict[str, Any] | None:
    if not _simulated(machine) or not hub.services.has_service(SERVICE_DOMAIN, "purchase_options"):
        return None
    result: dict[str, Any] = await call_service(
        hub, request, SERVICE_DOMAIN, "purchase_options", {"machine_id": machine.machine_id}
    )
    return result


async def _purchase(
    hub: Hub, request: web.Request, machine: FleetMachine, purchase_id: str
) -> dict[str, Any]:
    """The purchase ``purchase_id`` of ``machine``, or 404."""
    _require_simulated(machine)
    try:
        result: dict[str, Any] = await call_service(
            hub,
            request,
            SERVICE_DOMAIN,
            "purchase_status",
            {"machine_id": machine.machine_id, "purchase_id": purchase_id},
        )
    except ApiError as error:
        if error.status == 400:
            raise not_found(
                f"machine {machine.machine_id} has no purchase {purchase_id!r}"
            ) from None
        raise
    return result


async def _purchase_call(
    hub: Hub, request: web.Request, machine: FleetMachine, service: str, data: dict[str, Any]
) -> dict[str, Any]:
    result: dict[str, Any] = await call_service(
        hub, request, SERVICE_DOMAIN, service, {"machine_id": machine.machine_id, **data}
    )
    return result


def _slot_json(slot: Any, buyable: bool) -> dict[str, Any]:
    stock = slot.stock
    sold_out = stock is not None and stock <= 0
    locked = bool(slot.locked)
    return {
        "code": slot.code,
        "product": slot.product,
        "price": slot.price,
        "currency": slot.currency,
        "stock": stock,
        "sold_out": sold_out,
        "locked": locked,
        "available": buyable
        and slot.available
        and not sold_out
        and not locked
        and stock is not None
        and slot.price is not None,
    }


class KioskView(ApiView):
    url = "/api/kiosk/{machine_id}"
    name = "api:kiosk"
    path_params = {"machine_id": MACHINE_ID}

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub)
        # Follows the vend engine's sessions from now on, to answer the one in progress.
        kiosk_vend.open_sessions(hub)

    @operation(
        summary="What the machine's kiosk shows: products, prices, availability, payment.",
        description=(
            "Machine name, the hub's languages (the first is the default), currency, the "
            "payment methods this machine accepts, who sells (`backend`: the vend engine or "
            "the simulator), and every slot with its product, price and whether it can be "
            "bought (sold out shown as such). For the machine itself or a user with "
            "operate_machines on it."
        ),
        permission=Permission.operate_machines,
        machines=True,
        responses={200: KIOSK, **SERVICE_ERRORS},
        tags=TAGS,
    )
    async def get(self, request: web.Request) -> web.Response:
        fleet, machine = _machine(self.hub, request)
        if kiosk_vend.is_engine_machine(machine):
            sales = await kiosk_vend.async_kiosk(self.hub, request, machine)
        else:
            sales = await _simulated_sales(self.hub, request, machine)
        languages = list(self.hub.config.languages) or ["en"]
        location = machine.state.attributes.get("location")
        return json_answer(
            {
                "machine_id": machine.machine_id,
                "name": machine.state.name,
                "location": location if isinstance(location, str) else None,
                "currency": machine.currency or self.hub.config.currency,
                "languages": languages,
                "default_language": languages[0],
                **sales,
                "slots": [
                    _slot_json(slot, sales["purchases"] and sales["selling"])
                    for slot in fleet.slots(machine.machine_id)
                ],
            }
        )


async def _simulated_sales(hub: Hub, request: web.Request, machine: FleetMachine) -> dict[str, Any]:
    """The kiosk's mode, methods and open purchase of a machine that is not the engine's."""
    options = await _options(hub, request, machine)
    mode = machine.state.attributes.get("mode")
    return {
        "online": machine.online,
        "mode": mode if isinstance(mode, str) else None,
        "selling": _selling(machine),
        "payment_methods": list(options["payment_methods"]) if options else [],
        "simulated": _simulated(machine),
        "backend": BACKEND_SIMULATOR if options is not None else None,
        "free_vend": False,
        "purchases": options is not None,
        "payment_timeout": options.get("payment_timeout") if options else None,
        "purchase": options.get("purchase") if options else None,
    }


class PurchasesView(ApiView):
    url = "/api/kiosk/{machine_id}/purchases"
    name = "api:kiosk:purchases"
    path_params = {"machine_id": MACHINE_ID}

    @operation(
        summary="Start a purchase: a slot and a payment method.",
        description=(
            "On a machine of the vend engine: a vend session starts (vending.select) and is "
            "answered at once, `authorizing` while the customer pays at the machine's payment "
            "provider (its `progress` says what to show: present_card, scan_qr with the "
            "payment URL, insert_cash with the credit, processing); an e_wallet payment needs "
            "the customer's `token`. On a simulated machine (SIMULATED payment): the session "
            "awaits payment; card and QR approve by themselves after a short delay (or on "
            "POST .../pay), cash waits for POST .../cash, and a purchase left waiting is "
            "cancelled (its cash returned). 404 for a slot the machine does not have; 409 "
            "when the slot is sold out or does not sell, the machine does not accept the "
            "method, is busy with another purchase or is not selling, or cannot sell here "
            "(not_supported)."
        ),
        permission=Permission.operate_machines,
        machines=True,
        body={
            "type": "object",
            "required": ["slot", "method"],
            "additionalProperties": False,
            "properties": {
                "slot": SLOT_CODE,
                "method": {"enum": list(kiosk_vend.ENGINE_METHODS)},
                "token": TOKEN,
            },
        },
        responses={201: ANY_PURCHASE, 409: None, **SERVICE_ERRORS},
        tags=TAGS,
    )
    async def post(self, request: web.Request) -> web.Response:
        fleet, machine = _machine(self.hub, request)
        wanted = body(request)
        slot = fleet.slot(machine.machine_id, wanted["slot"])
        if kiosk_vend.is_engine_machine(machine):
            if slot is None:
                raise not_found(f"machine {machine.machine_id} has no slot {wanted['slot']!r}")
            if slot.locked:
                raise _conflict("slot_locked", f"slot {slot.code} does not sell now")
            purchase = await kiosk_vend.async_start(
                self.hub, request, machine, slot.code, wanted["method"], wanted.get("token")
            )
            return json_answer(purchase, status=201)
        _require_simulated(machine)
        if "token" in wanted:
            raise bad_request("a simulated payment takes no token")
        if slot is None:
            raise not_found(f"machine {machine.machine_id} has no slot {wanted['slot']!r}")
        if not _selling(machine):
            raise _conflict("not_selling", f"machine {machine.machine_id} is not selling now")
        if slot.stock is not None and slot.stock <= 0:
            raise _conflict("sold_out", f"slot {slot.code} is sold out")
        if slot.locked:
            raise _conflict("slot_locked", f"slot {slot.code} does not sell now")
        options = await _options(self.hub, request, machine)
        if options is None:
            _require_simulated(machine)
            raise _conflict("not_supported", "the simulator's purchases are not available")
        if wanted["method"] not in options["payment_methods"]:
            raise _conflict(
                "method_not_accepted",
                f"machine {machine.machine_id} does not accept {wanted['method']}; it accepts "
                f"{', '.join(options['payment_methods']) or 'nothing'}",
            )
        if options.get("purchase") and options["purchase"]["state"] not in WAITING:
            raise _conflict("busy", f"machine {machine.machine_id} is dispensing; try again soon")
        session = await _purchase_call(
            self.hub,
            request,
            machine,
            "purchase_start",
            {"slot": slot.code, "method": wanted["method"]},
        )
        return json_answer(session, status=201)


class PurchaseView(ApiView):
    url = "/api/kiosk/{machine_id}/purchases/{purchase_id}"
    name = "api:kiosk:purchase"
    path_params = {"machine_id": MACHINE_ID, "purchase_id": PURCHASE_ID}

    @operation(
        summary="One purchase as it is now (poll it while paying and dispensing).",
        description=(
            "Finished purchases stay readable for a while: 10 minutes by default on a "
            "simulated machine; the vend engine keeps its last 200 sessions until the hub "
            "restarts."
        ),
        permission=Permission.operate_machines,
        machines=True,
        responses=PURCHASE_RESPONSES,
        tags=TAGS,
    )
    async def get(self, request: web.Request) -> web.Response:
        _, machine = _machine(self.hub, request)
        purchase_id = params(request)["purchase_id"]
        if kiosk_vend.is_engine_machine(machine):
            session = await kiosk_vend.async_session(self.hub, request, machine, purchase_id)
            return json_answer(kiosk_vend.purchase_json(session))
        return json_answer(await _purchase(self.hub, request, machine, purchase_id))


class PayView(ApiView):
    url = "/api/kiosk/{machine_id}/purchases/{purchase_id}/pay"
    name = "api:kiosk:purchase:pay"
    path_params = {"machine_id": MACHINE_ID, "purchase_id": PURCHASE_ID}

    @operation(
        summary="SIMULATED card or QR payment: approve now, or decline.",
        description=(
            "Only for simulated machines (409 not_supported otherwise: a real payment comes "
            "from the payment provider). 409 when the purchase does not wait for payment or "
            "is paid in cash."
        ),
        permission=Permission.operate_machines,
        machines=True,
        body={
            "type": "object",
            "additionalProperties": False,
            "properties": {"decline": {"type": "boolean"}},
        },
        responses=SIMULATED_RESPONSES,
        tags=TAGS,
    )
    async def post(self, request: web.Request) -> web.Response:
        _, machine = _machine(self.hub, request)
        purchase_id = params(request)["purchase_id"]
        session = await _purchase(self.hub, request, machine, purchase_id)
        if session["method"] == "cash":
            raise _conflict("conflict", "a cash purchase is paid by inserting cash (.../cash)")
        if session["state"] != "awaiting_payment":
            raise _conflict(
                "conflict", f"the purchase is {session['state']}; it takes no payment now"
            )
        decline = bool(body(request).get("decline", False))
        return json_answer(
            await _purchase_call(
                self.hub,
                request,
                machine,
                "purchase_pay",
                {"purchase_id": purchase_id, "decline": decline},
            )
        )


class CashView(ApiView):
    url = "/api/kiosk/{machine_id}/purchases/{purchase_id}/cash"
    name = "api:kiosk:purchase:cash"
    path_params = {"machine_id": MACHINE_ID, "purchase_id": PURCHASE_ID}

    @operation(
        summary="SIMULATED cash: a coin or note of `amount` minor units goes in.",
        description=(
            "The credit grows; once it covers the price the purchase is paid, `change` is set "
            "aside and the product dispenses. 409 when the purchase does not wait for cash. "
            "Only for simulated machines (409 not_supported otherwise: real cash goes into "
            "the machine's coin and note acceptors)."
        ),
        permission=Permission.operate_machines,
        machines=True,
        body={
            "type": "object",
            "required": ["amount"],
            "additionalProperties": False,
            "properties": {"amount": {"type": "integer", "minimum": 1, "maximum": MAX_CASH}},
        },
        responses=SIMULATED_RESPONSES,
        tags=TAGS,
    )
    async def post(self, request: web.Request) -> web.Response:
        _, machine = _machine(self.hub, request)
        purchase_id = params(request)["purchase_id"]
        session = await _purchase(self.hub, request, machine, purchase_id)
        if session["method"] != "cash":
            raise _conflict("conflict", f"this purchase is paid by {session['method']}, not cash")
        if session["state"] != "awaiting_payment":
            raise _conflict("conflict", f"the purchase is {session['state']}; it takes no cash now")
        amount = int(body(request)["amount"])
        return json_answer(
            await _purchase_call(
                self.hub,
                request,
                machine,
                "purchase_insert_cash",
                {"purchase_id": purchase_id, "amount": amount},
            )
        )


class CancelView(ApiView):
    url = "/api/kiosk/{machine_id}/purchases/{purchase_id}/cancel"
    name = "api:kiosk:purchase:cancel"
    path_params = {"machine_id": MACHINE_ID, "purchase_id": PURCHASE_ID}

    @operation(
        summary="Cancel a purchase that waits for payment; inserted cash is returned.",
        description=(
            "Cancelling a finished purchase answers it unchanged; one that is dispensing "
            "cannot be cancelled (409). On a machine of the vend engine (vending.cancel) a "
            "purchase can be cancelled while `cancellable` (before the dispense): nothing is "
            "charged, and it ends `failed` with outcome `cancelled`."
        ),
        permission=Permission.operate_machines,
        machines=True,
        body={"type": "object", "additionalProperties": False, "properties": {}},
        responses=PURCHASE_RESPONSES,
        tags=TAGS,
    )
    async def post(self, request: web.Request) -> web.Response:
        _, machine = _machine(self.hub, request)
        purchase_id = params(request)["purchase_id"]
        if kiosk_vend.is_engine_machine(machine):
            return json_answer(
                await kiosk_vend.async_cancel(self.hub, request, machine, purchase_id)
            )
        session = await _purchase(self.hub, request, machine, purchase_id)
        if session["state"] in FINAL:
            return json_answer(session)
        if session["state"] not in WAITING:
            raise _conflict(
                "conflict", f"the purchase is {session['state']} and can no longer be cancelled"
            )
        return json_answer(
            await _purchase_call(
                self.hub, request, machine, "purchase_cancel", {"purchase_id": purchase_id}
            )
        )


VIEWS = (KioskView, PurchasesView, PurchaseView, PayView, CashView, CancelView)
