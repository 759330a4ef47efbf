"""Exceptions raised by the hub core."""


class VendHubError(Exception):
    """Base class for every error the hub raises on purpose."""


class InvalidEntityId(VendHubError, ValueError):
    """An entity id is not of the form ``domain.object_id``."""


class InvalidStateError(VendHubError, ValueError):
    """A state string is too long or not a string."""


class ServiceNotFound(VendHubError):
    """A service call names a domain or service that is not registered."""

    def __init__(self, domain: str, service: str, known: list[str] | None = None) -> None:
        self.domain = domain
        self.service = service
        hint = f"; known services in '{domain}': {', '.join(known)}" if known else ""
        super().__init__(f"service {domain}.{service} is not registered{hint}")


class InvalidServiceData(VendHubError, ValueError):
    """Data passed to a service does not match the service's schema."""

    def __init__(self, domain: str, service: str, problem: str) -> None:
        self.domain = domain
        self.service = service
        self.problem = problem
        super().__init__(f"invalid data for service {domain}.{service}: {problem}")


class HubNotRunning(VendHubError):
    """The hub is stopping or stopped and refuses new work."""
