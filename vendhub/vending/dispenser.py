"""The Dispenser interface: the board that turns a slot's motor and says what happened.

Integrations provide dispenser classes through the ``vendhub_dispenser`` hook; the vending
integration makes one instance per machine (its ``dispenser:`` entry). The engine calls
``async_dispense`` once per vend and trusts only what it returns: stock changes on
``DispenseOutcome.dispensed`` alone.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from vendhub.core.errors import VendHubError

if TYPE_CHECKING:
    from vendhub.core.hub import Hub


class DispenseOutcome(StrEnum):
    """How a dispense ended."""

    dispensed = "dispensed"  # the product dropped (the drop sensor saw it, where there is one)
    jammed = "jammed"  # the motor turned, nothing dropped / the board reports a jam
    motor_stuck = "motor_stuck"  # the motor did not stop
    no_motor = "no_motor"  # no motor at that selection
    not_dropped = "not_dropped"  # the board reports success, the drop sensor saw nothing
    timeout = "timeout"  # the board did not answer in time
    error = "error"  # anything else the board reported


class DispenserError(VendHubError):
    """The board cannot be reached or spoke nonsense (not a dispense outcome)."""


@dataclass(frozen=True, slots=True)
class DispenseResult:
    outcome: DispenseOutcome
    slot: str
    drop_confirmed: bool | None = None
    """What the drop sensor said; None when the board has none."""
    detail: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is DispenseOutcome.dispensed


@dataclass(frozen=True, slots=True)
class DispenserStatus:
    online: bool
    temperature: float | None = None
    """Degrees Celsius, where the board reports it."""
    door_open: bool | None = None
    faults: tuple[str, ...] = ()


StatusListener = Callable[[DispenserStatus], None]


class Dispenser(ABC):
    """The dispenser board of one machine.

    Subclasses set ``platform``, ``OPTIONS`` (voluptuous keys besides ``platform``) and
    implement ``async_dispense`` and ``async_status``.
    """

    platform: ClassVar[str] = ""
    OPTIONS: ClassVar[Mapping[Any, Any]] = {}

    def __init__(self, hub: Hub, machine_id: str, options: Mapping[str, Any]) -> None:
        self.hub = hub
        self.machine_id = machine_id
        self.options = options
        self._listeners: list[StatusListener] = []

    async def async_start(self) -> None:  # noqa: B027 - optional for dispensers
        """Open the port; raise ``DispenserError`` if it cannot."""

    async def async_stop(self) -> None:  # noqa: B027 - optional for dispensers
        """Close the port."""

    @abstractmethod
    async def async_dispense(self, slot: str, vend_id: str) -> DispenseResult:
        """Drive ``slot`` once and return how it ended (after the drop sensor, if any).

        :param slot: the slot code (``A1``); the board's own selection number comes from it.
        :param vend_id: the engine's id of this vend, for logs and the board's packet number.
        Raises ``DispenserError`` only when the board cannot be asked at all.
        """

    @abstractmethod
    async def async_status(self) -> DispenserStatus:
        """The board's latest status."""

    def async_listen(self, listener: StatusListener) -> Callable[[], None]:
        """Call ``listener`` with each status the board reports by itself; returns an
        unsubscribe callable."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def _async_publish_status(self, status: DispenserStatus) -> None:
        for listener in list(self._listeners):
            listener(status)
