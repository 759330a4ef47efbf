"""The service registry: named actions (domain + service) with a voluptuous schema."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.const import EVENT_CALL_SERVICE, EVENT_SERVICE_REGISTERED, EVENT_SERVICE_REMOVED
from vendhub.core.context import Context
from vendhub.core.errors import InvalidServiceData, ServiceNotFound
from vendhub.core.states import ReadOnlyDict

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

ServiceHandler = Callable[["ServiceCall"], Any]


class ServiceCall:
    """One call of a service: what was asked, with which data, and who asked."""

    __slots__ = ("context", "data", "domain", "service")

    def __init__(
        self, domain: str, service: str, data: Mapping[str, Any], context: Context
    ) -> None:
        self.domain = domain
        self.service = service
        self.data = ReadOnlyDict(data)
        self.context = context

    def __repr__(self) -> str:
        return f"<ServiceCall {self.domain}.{self.service}: {dict(self.data)}>"


class Service:
    """A registered service: its handler and the schema its data must match."""

    __slots__ = ("description", "domain", "handler", "is_coroutine_function", "schema", "service")

    def __init__(
        self,
        domain: str,
        service: str,
        handler: ServiceHandler,
        schema: vol.Schema | None,
        description: str,
    ) -> None:
        self.domain = domain
        self.service = service
        self.handler = handler
        self.schema = schema
        self.description = description or (inspect.getdoc(handler) or "").split("\n")[0]
        self.is_coroutine_function = asyncio.iscoroutinefunction(handler)


def describe_invalid(error: vol.Invalid) -> str:
    """Turn a voluptuous error into one readable sentence per problem."""
    errors = error.errors if isinstance(error, vol.MultipleInvalid) else [error]
    parts = []
    for item in errors:
        where = " > ".join(str(part) for part in item.path)
        parts.append(f"{where}: {item.error_message}" if where else item.error_message)
    return "; ".join(parts)


class ServiceRegistry:
    """Keeps the services each integration offers and runs calls to them."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._services: dict[str, dict[str, Service]] = {}

    def async_register(
        self,
        domain: str,
        service: str,
        handler: ServiceHandler,
        schema: vol.Schema | Mapping[Any, Any] | None = None,
        description: str = "",
    ) -> None:
        """Register ``domain.service``; its data is validated with ``schema`` before each call.

        ``handler`` is a callback or a coroutine function taking a ServiceCall; what it returns
        is the result of a blocking call. Registering an existing name replaces it.
        """
        domain, service = domain.lower(), service.lower()
        if schema is not None and not isinstance(schema, vol.Schema):
            schema = vol.Schema(schema)
        self._services.setdefault(domain, {})[service] = Service(
            domain, service, handler, schema, description
        )
        self._hub.bus.async_fire(EVENT_SERVICE_REGISTERED, {"domain": domain, "service": service})

    def async_remove(self, domain: str, service: str) -> bool:
        """Remove ``domain.service``; return False if it was not registered."""
        services = self._services.get(domain.lower(), {})
        if services.pop(service.lower(), None) is None:
            return False
        if not services:
            self._services.pop(domain.lower(), None)
        self._hub.bus.async_fire(EVENT_SERVICE_REMOVED, {"domain": domain, "service": service})
        return True

    def async_remove_domain(self, domain: str) -> int:
        """Remove every service of ``domain``; return how many there were."""
        names = list(self._services.get(domain.lower(), {}))
        for name in names:
            self.async_remove(domain, name)
        return len(names)

    def has_service(self, domain: str, service: str) -> bool:
        """Return whether ``domain.service`` is registered."""
        return service.lower() in self._services.get(domain.lower(), {})

    def async_services(self) -> dict[str, dict[str, Service]]:
        """Return a copy of every registered service, by domain."""
        return {domain: dict(services) for domain, services in self._services.items()}

    def _lookup(self, domain: str, service: str) -> Service:
        services = self._services.get(domain)
        if services is None or service not in services:
            raise ServiceNotFound(domain, service, sorted(services) if services else None)
        return services[service]

    def _validate(self, entry: Service, data: Mapping[str, Any] | None) -> Mapping[str, Any]:
        data = dict(data or {})
        if entry.schema is None:
            return data
        try:
            return entry.schema(data)  # type: ignore[no-any-return]
        except vol.Invalid as error:
            raise InvalidServiceData(entry.domain, entry.service, describe_invalid(error)) from None

    async def async_call(
        self,
        domain: str,
        service: str,
        service_data: Mapping[str, Any] | None = None,
        *,
        blocking: bool = True,
        context: Context | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Call ``domain.service`` with ``service_data``.

        Unknown services raise ServiceNotFound and data that fails the schema raises
        InvalidServiceData, before anything runs. A blocking call waits (up to ``timeout``
        seconds when given) and returns the handler's result; a non-blocking one returns None
        at once and the handler runs as a tracked task.
        """
        domain, service = domain.lower(), service.lower()
        entry = self._lookup(domain, service)
        data = self._validate(entry, service_data)
        context = context or Context()
        call = ServiceCall(domain, service, data, context)
        self._hub.bus.async_fire(
            EVENT_CALL_SERVICE,
            {"domain": domain, "service": service, "service_data": call.data},
            context=context,
        )
        if not blocking:
            self._hub.async_create_task(self._run(entry, call), name=f"service {domain}.{service}")
            return None
        if timeout is None:
            return await self._run(entry, call)
        return await asyncio.wait_for(self._run(entry, call), timeout)

    async def _run(self, entry: Service, call: ServiceCall) -> Any:
        if entry.is_coroutine_function:
            return await entry.handler(call)
        result = entry.handler(call)
        if inspect.isawaitable(result):
            return await result
        return result
