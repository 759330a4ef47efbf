"""An emulated BTCPay Server: a real aiohttp server speaking the Greenfield API v1 as published.

What it serves, under ``/api/v1/stores/{storeId}`` with ``Authorization: token <api key>``:
``POST /invoices`` (amount as a decimal string, currency, metadata with ``orderId``,
checkout ``expirationMinutes`` / ``speedPolicy``), ``GET /invoices?orderId=``,
``GET /invoices/{id}``, ``POST /invoices/{id}/status`` (mark ``Invalid`` or ``Settled``),
``POST /invoices/{id}/refund`` (a pull payment by ``refundVariant``: ``RateThen``,
``CurrentRate``, ``Fiat``, ``Custom``, ``OverpaidAmount``) and ``GET /pull-payments``. Errors
are Greenfield's: ``{"code", "message"}`` (401, 403, 404, 400) and 422 with
``[{"path", "message"}]``.

The test plays the customer and the chain (``pay_partially``, ``pay``, ``confirm``,
``settle``, ``expire``); each status change is delivered as a webhook event to
``webhook_url`` with ``BTCPay-Sig: sha256=<HMAC-SHA256 of the body>``. ``webhooks_enabled =
False`` loses them; ``send`` delivers any event (forged, badly signed), ``resend`` repeats a
delivery byte for byte and ``redeliver`` as BTCPay's "Redeliver" button does (a new
``deliveryId`` naming the ``originalDeliveryId``); ``tamper`` makes the API report another
amount. One bitcoin is worth ``rate`` of any fiat currency.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from decimal import ROUND_UP, Decimal
from typing import Any

import aiohttp
from aiohttp import web

SATOSHI = Decimal("0.00000001")


@dataclass
class Delivery:
    """One webhook delivery and how the hub answered it."""

    delivery_id: str
    type: str
    invoice_id: str
    status: int
    body: bytes
    signature: str | None


@dataclass
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: Any


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


def _id(length: int = 22) -> str:
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    return "".join(secrets.choice(alphabet) for _ in range(length))


class BTCPayServer:
    """The emulated server with one store; ``await start()``, then use ``server_url``."""

    def __init__(
        self,
        store_id: str = "9CiNzKoANXxmk5ayZngSXrHTiVvvgCrwrpFQd4m2K776",
        api_key: str = "1f4d6a0b3e2c4d5e8f9a0b1c2d3e4f5a6b7c8d9e",
        webhook_secret: str = "3GbMtb2vZRR8ywJxR3Mbs4CzNpR8",
        *,
        rate: Decimal = Decimal("50000.00"),
    ) -> None:
        self.store_id = store_id
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self.webhook_id = _id()
        self.rate = rate
        self.webhook_url: str | None = None
        self.webhooks_enabled = True
        self.invoices: dict[str, dict[str, Any]] = {}
        self.pull_payments: dict[str, dict[str, Any]] = {}
        self.calls: list[Call] = []
        self.deliveries: list[Delivery] = []
        self._tampered: dict[str, dict[str, str]] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ---- server -----------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        base = "/api/v1/stores/{store_id}"
        app.router.add_post(base + "/invoices", self._create_invoice)
        app.router.add_get(base + "/invoices", self._list_invoices)
        app.router.add_get(base + "/invoices/{id}", self._get_invoice)
        app.router.add_post(base + "/invoices/{id}/status", self._mark_status)
        app.router.add_post(base + "/invoices/{id}/refund", self._refund)
        app.router.add_get(base + "/pull-payments", self._list_pull_payments)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def server_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self, method: str, suffix: str = "") -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path.endswith(suffix)]

    # ---- the customer, the chain and the test -----------------------------------------------

    async def pay_partially(self, invoice_id: str, share: Decimal = Decimal("0.5")) -> None:
        """The customer sends only ``share`` of the amount due."""
        invoice = self.invoices[invoice_id]
        assert invoice["status"] == "New", invoice["status"]
        paid = (invoice["_due_btc"] * share).quantize(SATOSHI)
        invoice["_paid_btc"] += paid
        invoice["additionalStatus"] = "PaidPartial"
        await self._event("InvoiceReceivedPayment", invoice, self._payment_fields(paid))

    async def pay(self, invoice_id: str, extra: Decimal = Decimal(0)) -> None:
        """The customer sends the rest (and ``extra`` BTC more): the invoice is processing."""
        invoice = self.invoices[invoice_id]
        assert invoice["status"] == "New", invoice["status"]
        paid = invoice["_due_btc"] - invoice["_paid_btc"] + extra
        invoice["_paid_btc"] += paid
        invoice["status"] = "Processing"
        invoice["additionalStatus"] = "PaidOver" if extra > 0 else "None"
        await self._event("InvoiceReceivedPayment", invoice, self._payment_fields(paid))
        await self._event("InvoiceProcessing", invoice, {"overPaid": extra > 0})

    async def confirm(self, invoice_id: str) -> None:
        """The payment has its confirmations: the invoice is settled."""
        invoice = self.invoices[invoice_id]
        assert invoice["status"] == "Processing", invoice["status"]
        invoice["status"] = "Settled"
        await self._event(
            "InvoiceSettled",
            invoice,
            {"manuallyMarked": False, "overPaid": invoice["additionalStatus"] == "PaidOver"},
        )

    async def settle(self, invoice_id: str, extra: Decimal = Decimal(0)) -> None:
        await self.pay(invoice_id, extra)
        await self.confirm(invoice_id)

    async def expire(self, invoice_id: str) -> None:
        """The invoice's time is up before it was fully paid."""
        invoice = self.invoices[invoice_id]
        assert invoice["status"] == "New", invoice["status"]
        invoice["status"] = "Expired"
        await self._event(
            "InvoiceExpired",
            invoice,
            {"partiallyPaid": invoice["additionalStatus"] == "PaidPartial"},
        )

    def tamper(self, invoice_id: str, amount: str, currency: str | None = None) -> None:
        original = self.invoices[invoice_id]
        self._tampered[invoice_id] = {
            "amount": amount,
            "currency": currency or original["currency"],
        }

    def public(self, invoice: dict[str, Any]) -> dict[str, Any]:
        shown = {k: v for k, v in invoice.items() if not k.startswith("_")}
        shown.update(self._tampered.get(invoice["id"], {}))
        return shown

    def event(
        self, event_type: str, invoice_id: str, extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A webhook event as BTCPay makes it (a fresh ``deliveryId``)."""
        invoice = self.invoices.get(invoice_id, {})
        return {
            "deliveryId": _id(),
            "webhookId": self.webhook_id,
            "originalDeliveryId": None,
            "isRedelivery": False,
            "type": event_type,
            "timestamp": int(time.time()),
            "storeId": self.store_id,
            "invoiceId": invoice_id,
            "metadata": invoice.get("metadata", {}),
            **(extra or {}),
        }

    async def send(
        self, event: dict[str, Any], *, secret: str | None = None, signed: bool = True
    ) -> Delivery:
        """Deliver ``event`` now, signed with ``secret`` (the store's unless given)."""
        return await self._deliver(event, json.dumps(event).encode(), secret, signed)

    async def resend(self, delivery: Delivery) -> Delivery:
        """The same delivery again, byte for byte, signature and all."""
        return await self._post(
            delivery.delivery_id,
            delivery.type,
            delivery.invoice_id,
            delivery.body,
            delivery.signature,
        )

    async def redeliver(self, delivery: Delivery) -> Delivery:
        """BTCPay's "Redeliver": a new delivery id that names the original one."""
        event = json.loads(delivery.body)
        event.update(
            deliveryId=_id(),
            originalDeliveryId=event.get("originalDeliveryId") or event["deliveryId"],
            isRedelivery=True,
        )
        return await self.send(event)

    # ---- webhooks -----------------------------------------------------------------------

    def _payment_fields(self, paid: Decimal) -> dict[str, Any]:
        return {
            "afterExpiration": False,
            "paymentMethod": "BTC",
            "payment": {
                "id": f"{secrets.token_hex(32)}-0",
                "receivedDate": int(time.time()),
                "value": f"{paid:.8f}",
                "fee": "0.00000000",
                "status": "Processing",
                "destination": "bcrt1qxkn9fqe8awyyrcdtpyakzwxg2mvqwx0wlvn7ve",
            },
        }

    async def _event(self, event_type: str, invoice: dict[str, Any], extra: dict[str, Any]) -> None:
        if self.webhooks_enabled and self.webhook_url is not None:
            await self.send(self.event(event_type, invoice["id"], extra))

    async def _deliver(
        self, event: dict[str, Any], body: bytes, secret: str | None, signed: bool
    ) -> Delivery:
        signature = None
        if signed:
            key = (secret if secret is not None else self.webhook_secret).encode()
            signature = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
        return await self._post(
            str(event.get("deliveryId")),
            str(event.get("type")),
            str(event.get("invoiceId")),
            body,
            signature,
        )

    async def _post(
        self, delivery_id: str, event_type: str, invoice_id: str, body: bytes, sig: str | None
    ) -> Delivery:
        assert self.webhook_url is not None, "set webhook_url first"
        headers = {"Content-Type": "application/json", "User-Agent": "BTCPayServer"}
        if sig is not None:
            headers["BTCPay-Sig"] = sig
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.webhook_url, data=body, headers=headers) as response,
        ):
            await response.read()
            delivery = Delivery(delivery_id, event_type, invoice_id, response.status, body, sig)
        self.deliveries.append(delivery)
        return delivery

    # ---- API --------------------------------------------------------------------------

    async def _begin(self, request: web.Request) -> tuple[web.Response | None, Any]:
        body: Any = None
        if request.method == "POST":
            try:
                body = await request.json()
            except ValueError:
                body = None
        self.calls.append(Call(request.method, request.path, dict(request.query), body))
        if request.headers.get("Authorization") != f"token {self.api_key}":
            return (
                _error(
                    401,
                    "unauthenticated",
                    "Authentication is required for accessing this endpoint",
                ),
                body,
            )
        if request.match_info["store_id"] != self.store_id:
            return _error(403, "missing-permission", "Insufficient API Permissions"), body
        if request.method == "POST" and not isinstance(body, dict):
            return _error(400, "invalid-json", "The request body is not a JSON object"), body
        return None, body

    def _invoice(self, request: web.Request) -> dict[str, Any] | None:
        return self.invoices.get(request.match_info["id"])

    async def _create_invoice(self, request: web.Request) -> web.Response:
        problem, body = await self._begin(request)
        if problem is not None:
            return problem
        errors = []
        amount, currency = body.get("amount"), body.get("currency")
        try:
            value = Decimal(str(amount))
            if not value.is_finite() or value <= 0:
                raise ValueError
        except (ArithmeticError, ValueError):
            errors.append({"path": "amount", "message": "Amount should be a positive number"})
            value = Decimal(0)
        if not isinstance(currency, str) or len(currency) != 3:
            errors.append({"path": "currency", "message": "Currency should be a currency code"})
        checkout = body.get("checkout") or {}
        minutes = checkout.get("expirationMinutes", 15)
        if not isinstance(minutes, int) or minutes <= 0:
            errors.append(
                {"path": "checkout.expirationMinutes", "message": "Should be a positive number"}
            )
        if errors:
            return web.json_response(errors, status=422)
        invoice_id = _id()
        now = int(time.time())
        due = value if currency == "BTC" else (value / self.rate).quantize(SATOSHI, ROUND_UP)
        invoice = {
            "id": invoice_id,
            "storeId": self.store_id,
            "amount": str(value),
            "currency": currency,
            "type": "Standard",
            "checkoutLink": f"{self.server_url}/i/{invoice_id}",
            "status": "New",
            "additionalStatus": "None",
            "createdTime": now,
            "expirationTime": now + minutes * 60,
            "monitoringExpiration": now + minutes * 60 + 3600,
            "archived": False,
            "metadata": body.get("metadata") or {},
            "checkout": {
                "speedPolicy": checkout.get("speedPolicy", "MediumSpeed"),
                "paymentMethods": ["BTC"],
                "expirationMinutes": minutes,
                "monitoringMinutes": 60,
                "paymentTolerance": 0.0,
            },
            "availableStatusesForManualMarking": ["Settled", "Invalid"],
            "_due_btc": due,
            "_paid_btc": Decimal(0),
        }
        self.invoices[invoice_id] = invoice
        await self._event("InvoiceCreated", invoice, {})
        return web.json_response(self.public(invoice))

    async def _list_invoices(self, request: web.Request) -> web.Response:
        problem, _ = await self._begin(request)
        if problem is not None:
            return problem
        order_ids = request.query.getall("orderId", [])
        found = [
            self.public(invoice)
            for invoice in self.invoices.values()
            if not order_ids or invoice["metadata"].get("orderId") in order_ids
        ]
        return web.json_response(list(reversed(found)))

    async def _get_invoice(self, request: web.Request) -> web.Response:
        problem, _ = await self._begin(request)
        if problem is not None:
            return problem
        invoice = self._invoice(request)
        if invoice is None:
            return _error(404, "invoice-not-found", "The invoice was not found")
        return web.json_response(self.public(invoice))

    async def _mark_status(self, request: web.Request) -> web.Response:
        problem, body = await self._begin(request)
        if problem is not None:
            return problem
        invoice = self._invoice(request)
        if invoice is None:
            return _error(404, "invoice-not-found", "The invoice was not found")
        status = body.get("status")
        if status not in ("Settled", "Invalid") or invoice["status"] in ("Settled", "Invalid"):
            return web.json_response(
                [{"path": "status", "message": f"Cannot mark a {invoice['status']} invoice"}],
                status=422,
            )
        invoice["status"] = status
        invoice["additionalStatus"] = "Marked"
        await self._event(f"Invoice{status}", invoice, {"manuallyMarked": True})
        return web.json_response(self.public(invoice))

    async def _refund(self, request: web.Request) -> web.Response:
        problem, body = await self._begin(request)
        if problem is not None:
            return problem
        invoice = self._invoice(request)
        if invoice is None:
            return _error(404, "invoice-not-found", "The invoice was not found")
        if invoice["_paid_btc"] <= 0 or invoice["status"] in ("New", "Processing"):
            return _error(400, "non-refundable", "Cannot refund this invoice")
        variant = body.get("refundVariant")
        paid_btc: Decimal = invoice["_paid_btc"]
        if variant in ("RateThen", "CurrentRate"):
            amount, currency = paid_btc, "BTC"
        elif variant == "Fiat":
            amount, currency = (paid_btc * self.rate).quantize(Decimal("0.01")), invoice["currency"]
        elif variant == "OverpaidAmount":
            if invoice["additionalStatus"] != "PaidOver":
                return _error(400, "invoice-not-overpaid", "The invoice is not overpaid")
            amount, currency = paid_btc - invoice["_due_btc"], "BTC"
        elif variant == "Custom":
            try:
                amount = Decimal(str(body.get("customAmount")))
            except ArithmeticError:
                amount = Decimal(0)
            currency = body.get("customCurrency")
            if amount <= 0 or not isinstance(currency, str):
                return web.json_response(
                    [{"path": "customAmount", "message": "Amount must be greater than 0"}],
                    status=422,
                )
        else:
            return web.json_response(
                [{"path": "refundVariant", "message": "`refundVariant` is mandatory"}], status=422
            )
        pull_id = _id(28)
        pull = {
            "id": pull_id,
            "name": body.get("name") or f"Refund {invoice['id']}",
            "description": body.get("description") or "",
            "currency": currency,
            "amount": str(amount),
            "period": None,
            "BOLT11Expiration": "30",
            "autoApproveClaims": False,
            "archived": False,
            "viewLink": f"{self.server_url}/pull-payments/{pull_id}",
            "_invoice": invoice["id"],
            "_payment_method": body.get("paymentMethod") or body.get("payoutMethodId"),
        }
        self.pull_payments[pull_id] = pull
        return web.json_response({k: v for k, v in pull.items() if not k.startswith("_")})

    async def _list_pull_payments(self, request: web.Request) -> web.Response:
        problem, _ = await self._begin(request)
        if problem is not None:
            return problem
        return web.json_response(
            [
                {k: v for k, v in pull.items() if not k.startswith("_")}
                for pull in self.pull_payments.values()
            ]
        )
