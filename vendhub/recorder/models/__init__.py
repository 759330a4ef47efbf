"""Every recorder table; importing this module registers them all on ``Base.metadata``."""

from vendhub.recorder.models.base import Base
from vendhub.recorder.models.history import (
    Events,
    EventTypes,
    StateAttributes,
    States,
    StatesMeta,
)
from vendhub.recorder.models.ledger import (
    CashCollection,
    Payment,
    PaymentStatusChange,
    VendTransaction,
)
from vendhub.recorder.models.stock import StockLevel, StockMovement

__all__ = [
    "Base",
    "CashCollection",
    "EventTypes",
    "Events",
    "Payment",
    "PaymentStatusChange",
    "StateAttributes",
    "States",
    "StatesMeta",
    "StockLevel",
    "StockMovement",
    "VendTransaction",
]
