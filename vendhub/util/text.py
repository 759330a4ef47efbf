"""Text for messages: what a person reads in a log line or an error."""

from __future__ import annotations

MESSAGE_QUOTE_LIMIT = 80
"""How much of a value from outside (a request, a file) a message quotes."""


def shorten(text: str, limit: int = MESSAGE_QUOTE_LIMIT) -> str:
    """``text`` cut to ``limit`` characters, the last one "…" when cut (an error message does
    not send a 100 000-character input back, nor fill a log line with it)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
