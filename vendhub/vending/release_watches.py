"""Release follows kept on disk, so that a payment provider resumes them after a restart.

A payment a provider cannot release yet (a YooKassa payment still pending, a BTCPay invoice
still confirming) is *followed* until a deadline and released once it can be. The provider
runs the follow (polling, webhooks, the release itself); this module keeps what a restarted
provider needs to go on with it, in the Store ``<platform>.<machine_id>.release_watches``::

    {"scope": "<the provider's scope, e.g. the BTCPay store id, or null>",
     "watches": [{"reference": "<payment or invoice id>", "session_id": "...",
                  "amount": {"amount": 150, "currency": "RUB"},
                  "until": "2025-03-01T12:34:56.789000+00:00"}]}

The durability rule: a follow is written to disk, with an immediate save, before the call that
started it returns (``async_add``), so the engine never counts as dealt with a payment that only
memory follows; it is removed, with a delayed save, only when the follow ends (``remove``),
never when the provider stops. The file is read once; an entry that cannot be read is skipped
with an ERROR naming the file, and follows stored for another scope are not resumed.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from vendhub.helpers.storage import StorageError, Store
from vendhub.util.dt import utcnow
from vendhub.vending.money import Money

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

STORE_VERSION: Final = 1
REMOVE_DELAY: Final = 1.0
"""Seconds an ended follow may stay on disk: a restart in between only looks at it again."""


class ReleaseWatchNotStored(StorageError):
    """A release follow could not be written to disk: a restart would forget it."""


@dataclass(frozen=True, slots=True)
class ReleaseWatch:
    """A release follow as stored: what a restarted provider needs to go on with it."""

    reference: str
    """The gateway's id of what is followed (a payment, an invoice)."""
    session_id: str
    amount: Money
    """What the payment is for: the gateway showing another amount is not trusted."""
    until: datetime
    """Wall-clock time (UTC) until which it is followed."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "session_id": self.session_id,
            "amount": self.amount.as_dict(),
            "until": self.until.isoformat(),
        }

    @classmethod
    def from_dict(cls, entry: Any) -> ReleaseWatch:
        """The stored ``entry``; ValueError says what is wrong with it."""
        if not isinstance(entry, dict):
            raise ValueError(f"an entry is not an object: {str(entry)[:64]!r}")
        reference, session_id = entry.get("reference"), entry.get("session_id")
        if not isinstance(reference, str) or not reference:
            raise ValueError(f"an entry has no reference: {str(entry)[:128]!r}")
        if not isinstance(session_id, str) or not session_id:
            raise ValueError(f"the entry of {reference[:64]} has no session_id")
        amount = entry.get("amount")
        try:
            if not isinstance(amount, dict):
                raise TypeError("no amount object")
            money = Money(amount.get("amount"), amount.get("currency"))
            until = datetime.fromisoformat(entry.get("until"))
            if until.tzinfo is None:
                raise ValueError("'until' has no time zone")
        except (TypeError, ValueError) as error:
            raise ValueError(f"the entry of {reference[:64]} is unreadable: {error}") from None
        return cls(reference, session_id, money, until)


@dataclass(frozen=True, slots=True)
class StoredWatches:
    """The follows the file held at start, split by the wall clock."""

    resume: list[ReleaseWatch] = field(default_factory=list)
    """Their time has not run out: the provider follows them again."""
    ran_out: list[ReleaseWatch] = field(default_factory=list)
    """Their time ran out while the hub was down: taken off the file, not followed."""


class ReleaseWatchStore:
    """The release follows of one provider on one machine, in memory and on disk."""

    def __init__(
        self,
        hub: Hub,
        platform: str,
        machine_id: str,
        *,
        scope: str | None = None,
        scope_name: str = "scope",
    ) -> None:
        self.hub = hub
        self.machine_id = machine_id
        self.scope = scope
        """Where the follows are valid (e.g. the BTCPay store): others are not resumed."""
        self.scope_name = scope_name
        self.store: Store[dict[str, Any]] = Store(
            hub, f"{platform}.{machine_id}.release_watches", STORE_VERSION
        )
        self._watches: dict[str, ReleaseWatch] = {}
        """Reference → its follow as stored (kept until the follow ends)."""
        self._from_file: list[ReleaseWatch] | None = None
        """What the file held, until ``async_load`` hands it out."""
        self._reading = asyncio.Lock()

    @property
    def path(self) -> Path:
        return self.store.path

    def __contains__(self, reference: object) -> bool:
        return reference in self._watches

    def get(self, reference: str) -> ReleaseWatch | None:
        return self._watches.get(reference)

    async def async_load(self) -> StoredWatches:
        """The follows the file held, read once: later calls return none. Those that ran out
        are taken off the file (with a delayed save); the caller says so once."""
        await self._async_read_once()
        from_file, self._from_file = self._from_file or [], []
        now = utcnow()
        loaded = StoredWatches()
        for watch in from_file:
            if self._watches.get(watch.reference) is not watch:
                continue  # a follow started since replaced it
            if watch.until <= now:
                del self._watches[watch.reference]
                loaded.ran_out.append(watch)
            else:
                loaded.resume.append(watch)
        if loaded.ran_out:
            self._save_later()
        return loaded

    async def async_add(self, watch: ReleaseWatch) -> None:
        """Keep ``watch`` and write it to disk before returning; ReleaseWatchNotStored if it
        could not be written (it is kept in memory all the same)."""
        self._watches[watch.reference] = watch  # before any wait: a follow may end meanwhile
        # Shielded: a second cancellation of a cancelled caller must not stop the write.
        await asyncio.shield(
            self.hub.async_create_task(self._async_store(watch), name=f"save {self.store.key}")
        )

    async def _async_store(self, watch: ReleaseWatch) -> None:
        await self._async_read_once()  # never overwrite follows not read yet
        try:
            await self.store.async_save(self._data())
        except (StorageError, OSError) as error:
            raise ReleaseWatchNotStored(
                f"the follow of {watch.reference} could not be stored in {self.path} ({error})"
            ) from error

    def remove(self, watch: ReleaseWatch) -> None:
        """The follow ended (released, or its time ran out): off the file with a delayed save.
        Nothing happens if another follow of the same reference replaced ``watch``."""
        if self._watches.get(watch.reference) is watch:
            del self._watches[watch.reference]
            self._save_later()

    async def async_flush(self) -> None:
        """Write a delayed save now (the provider stops); an error is logged."""
        try:
            await self.store.async_flush()
        except (StorageError, OSError) as error:
            _LOGGER.error(
                "%s: could not save the release follows to %s: %s",
                self.machine_id,
                self.path,
                error,
            )

    def _data(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "watches": [watch.as_dict() for watch in self._watches.values()],
        }

    def _save_later(self) -> None:
        try:
            self.store.async_delay_save(self._data, REMOVE_DELAY)
        except StorageError as error:
            # The Store refused its file at load (logged then): nothing is written to it.
            _LOGGER.debug("%s: release follows not saved: %s", self.machine_id, error)

    async def _async_read_once(self) -> None:
        async with self._reading:
            if self._from_file is not None:
                return
            self._from_file = []
            watches, left_out = await self._async_read()
            for watch in watches:
                if self._watches.setdefault(watch.reference, watch) is watch:
                    self._from_file.append(watch)
            if left_out:  # off the file, so that each is logged once
                self._save_later()

    async def _async_read(self) -> tuple[list[ReleaseWatch], bool]:
        """The stored follows of this scope, and whether the file held more (logged)."""
        try:
            data = await self.store.async_load()
        except (StorageError, OSError) as error:
            # A corrupt file the Store moves aside and logs itself; this is what it refuses.
            _LOGGER.error(
                "%s: cannot read the release follows stored in %s (%s); starting without "
                "them: what was followed before the restart is not followed now",
                self.machine_id,
                self.path,
                error,
            )
            return [], False
        if data is None:
            return [], False
        entries = data.get("watches") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            _LOGGER.error(
                "%s: %s holds no list of release follows; starting without them",
                self.machine_id,
                self.path,
            )
            return [], True
        watches: list[ReleaseWatch] = []
        for entry in entries:
            try:
                watches.append(ReleaseWatch.from_dict(entry))
            except ValueError as error:
                _LOGGER.error(
                    "%s: skipped a release follow in %s: %s", self.machine_id, self.path, error
                )
        stored_scope = data.get("scope", self.scope)
        if watches and stored_scope != self.scope:
            _LOGGER.error(
                "%s: %s holds follows of %s made at %s %.64s, this machine now uses %s: "
                "not resumed; check them there and release them by hand if they were paid",
                self.machine_id,
                self.path,
                ", ".join(watch.reference for watch in watches),
                self.scope_name,
                stored_scope,
                self.scope,
            )
            return [], True
        return watches, len(watches) < len(entries)
