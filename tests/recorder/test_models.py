"""The models on a migrated database, on every backend: keys, constraints, round trips."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Engine, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vendhub.recorder.models import (
    AuditLogEntry,
    Base,
    CashCollection,
    EventLogEntry,
    Location,
    LoyaltyCustomer,
    LoyaltyTransaction,
    Machine,
    Payment,
    Planogram,
    PlanogramSlot,
    Product,
    ProductImage,
    ProductTranslation,
    StockMovement,
    User,
    VendTransaction,
)

TS = 1_764_140_000.123456


def vend(machine_id: str, source_event_id: str) -> VendTransaction:
    return VendTransaction(
        machine_id=machine_id,
        source_event_id=source_event_id,
        slot_code="A1",
        product="COLA-330",
        price=150,
        currency="EUR",
        outcome="completed",
        ts=TS,
        recorded_ts=TS,
    )


def cash_collection(machine_id: str, source_event_id: str) -> CashCollection:
    return CashCollection(
        machine_id=machine_id, source_event_id=source_event_id, amount=4250, currency="EUR", ts=TS
    )


def payment(provider: str, source_event_id: str) -> Payment:
    return Payment(
        machine_id="lobby_1",
        provider=provider,
        method="card",
        amount=150,
        currency="EUR",
        status="captured",
        source_event_id=source_event_id,
        created_ts=TS,
        updated_ts=TS,
    )


def stock_movement(machine_id: str, source_event_id: str) -> StockMovement:
    return StockMovement(
        machine_id=machine_id,
        slot_code="A1",
        kind="vend",
        quantity=-1,
        source_event_id=source_event_id,
        ts=TS,
    )


def event_log_entry(machine_id: str, source_event_id: str) -> EventLogEntry:
    return EventLogEntry(
        machine_id=machine_id,
        kind="fault",
        code="coin_jam",
        message="coin mechanism jammed",
        source_event_id=source_event_id,
        ts=TS,
    )


RowFactory = Callable[[str, str], Base]
# Rows that a machine or provider caused, made from (machine or provider, their event id).
IDEMPOTENT_ROWS: dict[str, RowFactory] = {
    "vend_transactions": vend,
    "cash_collections": cash_collection,
    "payments": payment,
    "stock_movements": stock_movement,
    "event_log": event_log_entry,
}


def count(engine: Engine, table: str) -> int:
    with Session(engine) as session:
        return session.scalar(select(func.count()).select_from(Base.metadata.tables[table])) or 0


@pytest.mark.parametrize("table", IDEMPOTENT_ROWS)
def test_a_replayed_source_event_is_rejected(schema_engine: Engine, table: str) -> None:
    make_row = IDEMPOTENT_ROWS[table]
    with Session(schema_engine) as session:
        session.add(make_row("lobby_1", "evt-1"))
        session.commit()
        session.add(make_row("lobby_1", "evt-1"))
        with pytest.raises(IntegrityError):
            session.commit()
        session.rollback()
        # The same id from another source, and an id differing only in case, are other events.
        session.add_all([make_row("lobby_2", "evt-1"), make_row("lobby_1", "EVT-1")])
        session.commit()
    assert count(schema_engine, table) == 3


def test_a_loyalty_transaction_is_recorded_once_per_source_event(
    schema_engine: Engine,
) -> None:
    with Session(schema_engine) as session:
        customer = LoyaltyCustomer(
            token_hash="sha256:" + "ab" * 32, balance=0, currency="EUR", points=0, created_ts=TS
        )
        session.add(customer)
        session.flush()

        def topup() -> LoyaltyTransaction:
            return LoyaltyTransaction(
                customer_id=customer.id,
                kind="topup",
                amount=1000,
                points_delta=10,
                source_event_id="pay-77",
                ts=TS,
            )

        session.add(topup())
        session.commit()
        session.add(topup())
        with pytest.raises(IntegrityError):
            session.commit()
        session.rollback()
        session.add(
            LoyaltyCustomer(
                token_hash=customer.token_hash, balance=0, currency="EUR", points=0, created_ts=TS
            )
        )
        with pytest.raises(IntegrityError):
            session.commit()


def test_fleet_and_catalog_round_trip(schema_engine: Engine) -> None:
    with Session(schema_engine) as session:
        location = Location(name="Lobby", address="Main St 1", latitude=47.37, longitude=8.54)
        session.add(location)
        session.flush()
        session.add(
            Machine(
                machine_id="lobby_1",
                name="Lobby snacks",
                model="SnackPro 5",
                firmware="2.1.0",
                location_id=location.id,
                created_ts=TS,
                status="active",
            )
        )
        product = Product(
            sku="CHOC-100",
            default_name="Café au chocolat ☕🍫",
            category="snacks",
            tags='["vegan"]',
            allergens='["milk", "nuts"]',
            active=True,
            created_ts=TS,
        )
        session.add(product)
        session.flush()
        session.add_all(
            [
                ProductTranslation(product_id=product.id, language="de-CH", name="Schoggi"),
                ProductImage(product_id=product.id, url="media/choc.webp", mime_type="image/webp"),
            ]
        )
        planogram = Planogram(machine_id="lobby_1", version=1, active=True, created_ts=TS)
        session.add(planogram)
        session.flush()
        session.add(
            PlanogramSlot(
                planogram_id=planogram.id,
                slot_code="A1",
                product_sku="CHOC-100",
                price=250,
                currency="CHF",
                capacity=12,
                par_level=4,
            )
        )
        session.commit()

    with Session(schema_engine) as session:
        slot = session.scalars(select(PlanogramSlot)).one()
        assert (slot.product_sku, slot.price, slot.capacity, slot.par_level) == (
            "CHOC-100",
            250,
            12,
            4,
        )
        product = session.scalars(select(Product)).one()
        assert product.default_name == "Café au chocolat ☕🍫"
        assert product.active is True
        assert session.scalars(select(ProductImage.sort_order)).one() == 0
        machine = session.scalars(select(Machine)).one()
        assert machine.location_id is not None
        assert machine.adopted_ts is None


def test_foreign_keys_are_enforced_and_cascade(schema_engine: Engine) -> None:
    with Session(schema_engine) as session:
        planogram = Planogram(machine_id="lobby_1", version=1, active=True, created_ts=TS)
        session.add(planogram)
        session.flush()
        session.add(
            PlanogramSlot(
                planogram_id=planogram.id,
                slot_code="A1",
                product_sku="NO-SUCH-SKU",
                price=100,
                currency="EUR",
                capacity=10,
                par_level=3,
            )
        )
        with pytest.raises(IntegrityError):
            session.commit()
        session.rollback()

        planogram = Planogram(machine_id="lobby_1", version=2, active=True, created_ts=TS)
        session.add(planogram)
        session.flush()
        session.add_all(
            PlanogramSlot(
                planogram_id=planogram.id,
                slot_code=code,
                price=100,
                currency="EUR",
                capacity=10,
                par_level=3,
            )
            for code in ("A1", "A2")
        )
        session.commit()
        session.execute(delete(Planogram).where(Planogram.id == planogram.id))
        session.commit()
    assert count(schema_engine, "planogram_slots") == 0


def test_users_and_the_audit_log(schema_engine: Engine) -> None:
    with Session(schema_engine) as session:
        session.add(
            User(
                id="u-1",
                username="ops",
                role="admin",
                password_hash="$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA",
                active=True,
                created_ts=TS,
            )
        )
        session.add(
            AuditLogEntry(
                ts=TS,
                actor_type="user",
                actor_id="u-1",
                action="vending.set_price",
                target_type="slot",
                target_id="slot.lobby_1_a1",
                before='{"price": 150}',
                after='{"price": 170}',
                context_id=bytes(range(16)),
                remote_address="192.168.1.20",
            )
        )
        session.commit()
        entry = session.scalars(select(AuditLogEntry)).one()
        assert (entry.before, entry.after) == ('{"price": 150}', '{"price": 170}')
        assert entry.context_id == bytes(range(16))
        assert entry.ts == TS  # microseconds survive on every backend
        session.add(
            User(
                id="u-2",
                username="ops",
                role="viewer",
                password_hash="x",
                active=True,
                created_ts=TS,
            )
        )
        with pytest.raises(IntegrityError):
            session.commit()
