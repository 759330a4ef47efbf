"""Every recorder table; importing this module registers them all on ``Base.metadata``."""

from vendhub.recorder.models.auth import AuditLogEntry, User
from vendhub.recorder.models.base import Base
from vendhub.recorder.models.catalog import Product, ProductImage, ProductTranslation
from vendhub.recorder.models.event_log import EventLogEntry
from vendhub.recorder.models.fleet import Location, Machine, Planogram, PlanogramSlot
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
    RejectedMoneyEvent,
    VendTransaction,
)
from vendhub.recorder.models.loyalty import LoyaltyCustomer, LoyaltyTransaction
from vendhub.recorder.models.statistics import SalesStatistic, SensorStatistic, StatisticsRun
from vendhub.recorder.models.stock import StockLevel, StockMovement

__all__ = [
    "AuditLogEntry",
    "Base",
    "CashCollection",
    "EventLogEntry",
    "EventTypes",
    "Events",
    "Location",
    "LoyaltyCustomer",
    "LoyaltyTransaction",
    "Machine",
    "Payment",
    "PaymentStatusChange",
    "Planogram",
    "PlanogramSlot",
    "Product",
    "ProductImage",
    "ProductTranslation",
    "RejectedMoneyEvent",
    "SalesStatistic",
    "SensorStatistic",
    "StateAttributes",
    "States",
    "StatesMeta",
    "StatisticsRun",
    "StockLevel",
    "StockMovement",
    "User",
    "VendTransaction",
]
