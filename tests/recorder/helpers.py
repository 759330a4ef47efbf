"""Inserting realistic recorder rows directly, for tests of queries, statistics and purge."""

from __future__ import annotations

import json
import zlib
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from vendhub.recorder.models import (
    CashCollection,
    Events,
    EventTypes,
    Payment,
    PaymentStatusChange,
    StateAttributes,
    States,
    StatesMeta,
    StockLevel,
    StockMovement,
    VendTransaction,
)


def ts(text: str) -> float:
    """Epoch seconds of an ISO 8601 time; without an offset it is UTC."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def utc(text: str) -> datetime:
    """An aware UTC datetime from an ISO 8601 time (UTC when it has no offset)."""
    return datetime.fromtimestamp(ts(text), UTC)


def count_rows(session: Session, model: Any, *where: Any) -> int:
    """Rows of ``model`` matching ``where``."""
    statement = select(func.count()).select_from(model)
    if where:
        statement = statement.where(*where)
    return int(session.execute(statement).scalar_one())


class RecorderRows:
    """Inserts history and ledger rows the way the writer stores them (without committing)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._metadata_ids: dict[str, int] = {}
        self._attributes_ids: dict[str, int] = {}
        self._event_type_ids: dict[str, int] = {}
        self._vend_count = 0

    # ---- history -----------------------------------------------------------------------

    def metadata_id(self, entity_id: str) -> int:
        if entity_id not in self._metadata_ids:
            self._metadata_ids[entity_id] = self._insert(StatesMeta, entity_id=entity_id)
        return self._metadata_ids[entity_id]

    def attributes_id(self, attributes: dict[str, Any]) -> int:
        shared = json.dumps(attributes, sort_keys=True, separators=(",", ":"))
        if shared not in self._attributes_ids:
            self._attributes_ids[shared] = self._insert(
                StateAttributes, hash=zlib.crc32(shared.encode()), shared_attrs=shared
            )
        return self._attributes_ids[shared]

    def state(
        self,
        entity_id: str,
        state: str | None,
        at: float,
        *,
        attributes: dict[str, Any] | None = None,
        last_changed: float | None = None,
        context_id: str | None = None,
    ) -> int:
        """One state row; ``last_changed`` None means it changed at ``at``."""
        return self._insert(
            States,
            metadata_id=self.metadata_id(entity_id),
            state=state,
            attributes_id=self.attributes_id(attributes) if attributes else None,
            last_updated_ts=at,
            last_changed_ts=last_changed,
            context_id=bytes.fromhex(context_id) if context_id else None,
        )

    def event(self, event_type: str, at: float, data: dict[str, Any] | None = None) -> int:
        if event_type not in self._event_type_ids:
            self._event_type_ids[event_type] = self._insert(EventTypes, event_type=event_type)
        return self._insert(
            Events,
            event_type_id=self._event_type_ids[event_type],
            event_data=json.dumps(data) if data else None,
            origin=0,
            time_fired_ts=at,
        )

    # ---- ledger and stock ----------------------------------------------------------------

    def vend(
        self,
        at: float,
        *,
        machine_id: str = "lobby_1",
        product: str | None = "Cola",
        price: int = 150,
        currency: str = "EUR",
        outcome: str = "completed",
        method: str | None = "card",
        provider: str = "machine",
        recorded_at: float | None = None,
        slot_code: str = "A1",
    ) -> int:
        """A vend transaction; a completed one also gets its captured payment."""
        self._vend_count += 1
        event_id = f"evt-{self._vend_count}"
        transaction_id = self._insert(
            VendTransaction,
            machine_id=machine_id,
            source_event_id=event_id,
            vend_id=f"vend-{self._vend_count}",
            slot_code=slot_code,
            product=product,
            price=price,
            currency=currency,
            outcome=outcome,
            failure_reason=None if outcome == "completed" else "jammed",
            payment_method=method,
            ts=at,
            recorded_ts=at + 1 if recorded_at is None else recorded_at,
            context_id=bytes.fromhex(f"{self._vend_count:028x}"),
        )
        if outcome == "completed":
            payment_id = self._insert(
                Payment,
                transaction_id=transaction_id,
                machine_id=machine_id,
                provider=provider,
                method=method or "unknown",
                amount=price,
                currency=currency,
                status="captured",
                provider_reference=f"ref-{self._vend_count}",
                source_event_id=event_id,
                created_ts=at,
                updated_ts=at,
            )
            self._insert(PaymentStatusChange, payment_id=payment_id, status="captured", ts=at)
        return transaction_id

    def payment(
        self,
        at: float,
        *,
        machine_id: str = "lobby_1",
        method: str = "card",
        provider: str = "stripe",
        status: str = "captured",
        amount: int = 200,
        currency: str = "EUR",
    ) -> int:
        """A payment without a vend (a top-up, a refund's original, ...)."""
        self._vend_count += 1
        return self._insert(
            Payment,
            transaction_id=None,
            machine_id=machine_id,
            provider=provider,
            method=method,
            amount=amount,
            currency=currency,
            status=status,
            provider_reference=f"ref-{self._vend_count}",
            source_event_id=f"pay-{self._vend_count}",
            created_ts=at,
            updated_ts=at,
        )

    def cash_collection(self, at: float, *, machine_id: str = "lobby_1", amount: int = 5000) -> int:
        self._vend_count += 1
        return self._insert(
            CashCollection,
            machine_id=machine_id,
            source_event_id=f"cash-{self._vend_count}",
            amount=amount,
            currency="EUR",
            collected_by="driver",
            ts=at,
        )

    def stock(self, at: float, *, machine_id: str = "lobby_1", slot_code: str = "A1") -> None:
        self._vend_count += 1
        self._insert(
            StockMovement,
            machine_id=machine_id,
            slot_code=slot_code,
            product="Cola",
            kind="refill",
            quantity=10,
            stock_after=10,
            source_event_id=f"refill-{self._vend_count}",
            ts=at,
        )
        self._insert(
            StockLevel,
            machine_id=machine_id,
            slot_code=slot_code,
            product="Cola",
            quantity=10,
            updated_ts=at,
        )

    def _insert(self, model: Any, **values: Any) -> int:
        result = self.session.execute(insert(model).values(**values))
        return int(result.inserted_primary_key[0])
