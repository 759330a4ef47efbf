"""Reading stock movements: every change of a slot's stock, with who and when.

Like ``queries``: synchronous functions taking a ``Session`` or ``Connection`` (run them
through ``Recorder.async_query``), returning dataclasses whose ``as_dict()`` is JSON-ready.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from vendhub.recorder.models.stock import StockMovement
from vendhub.recorder.queries import (
    MAX_PAGE_SIZE,
    Page,
    SessionOrConnection,
    timestamp_of,
    utc_datetime,
)

_MOVEMENTS_TABLE = StockMovement.__table__


@dataclass(frozen=True, slots=True)
class StockMovementRow:
    """One change of stock: a vend (-1), a refill, a correction or spoilage."""

    id: int
    machine_id: str
    slot_code: str
    product: str | None
    kind: str
    quantity: int
    stock_after: int | None
    source_event_id: str | None
    user_id: str | None
    time: datetime
    context_id: str | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "id": self.id,
            "machine_id": self.machine_id,
            "slot_code": self.slot_code,
            "product": self.product,
            "kind": self.kind,
            "quantity": self.quantity,
            "stock_after": self.stock_after,
            "source_event_id": self.source_event_id,
            "user_id": self.user_id,
            "time": self.time.isoformat(),
            "context_id": self.context_id,
        }


def stock_movements(
    session: SessionOrConnection,
    *,
    machine_id: str | None = None,
    machine_ids: Collection[str] | None = None,
    slot_code: str | None = None,
    product: str | None = None,
    kind: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> Page[StockMovementRow]:
    """Stock movements, newest (highest id) first, ``limit`` (1 to 1000) per page.

    Keyset pagination as in ``queries.transactions``; ``start``/``end`` bound the
    movement's time as [start, end).
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be an integer from 1 to {MAX_PAGE_SIZE}, got {limit!r}")
    conditions = []
    if machine_id is not None:
        conditions.append(StockMovement.machine_id == machine_id)
    if machine_ids is not None:
        conditions.append(StockMovement.machine_id.in_(sorted(machine_ids)))
    if slot_code is not None:
        conditions.append(StockMovement.slot_code == slot_code)
    if product is not None:
        conditions.append(StockMovement.product == product)
    if kind is not None:
        conditions.append(StockMovement.kind == kind)
    if start is not None:
        conditions.append(StockMovement.ts >= timestamp_of(start, "start"))
    if end is not None:
        conditions.append(StockMovement.ts < timestamp_of(end, "end"))
    if before_id is not None:
        conditions.append(StockMovement.id < before_id)
    statement = (
        select(_MOVEMENTS_TABLE)
        .where(*conditions)
        .order_by(StockMovement.id.desc())
        .limit(limit + 1)
    )
    rows = list(session.execute(statement))
    items = [
        StockMovementRow(
            id=row.id,
            machine_id=row.machine_id,
            slot_code=row.slot_code,
            product=row.product,
            kind=row.kind,
            quantity=row.quantity,
            stock_after=row.stock_after,
            source_event_id=row.source_event_id,
            user_id=row.user_id,
            time=utc_datetime(row.ts),
            context_id=row.context_id.hex() if row.context_id else None,
        )
        for row in rows[:limit]
    ]
    return Page(items, items[-1].id if len(rows) > limit else None)
