"""Keeping secrets out of logs, events, service results and the audit log.

Two ways: ``Redactor`` hides values known to be secret (from ``!secret``, a URL's password)
wherever they appear in a text; ``redact_data`` hides what looks secret in structured data
(values under keys such as ``password`` or ``api_key``, card numbers, bearer tokens and URL
credentials), for data whose secrets nobody declared, such as a service call's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time
from typing import Any
from urllib.parse import unquote_plus, urlsplit

REDACTED = "**REDACTED**"
# What ``redact_data`` puts in place of a secret.
MASK = "***"
# Shorter values would blank out ordinary words; config validation refuses none of them,
# but such a "secret" protects nothing anyway.
_MIN_LENGTH = 3
_CREDENTIAL_NAME = re.compile(r"key|token|secret|pass|pwd|auth|sig|sid|session", re.IGNORECASE)


class Redactor:
    """Replaces every known secret value in a text with ``**REDACTED**`` (or ``mask``)."""

    def __init__(self, secrets: Iterable[str] = (), mask: str = REDACTED) -> None:
        self._secrets: list[str] = []
        self.mask = mask
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
                result = result.replace(secret, self.mask)
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


# ---- structured data -----------------------------------------------------------------------

# A key is secret when one of its words is one of these ...
_SECRET_WORDS = frozenset(
    {
        "auth",
        "authorization",
        "cookie",
        "credential",
        "credentials",
        "cvc",
        "cvv",
        "cvv2",
        "otp",
        "pan",
        "passcode",
        "passphrase",
        "passwd",
        "password",
        "pin",
        "pwd",
        "secret",
        "secrets",
        "signature",
        "token",
        "tokens",
    }
)
# ... or its words run together contain one of these (``api_key``, ``clientSecret``, ...).
_SECRET_PARTS = (
    "accesskey",
    "apikey",
    "authtoken",
    "cardnumber",
    "password",
    "privatekey",
    "secret",
    "token",
)
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
# 13 to 19 digits, maybe grouped by spaces or dashes, not part of a longer number.
_CARD_NUMBER = re.compile(r"(?<![\d.])\d(?:[ -]?\d){12,18}(?![\d.])")
_BEARER = re.compile(r"\b(Bearer|Basic|Token)\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)
_MAX_DEPTH = 20


def is_secret_key(key: object) -> bool:
    """Whether a mapping key names a secret: ``password``, ``api_key``, ``X-Auth-Token``, ..."""
    if not isinstance(key, str):
        return False
    words = [word.lower() for word in _WORD.findall(key)]
    if any(word in _SECRET_WORDS for word in words):
        return True
    if words and words[-1] == "key":  # api_key, private_key, signing_key, key
        return True
    joined = "".join(words)
    return any(part in joined for part in _SECRET_PARTS)


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn check every payment card number passes."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _mask_card_number(match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group(0))
    return MASK if luhn_valid(digits) else match.group(0)


def redact_text(text: str) -> str:
    """``text`` without card numbers, bearer tokens and URL credentials (each becomes ``***``)."""
    if any(char.isdigit() for char in text):
        text = _CARD_NUMBER.sub(_mask_card_number, text)
    if "://" in text:
        for secret in sorted(url_secrets_in(text), key=len, reverse=True):
            text = text.replace(secret, MASK)
    return _BEARER.sub(lambda match: f"{match.group(1)} {MASK}", text)


def url_secrets_in(text: str) -> list[str]:
    """The credentials of every URL in ``text`` (see ``url_secrets``)."""
    found: list[str] = []
    for word in text.split():
        if "://" in word:
            try:
                found.extend(url_secrets(word))
            except ValueError:  # not a URL after all (an invalid port, a bad IPv6 host)
                continue
    return found


def secret_values(value: Any, *, _depth: int = 0) -> list[str]:
    """The values found under secret-looking keys of ``value`` (at any depth), as strings.

    Give them to a ``Redactor`` to hide the same secrets where they are repeated under an
    innocent name, or inside a message.
    """
    found: list[str] = []
    if _depth >= _MAX_DEPTH:
        return found
    if isinstance(value, Mapping):
        for key, item in value.items():
            if is_secret_key(key):
                found.extend(_scalars(item))
            else:
                found.extend(secret_values(item, _depth=_depth + 1))
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            found.extend(secret_values(item, _depth=_depth + 1))
    return found


def _scalars(value: Any, depth: int = 0) -> list[str]:
    if value is None or isinstance(value, bool) or depth >= _MAX_DEPTH:
        return []
    if isinstance(value, Mapping):
        return [text for item in value.values() for text in _scalars(item, depth + 1)]
    if isinstance(value, list | tuple | set | frozenset):
        return [text for item in value for text in _scalars(item, depth + 1)]
    return [str(value)]


def redact_data(value: Any, known: Redactor | None = None, *, _depth: int = 0) -> Any:
    """A JSON-ready copy of ``value`` with what looks secret replaced by ``***``.

    Values under secret-looking keys (``is_secret_key``) are masked whole, whatever they are;
    strings lose card numbers (13 to 19 digits that pass the Luhn check), bearer tokens, the
    credentials of URLs and the values ``known`` holds; integers that are card numbers are
    masked too. Mappings become dicts with string keys, sequences and sets become lists,
    datetimes ISO 8601 strings, objects with ``as_dict()`` (states, events) their dict;
    anything else its ``str()``.
    """
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, str):
        text = redact_text(value)
        return known(text) if known else text
    if isinstance(value, int):
        digits = str(abs(value))
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            return MASK
        return MASK if known and known(digits) != digits else value
    if _depth >= _MAX_DEPTH:
        return MASK
    if hasattr(value, "as_dict") and not isinstance(value, Mapping):
        value = value.as_dict()
    if isinstance(value, Mapping):
        return {
            str(key): MASK if is_secret_key(key) else redact_data(item, known, _depth=_depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_data(item, known, _depth=_depth + 1) for item in value]
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return redact_data(str(value), known)
