"""The product catalog: products by SKU with names per language, image, category, allergens, tags.

Products come from the ``catalog:`` block of the configuration (a list of products, or a
mapping with ``products:`` and the catalog's settings) and from the ``catalog.*`` services.
``catalog_schema`` validates the block so that every problem names its file and line:
duplicate SKUs, names in languages the catalog does not have, images that are neither a
file under the media folder nor an http(s) URL.

When the recorder runs, the catalog is kept in its ``products``, ``product_translations`` and
``product_images`` tables (``write_products``, ``remove_product_row``, ``read_products``), so
the API and the UI can read it.
"""

from __future__ import annotations

import json
import mimetypes
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import voluptuous as vol

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

DATA_CATALOG: Final = "vending.catalog"
"""``hub.data`` key of the hub's ``Catalog`` (set by the ``catalog`` integration)."""

DEFAULT_LANGUAGES: Final = ("en", "ru")
DEFAULT_LANGUAGE: Final = "en"
DEFAULT_MEDIA_DIR: Final = "media"
IMAGE_EXTENSIONS: Final = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".svg"})

SKU_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_LANGUAGE = re.compile(r"[a-z]{2,3}(_[A-Z]{2})?")
_LABEL = re.compile(r"[a-z0-9][a-z0-9_ -]{0,63}")


class CatalogError(ValueError):
    """A catalog request that cannot be carried out (unknown SKU, bad product)."""


@dataclass(frozen=True, slots=True)
class Product:
    """One product, known by its SKU."""

    sku: str
    name: str  # the default name, in the catalog's default language
    names: Mapping[str, str] = field(default_factory=dict)  # language → name
    image: str | None = None  # a path under the media folder, or an http(s) URL
    category: str | None = None
    allergens: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    description: str | None = None

    def name_in(self, language: str) -> str:
        """The name in ``language`` (``pt_BR`` falls back to ``pt``), else the default name."""
        if language in self.names:
            return self.names[language]
        base = language.split("_", 1)[0]
        return self.names.get(base, self.name)

    def as_dict(self) -> dict[str, Any]:
        """The product as JSON data (what the services return and the store keeps)."""
        data: dict[str, Any] = {"sku": self.sku, "name": self.name, "names": dict(self.names)}
        for key in ("image", "category", "description"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        data["allergens"] = list(self.allergens)
        data["tags"] = list(self.tags)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Product:
        """A product from validated data (``product_schema``) or ``as_dict`` output."""
        return cls(
            sku=str(data["sku"]),
            name=str(data["name"]),
            names={str(key): str(value) for key, value in (data.get("names") or {}).items()},
            image=str(data["image"]) if data.get("image") else None,
            category=str(data["category"]) if data.get("category") else None,
            allergens=tuple(str(item) for item in data.get("allergens") or ()),
            tags=tuple(str(item) for item in data.get("tags") or ()),
            description=str(data["description"]) if data.get("description") else None,
        )


class Catalog:
    """The products of the hub, by SKU, with the catalog's languages."""

    def __init__(
        self,
        products: Iterable[Product] = (),
        *,
        languages: Iterable[str] = DEFAULT_LANGUAGES,
        default_language: str = DEFAULT_LANGUAGE,
        media_dir: Path | None = None,
    ) -> None:
        self.languages = tuple(languages)
        self.default_language = default_language
        self.media_dir = media_dir
        self.products: dict[str, Product] = {}
        for product in products:
            if product.sku in self.products:
                raise CatalogError(f"duplicate sku {product.sku!r}")
            self.products[product.sku] = product

    def __len__(self) -> int:
        return len(self.products)

    def __contains__(self, sku: object) -> bool:
        return sku in self.products

    def get(self, sku: str) -> Product | None:
        """The product with ``sku``, or None."""
        return self.products.get(sku)

    def name(self, sku: str, language: str | None = None) -> str:
        """The product's name in ``language`` (default: the catalog's); raises CatalogError."""
        product = self.products.get(sku)
        if product is None:
            raise CatalogError(f"no product with sku {sku!r} in the catalog")
        return product.name_in(language or self.default_language)

    def upsert(self, product: Product) -> bool:
        """Add or replace a product; True when it is new."""
        is_new = product.sku not in self.products
        self.products[product.sku] = product
        return is_new

    def remove(self, sku: str) -> Product:
        """Take a product out; raises CatalogError naming the SKUs there are."""
        try:
            return self.products.pop(sku)
        except KeyError:
            known = ", ".join(sorted(self.products)[:20]) or "none"
            raise CatalogError(
                f"no product with sku {sku!r} in the catalog; known: {known}"
            ) from None


# ---- validation ---------------------------------------------------------------------------


def _text(max_length: int) -> Any:
    def validate(value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise vol.Invalid(f"expected text, got {value!r}")
        if len(value) > max_length:
            raise vol.Invalid(f"expected at most {max_length} characters, got {len(value)}")
        return str(value).strip()

    return validate


def sku(value: Any) -> str:
    """A SKU: 1 to 64 letters, digits, ``_``, ``.`` or ``-``, starting with a letter or digit."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise vol.Invalid(f"expected a sku such as 'cola_330', got {value!r}")
    text = str(value)
    if SKU_PATTERN.fullmatch(text) is None:
        raise vol.Invalid(
            f"expected a sku of 1 to 64 letters, digits, '_', '.' or '-', got {text!r}"
        )
    return text


def _optional(validator: Any) -> Any:
    def validate(value: Any) -> Any:
        return None if value is None else validator(value)

    return validate


def _labels(value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if items is None:
        return []
    if not isinstance(items, list):
        raise vol.Invalid(f"expected a list of words such as [gluten, milk], got {value!r}")
    labels = []
    for index, item in enumerate(items):
        text = str(item).strip().lower() if isinstance(item, str) else None
        if text is None or _LABEL.fullmatch(text) is None:
            raise vol.Invalid(
                f"expected a word of lowercase letters, digits, ' ', '_' or '-', got {item!r}",
                path=[index],
            )
        if text not in labels:
            labels.append(text)
    return labels


def image_reference(value: Any, media_dir: Path | None) -> str:
    """An http(s) URL, or a path under ``media_dir`` to an image file that exists.

    Without ``media_dir`` a path is checked for its form only.
    """
    if not isinstance(value, str) or not value.strip():
        raise vol.Invalid(f"expected an image path under the media folder or a URL, got {value!r}")
    text = value.strip()
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise vol.Invalid(f"an image URL must be http:// or https:// with a host, got {text!r}")
        return text
    path = PurePosixPath(text.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts:
        raise vol.Invalid(
            f"an image path is relative to the media folder and stays inside it, got {text!r}"
        )
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise vol.Invalid(
            f"an image must be one of {', '.join(sorted(IMAGE_EXTENSIONS))}, got {text!r}"
        )
    if media_dir is not None:
        file = media_dir / path
        if not file.is_file():
            raise vol.Invalid(f"no image file {path.as_posix()} in the media folder {media_dir}")
    return path.as_posix()


def media_folder_of(value: Any, media_dir: str) -> Path | None:
    """The media folder for a value loaded from YAML: ``media_dir`` in its configuration
    folder; None for a value that does not know where it was written."""
    source = getattr(value, "source", None)
    root = getattr(source, "config_root", None)
    return Path(root) / media_dir if root is not None else None


def product_schema(
    languages: Iterable[str], media_dir: Path | None, *, infer_media_dir: str | None = None
) -> vol.Schema:
    """The schema of one product; names must be in ``languages``.

    ``infer_media_dir``: find the media folder from where each image path was written
    (``media_folder_of``) instead of ``media_dir``.
    """
    known = tuple(languages)

    def language(value: Any) -> str:
        if not isinstance(value, str) or _LANGUAGE.fullmatch(value) is None:
            raise vol.Invalid(f"expected a language code such as 'en' or 'ru', got {value!r}")
        if value not in known:
            raise vol.Invalid(
                f"unknown language {value!r}: this catalog has {', '.join(known)} "
                "(add it to 'languages' of the catalog)"
            )
        return value

    def image(value: Any) -> str:
        folder = media_dir
        if infer_media_dir is not None:
            folder = media_folder_of(value, infer_media_dir)
        return image_reference(value, folder)

    return vol.Schema(
        {
            vol.Required("sku"): sku,
            vol.Required("name"): _text(128),
            vol.Optional("names", default=dict): {language: _text(128)},
            vol.Optional("image"): _optional(image),
            vol.Optional("category"): _optional(_text(64)),
            vol.Optional("allergens", default=list): _labels,
            vol.Optional("tags", default=list): _labels,
            vol.Optional("description"): _optional(_text(2000)),
        }
    )


def _languages(value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise vol.Invalid(f"expected a list of language codes such as [en, ru], got {value!r}")
    for index, item in enumerate(items):
        if not isinstance(item, str) or _LANGUAGE.fullmatch(item) is None:
            raise vol.Invalid(
                f"expected a language code such as 'en', 'ru' or 'pt_BR', got {item!r}",
                path=[index],
            )
    return [str(item) for item in items]


def _media_dir(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise vol.Invalid(f"expected a folder name such as 'media', got {value!r}")
    path = PurePosixPath(value.strip())
    if path.is_absolute() or ".." in path.parts:
        raise vol.Invalid(
            f"the media folder is a folder inside the configuration folder, got {value!r}"
        )
    return path.as_posix()


SETTINGS_SCHEMA = vol.Schema(
    {
        vol.Optional("languages", default=list(DEFAULT_LANGUAGES)): _languages,
        vol.Optional("default_language", default=DEFAULT_LANGUAGE): _text(16),
        vol.Optional("media_dir", default=DEFAULT_MEDIA_DIR): _media_dir,
        vol.Optional("products", default=list): vol.Any(None, list),
    },
    extra=vol.ALLOW_EXTRA,  # the rest (price_lists) is the caller's
)


def validate_products(
    products: list[Any],
    languages: Iterable[str],
    *,
    media_dir: str | Path,
    infer_media_dir: bool = True,
    path: list[Any] | None = None,
) -> list[dict[str, Any]]:
    """Validate a list of products; every error at its item, duplicates at their ``sku``.

    With ``infer_media_dir`` the media folder is ``media_dir`` inside the configuration
    folder each path was loaded from. Raises ``vol.MultipleInvalid``.
    """
    prefix = list(path or [])
    schema = (
        product_schema(languages, None, infer_media_dir=str(media_dir))
        if infer_media_dir
        else product_schema(languages, Path(media_dir))
    )
    errors: list[vol.Invalid] = []
    valid: list[dict[str, Any]] = []
    first_at: dict[str, tuple[int, Any]] = {}
    for index, item in enumerate(products):
        raw_sku = item.get("sku") if isinstance(item, Mapping) else None
        try:
            code = sku(raw_sku) if raw_sku is not None else None
        except vol.Invalid:
            code = None  # the schema says what is wrong with it
        if code is not None and code in first_at:
            first_index, first_value = first_at[code]
            where = getattr(first_value, "source", None)
            errors.append(
                vol.Invalid(
                    f"duplicate sku {code!r}: product {first_index + 1} has it already"
                    + (f" (at {where})" if where is not None else ""),
                    path=[*prefix, index, "sku"],
                    error_type="duplicate",
                )
            )
            continue
        if code is not None:
            first_at[code] = (index, raw_sku)
        try:
            valid.append(schema(item))
        except vol.MultipleInvalid as error:
            for inner in error.errors:
                inner.prepend([*prefix, index])
                errors.append(inner)
        except vol.Invalid as error:
            error.prepend([*prefix, index])
            errors.append(error)
    if errors:
        raise vol.MultipleInvalid(errors)
    return valid


def catalog_schema(extra: Mapping[Any, Any] | None = None) -> vol.Schema:
    """The ``catalog:`` block: a list of products, or a mapping with ``products``,
    ``languages`` (default en, ru), ``default_language``, ``media_dir`` and ``extra`` keys."""
    extra_schema = vol.Schema(dict(extra or {}))

    def validate(block: Any) -> dict[str, Any]:
        if block is None:
            block = {}
        listed = isinstance(block, list)
        settings = SETTINGS_SCHEMA({"products": block} if listed else block)
        languages = settings["languages"]
        if settings["default_language"] not in languages:
            raise vol.Invalid(
                f"the default language {settings['default_language']!r} is not one of the "
                f"catalog's languages ({', '.join(languages)})",
                path=["default_language"],
            )
        products = validate_products(
            list(settings["products"] or []),
            languages,
            media_dir=settings["media_dir"],
            path=[] if listed else ["products"],
        )
        own = {key: settings[key] for key in ("languages", "default_language", "media_dir")}
        rest = {
            key: value for key, value in settings.items() if key not in own and key != "products"
        }
        return {**own, "products": products, **extra_schema(rest)}

    return vol.Schema(validate)


# ---- the recorder's tables ----------------------------------------------------------------


def _mime_type(reference: str) -> str:
    guessed, _ = mimetypes.guess_type(urlsplit(reference).path)
    return guessed or "application/octet-stream"


def write_products(session: Session, products: Iterable[Product], now_ts: float) -> int:
    """Insert or update products with their translations and image; returns how many."""
    from sqlalchemy import delete, select

    from vendhub.recorder.models.catalog import Product as ProductRow
    from vendhub.recorder.models.catalog import ProductImage, ProductTranslation

    count = 0
    for product in products:
        row = session.scalars(select(ProductRow).where(ProductRow.sku == product.sku)).first()
        if row is None:
            row = ProductRow(sku=product.sku, created_ts=now_ts)
            session.add(row)
        row.default_name = product.name
        row.category = product.category
        row.tags = json.dumps(list(product.tags))
        row.allergens = json.dumps(list(product.allergens))
        row.active = True
        session.flush()
        session.execute(delete(ProductTranslation).where(ProductTranslation.product_id == row.id))
        session.execute(delete(ProductImage).where(ProductImage.product_id == row.id))
        for language, name in product.names.items():
            session.add(ProductTranslation(product_id=row.id, language=language, name=name))
        if product.image is not None:
            session.add(
                ProductImage(
                    product_id=row.id,
                    url=product.image,
                    mime_type=_mime_type(product.image),
                    sort_order=0,
                )
            )
        count += 1
    return count


def remove_product_row(session: Session, sku_value: str) -> str:
    """Delete a product; one a planogram still refers to is only made inactive.

    Returns ``"deleted"``, ``"deactivated"`` or ``"absent"``.
    """
    from sqlalchemy import func, select

    from vendhub.recorder.models.catalog import Product as ProductRow
    from vendhub.recorder.models.fleet import PlanogramSlot

    row = session.scalars(select(ProductRow).where(ProductRow.sku == sku_value)).first()
    if row is None:
        return "absent"
    used = session.scalar(
        select(func.count())
        .select_from(PlanogramSlot)
        .where(PlanogramSlot.product_sku == sku_value)
    )
    if used:
        row.active = False
        return "deactivated"
    session.delete(row)
    return "deleted"


def deactivate_others(session: Session, keep: Iterable[str]) -> int:
    """Mark products not in ``keep`` inactive (a product left out of the YAML)."""
    from sqlalchemy import select

    from vendhub.recorder.models.catalog import Product as ProductRow

    kept = set(keep)
    count = 0
    for row in session.scalars(select(ProductRow).where(ProductRow.active.is_(True))):
        if row.sku not in kept:
            row.active = False
            count += 1
    return count


def read_products(session: Session, *, active_only: bool = True) -> list[Product]:
    """The products in the database, by SKU, with their names and first image."""
    from sqlalchemy import select

    from vendhub.recorder.models.catalog import Product as ProductRow
    from vendhub.recorder.models.catalog import ProductImage, ProductTranslation

    query = select(ProductRow).order_by(ProductRow.sku)
    if active_only:
        query = query.where(ProductRow.active.is_(True))
    products = []
    for row in session.scalars(query):
        names = {
            translation.language: translation.name
            for translation in session.scalars(
                select(ProductTranslation).where(ProductTranslation.product_id == row.id)
            )
        }
        image = session.scalars(
            select(ProductImage)
            .where(ProductImage.product_id == row.id)
            .order_by(ProductImage.sort_order)
        ).first()
        products.append(
            Product(
                sku=row.sku,
                name=row.default_name,
                names=names,
                image=image.url if image is not None else None,
                category=row.category,
                allergens=tuple(json.loads(row.allergens or "[]")),
                tags=tuple(json.loads(row.tags or "[]")),
            )
        )
    return products
