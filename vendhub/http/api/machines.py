"""``/api/machines``: the fleet, adoption, commands, modes, slot plans and restocking.

What a machine is comes from ``hub.states`` (``Fleet``); what is done to it goes through the
service of the integration that links it (``fleet.LINK_SERVICES``), with the caller's context.
Technicians see and act on their assigned machines only; another machine is "not found".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from vendhub.auth.roles import Permission
from vendhub.http.api.calls import SERVICE_ERRORS, call_service, json_answer
from vendhub.http.api.schemas import MACHINE_ID
from vendhub.http.errors import ApiError, bad_request, not_found
from vendhub.http.view import (
    ApiView,
    body,
    identity_of,
    operation,
    params,
    query,
    require_machine,
)
from vendhub.machine import protocol
from vendhub.machine.fleet import (
    ADOPT_SERVICE,
    LINK_MQTT,
    LINK_SIMULATOR,
    LINK_VENDING,
    PENDING_SERVICE,
    Fleet,
    FleetMachine,
)

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

TAGS: Final = ("machines",)
TEXT_OR_NULL: Final = {"type": ["string", "null"]}
WHOLE_OR_NULL: Final = {"type": ["integer", "null"]}
SLOT_CODE: dict[str, Any] = {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,16}$"}
COMMAND_NAME: dict[str, Any] = {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,63}$"}
MODE: dict[str, Any] = {"enum": list(protocol.MODES)}
MONEY: dict[str, Any] = {
    "type": "integer",
    "minimum": 0,
    "maximum": 100_000_000,
    "description": "Minor units (cents): 150 is 1.50.",
}

STOCK_SUMMARY: dict[str, Any] = {
    "type": "object",
    "required": ["items", "capacity", "empty_slots", "low_slots"],
    "properties": {
        "items": {"type": "integer"},
        "capacity": {"type": "integer"},
        "empty_slots": {"type": "integer"},
        "low_slots": {"type": "integer", "description": "Slots whose stock is below their par."},
    },
}
SLOT: dict[str, Any] = {
    "type": "object",
    "required": [
        "code",
        "entity_id",
        "product",
        "price",
        "currency",
        "capacity",
        "par",
        "stock",
        "locked",
        "available",
    ],
    "properties": {
        "code": {"type": "string"},
        "entity_id": {"type": "string"},
        "product": TEXT_OR_NULL,
        "price": WHOLE_OR_NULL,
        "currency": TEXT_OR_NULL,
        "capacity": WHOLE_OR_NULL,
        "par": WHOLE_OR_NULL,
        "stock": {**WHOLE_OR_NULL, "description": "Null while unknown or the machine is offline."},
        "locked": {"type": ["boolean", "null"]},
        "available": {"type": "boolean"},
    },
}
_MACHINE_PROPERTIES: dict[str, Any] = {
    "id": {"type": "string"},
    "entity_id": {"type": "string"},
    "name": {"type": "string"},
    "online": {"type": "boolean"},
    "state": {"type": "string"},
    "mode": TEXT_OR_NULL,
    "firmware": TEXT_OR_NULL,
    "model": TEXT_OR_NULL,
    "location": TEXT_OR_NULL,
    "currency": TEXT_OR_NULL,
    "link": {
        **TEXT_OR_NULL,
        "description": "The integration that links the machine: mqtt, simulator, vending, ...",
    },
    "sales_today": WHOLE_OR_NULL,
    "revenue_today": WHOLE_OR_NULL,
    "slot_count": {"type": "integer"},
    "stock": STOCK_SUMMARY,
    "open_alarms": {"type": "integer"},
    "last_changed": {"type": "string"},
}
MACHINE: dict[str, Any] = {
    "type": "object",
    "required": list(_MACHINE_PROPERTIES),
    "properties": _MACHINE_PROPERTIES,
}
MACHINE_DETAIL: dict[str, Any] = {
    "type": "object",
    "required": [*_MACHINE_PROPERTIES, "slots"],
    "properties": {**_MACHINE_PROPERTIES, "slots": {"type": "array", "items": SLOT}},
}
PENDING_MACHINE: dict[str, Any] = {
    "type": "object",
    "required": ["machine_id"],
    "properties": {
        "machine_id": {"type": "string"},
        "model": TEXT_OR_NULL,
        "firmware": TEXT_OR_NULL,
        "currency": TEXT_OR_NULL,
        "refrigerated": {"type": ["boolean", "null"]},
        "capabilities": {"type": "array", "items": {"type": "string"}},
        "slots": {"type": "array", "items": {"type": "string"}},
        "status": TEXT_OR_NULL,
        "first_seen": TEXT_OR_NULL,
        "last_seen": TEXT_OR_NULL,
    },
}
COMMAND_RESULT: dict[str, Any] = {
    "type": "object",
    "required": ["machine_id", "command", "id", "ok", "result", "error"],
    "properties": {
        "machine_id": {"type": "string"},
        "command": {"type": "string"},
        "id": {**TEXT_OR_NULL, "description": "The command's correlation id."},
        "ok": {"type": "boolean", "description": "Whether the machine carried it out."},
        "result": {"type": ["object", "null"]},
        "error": {**TEXT_OR_NULL, "description": "Why the machine did not carry it out."},
    },
}
DELIVERY: dict[str, Any] = {
    "enum": ["applied", "published", "queued"],
    "description": (
        "applied: the machine has it (virtual machines apply a change at once); published: "
        "the new config is retained on the broker and the machine applies it when it gets it "
        "(the protocol has no confirmation of a config yet); queued: the broker cannot be "
        "reached, the config is published when it can. The states show the new plan at once."
    ),
}
CONFIG_RESULT: dict[str, Any] = {
    "type": "object",
    "required": ["machine_id", "mode", "delivery", "config_version"],
    "properties": {
        "machine_id": {"type": "string"},
        "mode": TEXT_OR_NULL,
        "delivery": DELIVERY,
        "config_version": WHOLE_OR_NULL,
    },
}
SLOT_RESULT: dict[str, Any] = {
    "type": "object",
    "required": ["machine_id", "slot", "delivery", "config_version"],
    "properties": {
        "machine_id": {"type": "string"},
        "slot": SLOT,
        "delivery": DELIVERY,
        "config_version": WHOLE_OR_NULL,
    },
}
SLOT_CHANGES: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {
        "product": {"type": "string", "minLength": 1, "maxLength": 255},
        "price": MONEY,
        "capacity": {
            "type": "integer",
            "minimum": 1,
            "maximum": 10_000,
            "description": "A smaller capacity also lowers the stock and the par level to it.",
        },
    },
}


UNSUPPORTED: Final = 409
"""A machine whose link cannot do what was asked (a simulated machine cannot be removed)."""


def _unsupported(machine: FleetMachine, what: str) -> ApiError:
    link = machine.link or "an unknown integration"
    return ApiError(
        UNSUPPORTED,
        "not_supported",
        f"machine {machine.machine_id} is linked through {link}, which cannot {what}",
    )


def machine_in_reach(hub: Hub, request: web.Request, machine_id: str) -> tuple[Fleet, FleetMachine]:
    """The fleet and the machine ``machine_id``, or 404 (unknown, or outside the caller's reach)."""
    require_machine(request, machine_id)
    fleet = Fleet(hub)
    machine = fleet.get(machine_id)
    if machine is None:
        raise not_found(f"no machine {machine_id!r}")
    return fleet, machine


# ---- configuration (mode, slots) ---------------------------------------------------------


def _delivery(result: Any) -> tuple[str, int | None]:
    if not isinstance(result, dict):
        return "applied", None
    version = result.get("version")
    version = version if isinstance(version, int) else None
    if result.get("applied"):
        return "applied", version
    return ("published" if result.get("published") else "queued"), version


async def change_config(
    hub: Hub,
    request: web.Request,
    machine: FleetMachine,
    *,
    mode: str | None = None,
    slots: dict[str, dict[str, Any]] | None = None,
) -> tuple[str, int | None]:
    """Change a machine's mode or slots through its link; return (delivery, config version)."""
    services = machine.services
    if slots:
        require_slot_changes(machine)
    if services is None or services.config is None:
        raise _unsupported(machine, "change its configuration")
    data: dict[str, Any] = {"machine_id": machine.machine_id}
    if mode is not None:
        data["mode"] = mode
    if slots:
        data["slots"] = slots
    return _delivery(await call_service(hub, request, *services.config, data))


def require_slot_changes(machine: FleetMachine) -> None:
    """409 when the machine's link has no service that changes its slots."""
    services = machine.services
    if services is None or services.config is None:
        raise _unsupported(machine, "change its slots (product, price, capacity)")


def slot_changes(fleet: Fleet, machine: FleetMachine, code: str, changes: dict[str, Any]) -> str:
    """The machine's own spelling of slot ``code`` (404 when it has none and this cannot add
    it; 409 first when its link cannot change slots at all); a capacity below the slot's par
    level brings the par down to it."""
    require_slot_changes(machine)
    for key in ("price", "capacity"):
        if isinstance(changes.get(key), float):  # JSON Schema's integers include 150.0
            changes[key] = int(changes[key])
    slot = fleet.slot(machine.machine_id, code)
    if slot is None:
        if machine.link == LINK_VENDING:  # vending.set_slots changes slots, never adds them
            raise bad_request(
                f"machine {machine.machine_id} has no slot {code!r}; its slots are added in "
                "the vending: block of configuration.yaml"
            )
        missing = [key for key in ("product", "price", "capacity") if key not in changes]
        if missing:
            raise not_found(
                f"machine {machine.machine_id} has no slot {code!r}; to add one, give its "
                f"{', '.join(missing)}"
            )
        return code
    capacity = changes.get("capacity")
    if capacity is not None and (slot.par or 0) > capacity:
        changes["par"] = capacity
    return slot.code


# ---- commands ----------------------------------------------------------------------------


def _simulator_data(name: str, args: dict[str, Any]) -> dict[str, Any] | None:
    """The simulator service's data for protocol command ``name`` (None: it has no service)."""
    keys = {
        "restock": ("slot",),
        "lock_slots": ("slots", "locked"),
        "set_door": ("open",),
        "vend": ("slot", "payment_method"),
    }.get(name)
    if keys is None:
        return None
    return {key: args[key] for key in keys if key in args}


def _simulator_result(name: str, result: dict[str, Any]) -> dict[str, Any]:
    """The service's answer shaped as the protocol's command result."""
    if name == "set_door":
        return {"open": result.get("door") == "open"}
    if name in ("restock", "lock_slots"):
        return {"slots": result.get("slots", {})}
    return result


async def _restock(
    hub: Hub,
    request: web.Request,
    machine: FleetMachine,
    service: tuple[str, str],
    code: str | None,
    answer: dict[str, Any],
) -> dict[str, Any]:
    """The restock command through a link's restock service (the vend engine's): one slot,
    or every slot, filled to its par level (its capacity when it has none), never lowered,
    as the engine's own restock and the uplink's restock command fill them."""
    data: dict[str, Any] = {"machine_id": machine.machine_id}
    if code is not None:
        slot = Fleet(hub).slot(machine.machine_id, code)
        if slot is None:
            return {**answer, "ok": False, "error": f"no slot {code!r}"}
        data["fill"] = [slot.code]
    try:
        result = await call_service(hub, request, *service, data)
    except ApiError as error:
        if error.status != 400:
            raise
        return {**answer, "ok": False, "error": error.message}
    slots = result.get("slots", {}) if isinstance(result, dict) else {}
    answer["result"] = {
        "slots": {
            own: change["stock"] if isinstance(change, dict) else change
            for own, change in slots.items()
        }
    }
    return answer


async def run_command(
    hub: Hub,
    request: web.Request,
    machine: FleetMachine,
    name: str,
    args: dict[str, Any],
    timeout: float | None = None,
) -> dict[str, Any]:
    """Send command ``name`` to ``machine`` and return its result (``cmd_result``)."""
    services = machine.services
    if machine.link == LINK_MQTT and services is not None and services.command is not None:
        data: dict[str, Any] = {"machine_id": machine.machine_id, "name": name, "args": args}
        if timeout is not None:
            data["timeout"] = timeout
        result: dict[str, Any] = await call_service(hub, request, *services.command, data)
        return result
    restock = services.restock if services is not None else None
    if machine.link != LINK_SIMULATOR and (restock is None or name != protocol.COMMAND_RESTOCK):
        raise _unsupported(
            machine, "take commands" if restock is None else "take commands other than restock"
        )
    # A virtual machine, or the vend engine's restock: the command becomes a service call,
    # and answers as a machine would (ok false with the reason when it cannot do it).
    try:
        valid = protocol.validate_command_args(name, args)
    except protocol.ProtocolError as error:
        raise bad_request(f"command {name}: {error.reason}") from None
    answer: dict[str, Any] = {
        "machine_id": machine.machine_id,
        "command": name,
        "id": protocol.new_id(),
        "ok": True,
        "result": None,
        "error": None,
    }
    if restock is not None and machine.link != LINK_SIMULATOR:
        return await _restock(hub, request, machine, restock, valid.get("slot"), answer)
    if name == protocol.COMMAND_PING:
        answer["result"] = {"simulated": True}
        return answer
    data = _simulator_data(name, valid)
    if data is None:
        return {**answer, "ok": False, "error": f"unknown command '{name}'"}
    try:
        result = await call_service(
            hub, request, LINK_SIMULATOR, name, {"machine_id": machine.machine_id, **data}
        )
    except ApiError as error:
        if error.status != 400:
            raise
        return {**answer, "ok": False, "error": error.message}
    answer["result"] = _simulator_result(name, result)
    return answer


# ---- views -------------------------------------------------------------------------------


class MachinesView(ApiView):
    url = "/api/machines"
    name = "api:machines"

    @operation(
        summary="Every machine you may see, with its stock summary and open alarms.",
        description=(
            "Technicians get their assigned machines only. `link` is the integration that "
            "connects the machine (mqtt, simulator; vending for the vend engine's own)."
        ),
        permission=Permission.read,
        query={
            "online": {"type": "boolean"},
            "link": {"type": "string", "maxLength": 64},
        },
        responses={200: {"type": "array", "items": MACHINE}},
        tags=TAGS,
    )
    async def get(self, request: web.Request) -> web.Response:
        fleet = Fleet(self.hub)
        wanted = query(request)
        machines = [
            machine
            for machine in fleet.visible(identity_of(request))
            if ("online" not in wanted or machine.online is wanted["online"])
            and ("link" not in wanted or machine.link == wanted["link"])
        ]
        return json_answer([fleet.machine_json(machine) for machine in machines])


class PendingMachinesView(ApiView):
    # Registered before MachineView: /api/machines/pending is not a machine.
    url = "/api/machines/pending"
    name = "api:machines:pending"

    @operation(
        summary="Machines that announced themselves over MQTT and wait for adoption.",
        description=(
            "Empty when the mqtt integration is not set up: machines announce themselves "
            "through it. Technicians see only the machine ids assigned to them."
        ),
        permission=Permission.read,
        responses={200: {"type": "array", "items": PENDING_MACHINE}, **SERVICE_ERRORS},
        tags=TAGS,
    )
    async def get(self, request: web.Request) -> web.Response:
        identity = identity_of(request)
        pending = await _pending(self.hub, request)
        return json_answer(
            [item for item in pending if identity.sees_machine(str(item.get("machine_id")))]
        )


async def _pending(hub: Hub, request: web.Request) -> list[dict[str, Any]]:
    """The machines waiting for adoption (none without an MQTT link: only it adopts)."""
    if not hub.services.has_service(*PENDING_SERVICE):
        return []
    result = await call_service(hub, request, *PENDING_SERVICE)
    pending = result.get("pending", []) if isinstance(result, dict) else []
    return [item for item in pending if isinstance(item, dict)]


class MachineView(ApiView):
    url = "/api/machines/{machine_id}"
    name = "api:machine"
    path_params = {"machine_id": MACHINE_ID}

    @operation(
        summary="One machine with its slots (code, product, price, capacity, stock, locked).",
        permission=Permission.read,
        responses={200: MACHINE_DETAIL},
        tags=TAGS,
    )
    async def get(self, request: web.Request) -> web.Response:
        fleet, machine = machine_in_reach(self.hub, request, params(request)["machine_id"])
        return json_answer(fleet.machine_json(machine, with_slots=True))

    @operation(
        summary="Remove a machine (adopted or pending) from an MQTT link.",
        description=(
            "Its device, entities and stored record go, and its retained topics are cleared; "
            "if it announces itself again it is pending again. Simulated machines are "
            "configured in YAML and cannot be removed here (409)."
        ),
        permission=Permission.adopt_machines,
        responses={
            200: {
                "type": "object",
                "required": ["ok", "machine_id", "was_adopted"],
                "properties": {
                    "ok": {"type": "boolean"},
                    "machine_id": {"type": "string"},
                    "was_adopted": {"type": "boolean"},
                },
            },
            409: None,
            **SERVICE_ERRORS,
        },
        tags=TAGS,
    )
    async def delete(self, request: web.Request) -> web.Response:
        machine_id = params(request)["machine_id"]
        require_machine(request, machine_id)
        machine = Fleet(self.hub).get(machine_id)
        if machine is not None:
            services = machine.services
            if services is None or services.remove is None:
                raise _unsupported(machine, "remove it (remove it from configuration.yaml)")
            remove = services.remove
        elif any(
            item.get("machine_id") == machine_id for item in await _pending(self.hub, request)
        ):
            remove = (LINK_MQTT, "remove")
        else:
            raise not_found(f"no machine {machine_id!r}")
        result = await call_service(self.hub, request, *remove, {"machine_id": machine_id})
        was_adopted = bool(result.get("was_adopted")) if isinstance(result, dict) else True
        return json_answer({"ok": True, "machine_id": machine_id, "was_adopted": was_adopted})


class AdoptView(ApiView):
    url = "/api/machines/{machine_id}/adopt"
    name = "api:machine:adopt"
    path_params = {"machine_id": MACHINE_ID}

    @operation(
        summary="Adopt a machine that waits (see /api/machines/pending), optionally naming it.",
        description=(
            "Creates its device and entities and publishes its first config. 404 when no such "
            "machine waits (always, without the mqtt integration), 409 when it is adopted "
            "already."
        ),
        permission=Permission.adopt_machines,
        body={
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 100},
                "location": {"type": "string", "maxLength": 255},
            },
        },
        responses={200: MACHINE_DETAIL, 409: None, **SERVICE_ERRORS},
        tags=TAGS,
    )
    async def post(self, request: web.Request) -> web.Response:
        machine_id = params(request)["machine_id"]
        require_machine(request, machine_id)
        if Fleet(self.hub).get(machine_id) is not None:
            raise ApiError(409, "conflict", f"machine {machine_id} is adopted already")
        pending = await _pending(self.hub, request)
        if not any(item.get("machine_id") == machine_id for item in pending):
            raise not_found(
                f"no machine {machine_id!r} waits for adoption"
                + (
                    ""
                    if self.hub.services.has_service(*PENDING_SERVICE)
                    else " (the mqtt integration, through which machines announce themselves, "
                    "is not set up)"
                )
            )
        await call_service(
            self.hub, request, *ADOPT_SERVICE, {"machine_id": machine_id, **body(request)}
        )
        fleet, machine = machine_in_reach(self.hub, request, machine_id)
        return json_answer(fleet.machine_json(machine, with_slots=True))


class CommandView(ApiView):
    url = "/api/machines/{machine_id}/commands/{command}"
    name = "api:machine:command"
    path_params = {"machine_id": MACHINE_ID, "command": COMMAND_NAME}

    @operation(
        summary="Send a command to a machine and answer its result.",
        description=(
            "The body is the command's arguments (`{}` for none). Version 1 commands: restock "
            "(slot?), lock_slots (slots?, locked?), set_door (open), vend (slot, "
            "payment_method?), ping. The answer is the machine's cmd_result: `ok` false with "
            "`error` when the machine refused. 504 when an MQTT machine does not answer within "
            "`timeout` seconds (default: the link's command_timeout); it may still carry the "
            "command out. Simulated machines answer at once; the vend engine's machines take "
            "restock only (409 otherwise)."
        ),
        permission=Permission.operate_machines,
        query={"timeout": {"type": "number", "minimum": 0.1, "maximum": 300}},
        body={"type": "object", "maxProperties": 64},
        responses={200: COMMAND_RESULT, 409: None, **SERVICE_ERRORS},
        tags=TAGS,
    )
    async def post(self, request: web.Request) -> web.Response:
        path = params(request)
        _, machine = machine_in_reach(self.hub, request, path["machine_id"])
        result = await run_command(
            self.hub,
            request,
            machine,
            path["command"],
            dict(body(request)),
            query(request).get("timeout"),
        )
        return json_answer(result)


class RestockView(ApiView):
    url = "/api/machines/{machine_id}/restock"
    name = "api:machine:restock"
    path_params = {"machine_id": MACHINE_ID}

    @operation(
        summary="Record that a slot (or every slot) was filled to capacity.",
        description=(
            "The restock command: simulator.restock for a simulated machine (to capacity), "
            "vending.restock for a machine of the vend engine (to the slot's par level, its "
            "capacity without one; the stock changes at once), the machine's `restock` command "
            "over MQTT otherwise (then 504 when it does not answer in time). The answer is the "
            "command's result; the stock of an MQTT machine changes when its `restocked` event "
            "arrives."
        ),
        permission=Permission.operate_machines,
        query={"timeout": {"type": "number", "minimum": 0.1, "maximum": 300}},
        body={
            "type": "object",
            "additionalProperties": False,
            "properties": {"slot": SLOT_CODE},
        },
        responses={200: COMMAND_RESULT, 409: None, **SERVICE_ERRORS},
        tags=TAGS,
    )
    async def post(self, request: web.Request) -> web.Response:
        fleet, machine = machine_in_reach(self.hub, request, params(request)["machine_id"])
        args: dict[str, Any] = {}
        code = body(request).get("slot")
        if code is not None:
            slot = fleet.slot(machine.machine_id, code)
            if slot is None:
                raise not_found(f"machine {machine.machine_id} has no slot {code!r}")
            args["slot"] = slot.code
        result = await run_command(
            self.hub, request, machine, "restock", args, query(request).get("timeout")
        )
        return json_answer(result)


class ModeView(ApiView):
    url = "/api/machines/{machine_id}/mode"
    name = "api:machine:mode"
    path_params = {"machine_id": MACHINE_ID}

    @operation(
        summary="Set a machine's mode: normal, service, out_of_order or free_vend.",
        description=(
            "normal sells; service is for someone at the machine (no sales); out_of_order sells "
            "nothing; free_vend dispenses without payment. Goes out in the machine's config "
            "(see `delivery`). Simulated machines show the mode but keep selling; the vend "
            "engine's machines take it at once (vending.set_slots, `delivery` applied)."
        ),
        permission=Permission.operate_machines,
        body={
            "type": "object",
            "required": ["mode"],
            "additionalProperties": False,
            "properties": {"mode": MODE},
        },
        responses={200: CONFIG_RESULT, 409: None, **SERVICE_ERRORS},
        tags=TAGS,
    )
    async def put(self, request: web.Request) -> web.Response:
        _, machine = machine_in_reach(self.hub, request, params(request)["machine_id"])
        mode = body(request)["mode"]
        delivery, version = await change_config(self.hub, request, machine, mode=mode)
        return json_answer(
            {
                "machine_id": machine.machine_id,
                "mode": mode,
                "delivery": delivery,
                "config_version": version,
            }
        )


class SlotView(ApiView):
    url = "/api/machines/{machine_id}/slots/{code}"
    name = "api:machine:slot"
    path_params = {"machine_id": MACHINE_ID, "code": SLOT_CODE}

    @operation(
        summary="One slot of a machine.",
        permission=Permission.read,
        responses={200: SLOT},
        tags=TAGS,
    )
    async def get(self, request: web.Request) -> web.Response:
        path = params(request)
        fleet, machine = machine_in_reach(self.hub, request, path["machine_id"])
        slot = fleet.slot(machine.machine_id, path["code"])
        if slot is None:
            raise not_found(f"machine {machine.machine_id} has no slot {path['code']!r}")
        return json_answer(slot.as_json())

    @operation(
        summary="Change a slot's price, product or capacity (or add a slot).",
        description=(
            "Only the fields given change. A slot code the machine does not have adds a slot "
            "when product, price and capacity are all given (201). The change goes out in the "
            "machine's config: the slot's state shows it at once and `delivery` says whether "
            "the machine has it yet. The vend engine's machines apply it at once "
            "(vending.set_slots, kept across restarts) and add no slot (400: slots are added "
            "in the vending: block); one linked to a fleet hub (uplink) takes its plan from "
            "there (400)."
        ),
        permission=Permission.manage_catalog,
        body=SLOT_CHANGES,
        responses={200: SLOT_RESULT, 201: SLOT_RESULT, 409: None, **SERVICE_ERRORS},
        tags=TAGS,
    )
    async def put(self, request: web.Request) -> web.Response:
        path = params(request)
        fleet, machine = machine_in_reach(self.hub, request, path["machine_id"])
        changes = dict(body(request))
        code = slot_changes(fleet, machine, path["code"], changes)
        created = fleet.slot(machine.machine_id, code) is None
        delivery, version = await change_config(self.hub, request, machine, slots={code: changes})
        slot = Fleet(self.hub).slot(machine.machine_id, code)
        if slot is None:  # the link took the change but shows no such slot
            raise _unsupported(machine, f"add slot {code}")
        return json_answer(
            {
                "machine_id": machine.machine_id,
                "slot": slot.as_json(),
                "delivery": delivery,
                "config_version": version,
            },
            status=201 if created else 200,
        )


VIEWS = (
    MachinesView,
    PendingMachinesView,
    MachineView,
    AdoptView,
    CommandView,
    RestockView,
    ModeView,
    SlotView,
)
