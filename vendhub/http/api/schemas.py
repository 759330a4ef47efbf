"""JSON Schemas shared by several resources."""

from __future__ import annotations

from typing import Any

ID = {"type": "string", "minLength": 1, "maxLength": 64}
MACHINE_ID = {"type": "string", "pattern": "^[a-z0-9_]{1,64}$"}
TIMESTAMP = {"type": "number", "description": "Seconds since the Unix epoch (UTC)."}
OK: dict[str, Any] = {
    "type": "object",
    "required": ["ok"],
    "properties": {"ok": {"type": "boolean"}},
}
TOKEN_GRANT: dict[str, Any] = {
    "type": "object",
    "required": ["access_token", "token_type", "expires_in"],
    "properties": {
        "access_token": {"type": "string"},
        "token_type": {"const": "Bearer"},
        "expires_in": {"type": "integer"},
        "refresh_token": {"type": "string"},
    },
}
PASSWORD = {"type": "string", "minLength": 1, "maxLength": 1024}
NEW_PASSWORD = {
    "type": "string",
    "minLength": 10,
    "maxLength": 1024,
    "description": "At least 10 characters, and not the username.",
}
USERNAME = {"type": "string", "minLength": 1, "maxLength": 64}
NEW_USERNAME = {
    "type": "string",
    "pattern": "^[a-z0-9][a-z0-9_.@-]{1,63}$",
    "description": "2 to 64 lowercase letters, digits, '_', '.', '@' or '-'.",
}
ROLE = {"enum": ["owner", "admin", "operator", "technician", "viewer"]}
USER: dict[str, Any] = {
    "type": "object",
    "required": ["id", "username", "name", "role", "active", "created"],
    "properties": {
        "id": {"type": "string"},
        "username": {"type": "string"},
        "name": {"type": "string"},
        "role": ROLE,
        "active": {"type": "boolean"},
        "created": TIMESTAMP,
        "last_login": {"type": ["number", "null"]},
        "machine_ids": {"type": ["array", "null"], "items": {"type": "string"}},
    },
}
PAGE_LIMIT = {"type": "integer", "minimum": 1, "maximum": 1000}
