"""The product catalog: names per language with fallbacks, validation, upsert and remove."""

from __future__ import annotations

from pathlib import Path

import pytest
import voluptuous as vol

from vendhub.vending.catalog import (
    Catalog,
    CatalogError,
    Product,
    catalog_schema,
    image_reference,
    validate_products,
)

COLA = Product("cola_330", "Cola 0.33 l", names={"ru": "Кола 0,33 л", "pt": "Cola"})


def test_names_fall_back_to_the_base_language_then_the_default_name() -> None:
    assert COLA.name_in("ru") == "Кола 0,33 л"
    assert COLA.name_in("pt_BR") == "Cola"  # the base language
    assert COLA.name_in("de") == "Cola 0.33 l"  # the default name
    catalog = Catalog([COLA])
    assert catalog.name("cola_330") == "Cola 0.33 l"
    assert catalog.name("cola_330", "ru") == "Кола 0,33 л"
    with pytest.raises(CatalogError, match="no product with sku 'tea'"):
        catalog.name("tea")


def test_upsert_replaces_and_remove_says_what_there_is() -> None:
    catalog = Catalog([COLA])
    assert catalog.upsert(Product("tea", "Tea")) is True
    assert catalog.upsert(Product("tea", "Green tea")) is False
    assert catalog.name("tea") == "Green tea" and len(catalog) == 2
    assert catalog.remove("tea").name == "Green tea"
    with pytest.raises(CatalogError, match="known: cola_330"):
        catalog.remove("tea")
    with pytest.raises(CatalogError, match="duplicate sku 'cola_330'"):
        Catalog([COLA, COLA])


def test_a_product_round_trips_through_its_json_data() -> None:
    product = Product(
        "bar", "Bar", names={"ru": "Батончик"}, image="bars/bar.png", category="snacks",
        allergens=("nuts",), tags=("sweet",),
    )  # fmt: skip
    assert Product.from_dict(product.as_dict()) == product


def test_images_are_urls_or_files_inside_the_media_folder(tmp_path: Path) -> None:
    (tmp_path / "drinks").mkdir()
    (tmp_path / "drinks" / "cola.png").write_bytes(b"png")
    assert image_reference("drinks/cola.png", tmp_path) == "drinks/cola.png"
    assert image_reference("https://cdn.example.com/a.jpg", tmp_path).startswith("https://")
    for bad, message in [
        ("drinks/tea.png", "no image file drinks/tea.png"),
        ("/etc/passwd.png", "stays inside it"),
        ("drinks/../../x.png", "stays inside it"),
        ("drinks/cola.exe", "an image must be one of"),
        ("file:///etc/x.png", "http:// or https://"),
        ("", "expected an image path"),
    ]:
        with pytest.raises(vol.Invalid, match=message):
            image_reference(bad, tmp_path)


def test_product_errors_are_reported_at_their_item(tmp_path: Path) -> None:
    products = [
        {"sku": "a", "name": "A", "names": {"xx_Y": "?"}},
        {"sku": "b", "name": "B", "allergens": "Gluten!"},
        {"sku": "a", "name": "A again"},
        {"sku": "c d", "name": "C"},
    ]
    with pytest.raises(vol.MultipleInvalid) as caught:
        validate_products(products, ["en", "ru"], media_dir=tmp_path, infer_media_dir=False)
    found = sorted((tuple(e.path), e.error_message) for e in caught.value.errors)
    assert [path for path, _ in found] == [
        (0, "names", "xx_Y"),
        (1, "allergens", 0),
        (2, "sku"),
        (3, "sku"),
    ]
    assert "expected a language code" in found[0][1]
    assert "duplicate sku 'a': product 1 has it already" in found[2][1]


def test_the_block_is_a_list_or_a_mapping() -> None:
    schema = catalog_schema()
    listed = schema([{"sku": "tea", "name": "Tea", "names": {"ru": "Чай"}, "tags": "Hot"}])
    assert listed["products"][0]["tags"] == ["hot"]
    assert listed["languages"] == ["en", "ru"] and listed["media_dir"] == "media"
    mapped = schema({"languages": ["en", "de"], "products": [{"sku": "t", "name": "T"}]})
    assert mapped["languages"] == ["en", "de"]
    with pytest.raises(vol.Invalid, match="unknown language 'ru'"):
        schema(
            {
                "languages": ["en", "de"],
                "products": [{"sku": "t", "name": "T", "names": {"ru": "Чай"}}],
            }
        )
    with pytest.raises(vol.Invalid, match="inside the configuration folder"):
        schema({"media_dir": "../elsewhere"})
