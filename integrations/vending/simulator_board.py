"""The ``simulator`` dispenser board: a board that exists only in software.

For the demo, tests and the benchmark. It takes ``dispense_time`` seconds per vend and
drops the product unless told otherwise: ``jam_slots`` always jam, ``no_drop_slots`` turn the
motor but the drop sensor sees nothing, and ``inject()`` makes the next vends of a slot end
with a chosen outcome (tests use it for jams and board errors).

The board reports a cabinet ``temperature`` (°C) and whether its door is open
(``door_open``) only where those options are given; ``set_temperature()`` and ``set_door()``
change them while it runs (None: not reported), as a thermometer and a door switch would.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.vending.dispenser import (
    DispenseOutcome,
    Dispenser,
    DispenserError,
    DispenseResult,
    DispenserStatus,
)

from .validators import seconds_or_zero, slot_code

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

KEEP_COMMANDS = 32
"""Dispense commands remembered in ``commands``: the latest, so that a demo that sells for
months does not grow."""


_temperature = cv.number()
"""A finite number of °C."""


@dataclass(frozen=True, slots=True)
class DispenseCommand:
    """One dispense the board was asked for, with the monotonic time it was asked."""

    slot: str
    vend_id: str
    issued: float


class SimulatorDispenser(Dispenser):
    """A dispenser board simulated in software (no hardware, no real products)."""

    platform: ClassVar[str] = "simulator"
    OPTIONS: ClassVar[Mapping[Any, Any]] = {
        vol.Optional("dispense_time", default=0.5): seconds_or_zero,
        vol.Optional("jam_slots", default=list): vol.All(cv.ensure_list, [slot_code]),
        vol.Optional("no_drop_slots", default=list): vol.All(cv.ensure_list, [slot_code]),
        vol.Optional("drop_sensor", default=True): cv.boolean,
        vol.Optional("offline", default=False): cv.boolean,
        vol.Optional("temperature"): _temperature,
        vol.Optional("door_open"): cv.boolean,
    }

    def __init__(self, hub: Hub, machine_id: str, options: Mapping[str, Any]) -> None:
        super().__init__(hub, machine_id, options)
        self.dispense_time = float(options.get("dispense_time", 0.5))
        self.jam_slots = frozenset(options.get("jam_slots", ()))
        self.no_drop_slots = frozenset(options.get("no_drop_slots", ()))
        self.drop_sensor = bool(options.get("drop_sensor", True))
        self.offline = bool(options.get("offline", False))
        temperature = options.get("temperature")
        self.temperature: float | None = None if temperature is None else float(temperature)
        door_open = options.get("door_open")
        self.door_open: bool | None = None if door_open is None else bool(door_open)
        self.commands: deque[DispenseCommand] = deque(maxlen=KEEP_COMMANDS)
        self.dropped: dict[str, int] = {}
        self._injected: dict[str, list[DispenseOutcome | BaseException]] = {}

    def inject(self, slot: str, outcome: DispenseOutcome | BaseException, times: int = 1) -> None:
        """End the next ``times`` vends of ``slot`` with ``outcome`` (or raise it)."""
        self._injected.setdefault(slot, []).extend([outcome] * times)

    def set_temperature(self, value: float | None) -> None:
        """Report ``value`` °C as the cabinet temperature from now on (None: report none)."""
        try:
            self.temperature = None if value is None else _temperature(value)
        except vol.Invalid as error:
            raise ValueError(f"temperature: {error.error_message}") from None
        self._async_publish_status(self._status())

    def set_door(self, open_: bool | None) -> None:
        """Report the door as open or closed from now on (None: report nothing of it)."""
        if open_ is not None and not isinstance(open_, bool):
            raise ValueError(f"door: expected True, False or None, got {cv.describe_value(open_)}")
        self.door_open = open_
        self._async_publish_status(self._status())

    async def async_dispense(self, slot: str, vend_id: str) -> DispenseResult:
        self.commands.append(DispenseCommand(slot, vend_id, time.perf_counter()))
        if self.offline:
            raise DispenserError(f"simulated board of {self.machine_id} is offline")
        if self.dispense_time > 0:
            await asyncio.sleep(self.dispense_time)
        else:
            await asyncio.sleep(0)
        injected = self._injected.get(slot)
        if injected:
            outcome = injected.pop(0)
            if isinstance(outcome, BaseException):
                raise outcome
            return DispenseResult(outcome, slot, drop_confirmed=False, detail="injected")
        if slot in self.jam_slots:
            return DispenseResult(DispenseOutcome.jammed, slot, drop_confirmed=False)
        if slot in self.no_drop_slots:
            return DispenseResult(DispenseOutcome.not_dropped, slot, drop_confirmed=False)
        self.dropped[slot] = self.dropped.get(slot, 0) + 1
        return DispenseResult(
            DispenseOutcome.dispensed, slot, drop_confirmed=True if self.drop_sensor else None
        )

    async def async_status(self) -> DispenserStatus:
        return self._status()

    def _status(self) -> DispenserStatus:
        return DispenserStatus(
            online=not self.offline, temperature=self.temperature, door_open=self.door_open
        )
