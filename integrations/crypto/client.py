"""A small client of BTCPay Server's Greenfield API (v1): invoices, their status, refunds.

Requests carry ``Authorization: token <api key>``. Greenfield has no idempotence keys, so
only reads are retried (network errors, 5xx); the provider makes its writes safe to repeat by
looking first (an invoice by its ``orderId``, a refund by its pull payment's description).
Errors come back as ``BTCPayError`` with Greenfield's code and message (never the key).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

import aiohttp

from vendhub.vending.gateway_client import GatewayClient, GatewayError

_LOGGER = logging.getLogger(__name__)

ATTEMPTS: Final = 3
RETRY_DELAY: Final = 0.5


class BTCPayError(GatewayError):
    """Greenfield refused a request or could not be reached."""


class BTCPayClient(GatewayClient):
    """The calls the provider needs, for one store, over one aiohttp session of its own."""

    error = BTCPayError

    def __init__(
        self, server_url: str, store_id: str, api_key: str, *, timeout: float = 10.0
    ) -> None:
        super().__init__({"Authorization": f"token {api_key}"}, timeout)
        self.base = f"{server_url.rstrip('/')}/api/v1/stores/{store_id}"

    # ---- the API ----------------------------------------------------------------------

    async def async_create_invoice(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._request("POST", "/invoices", body)

    async def async_get_invoice(self, invoice_id: str) -> dict[str, Any]:
        return await self._request("GET", f"/invoices/{invoice_id}")

    async def async_find_invoices(self, order_id: str) -> list[dict[str, Any]]:
        found = await self._request("GET", "/invoices", params={"orderId": order_id})
        return [item for item in found if isinstance(item, dict)] if isinstance(found, list) else []

    async def async_mark_status(self, invoice_id: str, status: str) -> dict[str, Any]:
        return await self._request("POST", f"/invoices/{invoice_id}/status", {"status": status})

    async def async_refund(self, invoice_id: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._request("POST", f"/invoices/{invoice_id}/refund", body)

    async def async_pull_payments(self) -> list[dict[str, Any]]:
        found = await self._request("GET", "/pull-payments", params={"includeArchived": "true"})
        return [item for item in found if isinstance(item, dict)] if isinstance(found, list) else []

    # ---- transport --------------------------------------------------------------------

    async def _request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        attempts = ATTEMPTS if method == "GET" else 1
        delay = RETRY_DELAY
        last_problem = ""
        for attempt in range(1, attempts + 1):
            try:
                async with self._http().request(
                    method, self.base + path, json=body, params=params
                ) as response:
                    try:
                        answer = await response.json(content_type=None)
                    except ValueError:
                        answer = None
                    if response.status >= 500:
                        last_problem = f"HTTP {response.status}"
                    elif response.status >= 400:
                        raise _error(method, path, response.status, answer)
                    elif answer is None:
                        raise BTCPayError(
                            f"BTCPay answered {method} {path} without JSON",
                            status=response.status,
                        )
                    else:
                        return answer
            except (aiohttp.ClientError, TimeoutError) as error:
                last_problem = f"{type(error).__name__} {error}".strip()
            _LOGGER.debug("BTCPay %s %s attempt %d failed: %s", method, path, attempt, last_problem)
            if attempt < attempts:
                await asyncio.sleep(delay)
                delay *= 2
        raise BTCPayError(f"BTCPay {method} {path} failed: {last_problem}")


def _error(method: str, path: str, status: int, answer: Any) -> BTCPayError:
    if isinstance(answer, list):  # 422: [{"path": ..., "message": ...}, ...]
        problems = "; ".join(
            f"{str(item.get('path'))[:40]}: {str(item.get('message'))[:120]}"
            for item in answer[:5]
            if isinstance(item, dict)
        )
        return BTCPayError(
            f"BTCPay refused {method} {path}: HTTP {status}: {problems or 'invalid request'}",
            status=status,
            code="validation-error",
        )
    answer = answer if isinstance(answer, dict) else {}
    code = str(answer.get("code") or f"http_{status}")
    message = str(answer.get("message") or "no message")[:300]
    return BTCPayError(
        f"BTCPay refused {method} {path}: HTTP {status} {code}: {message}",
        status=status,
        code=code,
    )
