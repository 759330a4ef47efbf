"""``/api/audit``: the audit log (who changed what and when), for those who manage the hub."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from vendhub.auth.roles import Permission
from vendhub.core.context import ACTOR_TYPES
from vendhub.http.api.filters import (
    NULLABLE_STRING,
    PAGED_QUERY,
    TIMESTAMP_STRING,
    UNAVAILABLE_RESPONSE,
    before_id,
    optional_time,
    page_answer,
    page_schema,
    recorder_of,
)
from vendhub.http.api.ledger import RANGE_QUERY, text
from vendhub.http.errors import bad_request
from vendhub.http.view import ApiView, operation, query
from vendhub.recorder.audit import async_audit_log

AUDIT_ENTRY: dict[str, Any] = {
    "type": "object",
    "required": [
        "id",
        "time",
        "actor_type",
        "actor_id",
        "action",
        "target_type",
        "target_id",
        "before",
        "after",
        "context_id",
        "remote_address",
    ],
    "properties": {
        "id": {"type": "integer"},
        "time": TIMESTAMP_STRING,
        "actor_type": {"type": "string", "description": ", ".join(ACTOR_TYPES)},
        "actor_id": NULLABLE_STRING,
        "action": {"type": "string", "description": "e.g. vending.set_price, auth.login"},
        "target_type": NULLABLE_STRING,
        "target_id": NULLABLE_STRING,
        "before": {"description": "The target before (secrets redacted); any JSON."},
        "after": {"description": "The target after, the call's data and result; any JSON."},
        "context_id": NULLABLE_STRING,
        "remote_address": NULLABLE_STRING,
    },
}


class AuditView(ApiView):
    url = "/api/audit"
    name = "api:audit"

    @operation(
        summary="The audit log, newest first, with filters; paged with `before`.",
        permission=Permission.manage_hub,
        query={
            "actor_type": {"enum": list(ACTOR_TYPES)},
            "actor_id": text(64, "A user, token or machine id."),
            "action": text(64, "e.g. vending.set_price"),
            "target_type": text(32, "e.g. entity, machine, user"),
            "target_id": text(255, "The target's id."),
            **RANGE_QUERY,
            **PAGED_QUERY,
        },
        responses={200: page_schema(AUDIT_ENTRY), 503: UNAVAILABLE_RESPONSE},
        tags=("audit",),
    )
    async def get(self, request: web.Request) -> web.Response:
        recorder_of(self.hub)
        values = query(request)
        filters = {
            key: values[key]
            for key in ("actor_type", "actor_id", "action", "target_type", "target_id")
            if key in values
        }
        try:
            page = await async_audit_log(
                self.hub,
                **filters,
                since=optional_time(values, "since"),
                until=optional_time(values, "until"),
                limit=values.get("limit", 100),
                before_id=before_id(values),
            )
        except ValueError as error:
            raise bad_request(str(error)) from None
        return page_answer(request, [row.as_dict() for row in page.items], page.next_before_id)


VIEWS = (AuditView,)
