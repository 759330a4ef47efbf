"""Turn any text into a slug usable as an entity's object id: lower-case a-z, 0-9 and ``_``."""

from __future__ import annotations

import re
import unicodedata

# Letters that Unicode decomposition does not reduce to ASCII.
_TRANSLITERATIONS = str.maketrans(
    {
        "ß": "ss",
        "æ": "ae",
        "œ": "oe",
        "ø": "o",
        "đ": "d",
        "ð": "d",
        "ł": "l",
        "þ": "th",
        "\u0131": "i",  # dotless i
    }
)
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(text: str) -> str:
    """Return ``text`` as a slug: ``"Lobby 1 / Café"`` becomes ``"lobby_1_cafe"``.

    Accents are dropped, every run of other characters becomes one ``_``, and leading and
    trailing ``_`` are stripped. Text with nothing left gives ``"unnamed"``.
    """
    decomposed = unicodedata.normalize("NFKD", text.lower().translate(_TRANSLITERATIONS))
    ascii_text = decomposed.encode("ascii", "ignore").decode("ascii")
    return _NOT_SLUG.sub("_", ascii_text).strip("_") or "unnamed"
