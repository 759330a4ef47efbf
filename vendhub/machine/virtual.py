"""A virtual vending machine: a pure model that produces machine-protocol messages.

Nothing here knows the hub. ``VirtualMachine.step()`` advances simulated time and returns the
messages a real machine would publish in that time: ``event`` messages (each with a unique id
and a sequence number), ``telemetry`` readings and, on request, a ``status``.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from .protocol import PROTOCOL_VERSION

# Sales per hour relative to the peak, hour 0 to 23: quiet nights, a morning rise,
# the lunch peak at 12:00 and an evening peak at 18:00.
DEFAULT_DAILY_CURVE: tuple[float, ...] = (
    0.05, 0.03, 0.02, 0.02, 0.02, 0.05,  # 00-05
    0.15, 0.35, 0.50, 0.45, 0.45, 0.70,  # 06-11
    1.00, 0.90, 0.55, 0.50, 0.55, 0.75,  # 12-17
    0.85, 0.70, 0.45, 0.30, 0.15, 0.08,  # 18-23
)  # fmt: skip

PAYMENT_METHODS: tuple[str, ...] = ("cash", "card", "mobile")
_PAYMENT_WEIGHTS: tuple[float, ...] = (0.35, 0.50, 0.15)

MAX_SUBSTEP = 60.0  # simulated seconds the model advances at most in one go
HYSTERESIS = 1.0  # °C either side of the target at which the compressor switches
COOLING_RATE = 10.0  # °C per hour the running compressor removes
WARMING_TAU = 4 * 3600.0  # seconds: the cabinet's time constant toward ambient, door closed
WARMING_TAU_DOOR_OPEN = 30 * 60.0  # ... and with the door open
SENSOR_NOISE = 0.08  # °C standard deviation of a temperature reading
DOOR_OPEN_SECONDS = (120.0, 600.0)  # how long a random door opening lasts


class UnknownSlot(LookupError):
    """A command named a slot the machine does not have."""


@dataclass(slots=True)
class Slot:
    """One slot (spiral) of the machine."""

    code: str
    product: str
    price: int
    capacity: int
    stock: int
    locked: bool = False  # a locked slot does not sell (e.g. food while the fridge is warm)

    def __post_init__(self) -> None:
        if self.price < 0:
            raise ValueError(f"slot {self.code}: price must be 0 or more, got {self.price}")
        if self.capacity < 1:
            raise ValueError(f"slot {self.code}: capacity must be 1 or more, got {self.capacity}")
        if not 0 <= self.stock <= self.capacity:
            raise ValueError(
                f"slot {self.code}: stock {self.stock} must be from 0 to its capacity "
                f"{self.capacity}"
            )


def _poisson(rng: random.Random, mean: float) -> int:
    """Draw how many events a Poisson process with ``mean`` produces."""
    if mean <= 0:
        return 0
    if mean > 30:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit = math.exp(-mean)
    count = 0
    product = rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


class VirtualMachine:
    """One simulated vending machine with its own simulated clock.

    Sales arrive as a Poisson process: ``sales_per_hour`` at the peak of ``daily_curve``
    (24 factors by local hour). Each sale picks a random stocked slot; it jams (``jam_rate``:
    ``vend_failed`` with reason ``jam``, stock unchanged) or fails otherwise (``failure_rate``:
    reason ``motor``) or completes. Cash sales fill the cash box. A refrigerated machine runs
    a thermostat with hysteresis around ``target_temperature``; with the compressor off the
    cabinet drifts toward ``ambient_temperature``.
    """

    def __init__(
        self,
        machine_id: str,
        slots: Mapping[str, Mapping[str, Any] | Slot] | Iterable[Slot],
        *,
        seed: int | str | None = None,
        rng: random.Random | None = None,
        start: datetime | None = None,
        tz: tzinfo = UTC,
        model: str = "VendHub Simulator",
        firmware: str = "1.0.0",
        refrigerated: bool = False,
        target_temperature: float = 4.0,
        ambient_temperature: float = 22.0,
        sales_per_hour: float = 6.0,
        daily_curve: Sequence[float] | None = None,
        jam_rate: float = 0.01,
        failure_rate: float = 0.005,
        door_openings_per_day: float = 1.0,
        telemetry_interval: float = 60.0,
        cash_box: int = 0,
        wall_clock_timestamps: bool = False,
    ) -> None:
        curve = tuple(float(x) for x in (daily_curve or DEFAULT_DAILY_CURVE))
        if len(curve) != 24 or any(x < 0 for x in curve):
            raise ValueError("daily_curve must be exactly 24 non-negative numbers")
        if not (0 <= jam_rate <= 1 and 0 <= failure_rate <= 1 and jam_rate + failure_rate <= 1):
            raise ValueError("jam_rate and failure_rate must be from 0 to 1 and sum to at most 1")
        if sales_per_hour < 0 or door_openings_per_day < 0:
            raise ValueError("sales_per_hour and door_openings_per_day must be 0 or more")
        if telemetry_interval <= 0:
            raise ValueError("telemetry_interval must be positive")
        self.machine_id = machine_id
        self.model = model
        self.firmware = firmware
        self.slots: dict[str, Slot] = {}
        items = slots.items() if isinstance(slots, Mapping) else ((s.code, s) for s in slots)
        for code, spec in items:
            self.slots[code] = (
                spec
                if isinstance(spec, Slot)
                else Slot(
                    code=code,
                    product=spec["product"],
                    price=int(spec["price"]),
                    capacity=int(spec["capacity"]),
                    stock=int(spec.get("stock", spec["capacity"])),
                )
            )
        self.rng = rng if rng is not None else random.Random(seed)
        self.tz = tz
        self.start = start or datetime.now(UTC)
        # A live demo stamps messages with the real time, as a real machine does, while its
        # own clock (for the daily curve) may run faster; a replay from ``start`` stamps them
        # with the simulated time.
        self.wall_clock_timestamps = wall_clock_timestamps
        self.elapsed = 0.0
        self.refrigerated = refrigerated
        self.target_temperature = float(target_temperature)
        self.ambient_temperature = float(ambient_temperature)
        self.temperature: float | None = self.target_temperature if refrigerated else None
        self.compressor_on = False
        self.compressor_enabled = True
        self.sales_per_hour = float(sales_per_hour)
        self.daily_curve = curve
        self.jam_rate = float(jam_rate)
        self.failure_rate = float(failure_rate)
        self.door_openings_per_day = float(door_openings_per_day)
        self.telemetry_interval = float(telemetry_interval)
        self.cash_box = int(cash_box)
        self.door_open = False
        self._door_close_at: float | None = None  # elapsed seconds; None: stays as it is
        self._next_telemetry = self.telemetry_interval
        self._seq = 0
        # What happened, for tests and benchmarks.
        self.vends_completed = 0
        self.vends_failed = 0
        self.revenue = 0
        self.missed_sales = 0  # customers who found the machine sold out

    # ---- clock ---------------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        """The machine's simulated time (aware, UTC)."""
        return self.start + timedelta(seconds=self.elapsed)

    def local_hour(self, elapsed: float | None = None) -> int:
        """The local hour (0-23) at ``elapsed`` simulated seconds, by default now."""
        moment = self.start + timedelta(seconds=self.elapsed if elapsed is None else elapsed)
        return moment.astimezone(self.tz).hour

    @property
    def sold_out(self) -> bool:
        """True when no slot has stock."""
        return not any(slot.stock for slot in self.slots.values())

    # ---- messages ------------------------------------------------------------------------

    def _stamp(self, at: float) -> str:
        if self.wall_clock_timestamps:
            return _iso(datetime.now(UTC))
        return _iso(self.start + timedelta(seconds=at))

    def _event(self, at: float, name: str, data: dict[str, Any]) -> dict[str, Any]:
        self._seq += 1
        return {
            "type": "event",
            "v": PROTOCOL_VERSION,
            "id": uuid.uuid4().hex,
            "seq": self._seq,
            "ts": self._stamp(at),
            "event": name,
            "data": data,
        }

    def _telemetry(self, at: float) -> dict[str, Any]:
        self._seq += 1
        readings: dict[str, Any] = {}
        if self.temperature is not None:
            noisy = self.temperature + self.rng.gauss(0.0, SENSOR_NOISE)
            readings["temperature"] = round(noisy, 2)
            readings["compressor"] = self.compressor_on
        return {
            "type": "telemetry",
            "v": PROTOCOL_VERSION,
            "seq": self._seq,
            "ts": self._stamp(at),
            "readings": readings,
        }

    def status_message(self, online: bool = True) -> dict[str, Any]:
        """The retained ``status`` message the machine publishes on connect (or its will)."""
        return {
            "type": "status",
            "v": PROTOCOL_VERSION,
            "ts": _iso(self.now),
            "state": "online" if online else "offline",
            "model": self.model,
            "firmware": self.firmware,
        }

    # ---- simulation ----------------------------------------------------------------------

    def step(self, sim_seconds: float) -> list[dict[str, Any]]:
        """Advance ``sim_seconds`` of simulated time; return the messages produced, in order."""
        if sim_seconds < 0:
            raise ValueError(f"cannot step backwards ({sim_seconds} s)")
        out: list[dict[str, Any]] = []
        end = self.elapsed + sim_seconds
        while end - self.elapsed > 1e-9:
            dt = min(end - self.elapsed, MAX_SUBSTEP)
            if self._door_close_at is not None:
                dt = min(dt, max(self._door_close_at - self.elapsed, 0.0))
            if self.refrigerated:
                dt = min(dt, max(self._next_telemetry - self.elapsed, 0.0))
            self._advance(dt, out)
        return out

    def _advance(self, dt: float, out: list[dict[str, Any]]) -> None:
        begin = self.elapsed
        if dt > 0:
            hour = self.local_hour(begin)
            door_at: float | None = None
            if (
                not self.door_open
                and self.door_openings_per_day > 0
                and _poisson(self.rng, self.door_openings_per_day * dt / 86400.0)
            ):
                door_at = begin + self.rng.random() * dt
            rate = self.sales_per_hour * self.daily_curve[hour] / 3600.0
            if not self.door_open and rate > 0:
                count = _poisson(self.rng, rate * dt)
                for at in sorted(begin + self.rng.random() * dt for _ in range(count)):
                    if door_at is not None and at >= door_at:
                        break
                    self._random_sale(at, out)
            if door_at is not None:
                self.door_open = True
                low, high = DOOR_OPEN_SECONDS
                self._door_close_at = door_at + self.rng.uniform(low, high)
                out.append(self._event(door_at, "door_opened", {}))
            self._thermal(dt)
        self.elapsed = begin + dt
        if self._door_close_at is not None and self._door_close_at <= self.elapsed + 1e-9:
            self.door_open = False
            out.append(self._event(self._door_close_at, "door_closed", {}))
            self._door_close_at = None
        if self.refrigerated and self._next_telemetry <= self.elapsed + 1e-9:
            out.append(self._telemetry(self.elapsed))
            self._next_telemetry += self.telemetry_interval

    def _thermal(self, dt: float) -> None:
        if self.temperature is None:
            return
        if not self.compressor_enabled:
            self.compressor_on = False
        elif self.temperature > self.target_temperature + HYSTERESIS:
            self.compressor_on = True
        elif self.temperature < self.target_temperature - HYSTERESIS:
            self.compressor_on = False
        tau = WARMING_TAU_DOOR_OPEN if self.door_open else WARMING_TAU
        drift = (self.ambient_temperature - self.temperature) * (1 - math.exp(-dt / tau))
        cooling = COOLING_RATE * dt / 3600.0 if self.compressor_on else 0.0
        self.temperature += drift - cooling

    def _random_sale(self, at: float, out: list[dict[str, Any]]) -> None:
        stocked = [slot for slot in self.slots.values() if slot.stock > 0 and not slot.locked]
        if not stocked:
            self.missed_sales += 1
            return
        slot = self.rng.choice(stocked)
        method = self.rng.choices(PAYMENT_METHODS, _PAYMENT_WEIGHTS)[0]
        self._vend(slot, method, at, out)

    def _vend(self, slot: Slot, method: str, at: float, out: list[dict[str, Any]]) -> None:
        vend_id = uuid.uuid4().hex
        data = {
            "vend_id": vend_id,
            "slot": slot.code,
            "product": slot.product,
            "price": slot.price,
            "payment_method": method,
        }
        out.append(self._event(at, "vend_started", dict(data)))
        if slot.locked:
            reason: str | None = "locked"
        elif slot.stock <= 0:
            reason = "sold_out"
        else:
            draw = self.rng.random()
            if draw < self.jam_rate:
                reason = "jam"
            elif draw < self.jam_rate + self.failure_rate:
                reason = "motor"
            else:
                reason = None
        if reason is None:
            slot.stock -= 1
            if method == "cash":
                self.cash_box += slot.price
            self.vends_completed += 1
            self.revenue += slot.price
            done = {**data, "stock": slot.stock, "cash_box": self.cash_box}
            out.append(self._event(at, "vend_completed", done))
        else:
            self.vends_failed += 1
            failed = {**data, "reason": reason, "stock": slot.stock, "cash_box": self.cash_box}
            out.append(self._event(at, "vend_failed", failed))

    # ---- commands ------------------------------------------------------------------------

    def vend(self, slot_code: str, method: str = "cash") -> list[dict[str, Any]]:
        """A customer buys from ``slot_code`` now: ``vend_started`` then the outcome.

        A locked slot fails with reason ``locked``, a sold-out one with ``sold_out``; jams and
        failures happen at their rates.
        """
        slot = self._slot(slot_code)
        if method not in PAYMENT_METHODS:
            raise ValueError(f"unknown payment method {method!r}; known: {PAYMENT_METHODS}")
        out: list[dict[str, Any]] = []
        self._vend(slot, method, self.elapsed, out)
        return out

    def lock_slots(
        self, slot_codes: list[str] | None = None, locked: bool = True
    ) -> list[dict[str, Any]]:
        """Stop (or resume) selling from some slots, or all; returns a ``slots_locked`` event."""
        slots = (
            [self._slot(code) for code in slot_codes]
            if slot_codes is not None
            else list(self.slots.values())
        )
        for slot in slots:
            slot.locked = locked
        data = {"slots": {slot.code: slot.locked for slot in slots}}
        return [self._event(self.elapsed, "slots_locked", data)]

    def restock(self, slot_code: str | None = None) -> list[dict[str, Any]]:
        """Fill one slot, or every slot, to capacity; returns a ``restocked`` event."""
        slots = [self._slot(slot_code)] if slot_code is not None else list(self.slots.values())
        for slot in slots:
            slot.stock = slot.capacity
        data = {"slots": {slot.code: slot.stock for slot in slots}}
        return [self._event(self.elapsed, "restocked", data)]

    def set_door(self, open_: bool) -> list[dict[str, Any]]:
        """Open or close the door by hand; it stays so until changed again."""
        self._door_close_at = None
        if open_ == self.door_open:
            return []
        self.door_open = open_
        return [self._event(self.elapsed, "door_opened" if open_ else "door_closed", {})]

    def set_compressor(self, enabled: bool) -> None:
        """Allow or forbid the compressor to run (a fault, or an operator's action)."""
        self.compressor_enabled = enabled
        if not enabled:
            self.compressor_on = False

    def collect_cash(self) -> list[dict[str, Any]]:
        """Empty the cash box; returns a ``cash_collected`` event."""
        amount, self.cash_box = self.cash_box, 0
        return [self._event(self.elapsed, "cash_collected", {"amount": amount, "cash_box": 0})]

    def _slot(self, code: str) -> Slot:
        try:
            return self.slots[code]
        except KeyError:
            known = ", ".join(self.slots)
            raise UnknownSlot(
                f"machine {self.machine_id} has no slot {code!r}; known: {known}"
            ) from None
