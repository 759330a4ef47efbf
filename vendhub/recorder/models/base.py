"""The declarative base and the column types every recorder model shares."""

from __future__ import annotations

from sqlalchemy import BigInteger, Double, Integer, LargeBinary, MetaData, String
from sqlalchemy.orm import DeclarativeBase

# Names for constraints and indexes, so migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# A 64-bit key that SQLite still treats as its rowid (SQLite only autoincrements INTEGER).
BigIntegerKey = BigInteger().with_variant(Integer(), "sqlite")
# Seconds since the epoch, UTC, with microseconds: 8 bytes on every backend.
Timestamp = Double()
# A Context id in binary (see vendhub.core.context): 14 bytes instead of 28 characters.
ContextId = LargeBinary(16)
# Money is always integer minor units (cents) with an ISO 4217 currency code.
Currency = String(3)
# Ids given by machines, providers and users: event ids, machine ids, user ids.
ExternalId = String(64)


class Base(DeclarativeBase):
    """Every recorder table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
