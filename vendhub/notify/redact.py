"""Keeping secrets out of logs: moved to ``vendhub.util.redact``; this name keeps working."""

from __future__ import annotations

from vendhub.util.redact import REDACTED, Redactor, safe_url, url_secrets

__all__ = ["REDACTED", "Redactor", "safe_url", "url_secrets"]
