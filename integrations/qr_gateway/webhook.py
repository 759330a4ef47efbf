"""YooKassa's HTTP notifications: the public route, and the checks before anything is trusted.

YooKassa signs nothing (its notifications carry no signature header); its documentation asks
the receiver to check that the sender is one of its published addresses and to take the
object's status from the API rather than from the notification. So a notification at
``POST /api/webhooks/qr_gateway`` goes through, in order:

1. the sender's address (``request.remote``, or the last hop of ``X-Forwarded-For`` when the
   peer is one of the ``trusted_proxies``) must be in an allow-list (YooKassa's published
   ranges unless configured) — else **403**, ``source_not_allowed``;
2. the body must be a notification (``type``, ``event``, ``object``) — else **400**,
   ``malformed``;
3. it must name a payment of a running provider — else **200**, ``unknown_payment``
   (acknowledged, so YooKassa stops repeating it; nothing changes);
4. the same event for the same object must not have been handled already — else **200**,
   ``replayed``;
5. the amount and currency in it must be what was asked — else **200**, ``amount_mismatch``;
6. the provider fetches the payment by GET and trusts only that answer (which is checked for
   the amount again). If the answer is not in the status the notification announced, the
   notification is ``not_confirmed`` (**200**, logged at INFO: it may be a forgery, or a
   payment that moved on) and is not marked handled, so the real one still counts later.
   If the gateway cannot be reached the answer is **503** and the notification is not
   marked handled, so YooKassa's own retries bring it again.

Every rejection is logged at WARNING with its reason (ids and addresses only, never the body
or a credential) and counted in ``QrGatewayWebhooks.rejections``. The route is public (no
user sign-in): it is verified as above instead.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from typing import TYPE_CHECKING, Any, Final, Protocol

from aiohttp import web

from vendhub.http.errors import ApiError
from vendhub.http.view import ApiView, operation
from vendhub.vending.payment import PaymentError
from vendhub.vending.webhooks import MALFORMED, REPLAYED, PaymentWebhooks, ignored

from .amounts import AmountError, from_amount, to_value

if TYPE_CHECKING:
    from vendhub.core.hub import Hub
    from vendhub.vending.money import Money

_LOGGER = logging.getLogger(__name__)

DATA_WEBHOOKS: Final = "qr_gateway.webhooks"
URL_WEBHOOK: Final = "/api/webhooks/qr_gateway"

# The addresses YooKassa sends notifications from (its documentation, "Входящие уведомления").
YOOKASSA_NETWORKS: Final = (
    "185.71.76.0/27",
    "185.71.77.0/27",
    "77.75.153.0/25",
    "77.75.156.11/32",
    "77.75.156.35/32",
    "77.75.154.128/25",
    "2a02:5180::/32",
)

PAYMENT_EVENTS: Final = frozenset(
    {"payment.waiting_for_capture", "payment.succeeded", "payment.canceled"}
)
REFUND_EVENTS: Final = frozenset({"refund.succeeded"})

# Rejection reasons, as logged and counted.
SOURCE_NOT_ALLOWED: Final = "source_not_allowed"
UNKNOWN_PAYMENT: Final = "unknown_payment"
AMOUNT_MISMATCH: Final = "amount_mismatch"
NOT_CONFIRMED: Final = "not_confirmed"  # the fetched payment is not in the status announced
GATEWAY_UNREACHABLE: Final = "gateway_unreachable"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: list[str] | tuple[str, ...]) -> list[Network]:
    """Addresses or CIDR ranges → networks; raises ValueError naming a bad entry."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(str(value).strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"{value!r} is not an IP address or CIDR range such as 185.71.76.0/27"
            ) from None
    return networks


def _address(text: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def in_networks(address: str | None, networks: list[Network]) -> bool:
    parsed = _address(address)
    return parsed is not None and any(parsed in network for network in networks)


def source_address(request: web.Request, trusted_proxies: list[Network]) -> str | None:
    """The sender: the peer, or the nearest untrusted ``X-Forwarded-For`` hop behind a
    trusted reverse proxy (a client can write anything into that header, so hops are only
    believed while each one is a trusted proxy)."""
    source = request.remote
    if not trusted_proxies:
        return source
    hops = [
        hop.strip()
        for header in request.headers.getall("X-Forwarded-For", [])
        for hop in header.split(",")
        if hop.strip()
    ]
    while in_networks(source, trusted_proxies) and hops:
        source = hops.pop()
    return source


class NotificationTarget(Protocol):
    """What the webhook needs of a provider (``QrGatewayProvider``)."""

    allowed_sources: list[Network]
    trusted_proxies: list[Network]

    def owns(self, payment_id: str) -> bool: ...

    def expected_amount(self, event: str, obj: dict[str, Any]) -> Money | None: ...

    async def async_handle_notification(self, event: str, obj: dict[str, Any]) -> str | None:
        """Fetch the object by GET and apply it; return a rejection reason, or None."""


class QrGatewayWebhookView(ApiView):
    url = URL_WEBHOOK
    name = "api:webhooks:qr_gateway"

    @operation(
        summary="YooKassa's HTTP notifications (public; checked by sender address and by GET).",
        description=(
            "Set this address as the notification URL in YooKassa's dashboard. A notification "
            "from an address outside the allow-list is refused (403); one that is unknown, "
            "repeated or for another amount is acknowledged and ignored (200, "
            '`{"status": "ignored", "reason": ...}`); the payment itself is always fetched '
            "from the API before it is trusted. integrations/qr_gateway/README.md."
        ),
        public=True,
        responses={
            200: {
                "type": "object",
                "required": ["status"],
                "properties": {"status": {"enum": ["ok", "ignored"]}, "reason": {"type": "string"}},
            },
            403: None,
            503: None,
        },
        tags=("webhooks",),
    )
    async def post(self, request: web.Request) -> web.Response:
        return await get_webhooks(self.hub).async_handle(request)


class QrGatewayWebhooks(PaymentWebhooks["NotificationTarget"]):
    """The hub's one notification route, shared by every machine's provider."""

    view = QrGatewayWebhookView
    label = "YooKassa notification"

    # ---- the route --------------------------------------------------------------------

    async def async_handle(self, request: web.Request) -> web.Response:
        proxies = [network for p in self.providers for network in p.trusted_proxies]
        source = source_address(request, proxies)
        allowed = [network for p in self.providers for network in p.allowed_sources]
        if not in_networks(source, allowed):
            self.reject(SOURCE_NOT_ALLOWED, f"sender {source} is not an allowed address")
            raise ApiError(403, "forbidden", "this address may not send notifications")
        event, obj = await self._notification(request, source)
        payment_id = obj.get("payment_id") if event in REFUND_EVENTS else obj.get("id")
        owners = [p for p in self.providers if isinstance(payment_id, str) and p.owns(payment_id)]
        if not owners:
            self.reject(
                UNKNOWN_PAYMENT,
                f"{event} for payment {str(payment_id)[:64]} that no machine is following",
                level=logging.INFO,
            )
            return ignored(UNKNOWN_PAYMENT)
        owners = [p for p in owners if in_networks(source, p.allowed_sources)]
        if not owners:
            self.reject(SOURCE_NOT_ALLOWED, f"sender {source} is not allowed for {payment_id}")
            raise ApiError(403, "forbidden", "this address may not send notifications")
        key = f"{event}:{obj['id']}"
        if self.handled_before(key):
            self.reject(REPLAYED, f"{event} for {obj['id']} was already handled (from {source})")
            return ignored(REPLAYED)
        expected = owners[0].expected_amount(event, obj)
        if expected is not None and _money(obj.get("amount")) != expected:
            self.reject(
                AMOUNT_MISMATCH,
                f"{event} for {obj['id']} says {_describe_amount(obj.get('amount'))}, "
                f"{to_value(expected)} {expected.currency} was asked (from {source})",
            )
            return ignored(AMOUNT_MISMATCH)
        reasons = []
        for provider in owners:  # more than one only when a session's authorize was repeated
            try:
                reasons.append(await provider.async_handle_notification(event, obj))
            except PaymentError as error:
                self.reject(
                    GATEWAY_UNREACHABLE, f"{event} for {obj['id']}: cannot fetch it: {error}"
                )
                raise ApiError(
                    503, "unavailable", "the notification could not be checked; send it again"
                ) from None
        reason = next((r for r in reasons if r is not None), None)
        if reason is not None:
            return ignored(reason)
        self.remember(key)
        self.accepted += 1
        _LOGGER.debug("YooKassa notification %s for %s accepted", event, obj["id"])
        return web.json_response({"status": "ok"})

    async def _notification(
        self, request: web.Request, source: str | None
    ) -> tuple[str, dict[str, Any]]:
        raw = await self.async_read_body(request, source)
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            self.reject(MALFORMED, f"the body from {source} is not JSON")
            raise ApiError(400, "bad_request", "the notification is not JSON") from None
        if not isinstance(body, dict):
            body = {}
        event, obj = body.get("event"), body.get("object")
        if (
            body.get("type") != "notification"
            or event not in PAYMENT_EVENTS | REFUND_EVENTS
            or not isinstance(obj, dict)
            or not isinstance(obj.get("id"), str)
        ):
            self.reject(MALFORMED, f"not a payment or refund notification (from {source})")
            raise ApiError(400, "bad_request", "not a payment or refund notification")
        return str(event), obj


def _money(amount: Any) -> Money | None:
    try:
        return from_amount(amount)
    except AmountError:
        return None


def _describe_amount(amount: Any) -> str:
    if isinstance(amount, dict):
        return f"{str(amount.get('value'))[:24]} {str(amount.get('currency'))[:8]}"
    return "no amount"


def get_webhooks(hub: Hub) -> QrGatewayWebhooks:
    webhooks: QrGatewayWebhooks | None = hub.data.get(DATA_WEBHOOKS)
    if webhooks is None:
        webhooks = hub.data[DATA_WEBHOOKS] = QrGatewayWebhooks(hub)
    return webhooks
