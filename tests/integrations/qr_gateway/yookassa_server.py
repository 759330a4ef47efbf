"""An emulated YooKassa: a real aiohttp server speaking the API v3 as published.

What it serves (``/v3``): ``POST /payments`` (HTTP Basic ``shop_id:secret_key``, an
``Idempotence-Key`` on every POST: the same key with the same body answers the first answer
again, with another body 400), ``GET /payments`` (the list: newest first, filtered by
``status``, ``payment_method`` and ``created_at.gte/gt/lte/lt``; ``limit`` 1 to 100, 10 by
default; ``next_cursor`` while more are left, given back as ``cursor``; no filter by
metadata, as in the real API), ``GET /payments/{id}``, ``POST /payments/{id}/capture`` (only
``waiting_for_capture``), ``POST /payments/{id}/cancel`` (only ``waiting_for_capture``: a
pending payment cannot be cancelled, it expires), ``POST /refunds`` (only ``succeeded``
payments, at most what is left), ``GET /refunds/{id}``. Errors are
``{"type": "error", "id", "code", "description", "parameter"}`` with the documented statuses.

The test plays the customer (``pay``, ``expire``) and YooKassa's notifier: every status change
is POSTed as ``{"type": "notification", "event", "object"}`` to ``webhook_url`` from
``sender_address`` (a loopback address, so the hub's allow-list can tell senders apart).
``webhooks_enabled = False`` loses them; ``notify`` sends any notification (a replay, a
forgery) from any address; ``tamper`` makes the API report another amount.
"""

from __future__ import annotations

import asyncio
import base64
import json
import operator
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
from aiohttp import web

_VALUE = re.compile(r"^\d{1,10}(\.\d{1,3})?$")
_CONFIRMATION_TYPES = {"qr", "redirect", "embedded", "external", "mobile_application"}
_COMPARE = {
    "gte": operator.ge,
    "gt": operator.gt,
    "lte": operator.le,
    "lt": operator.lt,
}


@dataclass
class Delivery:
    """One notification the emulator sent and how the hub answered."""

    event: str
    object_id: str
    source: str
    status: int
    body: bytes


@dataclass
class Call:
    """One API request the emulator received."""

    method: str
    path: str
    idempotence_key: str | None
    body: Any


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error(status: int, code: str, description: str, parameter: str | None = None) -> web.Response:
    body: dict[str, Any] = {
        "type": "error",
        "id": str(uuid.uuid4()),
        "code": code,
        "description": description,
    }
    if parameter is not None:
        body["parameter"] = parameter
    return web.json_response(body, status=status)


class YooKassaServer:
    """The emulated gateway; ``await start()``, then point the provider at ``api_url``."""

    def __init__(
        self,
        shop_id: str = "506751",
        secret_key: str = "test_Fh8hUAVVBGUGbjmlzba6TB0iyUbos_lueTHE-axOwM0",
        *,
        sender_address: str = "127.0.0.2",
    ) -> None:
        self.shop_id = shop_id
        self.secret_key = secret_key
        self.sender_address = sender_address
        self.webhook_url: str | None = None
        self.webhooks_enabled = True
        self.payments: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.calls: list[Call] = []
        self.deliveries: list[Delivery] = []
        self._answers: dict[tuple[str, str], tuple[Any, int, dict[str, Any]]] = {}
        self._cursors: dict[str, tuple[tuple[tuple[str, str], ...], int]] = {}
        """next_cursor → (the list's filters, where the next page starts)."""
        self._tampered: dict[str, dict[str, str]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ---- server -----------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v3/payments", self._create_payment)
        app.router.add_get("/v3/payments", self._list_payments)
        app.router.add_get("/v3/payments/{id}", self._get_payment)
        app.router.add_post("/v3/payments/{id}/capture", self._capture)
        app.router.add_post("/v3/payments/{id}/cancel", self._cancel)
        app.router.add_post("/v3/refunds", self._create_refund)
        app.router.add_get("/v3/refunds/{id}", self._get_refund)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        await self.drain()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v3"

    async def drain(self) -> None:
        """Wait for the notifications under way."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def requests(self, method: str, suffix: str = "") -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path.endswith(suffix)]

    # ---- the customer and the test --------------------------------------------------------

    async def pay(self, payment_id: str, method: str = "sbp") -> None:
        """The customer scans the QR and pays: the money is held (or taken if capture)."""
        payment = self.payments[payment_id]
        assert payment["status"] == "pending", payment["status"]
        payment["paid"] = True
        payment["payment_method"] = {"type": method, "id": payment_id, "saved": False}
        if payment["_capture"]:
            self._succeed(payment, payment["amount"])
            await self._notify("payment.succeeded", payment)
        else:
            payment["status"] = "waiting_for_capture"
            payment["expires_at"] = (datetime.now(UTC) + timedelta(days=7)).isoformat()
            await self._notify("payment.waiting_for_capture", payment)

    async def expire(self, payment_id: str) -> None:
        """Nobody paid in time: YooKassa cancels the payment."""
        payment = self.payments[payment_id]
        assert payment["status"] == "pending", payment["status"]
        payment["status"] = "canceled"
        payment["cancellation_details"] = {
            "party": "yoo_money",
            "reason": "expired_on_confirmation",
        }
        await self._notify("payment.canceled", payment)

    def tamper(self, payment_id: str, value: str, currency: str | None = None) -> None:
        """From now on the API reports ``value`` (and ``currency``) as the payment's amount."""
        original = self.payments[payment_id]["amount"]
        self._tampered[payment_id] = {"value": value, "currency": currency or original["currency"]}

    def public(self, payment: dict[str, Any]) -> dict[str, Any]:
        """The payment as the API shows it."""
        shown = {k: v for k, v in payment.items() if not k.startswith("_")}
        if payment["id"] in self._tampered:
            shown["amount"] = dict(self._tampered[payment["id"]])
        return shown

    def notification(self, event: str, obj: dict[str, Any]) -> bytes:
        return json.dumps({"type": "notification", "event": event, "object": obj}).encode()

    async def notify(
        self, event: str, obj: dict[str, Any], *, source: str | None = None
    ) -> Delivery:
        """Send one notification now (a replay or a forgery) and return how it was answered."""
        return await self._deliver(event, obj, self.notification(event, obj), source)

    async def resend(self, delivery: Delivery, *, source: str | None = None) -> Delivery:
        """Send an earlier notification again, byte for byte."""
        return await self._send(
            delivery.event, delivery.object_id, delivery.body, source or delivery.source
        )

    # ---- notifications ------------------------------------------------------------------

    async def _notify(self, event: str, obj: dict[str, Any]) -> None:
        if self.webhooks_enabled and self.webhook_url is not None:
            shown = self.public(obj)
            await self._deliver(event, shown, self.notification(event, shown), None)

    def _notify_later(self, event: str, obj: dict[str, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._notify(event, obj))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(
        self, event: str, obj: dict[str, Any], body: bytes, source: str | None
    ) -> Delivery:
        return await self._send(event, str(obj.get("id")), body, source or self.sender_address)

    async def _send(self, event: str, object_id: str, body: bytes, source: str) -> Delivery:
        assert self.webhook_url is not None, "set webhook_url first"
        connector = aiohttp.TCPConnector(local_addr=(source, 0), force_close=True)
        async with (
            aiohttp.ClientSession(connector=connector) as session,
            session.post(
                self.webhook_url, data=body, headers={"Content-Type": "application/json"}
            ) as response,
        ):
            await response.read()
            delivery = Delivery(event, object_id, source, response.status, body)
        self.deliveries.append(delivery)
        return delivery

    # ---- API --------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return user == self.shop_id and password == self.secret_key

    async def _begin(self, request: web.Request) -> tuple[web.Response | None, Any, str | None]:
        """Authentication, the JSON body, the Idempotence-Key; or the error answer."""
        key = request.headers.get("Idempotence-Key")
        body: Any = None
        if request.method == "POST":
            try:
                body = await request.json()
            except ValueError:
                body = None
        self.calls.append(Call(request.method, request.path, key, body))
        if not self._authorized(request):
            return (
                _error(401, "invalid_credentials", "Authentication by given credentials failed"),
                body,
                key,
            )
        if request.method == "POST":
            if not key or len(key) > 64:
                return (
                    _error(
                        400,
                        "invalid_request",
                        "Idempotence-Key header is missing or longer than 64 characters",
                        "Idempotence-Key",
                    ),
                    body,
                    key,
                )
            if not isinstance(body, dict):
                return _error(400, "invalid_request", "The body is not a JSON object"), body, key
        return None, body, key

    async def _idempotent(self, request: web.Request, handler: Any) -> web.Response:
        problem, body, key = await self._begin(request)
        if problem is not None:
            return problem
        assert key is not None
        remembered = self._answers.get((request.path, key))
        if remembered is not None:
            first_body, status, answer = remembered
            if first_body != body:
                return _error(
                    400,
                    "invalid_request",
                    "Idempotence key duplicated with other request parameters",
                    "Idempotence-Key",
                )
            return web.json_response(answer, status=status)
        status, answer = handler(request, body)
        if status < 500:
            self._answers[(request.path, key)] = (body, status, answer)
        return web.json_response(answer, status=status)

    async def _create_payment(self, request: web.Request) -> web.Response:
        return await self._idempotent(request, self._new_payment)

    def _new_payment(self, request: web.Request, body: dict[str, Any]) -> tuple[int, dict]:
        amount = body.get("amount")
        problem = _amount_problem(amount)
        if problem:
            return 400, _error_body(problem, "amount")
        confirmation = body.get("confirmation")
        if (
            not isinstance(confirmation, dict)
            or confirmation.get("type") not in _CONFIRMATION_TYPES
        ):
            return 400, _error_body("confirmation.type is missing or unknown", "confirmation")
        description = body.get("description", "")
        if not isinstance(description, str) or len(description) > 128:
            return 400, _error_body("description is longer than 128 characters", "description")
        metadata = body.get("metadata", {})
        if not isinstance(metadata, dict) or len(metadata) > 16:
            return 400, _error_body("metadata has more than 16 keys", "metadata")
        capture = body.get("capture", False)
        if not isinstance(capture, bool):
            return 400, _error_body("capture must be a boolean", "capture")
        payment_id = f"{uuid.uuid4().hex[:8]}-000f-5000-8000-{uuid.uuid4().hex[:12]}"
        minor = int(Decimal(amount["value"]) * 100)
        confirmation_answer: dict[str, Any] = {"type": confirmation["type"]}
        if confirmation["type"] == "qr":
            confirmation_answer["confirmation_data"] = (
                f"https://qr.nspk.ru/AD1{payment_id[:8].upper()}?type=02&bank=100000000022"
                f"&sum={minor}&cur={amount['currency']}&crc=C08B"
            )
        payment = {
            "id": payment_id,
            "status": "pending",
            "paid": False,
            "amount": {"value": amount["value"], "currency": amount["currency"]},
            "confirmation": confirmation_answer,
            "created_at": _now(),
            "description": description,
            "metadata": metadata,
            "recipient": {"account_id": self.shop_id, "gateway_id": "2044981"},
            "refundable": False,
            "test": True,
            "_capture": capture,
            "_seq": len(self.payments),
        }
        self.payments[payment_id] = payment
        return 200, self.public(payment)

    async def _list_payments(self, request: web.Request) -> web.Response:
        problem, _, _ = await self._begin(request)
        if problem is not None:
            return problem
        query = dict(request.query)
        cursor = query.pop("cursor", None)
        try:
            limit = int(query.pop("limit", "10"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            return _error(400, "invalid_request", "limit must be 1 to 100", "limit")
        filters = tuple(sorted(query.items()))
        start = 0
        if cursor is not None:
            remembered = self._cursors.get(cursor)
            if remembered is None or remembered[0] != filters:
                return _error(400, "invalid_request", "Invalid cursor", "cursor")
            start = remembered[1]
        bounds: list[tuple[str, datetime]] = []
        for name, value in query.items():
            if name.startswith("created_at."):
                comparison = name.removeprefix("created_at.")
                try:
                    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
                except ValueError:
                    return _error(400, "invalid_request", f"{name} is not a date-time", name)
                if comparison not in _COMPARE or moment.tzinfo is None:
                    return _error(400, "invalid_request", f"{name} is not a filter", name)
                bounds.append((comparison, moment))
            elif name not in ("status", "payment_method"):
                return _error(400, "invalid_request", f"unknown parameter {name}", name)

        def wanted(payment: dict[str, Any]) -> bool:
            if "status" in query and payment["status"] != query["status"]:
                return False
            method = payment.get("payment_method")
            if "payment_method" in query and (
                not isinstance(method, dict) or method.get("type") != query["payment_method"]
            ):
                return False
            created = datetime.fromisoformat(payment["created_at"].replace("Z", "+00:00"))
            return all(_COMPARE[comparison](created, moment) for comparison, moment in bounds)

        matching = sorted(
            (payment for payment in self.payments.values() if wanted(payment)),
            key=lambda payment: (payment["created_at"], payment["_seq"]),
            reverse=True,
        )
        page = matching[start : start + limit]
        answer: dict[str, Any] = {"type": "list", "items": [self.public(p) for p in page]}
        if start + limit < len(matching):
            next_cursor = uuid.uuid4().hex
            self._cursors[next_cursor] = (filters, start + limit)
            answer["next_cursor"] = next_cursor
        return web.json_response(answer)

    async def _get_payment(self, request: web.Request) -> web.Response:
        problem, _, _ = await self._begin(request)
        if problem is not None:
            return problem
        payment = self.payments.get(request.match_info["id"])
        if payment is None:
            return _error(404, "not_found", "Payment not found", "payment_id")
        return web.json_response(self.public(payment))

    async def _capture(self, request: web.Request) -> web.Response:
        return await self._idempotent(request, self._do_capture)

    def _do_capture(self, request: web.Request, body: dict[str, Any]) -> tuple[int, dict]:
        payment = self.payments.get(request.match_info["id"])
        if payment is None:
            return 404, _error_body("Payment not found", "payment_id", "not_found")
        if payment["status"] != "waiting_for_capture":
            return 400, _error_body(
                f"Payment is in {payment['status']} status; only waiting_for_capture can be "
                "captured",
                "payment_id",
            )
        amount = body.get("amount", payment["amount"])
        problem = _amount_problem(amount)
        if problem:
            return 400, _error_body(problem, "amount")
        if amount["currency"] != payment["amount"]["currency"] or Decimal(
            amount["value"]
        ) > Decimal(payment["amount"]["value"]):
            return 400, _error_body("The amount is more than the authorized amount", "amount")
        self._succeed(payment, amount)
        self._notify_later("payment.succeeded", payment)
        return 200, self.public(payment)

    def _succeed(self, payment: dict[str, Any], amount: dict[str, str]) -> None:
        payment["status"] = "succeeded"
        payment["paid"] = True
        payment["amount"] = {"value": amount["value"], "currency": amount["currency"]}
        payment["captured_at"] = _now()
        payment["refundable"] = True
        payment.pop("expires_at", None)

    async def _cancel(self, request: web.Request) -> web.Response:
        return await self._idempotent(request, self._do_cancel)

    def _do_cancel(self, request: web.Request, body: dict[str, Any]) -> tuple[int, dict]:
        payment = self.payments.get(request.match_info["id"])
        if payment is None:
            return 404, _error_body("Payment not found", "payment_id", "not_found")
        if payment["status"] != "waiting_for_capture":
            return 400, _error_body(
                f"Payment is in {payment['status']} status; only waiting_for_capture can be "
                "canceled",
                "payment_id",
            )
        payment["status"] = "canceled"
        payment["cancellation_details"] = {"party": "merchant", "reason": "canceled_by_merchant"}
        payment.pop("expires_at", None)
        self._notify_later("payment.canceled", payment)
        return 200, self.public(payment)

    async def _create_refund(self, request: web.Request) -> web.Response:
        return await self._idempotent(request, self._new_refund)

    def _new_refund(self, request: web.Request, body: dict[str, Any]) -> tuple[int, dict]:
        payment = self.payments.get(str(body.get("payment_id")))
        if payment is None:
            return 404, _error_body("Payment not found", "payment_id", "not_found")
        if payment["status"] != "succeeded":
            return 400, _error_body("Only a succeeded payment can be refunded", "payment_id")
        amount = body.get("amount")
        problem = _amount_problem(amount)
        if problem:
            return 400, _error_body(problem, "amount")
        refunded = Decimal(payment.get("refunded_amount", {}).get("value", "0"))
        left = Decimal(payment["amount"]["value"]) - refunded
        if amount["currency"] != payment["amount"]["currency"] or Decimal(amount["value"]) > left:
            return 400, _error_body("The refund is more than what is left to refund", "amount")
        total = refunded + Decimal(amount["value"])
        payment["refunded_amount"] = {"value": f"{total:.2f}", "currency": amount["currency"]}
        payment["refundable"] = total < Decimal(payment["amount"]["value"])
        refund = {
            "id": f"{uuid.uuid4().hex[:8]}-0015-5000-9000-{uuid.uuid4().hex[:12]}",
            "payment_id": payment["id"],
            "status": "succeeded",
            "created_at": _now(),
            "amount": {"value": amount["value"], "currency": amount["currency"]},
            "description": body.get("description", ""),
        }
        self.refunds[refund["id"]] = refund
        self._notify_later("refund.succeeded", refund)
        return 200, refund

    async def _get_refund(self, request: web.Request) -> web.Response:
        problem, _, _ = await self._begin(request)
        if problem is not None:
            return problem
        refund = self.refunds.get(request.match_info["id"])
        if refund is None:
            return _error(404, "not_found", "Refund not found", "refund_id")
        return web.json_response(refund)


def _amount_problem(amount: Any) -> str | None:
    if not isinstance(amount, dict):
        return "amount is missing"
    value, currency = amount.get("value"), amount.get("currency")
    if not isinstance(value, str) or not _VALUE.match(value) or Decimal(value) <= 0:
        return "amount.value must be a positive decimal string such as '10.00'"
    if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency):
        return "amount.currency must be an ISO 4217 code"
    return None


def _error_body(
    description: str, parameter: str | None = None, code: str = "invalid_request"
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "error",
        "id": str(uuid.uuid4()),
        "code": code,
        "description": description,
    }
    if parameter is not None:
        body["parameter"] = parameter
    return body
