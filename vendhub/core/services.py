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
from vendhub.util.redact import redact_data, secret_values

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

ServiceHandler = Callable[["ServiceCall"], Any]
# Called with (the handler's result, None) or (None, the exception) when a call ends.
CallFinished = Callable[[Any, "BaseException | None"], None]
# Called as a call starts; what it returns (if not None) is called when the call ends.
CallObserver = Callable[["ServiceCall", "Service"], "CallFinished | None"]


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

    __slots__ = (
        "description",
        "domain",
        "handler",
        "is_coroutine_function",
        "read_only",
        "schema",
        "service",
    )

    def __init__(
        self,
        domain: str,
        service: str,
        handler: ServiceHandler,
        schema: vol.Schema | None,
        description: str,
        read_only: bool = False,
    ) -> None:
        self.domain = domain
        self.service = service
        self.handler = handler
        self.schema = schema
        # Only reads (a query, a list): it changes nothing, so the audit log leaves it out.
        self.read_only = read_only
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
        self._observers: tuple[CallObserver, ...] = ()

    def async_register(
        self,
        domain: str,
        service: str,
        handler: ServiceHandler,
        schema: vol.Schema | Mapping[Any, Any] | None = None,
        description: str = "",
        *,
        read_only: bool = False,
    ) -> None:
        """Register ``domain.service``; its data is validated with ``schema`` before each call.

        ``handler`` is a callback or a coroutine function taking a ServiceCall; what it returns
        is the result of a blocking call. Registering an existing name replaces it.
        ``read_only=True`` says the service only reads (a query): the audit log, which keeps
        every call that changes something, leaves it out.
        """
        domain, service = domain.lower(), service.lower()
        if schema is not None and not isinstance(schema, vol.Schema):
            schema = vol.Schema(schema)
        self._services.setdefault(domain, {})[service] = Service(
            domain, service, handler, schema, description, read_only
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

    def is_read_only(self, domain: str, service: str) -> bool:
        """Return whether ``domain.service`` was registered as read-only."""
        return self._lookup(domain.lower(), service.lower()).read_only

    def async_observe_calls(self, observer: CallObserver) -> Callable[[], None]:
        """Call ``observer(call, service)`` as each call starts (after its data is validated
        and ``call_service`` fired, before the handler runs); when it returns a callable,
        that is called with ``(result, None)`` or ``(None, exception)`` when the call ends,
        blocking or not. Observers must be quick and must not raise (what they raise is
        logged, and the call goes on). Returns a callable that stops observing.
        """
        self._observers = (*self._observers, observer)

        def stop() -> None:
            self._observers = tuple(item for item in self._observers if item is not observer)

        return stop

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
        # The event is recorded and sent to WebSocket subscribers: never with a password in it.
        shown = redact_data(call.data) if secret_values(call.data) else call.data
        self._hub.bus.async_fire(
            EVENT_CALL_SERVICE,
            {"domain": domain, "service": service, "service_data": shown},
            context=context,
        )
        run = (
            self._run_observed(entry, call, self._observe(entry, call))
            if self._observers
            else self._run(entry, call)
        )
        if not blocking:
            self._hub.async_create_task(run, name=f"service {domain}.{service}")
            return None
        if timeout is None:
            return await run
        return await asyncio.wait_for(run, timeout)

    async def _run(self, entry: Service, call: ServiceCall) -> Any:
        if entry.is_coroutine_function:
            return await entry.handler(call)
        result = entry.handler(call)
        if inspect.isawaitable(result):
            return await result
        return result

    def _observe(self, entry: Service, call: ServiceCall) -> list[CallFinished]:
        finishers = []
        for observer in self._observers:
            try:
                finished = observer(call, entry)
            except Exception:
                _LOGGER.exception("Service call observer %r failed", observer)
                continue
            if finished is not None:
                finishers.append(finished)
        return finishers

    async def _run_observed(
        self, entry: Service, call: ServiceCall, finishers: list[CallFinished]
    ) -> Any:
        try:
            result = await self._run(entry, call)
        except BaseException as error:
            _finish(finishers, None, error)
            raise
        _finish(finishers, result, None)
        return result


def _finish(finishers: list[CallFinished], result: Any, error: BaseException | None) -> None:
    for finished in finishers:
        try:
            finished(result, error)
        except Exception:
            _LOGGER.exception("Service call observer %r failed at the end of a call", finished)
