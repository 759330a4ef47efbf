"""The ``catalog:`` block read through the real YAML loader: errors name file and line."""

from __future__ import annotations

from pathlib import Path

from vendhub.bootstrap import prepare

PRODUCTS = """\
- sku: cola_330
  name: Cola 0.33 l
  names: {ru: "Кола 0,33 л"}
  image: drinks/cola.png
  category: drinks
  allergens: []
  tags: [cold, sugar]
- sku: water_500
  name: Still water 0.5 l
  names:
    ru: Вода 0,5 л
  image: https://cdn.example.com/water.webp
"""


def write(folder: Path, configuration: str, **files: str) -> Path:
    (folder / "configuration.yaml").write_text(configuration, encoding="utf-8")
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def issues(folder: Path) -> list[str]:
    return sorted(str(issue) for issue in prepare(folder).issues)


def test_a_valid_catalog_from_an_included_list(tmp_path: Path) -> None:
    (tmp_path / "media" / "drinks").mkdir(parents=True)
    (tmp_path / "media" / "drinks" / "cola.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    write(tmp_path, "catalog: !include products.yaml\n", **{"products.yaml": PRODUCTS})
    prepared = prepare(tmp_path)
    assert prepared.issues == []
    config = prepared.plan.configs["catalog"]
    assert [product["sku"] for product in config["products"]] == ["cola_330", "water_500"]
    cola = config["products"][0]
    assert cola["names"] == {"ru": "Кола 0,33 л"} and cola["image"] == "drinks/cola.png"
    assert (cola["allergens"], cola["tags"]) == ([], ["cold", "sugar"])
    assert (config["languages"], config["default_language"]) == (["en", "ru"], "en")
    assert config["price_lists"] == {}


def test_duplicate_skus_unknown_languages_and_bad_images_name_file_and_line(
    tmp_path: Path,
) -> None:
    (tmp_path / "media").mkdir()
    bad = """\
- sku: cola_330
  name: Cola
  image: cola.png
- sku: tea
  name: Tea
  names: {de: Tee}
- sku: cola_330
  name: Cola again
- sku: crisps
  name: Crisps
  image: ../secrets/crisps.png
- sku: bar
  name: Bar
  image: ftp://example.com/bar.png
- name: No sku
"""
    write(tmp_path, "catalog: !include products.yaml\n", **{"products.yaml": bad})
    found = issues(tmp_path)
    joined = "\n".join(found)
    assert "products.yaml:3" in joined and "no image file cola.png in the media folder" in joined
    assert "products.yaml:6" in joined and "unknown language 'de'" in joined
    assert "this catalog has en, ru" in joined
    assert "products.yaml:7" in joined
    assert "duplicate sku 'cola_330': product 1 has it already (at products.yaml:1)" in joined
    assert "products.yaml:11" in joined and "stays inside it" in joined
    assert "products.yaml:14" in joined and "http:// or https://" in joined
    assert "products.yaml:15" in joined and "required key 'sku' is missing" in joined
    assert len(found) == 6, found


def test_the_mapping_form_with_languages_and_price_lists(tmp_path: Path) -> None:
    configuration = """\
catalog:
  languages: [en, ru, de]
  default_language: en
  products:
    - sku: tea
      name: Tea
      names: {de: Tee, ru: Чай}
  price_lists:
    office:
      machines: [lobby_1]
      rules:
        - days: weekdays
          start: "15:00"
          end: "17:00"
          discount: 20
        - start: "25:00"
          price: 100
"""
    write(tmp_path, configuration)
    found = issues(tmp_path)
    assert len(found) == 1, found
    assert found[0].startswith("configuration.yaml:16")
    assert "time of day such as '15:00'" in found[0]


def test_the_default_language_must_be_one_of_the_languages(tmp_path: Path) -> None:
    write(tmp_path, "catalog:\n  languages: [ru]\n  default_language: en\n  products: []\n")
    found = issues(tmp_path)
    assert len(found) == 1 and found[0].startswith("configuration.yaml:3"), found
    assert "the default language 'en' is not one of the catalog's languages (ru)" in found[0]
