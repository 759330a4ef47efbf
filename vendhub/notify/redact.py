"""Keeping secrets out of logs, events and service results."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote_plus, urlsplit

REDACTED = "**REDACTED**"
# Shorter values would blank out ordinary words; config validation refuses none of them,
# but such a "secret" protects nothing anyway.
_MIN_LENGTH = 3
_CREDENTIAL_NAME = re.compile(r"key|token|secret|pass|pwd|auth|sig|sid|session", re.IGNORECASE)


class Redactor:
    """Replaces every known secret value in a text with ``**REDACTED**``."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Add more values to hide; longer values are replaced first.

        A secret URL also hides the forms logs show of it: without its query, and its path.
        """
        known = set(self._secrets)
        for value in secrets:
            if value is None:
                continue
            text = str(value)
            known.add(text)
            if "://" in text:
                known.add(safe_url(text))
                path = urlsplit(text).path
                if len(path) > 1:
                    known.add(path)
        self._secrets = sorted(
            (value for value in known if len(value) >= _MIN_LENGTH), key=len, reverse=True
        )

    def __call__(self, text: object) -> str:
        result = str(text)
        for secret in self._secrets:
            if secret in result:
                result = result.replace(secret, REDACTED)
        return result

    def __len__(self) -> int:
        return len(self._secrets)


def url_secrets(url: str) -> list[str]:
    """Parts of a URL that may be credentials: its password, its query string, and the
    values of query parameters named like credentials (``api_key=``, ``token=``, ...)."""
    parts = urlsplit(url)
    found = []
    if parts.password:
        found.append(parts.password)
    if parts.query:
        found.append(parts.query)
        for pair in parts.query.split("&"):
            key, _, value = pair.partition("=")
            if value and "{" not in value and _CREDENTIAL_NAME.search(key):
                found.append(unquote_plus(value))
                found.append(value)
    return found


def safe_url(url: str) -> str:
    """The URL without credentials and query, for log lines: ``https://host:8080/path``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    query = "?…" if parts.query else ""
    return f"{parts.scheme}://{host}{parts.path}{query}"
