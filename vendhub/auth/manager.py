"""AuthManager: onboarding, sign-in with lockout, tokens and users (in ``.storage/auth``)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from vendhub.auth.identity import Identity, IdentityKind
from vendhub.auth.lockout import LockoutSettings, LoginLimiter
from vendhub.auth.passwords import async_hash_password, async_verify_password, password_problem
from vendhub.auth.roles import Role
from vendhub.auth.tokens import (
    TokenKind,
    TokenRecord,
    access_token_issuer,
    issue_access_token,
    new_record,
    secret_matches,
    split_refresh_token,
    verify_access_token,
)
from vendhub.auth.users import User, username_problem
from vendhub.core.errors import VendHubError
from vendhub.core.timers import async_track_time_interval
from vendhub.helpers.storage import Store
from vendhub.machine.credentials import (
    CredentialStore,
    FileStamp,
    credentials_file_stamp,
    verify_password,
)

if TYPE_CHECKING:
    from vendhub.core.events import Unsubscribe
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

DATA_AUTH: Final = "auth"
STORAGE_KEY: Final = "auth"
STORAGE_VERSION: Final = 1
SAVE_DELAY: Final = 1.0
DAY: Final = 86_400.0
CREDENTIAL_CHECK_INTERVAL: Final = 5.0
"""Seconds between looks at the machine credential store, once a machine has signed in: a
machine whose credentials were removed or replaced loses its access tokens (as its MQTT
login is cut off by the embedded broker)."""


class AuthError(VendHubError):
    """A sign-in or a change was refused; ``code`` is stable, the message is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class LoginLocked(AuthError):
    """Too many failed sign-ins: try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(
            "login_locked",
            f"too many failed sign-ins; try again in {int(retry_after) + 1} seconds",
        )
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Token lifetimes and the sign-in lockout."""

    access_token_ttl: float = 1800.0
    refresh_token_idle_days: float = 90.0
    long_lived_token_days: float = 3650.0
    machine_token_ttl: float = 3600.0
    lockout: LockoutSettings = field(default_factory=LockoutSettings)


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """What a successful sign-in returns."""

    access_token: str
    expires_in: float
    refresh_token: str | None = None
    token_type: str = "Bearer"

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_in": int(self.expires_in),
        }
        if self.refresh_token is not None:
            data["refresh_token"] = self.refresh_token
        return data


def get_auth(hub: Hub) -> AuthManager:
    """The running hub's AuthManager (set up by the ``http`` integration)."""
    manager: AuthManager | None = hub.data.get(DATA_AUTH)
    if manager is None:
        raise VendHubError("authentication is not set up: add an `http:` block")
    return manager


def _invalid_login() -> AuthError:
    return AuthError("invalid_credentials", "invalid username or password")


class AuthManager:
    """Users, tokens and sign-in for one hub."""

    def __init__(self, hub: Hub, settings: AuthSettings | None = None) -> None:
        self.hub = hub
        self.settings = settings or AuthSettings()
        self.limiter = LoginLimiter(self.settings.lockout)
        self._store: Store[dict[str, Any]] = Store(hub, STORAGE_KEY, STORAGE_VERSION)
        self._users: dict[str, User] = {}
        self._tokens: dict[str, TokenRecord] = {}
        self._machine_tokens: dict[str, TokenRecord] = {}
        # token id -> the machine's password hash at sign-in: a new one revokes the token
        self._machine_hashes: dict[str, str] = {}
        self._credentials_stamp: FileStamp | None = None
        self._credentials_watch: Unsubscribe | None = None
        self._damaged_store: Path | None = None  # a corrupt user store moved aside
        self._onboarding_lock = asyncio.Lock()

    # ---- persistence ---------------------------------------------------------------------

    async def async_load(self) -> None:
        data = await self._store.async_load() or {}
        damaged = sorted(self._store.path.parent.glob(f"{STORAGE_KEY}.corrupt-*"))
        self._damaged_store = damaged[-1] if damaged and not data.get("users") else None
        if self._damaged_store is not None:
            _LOGGER.error(
                "The user store was damaged (kept as %s): onboarding stays closed, so that "
                "nobody can make themselves the owner; restore the file from a backup as %s, "
                "or delete %s to start over with a new owner, then restart the hub",
                self._damaged_store,
                self._store.path,
                self._damaged_store,
            )
        self._users = {u["id"]: User.from_json(u) for u in data.get("users", [])}
        now = time.time()
        self._tokens = {}
        for raw in data.get("tokens", []):
            record = TokenRecord.from_json(raw)
            if not record.expired(now) and record.user_id in self._users:
                self._tokens[record.id] = record

    def _data(self) -> dict[str, Any]:
        return {
            "users": [user.as_json() for user in self._users.values()],
            "tokens": [record.as_json() for record in self._tokens.values()],
        }

    async def _async_save_now(self) -> None:
        await self._store.async_save(self._data())

    def _save_later(self) -> None:
        self._store.async_delay_save(self._data, SAVE_DELAY)

    # ---- onboarding and sign-in ------------------------------------------------------------

    @property
    def onboarded(self) -> bool:
        """Whether the owner exists; until then only onboarding is possible."""
        return bool(self._users)

    async def async_onboard(self, username: str, password: str, name: str = "") -> TokenGrant:
        """Create the owner (only while there is no user at all) and sign them in."""
        async with self._onboarding_lock:
            if self.onboarded:
                raise AuthError("already_onboarded", "the owner exists already; sign in instead")
            if self._damaged_store is not None:
                raise AuthError(
                    "user_store_damaged",
                    "the hub's user store was damaged, so onboarding is closed (a new owner "
                    "would take the hub over); its administrator restores it from a backup, or "
                    f"deletes {self._damaged_store.name} in .storage to start over",
                )
            user = await self._async_new_user(username, password, Role.owner, name, None)
            self._users[user.id] = user
            await self._async_save_now()
        _LOGGER.info("Onboarding: owner %s created", user.username)
        return await self._async_grant(user, address=None)

    async def async_login(
        self, username: str, password: str, *, address: str | None = None
    ) -> TokenGrant:
        """Check a password; a short access token and a refresh token when it is right."""
        retry_after = self.limiter.retry_after(username, address)
        if retry_after > 0:
            raise LoginLocked(retry_after)
        user = self._user_by_name(username)
        good = await async_verify_password(self.hub, user.password_hash if user else None, password)
        if user is None or not good or not user.active:
            self.limiter.failed(username, address)
            _LOGGER.warning("Failed sign-in for %r from %s", username[:64], address or "?")
            raise _invalid_login()
        self.limiter.succeeded(username)
        self._users[user.id] = replace(user, last_login=time.time())
        return await self._async_grant(self._users[user.id], address=address)

    async def _async_grant(self, user: User, *, address: str | None) -> TokenGrant:
        record, refresh_token = new_record(
            TokenKind.normal,
            access_token_ttl=self.settings.access_token_ttl,
            lifetime=self.settings.refresh_token_idle_days * DAY,
            user_id=user.id,
        )
        record = record.used(time.time(), address)
        self._tokens[record.id] = record
        await self._async_save_now()
        access_token, expires_in = issue_access_token(record)
        return TokenGrant(access_token, expires_in, refresh_token)

    async def async_refresh(self, refresh_token: str, *, address: str | None = None) -> TokenGrant:
        """A new access token for a valid refresh token (whose idle expiry moves on)."""
        record = self._refresh_record(refresh_token)
        if record is None or record.kind is not TokenKind.normal:
            raise AuthError("invalid_grant", "the refresh token is not valid")
        now = time.time()
        record = replace(
            record.used(now, address), expires=now + self.settings.refresh_token_idle_days * DAY
        )
        self._tokens[record.id] = record
        self._save_later()
        access_token, expires_in = issue_access_token(record)
        return TokenGrant(access_token, expires_in)

    async def async_login_machine(
        self, machine_id: str, password: str, *, address: str | None = None
    ) -> TokenGrant:
        """A machine signs in with the credentials ``vendhub machine add`` printed."""
        key = f"machine-{machine_id}"
        retry_after = self.limiter.retry_after(key, address)
        if retry_after > 0:
            raise LoginLocked(retry_after)
        # Read the store each time: `vendhub machine add` changes it while the hub runs.
        stamp = credentials_file_stamp(self.hub)
        users = (await CredentialStore(self.hub).async_credentials()).users
        encoded = users.get(machine_id)
        if encoded is None or not verify_password(password, encoded):
            self.limiter.failed(key, address)
            _LOGGER.warning("Failed machine sign-in for %r from %s", machine_id[:64], address)
            raise AuthError("invalid_credentials", "invalid machine id or password")
        self.limiter.succeeded(key)
        record, _secret = new_record(
            TokenKind.machine,
            access_token_ttl=self.settings.machine_token_ttl,
            lifetime=self.settings.machine_token_ttl,
            machine_id=machine_id,
        )
        self._prune_machine_tokens()
        self._machine_tokens[record.id] = record.used(time.time(), address)
        self._machine_hashes[record.id] = encoded
        self._revoke_replaced_machine_tokens(users)
        self._credentials_stamp = stamp
        if self._credentials_watch is None:
            self._credentials_watch = async_track_time_interval(
                self.hub,
                self._async_check_machine_credentials,
                timedelta(seconds=CREDENTIAL_CHECK_INTERVAL),
                name="auth: machine credentials",
            )
        access_token, expires_in = issue_access_token(record)
        return TokenGrant(access_token, expires_in)

    def _prune_machine_tokens(self) -> None:
        now = time.time()
        for token_id in [t for t, r in self._machine_tokens.items() if r.expired(now)]:
            del self._machine_tokens[token_id]
            self._machine_hashes.pop(token_id, None)

    async def _async_check_machine_credentials(self, _now: datetime) -> None:
        """Revoke the tokens of machines whose credentials changed ('vendhub machine remove',
        'machine add --rotate', run while the hub runs)."""
        stamp = credentials_file_stamp(self.hub)
        if stamp == self._credentials_stamp or not self._machine_tokens:
            return
        self._credentials_stamp = stamp
        users = (await CredentialStore(self.hub).async_credentials()).users
        self._revoke_replaced_machine_tokens(users)

    def _revoke_replaced_machine_tokens(self, users: dict[str, str]) -> None:
        revoked: set[str] = set()
        for token_id, record in list(self._machine_tokens.items()):
            machine_id = record.machine_id or ""
            if users.get(machine_id) != self._machine_hashes.get(token_id):
                del self._machine_tokens[token_id]
                self._machine_hashes.pop(token_id, None)
                revoked.add(machine_id)
        for machine_id in sorted(revoked):
            _LOGGER.warning(
                "The credentials of machine %s were removed or replaced: its access tokens "
                "are revoked",
                machine_id,
            )

    def async_stop(self) -> None:
        """Stop looking at the machine credential store."""
        if self._credentials_watch is not None:
            self._credentials_watch()
            self._credentials_watch = None

    def _refresh_record(self, refresh_token: str) -> TokenRecord | None:
        parts = split_refresh_token(refresh_token)
        if parts is None:
            return None
        record = self._tokens.get(parts[0])
        if record is None or record.expired(time.time()) or not secret_matches(record, parts[1]):
            return None
        user = self._users.get(record.user_id or "")
        return record if user is not None and user.active else None

    # ---- validating what a request carries ---------------------------------------------------

    def validate_access_token(self, token: str) -> Identity | None:
        """The identity an access token stands for, or None if it is not valid now."""
        issuer = access_token_issuer(token)
        if issuer is None:
            return None
        record = self._tokens.get(issuer) or self._machine_tokens.get(issuer)
        if record is None or not verify_access_token(record, token):
            return None
        return self._identity(record)

    def validate_session(self, refresh_token: str) -> Identity | None:
        """The identity of a console session cookie (which holds a refresh token)."""
        record = self._refresh_record(refresh_token)
        return None if record is None else self._identity(record)

    def _identity(self, record: TokenRecord) -> Identity | None:
        if record.kind is TokenKind.machine:
            return Identity(
                IdentityKind.machine, record.machine_id or "", machine_id=record.machine_id
            )
        user = self._users.get(record.user_id or "")
        if user is None or not user.active:
            return None
        machine_ids = frozenset(user.machine_ids) if user.role.machine_scoped else None
        if record.kind is TokenKind.long_lived:
            return Identity(
                IdentityKind.token,
                record.name,
                role=user.role,
                user_id=user.id,
                token_id=record.id,
                machine_ids=machine_ids,
            )
        return Identity(
            IdentityKind.user,
            user.username,
            role=user.role,
            user_id=user.id,
            token_id=record.id,
            machine_ids=machine_ids,
        )

    # ---- tokens ------------------------------------------------------------------------------

    async def async_create_long_lived_token(
        self, user_id: str, name: str, *, days: float | None = None
    ) -> tuple[TokenRecord, str]:
        """A token for an integration; returns the record and the access token (shown once)."""
        if not name.strip() or len(name) > 100:
            raise AuthError("invalid_name", "a token needs a name of 1 to 100 characters")
        if any(
            r.user_id == user_id and r.kind is TokenKind.long_lived and r.name == name
            for r in self._tokens.values()
        ):
            raise AuthError("name_taken", f"you already have a token named {name!r}")
        lifetime = (days or self.settings.long_lived_token_days) * DAY
        record, _secret = new_record(
            TokenKind.long_lived,
            access_token_ttl=lifetime,
            lifetime=lifetime,
            user_id=user_id,
            name=name,
        )
        self._tokens[record.id] = record
        await self._async_save_now()
        access_token, _ttl = issue_access_token(record)
        return record, access_token

    def tokens_of(self, user_id: str) -> list[TokenRecord]:
        return sorted(
            (r for r in self._tokens.values() if r.user_id == user_id), key=lambda r: r.created
        )

    def token(self, token_id: str) -> TokenRecord | None:
        return self._tokens.get(token_id)

    async def async_revoke_token(self, token_id: str) -> None:
        """Forget a refresh or long-lived token; its access tokens stop working at once."""
        if self._tokens.pop(token_id, None) is None:
            raise AuthError("not_found", f"no token {token_id!r}")
        await self._async_save_now()

    # ---- users ---------------------------------------------------------------------------------

    @property
    def users(self) -> list[User]:
        return sorted(self._users.values(), key=lambda u: u.created)

    def user(self, user_id: str) -> User | None:
        return self._users.get(user_id)

    def _user_by_name(self, username: str) -> User | None:
        wanted = username.strip().lower()
        return next((u for u in self._users.values() if u.username == wanted), None)

    async def _async_new_user(
        self,
        username: str,
        password: str,
        role: Role,
        name: str,
        machine_ids: list[str] | None,
    ) -> User:
        username = username.strip().lower()
        problem = username_problem(username) or password_problem(password, username)
        if problem:
            raise AuthError("invalid_user", problem)
        if self._user_by_name(username) is not None:
            raise AuthError("username_taken", f"a user named {username!r} exists already")
        return User(
            id=secrets.token_hex(16),
            username=username,
            name=name.strip() or username,
            role=role,
            password_hash=await async_hash_password(self.hub, password),
            active=True,
            created=time.time(),
            machine_ids=tuple(sorted(set(machine_ids or ()))) if role.machine_scoped else None,
        )

    async def async_create_user(
        self,
        username: str,
        password: str,
        role: Role,
        *,
        name: str = "",
        machine_ids: list[str] | None = None,
    ) -> User:
        user = await self._async_new_user(username, password, role, name, machine_ids)
        self._users[user.id] = user
        await self._async_save_now()
        return user

    async def async_update_user(
        self,
        user_id: str,
        *,
        name: str | None = None,
        role: Role | None = None,
        active: bool | None = None,
        machine_ids: list[str] | None = None,
        password: str | None = None,
    ) -> User:
        user = self._users.get(user_id)
        if user is None:
            raise AuthError("not_found", f"no user {user_id!r}")
        changes: dict[str, Any] = {}
        if name is not None:
            changes["name"] = name.strip() or user.username
        if role is not None:
            changes["role"] = role
        if active is not None:
            changes["active"] = active
        new_role = role or user.role
        if machine_ids is not None or role is not None:
            wanted = machine_ids if machine_ids is not None else list(user.machine_ids or ())
            changes["machine_ids"] = tuple(sorted(set(wanted))) if new_role.machine_scoped else None
        if password is not None:
            problem = password_problem(password, user.username)
            if problem:
                raise AuthError("invalid_user", problem)
            changes["password_hash"] = await async_hash_password(self.hub, password)
        updated = replace(user, **changes)
        self._check_an_owner_remains(user, updated)
        self._users[user_id] = updated
        if password is not None or updated.active is False:
            self._drop_tokens_of(user_id, keep_long_lived=password is not None)
        await self._async_save_now()
        return updated

    async def async_delete_user(self, user_id: str) -> User:
        user = self._users.get(user_id)
        if user is None:
            raise AuthError("not_found", f"no user {user_id!r}")
        self._check_an_owner_remains(user, None)
        del self._users[user_id]
        self._drop_tokens_of(user_id, keep_long_lived=False)
        await self._async_save_now()
        return user

    def _drop_tokens_of(self, user_id: str, *, keep_long_lived: bool) -> None:
        for token_id, record in list(self._tokens.items()):
            if record.user_id != user_id:
                continue
            if keep_long_lived and record.kind is TokenKind.long_lived:
                continue
            del self._tokens[token_id]

    def _check_an_owner_remains(self, before: User, after: User | None) -> None:
        if before.role is not Role.owner:
            return
        if after is not None and after.role is Role.owner and after.active:
            return
        owners = [u for u in self._users.values() if u.role is Role.owner and u.active]
        if len(owners) <= 1:
            raise AuthError("last_owner", "this is the only owner; make another user owner first")
