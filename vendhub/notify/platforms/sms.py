"""SMS through a generic HTTP gateway: URL, method, headers and a Jinja body template."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus, urlencode

import jinja2
import voluptuous as vol
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from vendhub.config import validators as cv
from vendhub.notify.http import async_request, raise_for_status
from vendhub.notify.models import DeliveryError, Notification
from vendhub.notify.platform import NotifyPlatform, async_send_each
from vendhub.notify.redact import safe_url

FORMATS = ("json", "form", "text")
VARIABLES = frozenset({"to", "message", "title", "text", "severity", "target", "id", "data"})
_CONTENT_TYPES = {
    "json": "application/json; charset=utf-8",
    "form": "application/x-www-form-urlencoded",
    "text": "text/plain; charset=utf-8",
}


def _plain(value: Any) -> str:
    return "" if value is None else str(value)


def _json_inside(value: Any) -> str:
    """A value as it goes into a JSON document: strings escaped to sit inside quotes."""
    if isinstance(value, Markup):  # already JSON, e.g. from the tojson filter
        return str(value)
    if value is None:
        return ""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)[1:-1]
    return json.dumps(value, ensure_ascii=False, default=str)


_FINALIZERS: dict[str, Callable[[Any], str]] = {
    "json": _json_inside,
    "form": lambda value: quote_plus(_plain(value)),
    "text": _plain,
    "url": lambda value: quote(_plain(value), safe=""),
}


def _environment(kind: str) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        undefined=jinja2.StrictUndefined, finalize=_FINALIZERS[kind], autoescape=False
    )


_ENVIRONMENTS = {kind: _environment(kind) for kind in _FINALIZERS}


def guess_format(body: str | Mapping[str, Any] | None) -> str:
    """``json`` for a mapping or text starting with ``{`` (not a template tag) or ``[``,
    ``form`` for ``a=b&c=d``, else ``text``."""
    if body is None or isinstance(body, Mapping):
        return "json"
    stripped = body.strip()
    if stripped.startswith("[") or (
        stripped.startswith("{") and not stripped.startswith(("{{", "{%", "{#"))
    ):
        return "json"
    if "=" in stripped and "\n" not in stripped:
        return "form"
    return "text"


def _check_template(source: str, path: list[Any]) -> None:
    try:
        parsed = _ENVIRONMENTS["text"].parse(source)
    except jinja2.TemplateSyntaxError as error:
        raise vol.Invalid(
            f"template error on line {error.lineno}: {error.message}", path=path
        ) from None
    unknown = meta.find_undeclared_variables(parsed) - VARIABLES
    if unknown:
        raise vol.Invalid(
            f"unknown template variable(s) {', '.join(sorted(unknown))}; "
            f"available: {', '.join(sorted(VARIABLES))}",
            path=path,
        )


class SmsPlatform(NotifyPlatform):
    """One HTTP request per recipient.

    ``url`` and ``body`` are Jinja templates with ``to``, ``message``, ``title``, ``text``
    (title and message), ``severity``, ``target``, ``id`` and ``data``. Values are escaped for
    where they land: inside a JSON body ``"{{ message }}"`` stays valid JSON whatever the
    message holds, in a form body and in the URL they are percent-encoded. ``body`` may also
    be a mapping of field to template, sent as JSON or as a form.
    """

    platform = "sms"
    OPTIONS = {
        vol.Required("url"): cv.string,
        vol.Optional("method", default="POST"): vol.All(
            cv.string, vol.Upper, vol.In(["GET", "POST", "PUT"])
        ),
        vol.Optional("headers", default=dict): {cv.string: cv.string},
        vol.Optional("body"): vol.Any(cv.string, {cv.string: vol.Any(cv.string, int, float)}),
        vol.Optional("body_format"): cv.one_of(*FORMATS),
        vol.Required("recipients"): vol.All(cv.ensure_list, vol.Length(min=1), [cv.string]),
        vol.Optional("verify_tls", default=True): cv.boolean,
    }
    SECRET_OPTIONS = ("headers",)
    URL_OPTIONS = ("url",)

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        try:
            cv.url(config["url"].split("{", 1)[0])
        except vol.Invalid as error:
            raise vol.Invalid(
                f"{error.msg}; the scheme and host of the gateway URL cannot be templates",
                path=["url"],
            ) from None
        _check_template(config["url"], ["url"])
        body = config.get("body")
        if isinstance(body, str):
            _check_template(body, ["body"])
        elif isinstance(body, Mapping):
            for key, value in body.items():
                if isinstance(value, str):
                    _check_template(value, ["body", key])
        if body is not None and config["method"] == "GET":
            raise vol.Invalid("a GET request has no body; put the fields in the url", ["body"])
        config.setdefault("body_format", guess_format(body))
        return config

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._url = _ENVIRONMENTS["url"].from_string(self.config["url"])
        body = self.config.get("body")
        body_format = self.config["body_format"]
        self._body: jinja2.Template | dict[str, Any] | None
        if isinstance(body, str):
            self._body = _ENVIRONMENTS[body_format].from_string(body)
        elif isinstance(body, Mapping):
            self._body = {
                key: _ENVIRONMENTS["text"].from_string(value) if isinstance(value, str) else value
                for key, value in body.items()
            }
        else:
            self._body = None

    def describe(self) -> str:
        return f"sms gateway {safe_url(self.config['url'].split('{', 1)[0])}"

    def variables(self, notification: Notification, recipient: str) -> dict[str, Any]:
        return {
            "to": recipient,
            "message": notification.message,
            "title": notification.title or "",
            "text": notification.text,
            "severity": notification.severity,
            "target": notification.target,
            "id": notification.id,
            "data": dict(notification.data),
        }

    def render_body(self, variables: Mapping[str, Any]) -> str | None:
        """The request body for one recipient (None for none)."""
        if self._body is None:
            return None
        if isinstance(self._body, jinja2.Template):
            return self._body.render(variables)
        fields = {
            key: value.render(variables) if isinstance(value, jinja2.Template) else value
            for key, value in self._body.items()
        }
        if self.config["body_format"] == "form":
            return urlencode(fields)
        return json.dumps(fields, ensure_ascii=False)

    async def async_send(self, notification: Notification) -> None:
        await async_send_each(
            notification,
            self.config["recipients"],
            lambda recipient: self._async_send_one(notification, recipient),
        )

    async def _async_send_one(self, notification: Notification, recipient: str) -> None:
        variables = self.variables(notification, recipient)
        try:
            url = self._url.render(variables)
            body = self.render_body(variables)
        except jinja2.TemplateError as error:
            raise DeliveryError(
                f"the gateway request template failed: {error}", retryable=False
            ) from None
        headers = dict(self.config["headers"])
        if body is not None and not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = _CONTENT_TYPES[self.config["body_format"]]
        shown = safe_url(url)
        reply = await async_request(
            self.session,
            self.config["method"],
            url,
            shown_url=shown,
            timeout=self.timeout,
            data=body.encode("utf-8") if body is not None else None,
            headers=headers,
            ssl=bool(self.config["verify_tls"]),
        )
        raise_for_status(reply, f"{shown} (to {recipient})")
