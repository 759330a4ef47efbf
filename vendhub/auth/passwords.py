"""Password hashing with argon2id, off the event loop (one hash costs tens of milliseconds)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 1024

_HASHER = PasswordHasher()
# Verified against when the username is unknown, so that a wrong username costs as much time
# as a wrong password and the answer's timing does not tell which usernames exist.
_DUMMY_HASH = _HASHER.hash("vendhub-no-such-user")


def password_problem(password: str, username: str) -> str | None:
    """Why ``password`` is not acceptable for ``username``, or None if it is."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"the password must have at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"the password must have at most {MAX_PASSWORD_LENGTH} characters"
    if password.strip().lower() == username.strip().lower():
        return "the password must not be the username"
    return None


async def async_hash_password(hub: Hub, password: str) -> str:
    """The argon2id hash of ``password`` (PHC string format)."""
    return await hub.async_add_executor_job(_HASHER.hash, password)


def _verify(encoded: str | None, password: str) -> bool:
    try:
        return _HASHER.verify(encoded or _DUMMY_HASH, password) and encoded is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def async_verify_password(hub: Hub, encoded: str | None, password: str) -> bool:
    """Whether ``password`` matches ``encoded``; None (no such user) costs the same and fails."""
    return await hub.async_add_executor_job(_verify, encoded, password)
