"""slugify: any text to an object id."""

import pytest

from vendhub.core.states import valid_entity_id
from vendhub.util.slug import slugify


@pytest.mark.parametrize(
    ("text", "slug"),
    [
        ("Lobby 1", "lobby_1"),
        ("Café Crème", "cafe_creme"),
        ("Straße Ølberg Æble Łódź", "strasse_olberg_aeble_lodz"),
        ("  Snack--Automat  #3 ", "snack_automat_3"),
        ("__already_slug__", "already_slug"),
        ("Temp (°C)", "temp_c"),
        ("lobby_1:A1", "lobby_1_a1"),
        ("ÀÉÎÕÜ ñ ç", "aeiou_n_c"),
        ("", "unnamed"),
        ("!!!", "unnamed"),
        ("日本", "unnamed"),
        ("42", "42"),
    ],
)
def test_slugify(text: str, slug: str) -> None:
    assert slugify(text) == slug


def test_every_slug_makes_a_valid_entity_id() -> None:
    for text in ["a__b", "_x_", "Ä-Ö-Ü", "x" * 3, "A.B.C", "tab\tnew\nline"]:
        assert valid_entity_id(f"sensor.{slugify(text)}"), text
