"""The product catalog: products, their names in other languages, and their images."""

from __future__ import annotations

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from vendhub.recorder.models.base import Base, Timestamp


class Product(Base):
    """A product that slots can sell, known by its SKU."""

    __tablename__ = "products"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    default_name: Mapped[str] = mapped_column(String(128))
    category: Mapped[str | None] = mapped_column(String(64), index=True)
    tags: Mapped[str | None] = mapped_column(Text)  # JSON list of strings
    allergens: Mapped[str | None] = mapped_column(Text)  # JSON list of strings
    active: Mapped[bool] = mapped_column(Boolean)
    created_ts: Mapped[float] = mapped_column(Timestamp)


class ProductTranslation(Base):
    """A product's name and description in one language (a BCP 47 tag such as ``de-CH``)."""

    __tablename__ = "product_translations"
    __table_args__ = (UniqueConstraint("product_id", "language"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id", ondelete="CASCADE"))
    language: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str | None] = mapped_column(Text)


class ProductImage(Base):
    """A picture of a product, shown in ``sort_order`` on the kiosk and the console."""

    __tablename__ = "product_images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(512))  # absolute URL, or path under the media folder
    mime_type: Mapped[str] = mapped_column(String(64))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    sort_order: Mapped[int] = mapped_column(Integer, default=0)
