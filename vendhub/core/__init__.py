"""The hub core: Hub, EventBus, StateMachine, ServiceRegistry, Context and timers."""

from vendhub.core.context import Context
from vendhub.core.events import Event, EventBus, EventOrigin
from vendhub.core.hub import CoreConfig, CoreState, Hub
from vendhub.core.services import ServiceCall, ServiceRegistry
from vendhub.core.states import State, StateMachine

__all__ = [
    "Context",
    "CoreConfig",
    "CoreState",
    "Event",
    "EventBus",
    "EventOrigin",
    "Hub",
    "ServiceCall",
    "ServiceRegistry",
    "State",
    "StateMachine",
]
