"""The one webhook route of a payment gateway, shared by every machine's provider of it.

A gateway (a QR payment service, a BTCPay store) calls one URL of the hub for every payment;
each machine's provider attaches to the gateway's ``PaymentWebhooks`` while it runs, and the
route is served while at least one is attached. What every gateway's route needs is here:
attaching and detaching, bounded bodies, deliveries that change nothing counted by reason and
logged (never with a secret), and handled deliveries remembered so a replay is ignored.
Checking the sender (a signature, a source address) and applying a delivery stay with the
integration, which subclasses this with its ``view`` and ``label``.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from typing import TYPE_CHECKING, ClassVar, Final, Generic, TypeVar

from aiohttp import web

from vendhub.http.errors import ApiError
from vendhub.http.server import DATA_HTTP

if TYPE_CHECKING:
    from vendhub.core.hub import Hub
    from vendhub.http.view import ApiView

_LOGGER = logging.getLogger(__name__)

MAX_BODY_BYTES: Final = 64 * 1024
SEEN_LIMIT: Final = 4096  # handled deliveries remembered for replay detection
MALFORMED: Final = "malformed"
REPLAYED: Final = "replayed"

_Target = TypeVar("_Target")


class PaymentWebhooks(Generic[_Target]):
    """A gateway's webhook route and the providers it serves.

    Subclasses set ``view`` (the route's ``ApiView``) and ``label`` (how logs name a
    delivery, such as "BTCPay webhook").
    """

    view: ClassVar[type[ApiView]]
    label: ClassVar[str] = "webhook"

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.providers: list[_Target] = []
        self.rejections: Counter[str] = Counter()
        self.accepted = 0
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._registered = False

    # ---- providers come and go ------------------------------------------------------------

    def attach(self, provider: _Target) -> bool:
        """Serve the route for ``provider``; False when the hub has no HTTP server."""
        self.providers.append(provider)
        server = self.hub.data.get(DATA_HTTP)
        if server is None:
            return False
        if not self._registered:
            server.register_view(self.view)
            self._registered = True
        return True

    def detach(self, provider: _Target) -> None:
        if provider in self.providers:
            self.providers.remove(provider)
        if not self.providers:
            self.close()

    def close(self) -> None:
        server = self.hub.data.get(DATA_HTTP)
        if self._registered and server is not None:
            server.unregister_view(self.view)
        self._registered = False

    # ---- deliveries -----------------------------------------------------------------------

    def reject(self, reason: str, detail: str, *, level: int = logging.WARNING) -> None:
        """Count and log a delivery (or what was fetched for it) that changed nothing."""
        self.rejections[reason] += 1
        _LOGGER.log(level, "%s rejected (%s): %s", self.label, reason, detail)

    async def async_read_body(self, request: web.Request, source: str | None) -> bytes:
        """The delivery's body, at most ``MAX_BODY_BYTES``; a larger one is rejected (413)."""
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            self.reject(MALFORMED, f"a body of {request.content_length} bytes from {source}")
            raise ApiError(413, "payload_too_large", f"the {self.label} is too large")
        raw = await request.content.read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            self.reject(MALFORMED, f"a body of more than {MAX_BODY_BYTES} bytes from {source}")
            raise ApiError(413, "payload_too_large", f"the {self.label} is too large")
        return raw

    def handled_before(self, key: str) -> bool:
        """Whether the delivery ``key`` names was handled already (a replay)."""
        return key in self._seen

    def remember(self, key: str) -> None:
        """The delivery ``key`` names is handled: a replay of it will be ignored."""
        self._seen[key] = None
        while len(self._seen) > SEEN_LIMIT:
            self._seen.popitem(last=False)


def ignored(reason: str) -> web.Response:
    """Answered 200, because gateways send again whatever is not: for what is deliberately
    ignored (a replay, an amount that does not match)."""
    return web.json_response({"status": "ignored", "reason": reason})
