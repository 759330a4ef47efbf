"""A small client of the YooKassa API v3: payments, their capture and cancellation, refunds.

Requests are authenticated with HTTP Basic ``shop_id:secret_key``; every POST carries an
``Idempotence-Key``, so a POST repeated after a lost answer (or a restart) returns the first
answer instead of acting twice, and this client retries such requests on network errors, 5xx
answers and the API's ``202 {"type": "processing", "retry_after": ms}``. Errors come back as
``YooKassaError`` with the API's code and description (never the credentials).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any, Final

import aiohttp

from vendhub.vending.gateway_client import GatewayClient, GatewayError

_LOGGER = logging.getLogger(__name__)

DEFAULT_API_URL: Final = "https://api.yookassa.ru/v3"
ATTEMPTS: Final = 3
RETRY_DELAY: Final = 0.5  # seconds; doubled after each failed attempt
MAX_RETRY_AFTER: Final = 5.0


class YooKassaError(GatewayError):
    """The API refused a request or could not be reached."""


class YooKassaClient(GatewayClient):
    """The calls the provider needs, over one aiohttp session of its own."""

    error = YooKassaError

    def __init__(
        self, api_url: str, shop_id: str, secret_key: str, *, timeout: float = 10.0
    ) -> None:
        self.api_url = api_url.rstrip("/")
        credentials = base64.b64encode(f"{shop_id}:{secret_key}".encode()).decode("ascii")
        super().__init__({"Authorization": f"Basic {credentials}"}, timeout)

    # ---- the API ----------------------------------------------------------------------

    async def async_create_payment(self, body: dict[str, Any], key: str) -> dict[str, Any]:
        return await self._request("POST", "/payments", body, key)

    async def async_get_payment(self, payment_id: str) -> dict[str, Any]:
        return await self._request("GET", f"/payments/{payment_id}")

    async def async_list_payments(self, filters: dict[str, str]) -> dict[str, Any]:
        """One page of ``GET /payments`` (newest first): ``{"type": "list", "items": [...],
        "next_cursor": ...}``; ``filters`` are the API's query parameters (``status``,
        ``created_at.gte``, ``limit``, ``cursor``, ...)."""
        return await self._request("GET", "/payments", params=filters)

    async def async_capture(
        self, payment_id: str, amount: dict[str, str] | None, key: str
    ) -> dict[str, Any]:
        body = {"amount": amount} if amount is not None else {}
        return await self._request("POST", f"/payments/{payment_id}/capture", body, key)

    async def async_cancel(self, payment_id: str, key: str) -> dict[str, Any]:
        return await self._request("POST", f"/payments/{payment_id}/cancel", {}, key)

    async def async_create_refund(
        self, payment_id: str, amount: dict[str, str], key: str, description: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"payment_id": payment_id, "amount": amount}
        if description:
            body["description"] = description[:250]
        return await self._request("POST", "/refunds", body, key)

    async def async_get_refund(self, refund_id: str) -> dict[str, Any]:
        return await self._request("GET", f"/refunds/{refund_id}")

    # ---- transport --------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        key: str | None = None,
        *,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        headers = {"Idempotence-Key": key} if key is not None else {}
        delay = RETRY_DELAY
        last_problem = ""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with self._http().request(
                    method, self.api_url + path, json=body, headers=headers, params=params
                ) as response:
                    answer = await _json(response)
                    if response.status == 202 and answer.get("type") == "processing":
                        retry_after = answer.get("retry_after", delay * 1000)
                        wait = min(float(retry_after) / 1000, MAX_RETRY_AFTER)
                        last_problem = "the gateway is still processing the request"
                        await asyncio.sleep(wait)
                        continue
                    if response.status >= 500:
                        last_problem = f"HTTP {response.status}"
                    elif response.status >= 400:
                        raise _error(method, path, response.status, answer)
                    else:
                        return answer
            except (aiohttp.ClientError, TimeoutError) as error:
                last_problem = f"{type(error).__name__} {error}".strip()
            _LOGGER.debug(
                "YooKassa %s %s attempt %d failed: %s", method, path, attempt, last_problem
            )
            if attempt < ATTEMPTS:
                await asyncio.sleep(delay)
                delay *= 2
        raise YooKassaError(f"YooKassa {method} {path} failed {ATTEMPTS} times: {last_problem}")


async def _json(response: aiohttp.ClientResponse) -> dict[str, Any]:
    try:
        answer = await response.json(content_type=None)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        if response.status < 400:
            raise YooKassaError(
                f"YooKassa answered HTTP {response.status} without a JSON object",
                status=response.status,
            )
        return {}
    return answer


def _error(method: str, path: str, status: int, answer: dict[str, Any]) -> YooKassaError:
    code = str(answer.get("code") or f"http_{status}")
    description = str(answer.get("description") or "no description")[:300]
    parameter = answer.get("parameter")
    where = f" (parameter {str(parameter)[:64]})" if parameter else ""
    return YooKassaError(
        f"YooKassa refused {method} {path}: HTTP {status} {code}: {description}{where}",
        status=status,
        code=code,
    )
