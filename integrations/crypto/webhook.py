"""BTCPay Server's webhooks: the public route, and the checks before anything is trusted.

BTCPay signs every delivery: ``BTCPay-Sig: sha256=<hex HMAC-SHA256 of the raw body, keyed
with the webhook's secret>``. A delivery at ``POST /api/webhooks/crypto`` goes through, in
order:

1. the signature must match the secret of a running provider (compared in constant time,
   over the raw bytes, before the body is parsed) — else **401**, ``missing_signature`` or
   ``bad_signature`` (BTCPay shows the failed delivery; a misconfigured secret is visible);
2. the body must be a webhook event (``deliveryId``, ``type``, ``storeId``) — else **400**,
   ``malformed``;
3. its delivery must not have been handled (``deliveryId``, or for a redelivery its
   ``originalDeliveryId``) — else **200**, ``replayed``;
4. it must name an invoice of a running provider of that store — else **200**,
   ``unknown_invoice``;
5. the provider fetches the invoice by GET (webhooks carry no amount) and trusts it only if
   its amount, currency and ``orderId`` are what was asked — else **200**,
   ``amount_mismatch``. If BTCPay cannot be reached the answer is **503** and the delivery is
   not marked handled, so a redelivery brings it again.

Every rejection is logged at WARNING with its reason (ids only, never the body, a signature or
a secret) and counted in ``CryptoWebhooks.rejections``. The route is public (no user
sign-in): the signature is its authentication.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections import Counter, OrderedDict
from typing import TYPE_CHECKING, Any, Final, Protocol

from aiohttp import web

from vendhub.http.errors import ApiError
from vendhub.http.server import DATA_HTTP
from vendhub.http.view import ApiView, operation
from vendhub.vending.payment import PaymentError

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

DATA_WEBHOOKS: Final = "crypto.webhooks"
URL_WEBHOOK: Final = "/api/webhooks/crypto"
SIGNATURE_HEADER: Final = "BTCPay-Sig"
MAX_BODY_BYTES: Final = 64 * 1024
SEEN_LIMIT: Final = 4096

INVOICE_EVENTS: Final = frozenset(
    {
        "InvoiceCreated",
        "InvoiceReceivedPayment",
        "InvoicePaymentSettled",
        "InvoiceProcessing",
        "InvoiceExpired",
        "InvoiceSettled",
        "InvoiceInvalid",
    }
)

MISSING_SIGNATURE: Final = "missing_signature"
BAD_SIGNATURE: Final = "bad_signature"
MALFORMED: Final = "malformed"
REPLAYED: Final = "replayed"
UNKNOWN_INVOICE: Final = "unknown_invoice"
AMOUNT_MISMATCH: Final = "amount_mismatch"
GATEWAY_UNREACHABLE: Final = "gateway_unreachable"


def signature(secret: str, body: bytes) -> str:
    """The ``BTCPay-Sig`` value of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookTarget(Protocol):
    """What the webhook needs of a provider (``CryptoProvider``)."""

    store_id: str
    webhook_secret: str | None

    def owns(self, invoice_id: str) -> bool: ...

    async def async_handle_webhook(self, event: dict[str, Any]) -> str | None:
        """Fetch the invoice by GET and apply it; return a rejection reason, or None."""


class CryptoWebhooks:
    """The hub's one webhook route for BTCPay, shared by every machine's provider."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.providers: list[WebhookTarget] = []
        self.rejections: Counter[str] = Counter()
        self.accepted = 0
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._registered = False

    def attach(self, provider: WebhookTarget) -> bool:
        """Serve the route for ``provider``; False when the hub has no HTTP server."""
        self.providers.append(provider)
        server = self.hub.data.get(DATA_HTTP)
        if server is None:
            return False
        if not self._registered:
            server.register_view(CryptoWebhookView)
            self._registered = True
        return True

    def detach(self, provider: WebhookTarget) -> None:
        if provider in self.providers:
            self.providers.remove(provider)
        if not self.providers:
            self.close()

    def close(self) -> None:
        server = self.hub.data.get(DATA_HTTP)
        if self._registered and server is not None:
            server.unregister_view(CryptoWebhookView)
        self._registered = False

    def reject(self, reason: str, detail: str, *, level: int = logging.WARNING) -> None:
        """Count and log a delivery (or fetched invoice) that changed nothing."""
        self.rejections[reason] += 1
        _LOGGER.log(level, "BTCPay webhook rejected (%s): %s", reason, detail)

    async def async_handle(self, request: web.Request) -> web.Response:
        source = request.remote
        raw = await self._body(request, source)
        sent = request.headers.get(SIGNATURE_HEADER, "").strip().lower()
        if not sent:
            self.reject(MISSING_SIGNATURE, f"a delivery from {source} without {SIGNATURE_HEADER}")
            raise ApiError(401, "unauthorized", f"the {SIGNATURE_HEADER} header is missing")
        signers = [
            p
            for p in self.providers
            if p.webhook_secret and hmac.compare_digest(sent, signature(p.webhook_secret, raw))
        ]
        if not signers:
            self.reject(BAD_SIGNATURE, f"a delivery from {source} signed with no known secret")
            raise ApiError(401, "unauthorized", f"the {SIGNATURE_HEADER} signature is wrong")
        event = self._event(raw, source)
        delivery = str(event.get("originalDeliveryId") or event["deliveryId"])
        if delivery in self._seen:
            self.reject(REPLAYED, f"{event['type']} delivery {delivery[:64]} was already handled")
            return _ignored(REPLAYED)
        invoice_id = event.get("invoiceId")
        owners = [
            p
            for p in signers
            if p.store_id == event["storeId"] and isinstance(invoice_id, str) and p.owns(invoice_id)
        ]
        if not owners:
            self.reject(
                UNKNOWN_INVOICE,
                f"{event['type']} for invoice {str(invoice_id)[:64]} that no machine follows",
                level=logging.INFO,
            )
            self._remember(delivery)
            return _ignored(UNKNOWN_INVOICE)
        reasons = []
        for provider in owners:  # more than one only when a session's authorize was repeated
            try:
                reasons.append(await provider.async_handle_webhook(event))
            except PaymentError as error:
                self.reject(
                    GATEWAY_UNREACHABLE,
                    f"{event['type']} for {invoice_id}: cannot fetch it: {error}",
                )
                raise ApiError(
                    503, "unavailable", "the delivery could not be checked; redeliver it"
                ) from None
        self._remember(delivery)
        reason = next((r for r in reasons if r is not None), None)
        if reason is not None:
            return _ignored(reason)
        self.accepted += 1
        _LOGGER.debug("BTCPay %s for %s accepted", event["type"], invoice_id)
        return web.json_response({"status": "ok"})

    async def _body(self, request: web.Request, source: str | None) -> bytes:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            self.reject(MALFORMED, f"a body of {request.content_length} bytes from {source}")
            raise ApiError(413, "payload_too_large", "the delivery is too large")
        raw = await request.content.read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            self.reject(MALFORMED, f"a body of more than {MAX_BODY_BYTES} bytes from {source}")
            raise ApiError(413, "payload_too_large", "the delivery is too large")
        return raw

    def _event(self, raw: bytes, source: str | None) -> dict[str, Any]:
        try:
            event = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            event = None
        if (
            not isinstance(event, dict)
            or not isinstance(event.get("deliveryId"), str)
            or not isinstance(event.get("storeId"), str)
            or not isinstance(event.get("type"), str)
        ):
            self.reject(MALFORMED, f"a signed delivery from {source} is not a webhook event")
            raise ApiError(400, "bad_request", "not a BTCPay webhook event")
        return event

    def _remember(self, delivery: str) -> None:
        self._seen[delivery] = None
        while len(self._seen) > SEEN_LIMIT:
            self._seen.popitem(last=False)


def _ignored(reason: str) -> web.Response:
    """Answered 200 so BTCPay does not retry what is deliberately ignored."""
    return web.json_response({"status": "ignored", "reason": reason})


def get_webhooks(hub: Hub) -> CryptoWebhooks:
    webhooks: CryptoWebhooks | None = hub.data.get(DATA_WEBHOOKS)
    if webhooks is None:
        webhooks = hub.data[DATA_WEBHOOKS] = CryptoWebhooks(hub)
    return webhooks


class CryptoWebhookView(ApiView):
    url = URL_WEBHOOK
    name = "api:webhooks:crypto"

    @operation(
        summary="BTCPay Server's webhooks (public; authenticated by the BTCPay-Sig HMAC).",
        description=(
            "Add a webhook with this URL and a secret to the BTCPay store, and the same secret "
            "as `webhook_secret` of the machine's `crypto` payment. A wrong or missing "
            "signature is refused (401); a repeated delivery, an unknown invoice or an invoice "
            'for another amount is acknowledged and ignored (200, `{"status": "ignored", '
            '"reason": ...}`); the invoice is always fetched before it is trusted. '
            "integrations/crypto/README.md."
        ),
        public=True,
        responses={
            200: {
                "type": "object",
                "required": ["status"],
                "properties": {"status": {"enum": ["ok", "ignored"]}, "reason": {"type": "string"}},
            },
            401: None,
            503: None,
        },
        tags=("webhooks",),
    )
    async def post(self, request: web.Request) -> web.Response:
        return await get_webhooks(self.hub).async_handle(request)
