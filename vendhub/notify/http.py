"""HTTP requests for notify platforms: one place that turns failures into DeliveryErrors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from vendhub.notify.models import DeliveryError
from vendhub.util.dt import utcnow

_MAX_BODY = 65536
_RETRYABLE_STATUSES = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class HttpReply:
    """A response read in full (up to 64 KiB of body)."""

    status: int
    text: str
    headers: Mapping[str, str]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def is_retryable_status(status: int) -> bool:
    """5xx, 408, 425 and 429 may work later; any other 4xx will not."""
    return status >= 500 or status in _RETRYABLE_STATUSES


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The delay a ``Retry-After`` header asks for, in seconds (seconds or an HTTP date)."""
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - utcnow()).total_seconds())
    except (TypeError, ValueError):
        return None


async def async_request(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    shown_url: str,
    timeout: float,
    **kwargs: Any,
) -> HttpReply:
    """Send one request; connection problems and timeouts become retryable DeliveryErrors.

    ``shown_url`` is what messages say instead of ``url`` (without tokens).
    """
    try:
        async with session.request(
            method, url, timeout=aiohttp.ClientTimeout(total=timeout), **kwargs
        ) as response:
            raw = await response.content.read(_MAX_BODY)
            charset = response.charset or "utf-8"
            return HttpReply(
                response.status, raw.decode(charset, errors="replace"), dict(response.headers)
            )
    except TimeoutError:
        raise DeliveryError(
            f"{shown_url} did not answer within {timeout:g} s", retryable=True
        ) from None
    except aiohttp.InvalidURL:
        raise DeliveryError(f"invalid URL {shown_url}", retryable=False) from None
    except aiohttp.ClientError as error:
        raise DeliveryError(
            f"cannot reach {shown_url}: {type(error).__name__}: {error}", retryable=True
        ) from None


def raise_for_status(reply: HttpReply, shown_url: str) -> None:
    """Raise a DeliveryError for a non-2xx reply, retryable where a later try may work."""
    if reply.ok:
        return
    detail = reply.text.strip().replace("\n", " ")[:200]
    raise DeliveryError(
        f"{shown_url} answered HTTP {reply.status}" + (f": {detail}" if detail else ""),
        retryable=is_retryable_status(reply.status),
        retry_after=retry_after(reply.headers),
    )
