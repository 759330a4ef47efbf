"""The notify services: ``send``, the dead-letter list, and cancelling an escalation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from vendhub.automation.template import Template, TemplateError
from vendhub.core.errors import InvalidServiceData
from vendhub.notify.const import (
    DOMAIN,
    SERVICE_CANCEL_ESCALATION,
    SERVICE_CLEAR_DEAD_LETTERS,
    SERVICE_DEAD_LETTERS,
    SERVICE_RESEND_DEAD_LETTERS,
    SERVICE_SEND,
)
from vendhub.notify.schema import (
    CANCEL_ESCALATION_SCHEMA,
    DEAD_LETTER_IDS_SCHEMA,
    send_schema,
)

if TYPE_CHECKING:
    from vendhub.core.hub import Hub
    from vendhub.core.services import ServiceCall
    from vendhub.notify.runtime import NotifyRuntime


def render_text(
    hub: Hub, source: str | None, name: str, variables: Mapping[str, Any]
) -> str | None:
    """Render a message or title template (plain text passes through unchanged).

    Raises ``TemplateError`` naming the template and line.
    """
    if source is None:
        return None
    return str(Template(source, hub, name=name).async_render(variables, parse_result=False))


def register_services(hub: Hub, runtime: NotifyRuntime) -> None:
    """Register the notify services for ``runtime``'s targets."""
    dispatcher = runtime.dispatcher

    async def send(call: ServiceCall) -> dict[str, Any]:
        """Send a notification to targets (or the default targets)."""
        data = call.data
        targets = list(data.get("target") or runtime.default_targets)
        if not targets:
            raise InvalidServiceData(
                DOMAIN,
                SERVICE_SEND,
                "no target given and there are no default targets; known targets: "
                + (", ".join(sorted(dispatcher.targets)) or "none are set up"),
            )
        variables = {
            "severity": data["severity"],
            "data": dict(data.get("data") or {}),
            "targets": targets,
            "dedupe_key": data.get("dedupe_key"),
        }
        try:
            message = render_text(hub, data["message"], "notify.send message", variables) or ""
            title = render_text(hub, data.get("title"), "notify.send title", variables)
        except TemplateError as error:  # the caller's template: a bad request, not an outage
            raise InvalidServiceData(DOMAIN, SERVICE_SEND, str(error)) from None
        return await dispatcher.async_send(
            message,
            targets,
            title=title or None,
            severity=data["severity"],
            data=data.get("data") or {},
            dedupe_key=data.get("dedupe_key"),
            context=call.context.child(),
            escalate=data.get("escalate"),
        )

    def dead_letters(call: ServiceCall) -> dict[str, Any]:
        """List the notifications that could not be delivered."""
        return {"dead_letters": [dict(letter) for letter in dispatcher.dead_letters]}

    async def resend_dead_letters(call: ServiceCall) -> dict[str, Any]:
        """Try dead letters again (all, or those with the given ids)."""
        return await dispatcher.async_resend_dead_letters(
            call.data.get("id"), context=call.context.child()
        )

    def clear_dead_letters(call: ServiceCall) -> dict[str, Any]:
        """Drop dead letters (all, or those with the given ids)."""
        return {"cleared": len(dispatcher.take_dead_letters(call.data.get("id")))}

    def cancel_escalation(call: ServiceCall) -> dict[str, Any]:
        """Cancel a pending escalation by the id notify.send returned."""
        return {
            "cancelled": dispatcher.escalations.cancel(call.data["id"], "notify.cancel_escalation")
        }

    services = hub.services
    services.async_register(
        DOMAIN, SERVICE_SEND, send, send_schema(dispatcher.targets, runtime.broken_targets)
    )
    services.async_register(DOMAIN, SERVICE_DEAD_LETTERS, dead_letters, {}, read_only=True)
    services.async_register(
        DOMAIN, SERVICE_RESEND_DEAD_LETTERS, resend_dead_letters, DEAD_LETTER_IDS_SCHEMA
    )
    services.async_register(
        DOMAIN, SERVICE_CLEAR_DEAD_LETTERS, clear_dead_letters, DEAD_LETTER_IDS_SCHEMA
    )
    services.async_register(
        DOMAIN, SERVICE_CANCEL_ESCALATION, cancel_escalation, CANCEL_ESCALATION_SCHEMA
    )
