"""``/api/transactions`` and ``/api/payments``: the money ledger, filtered and paged.

Newest first, keyset-paged (``limit`` and ``before``; see ``filters``), through the
recorder's own query functions. Technicians see their machines' rows only.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from vendhub.auth.roles import Permission
from vendhub.http.api.filters import (
    NULLABLE_STRING,
    PAGED_QUERY,
    TIME,
    TIMESTAMP_STRING,
    UNAVAILABLE_RESPONSE,
    before_id,
    optional_time,
    page_answer,
    page_schema,
    recorder_of,
    run_query,
    scoped_page,
)
from vendhub.http.api.schemas import MACHINE_ID
from vendhub.http.errors import not_found
from vendhub.http.view import ApiView, identity_of, operation, params, query, require_machine
from vendhub.recorder import queries
from vendhub.vending.payment import PaymentStatus


def text(max_length: int, description: str) -> dict[str, Any]:
    """A free-text filter (no control characters)."""
    return {
        "type": "string",
        "minLength": 1,
        "maxLength": max_length,
        "pattern": "^[^\\u0000-\\u001f]+$",
        "description": description,
    }


TRANSACTION: dict[str, Any] = {
    "type": "object",
    "required": [
        "id",
        "machine_id",
        "source_event_id",
        "vend_id",
        "slot_code",
        "product",
        "price",
        "currency",
        "outcome",
        "failure_reason",
        "payment_method",
        "time",
        "recorded",
        "context_id",
    ],
    "properties": {
        "id": {"type": "integer"},
        "machine_id": {"type": "string"},
        "source_event_id": {"type": "string", "description": "The machine's id of the event."},
        "vend_id": NULLABLE_STRING,
        "slot_code": {"type": "string"},
        "product": NULLABLE_STRING,
        "price": {"type": "integer", "description": "Minor units."},
        "currency": {"type": "string"},
        "outcome": {"type": "string", "description": "completed or failed."},
        "failure_reason": NULLABLE_STRING,
        "payment_method": NULLABLE_STRING,
        "time": TIMESTAMP_STRING,
        "recorded": TIMESTAMP_STRING,
        "context_id": NULLABLE_STRING,
    },
}
PAYMENT: dict[str, Any] = {
    "type": "object",
    "required": [
        "id",
        "transaction_id",
        "machine_id",
        "provider",
        "method",
        "amount",
        "currency",
        "status",
        "provider_reference",
        "source_event_id",
        "created",
        "updated",
        "context_id",
    ],
    "properties": {
        "id": {"type": "integer"},
        "transaction_id": {"type": ["integer", "null"]},
        "machine_id": {"type": "string"},
        "provider": {"type": "string"},
        "method": {"type": "string"},
        "amount": {"type": "integer", "description": "Minor units."},
        "currency": {"type": "string"},
        "status": {"type": "string"},
        "provider_reference": NULLABLE_STRING,
        "source_event_id": {"type": "string"},
        "created": TIMESTAMP_STRING,
        "updated": TIMESTAMP_STRING,
        "context_id": NULLABLE_STRING,
    },
}
RANGE_QUERY: dict[str, dict[str, Any]] = {
    "since": {**TIME, "description": "From this moment on (inclusive). " + TIME["description"]},
    "until": {**TIME, "description": "Before this moment (exclusive). " + TIME["description"]},
}
TRANSACTION_ID: dict[str, Any] = {"type": "string", "pattern": "^[1-9][0-9]{0,17}$"}
_TRANSACTION_ID = re.compile("[1-9][0-9]{0,17}")


class TransactionsView(ApiView):
    url = "/api/transactions"
    name = "api:transactions"

    @operation(
        summary="Vend transactions, newest first, with filters; paged with `before`.",
        permission=Permission.read,
        query={
            "machine_id": MACHINE_ID,
            "product": text(128, "The product's name."),
            "method": text(16, "The payment method: cash, card, ..."),
            "outcome": {"enum": ["completed", "failed"]},
            **RANGE_QUERY,
            **PAGED_QUERY,
        },
        responses={200: page_schema(TRANSACTION), 503: UNAVAILABLE_RESPONSE},
        tags=("ledger",),
    )
    async def get(self, request: web.Request) -> web.Response:
        recorder_of(self.hub)
        values = query(request)
        machine_id = values.get("machine_id")
        if machine_id is not None:
            require_machine(request, machine_id)
        limit = values.get("limit", 100)
        filters = {
            "product": values.get("product"),
            "method": values.get("method"),
            "outcome": values.get("outcome"),
            "start": optional_time(values, "since"),
            "end": optional_time(values, "until"),
            "limit": limit,
            "before_id": before_id(values),
        }

        async def fetch(machine: str | None) -> tuple[list[Any], int | None]:
            page = await run_query(
                self.hub,
                lambda session: queries.transactions(session, machine_id=machine, **filters),
            )
            return page.items, page.next_before_id

        rows, next_id = await scoped_page(request, machine_id, fetch, limit)
        return page_answer(request, [row.as_dict() for row in rows], next_id)


class TransactionView(ApiView):
    url = "/api/transactions/{transaction_id}"
    name = "api:transaction"
    path_params = {"transaction_id": TRANSACTION_ID}

    @operation(
        summary="One vend transaction.",
        permission=Permission.read,
        responses={200: TRANSACTION, 503: UNAVAILABLE_RESPONSE},
        tags=("ledger",),
    )
    async def get(self, request: web.Request) -> web.Response:
        recorder_of(self.hub)
        text_id = params(request)["transaction_id"]
        if _TRANSACTION_ID.fullmatch(text_id) is None:
            raise not_found(f"no transaction {text_id!r}")
        wanted = int(text_id)
        # The newest transaction with an id below wanted + 1 is wanted itself, if it exists.
        page = await run_query(
            self.hub,
            lambda session: queries.transactions(session, before_id=wanted + 1, limit=1),
        )
        row = page.items[0] if page.items else None
        if row is None or row.id != wanted or not identity_of(request).sees_machine(row.machine_id):
            raise not_found(f"no transaction {wanted}")
        return web.json_response(row.as_dict())


class PaymentsView(ApiView):
    url = "/api/payments"
    name = "api:payments"

    @operation(
        summary="Payments with their current status, newest first; paged with `before`.",
        permission=Permission.read,
        query={
            "machine_id": MACHINE_ID,
            "method": text(16, "The payment method: cash, card, ..."),
            "status": {
                "enum": [str(status) for status in PaymentStatus],
                "description": "Where the payment is: captured, refunded, voided, ...",
            },
            "provider": text(32, "The payment provider ('machine' for the machine's own)."),
            **RANGE_QUERY,
            **PAGED_QUERY,
        },
        responses={200: page_schema(PAYMENT), 503: UNAVAILABLE_RESPONSE},
        tags=("ledger",),
    )
    async def get(self, request: web.Request) -> web.Response:
        recorder_of(self.hub)
        values = query(request)
        machine_id = values.get("machine_id")
        if machine_id is not None:
            require_machine(request, machine_id)
        limit = values.get("limit", 100)
        filters = {
            "method": values.get("method"),
            "status": values.get("status"),
            "provider": values.get("provider"),
            "start": optional_time(values, "since"),
            "end": optional_time(values, "until"),
            "limit": limit,
            "before_id": before_id(values),
        }

        async def fetch(machine: str | None) -> tuple[list[Any], int | None]:
            page = await run_query(
                self.hub, lambda session: queries.payments(session, machine_id=machine, **filters)
            )
            return page.items, page.next_before_id

        rows, next_id = await scoped_page(request, machine_id, fetch, limit)
        return page_answer(request, [row.as_dict() for row in rows], next_id)


VIEWS = (TransactionsView, TransactionView, PaymentsView)
