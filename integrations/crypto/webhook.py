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
from typing import TYPE_CHECKING, Any, Final, Protocol

from aiohttp import web

from vendhub.http.errors import ApiError
from vendhub.http.view import ApiView, operation
from vendhub.vending.payment import PaymentError
from vendhub.vending.webhooks import MALFORMED, REPLAYED, PaymentWebhooks, ignored

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

DATA_WEBHOOKS: Final = "crypto.webhooks"
URL_WEBHOOK: Final = "/api/webhooks/crypto"
SIGNATURE_HEADER: Final = "BTCPay-Sig"

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


class CryptoWebhooks(PaymentWebhooks["WebhookTarget"]):
    """The hub's one webhook route for BTCPay, shared by every machine's provider."""

    view = CryptoWebhookView
    label = "BTCPay webhook"

    async def async_handle(self, request: web.Request) -> web.Response:
        source = request.remote
        raw = await self.async_read_body(request, source)
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
        if self.handled_before(delivery):
            self.reject(REPLAYED, f"{event['type']} delivery {delivery[:64]} was already handled")
            return ignored(REPLAYED)
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
            self.remember(delivery)
            return ignored(UNKNOWN_INVOICE)
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
        self.remember(delivery)
        reason = next((r for r in reasons if r is not None), None)
        if reason is not None:
            return ignored(reason)
        self.accepted += 1
        _LOGGER.debug("BTCPay %s for %s accepted", event["type"], invoice_id)
        return web.json_response({"status": "ok"})

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


def get_webhooks(hub: Hub) -> CryptoWebhooks:
    webhooks: CryptoWebhooks | None = hub.data.get(DATA_WEBHOOKS)
    if webhooks is None:
        webhooks = hub.data[DATA_WEBHOOKS] = CryptoWebhooks(hub)
    return webhooks
