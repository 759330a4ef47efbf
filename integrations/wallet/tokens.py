"""Customer tokens (QR codes, NFC card UIDs) as the database keeps them: keyed hashes.

A token is never stored. ``LoyaltyCustomer.token_hash`` holds HMAC-SHA256 of the token under
a key that lives outside the database: ``<config>/.storage/wallet.token_key`` (32 random
bytes, created on first start, file mode 0600), or the ``token_key`` option (for hub workers
that share one database). An NFC UID has only 4 to 10 bytes; with a plain hash, a leaked
database would give every UID back by brute force in minutes. Without the key it gives
nothing. Losing the key makes every token unrecognisable, so it is backed up with the
database, and the hub refuses to start the wallet rather than silently make a new one when
the key file is there but unreadable.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING, Any

from vendhub.core.errors import VendHubError
from vendhub.helpers.storage import Store

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

KEY_STORAGE_KEY = "wallet.token_key"
KEY_STORAGE_VERSION = 1
KEY_BYTES = 32
MIN_CONFIGURED_KEY_CHARS = 32
MAX_TOKEN_CHARS = 512
HASH_PREFIX = "hmac-sha256:"


class TokenKeyError(VendHubError):
    """The key that token hashes are made with cannot be loaded."""


class InvalidToken(VendHubError, ValueError):
    """A presented token is empty or too long to be a QR or NFC token."""


def check_token(token: Any) -> str:
    """The token as presented, or InvalidToken naming what is wrong with it."""
    if not isinstance(token, str):
        raise InvalidToken(f"a wallet token is text, got {type(token).__name__}")
    if not token.strip():
        raise InvalidToken("the wallet token is empty")
    if len(token) > MAX_TOKEN_CHARS:
        raise InvalidToken(
            f"a wallet token has at most {MAX_TOKEN_CHARS} characters, got {len(token)}"
        )
    return token


class TokenHasher:
    """Turns a presented token into the value stored in ``token_hash``."""

    def __init__(self, key: bytes) -> None:
        if len(key) < KEY_BYTES:
            raise TokenKeyError(f"the token key must have at least {KEY_BYTES} bytes")
        self._key = key

    def __repr__(self) -> str:
        return "<TokenHasher>"  # never the key

    def hash(self, token: str) -> str:
        """``hmac-sha256:<64 hex digits>`` of the token exactly as presented."""
        digest = hmac.new(self._key, check_token(token).encode("utf-8"), hashlib.sha256)
        return HASH_PREFIX + digest.hexdigest()


def new_token() -> str:
    """A token for a new account: 128 random bits, URL-safe, for a QR code."""
    return secrets.token_urlsafe(16)


async def async_load_hasher(hub: Hub, configured_key: str | None) -> TokenHasher:
    """The hasher with the configured key, else the stored key (made on first start)."""
    if configured_key is not None:
        if len(configured_key) < MIN_CONFIGURED_KEY_CHARS:
            raise TokenKeyError(
                f"wallet token_key must have at least {MIN_CONFIGURED_KEY_CHARS} characters "
                f"(it has {len(configured_key)}); make one with: "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
        return TokenHasher(hashlib.sha256(configured_key.encode("utf-8")).digest())
    store: Store[dict[str, str]] = Store(hub, KEY_STORAGE_KEY, KEY_STORAGE_VERSION)
    existed = await hub.async_add_executor_job(store.path.exists)
    data = await store.async_load()
    if data is None:
        if existed:
            raise TokenKeyError(
                f"{store.path} exists but cannot be read (it was moved aside); without it no "
                "wallet token can be recognised: restore it from a backup"
            )
        data = {"key": base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")}
        await store.async_save(data)
    try:
        key = base64.b64decode(data["key"], validate=True)
    except (KeyError, TypeError, ValueError) as error:
        raise TokenKeyError(f"{store.path} holds no valid key: restore it from a backup") from error
    return TokenHasher(key)
