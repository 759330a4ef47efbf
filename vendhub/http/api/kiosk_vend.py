"""The kiosk's purchases on machines that run the vend engine (a machine of the ``vending:``
block): ``vendhub/http/api/kiosk.py`` routes here for them.

A purchase is a vend session (docs/vending.md): it starts with ``vending.select`` (``wait:
false``, so the first snapshot comes back at once), is read with ``vending.session`` and
cancelled with ``vending.cancel``. The menu (slots, prices, stock, accepted methods, mode) is
the machine's ``machine.*`` and ``slot.*`` states. The core names the services and reads
states; it never imports the integration.

What the kiosk gets of a session is what a customer may see: the state, the outcome code,
the reason as a short code (``declined``, ``insufficient_funds``, ``jammed``, ...; never an
error's text), the provider's progress step (``present_card``, ``scan_qr`` with the URL the
QR code carries, ``insert_cash`` with the credit, ``processing``, ``refund_claim`` with its
URL), the change and what was refunded. Never the authorization's details, never the wallet
token the customer presented (it goes to the provider, and service call events and the audit
log redact it).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from vendhub.http.api.calls import call_service
from vendhub.http.errors import ApiError, bad_request, not_found
from vendhub.machine.fleet import whole_or_none
from vendhub.vending.outcomes import EVENT_VEND_SESSION_UPDATED
from vendhub.vending.payment import PaymentMethod
from vendhub.vending.planogram import MachineMode
from vendhub.vending.session import SessionState, VendOutcome

if TYPE_CHECKING:
    from aiohttp import web

    from vendhub.core.events import Event
    from vendhub.core.hub import Hub
    from vendhub.machine.fleet import FleetMachine

ENGINE_DOMAIN: Final = "vending"
"""The integration whose machines run the vend engine (their registry entries name it)."""
SERVICE_SELECT: Final = "select"
SERVICE_SESSION: Final = "session"
SERVICE_CANCEL: Final = "cancel"
BACKEND_ENGINE: Final = "engine"
DATA_OPEN_SESSIONS: Final = "http.kiosk.open_sessions"

ENGINE_METHODS: Final = tuple(method.value for method in PaymentMethod)
"""Every method the engine knows, in the order the kiosk offers them."""
SESSION_STATES: Final = tuple(state.value for state in SessionState)
FINISHED_STATES: Final = frozenset({SessionState.completed.value, SessionState.failed.value})
CANCELLABLE_STATES: Final = frozenset(
    {SessionState.selected.value, SessionState.authorizing.value, SessionState.authorized.value}
)
"""Where ``vending.cancel`` still stops a session: before the dispense."""
PAYING_STATES: Final = frozenset({SessionState.selected.value, SessionState.authorizing.value})
"""Where the customer is paying (the payment screen shows the time left)."""
OUTCOMES: Final = tuple(
    outcome.value
    for outcome in VendOutcome
    if outcome
    not in (
        VendOutcome.unknown_slot,
        VendOutcome.sold_out,
        VendOutcome.out_of_order,
        VendOutcome.service_mode,
        VendOutcome.method_not_accepted,
        VendOutcome.busy,
    )
)
"""The codes a session ends with (the others refuse a selection: no session is made)."""
SELLING_MODES: Final = frozenset(mode.value for mode in MachineMode if mode.sells)
TOKEN_METHODS: Final = frozenset({PaymentMethod.e_wallet.value})
"""Methods that cannot be paid without the customer's token."""
REFUSALS: Final[dict[VendOutcome, str]] = {
    VendOutcome.sold_out: "sold_out",
    VendOutcome.method_not_accepted: "method_not_accepted",
    VendOutcome.busy: "busy",
    VendOutcome.out_of_order: "not_selling",
    VendOutcome.service_mode: "not_selling",
}
"""The kiosk API's 409 code of each refusal at selection (the same codes as the simulated
machines'); the engine's own code is in the error's details."""
PROGRESS_STEPS: Final = ("present_card", "scan_qr", "insert_cash", "processing", "refund_claim")

TEXT_OR_NULL: Final = {"type": ["string", "null"]}
MONEY: Final = {"type": "integer", "minimum": 0, "description": "Minor units (cents)."}
TOKEN: Final = {
    "type": "string",
    "minLength": 1,
    "maxLength": 256,
    "description": (
        "The customer's wallet token as entered or scanned (e_wallet needs it); machines of "
        "the vend engine only. Never stored, logged or answered."
    ),
}

ENGINE_PURCHASE: dict[str, Any] = {
    "type": "object",
    "description": "One purchase on a machine of the vend engine (a vend session).",
    "required": [
        "id",
        "machine_id",
        "slot",
        "product",
        "price",
        "currency",
        "method",
        "provider",
        "state",
        "outcome",
        "reason",
        "finished",
        "cancellable",
        "free_vend",
        "progress",
        "credit",
        "due",
        "payment_url",
        "change",
        "refunded",
        "refund_amount",
        "credit_left",
        "dispense",
        "started",
        "ended",
        "expires",
        "simulated",
        "backend",
        "context_id",
    ],
    "additionalProperties": False,
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
        "machine_id": {"type": "string"},
        "slot": {"type": "string"},
        "product": {"type": "string"},
        "price": MONEY,
        "currency": {"type": "string"},
        "method": {"enum": list(ENGINE_METHODS)},
        "provider": {**TEXT_OR_NULL, "description": "The payment provider's platform."},
        "state": {
            "enum": list(SESSION_STATES),
            "description": (
                "selected → authorizing (the customer pays) → authorized → dispensing → "
                "dispensed → capturing → captured → completed; after a failure voiding or "
                "refunding → failed (docs/vending.md)."
            ),
        },
        "outcome": {
            "enum": [*OUTCOMES, None],
            "description": "What the customer is told once it is finished (docs/vending.md).",
        },
        "reason": {
            **TEXT_OR_NULL,
            "description": (
                "Short code of a failure: the provider's decline (declined, "
                "insufficient_funds, expired, unknown_token, ...), the dispense's (jammed, "
                "not_dropped, motor_stuck, no_motor, timeout, error), cancelled, "
                "payment_timeout, payment_error, ..."
            ),
        },
        "finished": {
            "type": "boolean",
            "description": "Over for the customer: completed or failed, or an outcome is set.",
        },
        "cancellable": {
            "type": "boolean",
            "description": "Whether POST .../cancel can still stop it (before the dispense).",
        },
        "free_vend": {"type": "boolean"},
        "progress": {
            "type": "object",
            "description": "The provider's latest step while the customer pays.",
            "required": ["step", "credit", "qr", "url", "paid_partially"],
            "additionalProperties": False,
            "properties": {
                "step": {
                    **TEXT_OR_NULL,
                    "description": f"One of {', '.join(PROGRESS_STEPS)} (others may come).",
                },
                "credit": {
                    "type": ["integer", "null"],
                    "description": "insert_cash: inserted so far.",
                },
                "qr": {**TEXT_OR_NULL, "description": "scan_qr: what the QR code carries."},
                "url": {**TEXT_OR_NULL, "description": "refund_claim: where to claim it."},
                "paid_partially": {"type": "boolean"},
            },
        },
        "credit": {**MONEY, "description": "Cash inserted so far (0 for other methods)."},
        "due": {**MONEY, "description": "Cash still to insert (0 for other methods)."},
        "payment_url": {**TEXT_OR_NULL, "description": "What the QR code carries (progress)."},
        "change": {**MONEY, "description": "Cash paid back (change, or cash returned)."},
        "refunded": {"type": "boolean", "description": "Money already taken was given back."},
        "refund_amount": MONEY,
        "credit_left": {
            "type": ["integer", "null"],
            "description": "Cash credit left for another product (multi-vend), if any.",
        },
        "dispense": {**TEXT_OR_NULL, "description": "The board's outcome, once it ran."},
        "started": {"type": "string"},
        "ended": TEXT_OR_NULL,
        "expires": {
            **TEXT_OR_NULL,
            "description": "While the customer pays: when the wait for payment times out.",
        },
        "simulated": {"const": False},
        "backend": {"const": BACKEND_ENGINE},
        "context_id": {"type": "string"},
    },
}


def is_engine_machine(machine: FleetMachine) -> bool:
    """Whether ``machine`` is one of the ``vending:`` block's (the hub runs its engine)."""
    return machine.link == ENGINE_DOMAIN


def engine_available(hub: Hub) -> bool:
    return hub.services.has_service(ENGINE_DOMAIN, SERVICE_SELECT)


def engine_mode(machine: FleetMachine) -> str | None:
    """A local machine's mode (normal, free_vend, service, out_of_order), None while its
    engine does not run."""
    mode = machine.state.attributes.get("mode")
    return mode if machine.online and mode in {item.value for item in MachineMode} else None


def engine_selling(machine: FleetMachine) -> bool:
    return engine_mode(machine) in SELLING_MODES


def engine_methods(machine: FleetMachine) -> list[str]:
    """The methods the machine's providers serve, in the order the kiosk offers them."""
    accepted = machine.state.attributes.get("payment_methods")
    if not isinstance(accepted, list | tuple):
        return []
    return [method for method in ENGINE_METHODS if method in accepted]


# ---- a machine's open session -------------------------------------------------------------


class OpenSessions:
    """The latest vend session of each local machine, from ``vend_session_updated``, so
    ``GET /api/kiosk/<id>`` can answer the purchase in progress (a kiosk reloaded while the
    customer pays resumes it)."""

    def __init__(self, hub: Hub) -> None:
        self.latest: dict[str, tuple[str, bool]] = {}
        """machine id → (session id, finished)."""
        self.unsubscribe = hub.bus.async_listen(EVENT_VEND_SESSION_UPDATED, self._on_update)

    def _on_update(self, event: Event) -> None:
        machine_id, session_id = event.data.get("machine_id"), event.data.get("session_id")
        if isinstance(machine_id, str) and isinstance(session_id, str):
            finished = (
                event.data.get("state") in FINISHED_STATES or event.data.get("outcome") is not None
            )
            self.latest[machine_id] = (session_id, finished)

    def unfinished(self, machine_id: str) -> str | None:
        session_id, finished = self.latest.get(machine_id, (None, True))
        return None if finished else session_id


def open_sessions(hub: Hub) -> OpenSessions:
    """The hub's one ``OpenSessions`` (made on first use: when the kiosk views are routed)."""
    sessions: OpenSessions | None = hub.data.get(DATA_OPEN_SESSIONS)
    if sessions is None:
        sessions = hub.data[DATA_OPEN_SESSIONS] = OpenSessions(hub)
    return sessions


# ---- the session as the kiosk sees it -----------------------------------------------------


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _iso(timestamp: Any) -> str | None:
    if not isinstance(timestamp, int | float) or isinstance(timestamp, bool):
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def _reason_code(reason: Any) -> str | None:
    """``payment_error: gateway unreachable`` → ``payment_error``: the customer's screen gets
    the code, the operator's log and the journal keep the text."""
    text = _text(reason)
    if text is None:
        return None
    return text.split(":", 1)[0].strip() or None


def _authorized_credit(session: dict[str, Any]) -> int | None:
    authorization = session.get("authorization")
    credit = authorization.get("credit") if isinstance(authorization, dict) else None
    return whole_or_none(credit.get("amount")) if isinstance(credit, dict) else None


def purchase_json(session: dict[str, Any]) -> dict[str, Any]:
    """A ``VendSession.as_dict()`` as the kiosk's purchase (``ENGINE_PURCHASE``)."""
    progress = session.get("progress") if isinstance(session.get("progress"), dict) else {}
    state = str(session["state"])
    outcome = _text(session.get("outcome"))
    # A session whose capture failed ends with its outcome while its state stays where the
    # capture stopped (the journal captures it at the next start): it is over for the customer.
    finished = state in FINISHED_STATES or outcome is not None
    method = str(session["payment_method"])
    price = int(session["price"])
    step_credit = whole_or_none(progress.get("credit"))
    credit = 0
    if method == PaymentMethod.cash.value:
        credit = step_credit if step_credit is not None else _authorized_credit(session) or 0
    refunded = whole_or_none(session.get("refunded")) or 0
    return {
        "id": session["session_id"],
        "machine_id": session["machine_id"],
        "slot": session["slot"],
        "product": session["product"],
        "price": price,
        "currency": session["currency"],
        "method": method,
        "provider": _text(session.get("payment_provider")),
        "state": state,
        "outcome": outcome,
        "reason": _reason_code(session.get("reason")),
        "finished": finished,
        "cancellable": not finished and state in CANCELLABLE_STATES,
        "free_vend": bool(session.get("free_vend")),
        "progress": {
            "step": _text(progress.get("step")),
            "credit": step_credit,
            "qr": _text(progress.get("qr")),
            "url": _text(progress.get("url")),
            "paid_partially": progress.get("paid_partially") is True,
        },
        "credit": credit,
        "due": max(0, price - credit) if method == PaymentMethod.cash.value else 0,
        "payment_url": _text(progress.get("qr")),
        "change": whole_or_none(session.get("change")) or 0,
        "refunded": refunded > 0,
        "refund_amount": refunded,
        "credit_left": whole_or_none(session.get("credit_left")),
        "dispense": _text(session.get("dispense")),
        "started": _iso(session.get("started_at")) or "",
        "ended": _iso(session.get("finished_at")),
        "expires": _iso(session.get("payment_deadline")) if state in PAYING_STATES else None,
        "simulated": False,
        "backend": BACKEND_ENGINE,
        "context_id": str(session.get("context_id") or ""),
    }


# ---- the services --------------------------------------------------------------------------


def _refusal(outcome: VendOutcome, message: str) -> ApiError:
    if outcome is VendOutcome.unknown_slot:
        return not_found(message)
    return ApiError(409, REFUSALS.get(outcome, "conflict"), message, {"outcome": outcome.value})


async def _call(
    hub: Hub, request: web.Request, service: str, data: dict[str, Any]
) -> dict[str, Any]:
    """``vending.<service>`` as the request's caller; a refused selection becomes its 409."""
    try:
        result: dict[str, Any] = await call_service(hub, request, ENGINE_DOMAIN, service, data)
    except ApiError as error:
        # call_service answers a refusal (VendRefused) as 400 with the engine's outcome code
        # in its details; the kiosk answers the customer's refusals with 409.
        outcome = error.details.get("outcome") if isinstance(error.details, dict) else None
        if error.status != 400 or outcome is None:
            raise
        raise _refusal(VendOutcome(outcome), error.message) from None
    return result


async def async_session(
    hub: Hub, request: web.Request, machine: FleetMachine, session_id: str
) -> dict[str, Any]:
    """The latest snapshot of ``session_id`` of ``machine`` (``as_dict``), or 404."""
    try:
        return await _call(
            hub,
            request,
            SERVICE_SESSION,
            {"machine_id": machine.machine_id, "session_id": session_id},
        )
    except ApiError as error:
        if error.status == 400:
            raise not_found(
                f"machine {machine.machine_id} has no purchase {session_id!r}"
            ) from None
        raise


async def async_kiosk(hub: Hub, request: web.Request, machine: FleetMachine) -> dict[str, Any]:
    """What ``GET /api/kiosk/<id>`` answers beyond the machine's name and the hub's
    languages, for a machine of the vend engine."""
    purchases = engine_available(hub)
    selling = purchases and engine_selling(machine)
    purchase = None
    open_id = open_sessions(hub).unfinished(machine.machine_id)
    if purchases and open_id is not None:
        try:
            purchase = purchase_json(await async_session(hub, request, machine, open_id))
        except ApiError as error:
            if error.status != 404:
                raise
    mode = engine_mode(machine)
    return {
        "online": mode is not None,
        "mode": mode,
        "selling": selling,
        "payment_methods": engine_methods(machine) if purchases else [],
        "simulated": False,
        "backend": BACKEND_ENGINE,
        "free_vend": mode == MachineMode.free_vend.value,
        "purchases": purchases,
        "payment_timeout": None,
        "purchase": purchase,
    }


async def async_start(
    hub: Hub,
    request: web.Request,
    machine: FleetMachine,
    slot_code: str,
    method: str,
    token: str | None,
) -> dict[str, Any]:
    """Select ``slot_code`` paid with ``method``: the first snapshot as the kiosk's purchase.

    Refusals (sold out, a method no provider serves, a machine busy with another session or
    not selling) are 409 with the kiosk API's codes.
    """
    if method in TOKEN_METHODS and token is None:
        raise bad_request(f"a {method} payment needs the customer's token (`token`)")
    data: dict[str, Any] = {
        "machine_id": machine.machine_id,
        "slot": slot_code,
        "method": method,
        "wait": False,
    }
    if token is not None:
        data["token"] = token
    return purchase_json(await _call(hub, request, SERVICE_SELECT, data))


async def async_cancel(
    hub: Hub, request: web.Request, machine: FleetMachine, session_id: str
) -> dict[str, Any]:
    """Cancel a session that has not reached the dispense; a finished one is answered as it
    is; one on its way out of the machine is 409."""
    purchase = purchase_json(await async_session(hub, request, machine, session_id))
    if purchase["finished"]:
        return purchase
    if not purchase["cancellable"]:
        raise ApiError(
            409,
            "conflict",
            f"the purchase is {purchase['state']} and can no longer be cancelled",
        )
    return purchase_json(
        await _call(
            hub,
            request,
            SERVICE_CANCEL,
            {"machine_id": machine.machine_id, "session_id": session_id},
        )
    )
