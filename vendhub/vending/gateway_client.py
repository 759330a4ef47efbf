"""What every payment gateway's HTTP client shares: its error type and one aiohttp session.

A provider's client (a QR gateway's, BTCPay's) subclasses ``GatewayClient`` with its
credentials as headers and its calls; the session opens on the first request, closes with the
provider, and a closed client refuses requests rather than open a session nobody would close.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import aiohttp

from vendhub.vending.payment import PaymentError


class GatewayError(PaymentError):
    """The gateway refused a request or could not be reached; ``status`` is the HTTP status
    and ``code`` the gateway's own error code, where there was an answer."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class GatewayClient:
    """One aiohttp session with the gateway's credentials, opened when first needed.

    Subclasses set ``error`` (their ``GatewayError`` subclass) and add the gateway's calls.
    """

    error: ClassVar[type[GatewayError]] = GatewayError

    def __init__(self, headers: Mapping[str, str], timeout: float) -> None:
        self._headers = dict(headers)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _http(self) -> aiohttp.ClientSession:
        if self._closed:
            # A request still under way (a webhook being checked) must not open a new
            # session that nobody would close.
            raise self.error("the provider is stopped")
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        return self._session

    def open(self) -> None:
        """Allow requests again after ``async_close`` (a provider started anew)."""
        self._closed = False

    async def async_close(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None
