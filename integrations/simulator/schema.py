"""The ``simulator:`` block of configuration.yaml."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import voluptuous as vol

from vendhub.config.validators import (
    boolean,
    describe_value,
    integer,
    list_of,
    money_minor_units,
    non_negative_int,
    number,
    percentage,
    positive_int,
    slot_capacity,
    slug,
    string,
    time_period,
)

from .catalog import fleet_ids
from .const import (
    DEFAULT_AMBIENT_TEMPERATURE,
    DEFAULT_APPROVAL_DELAY,
    DEFAULT_DISPENSE_TIME,
    DEFAULT_DOOR_OPENINGS_PER_DAY,
    DEFAULT_FAILURE_RATE,
    DEFAULT_FIRMWARE,
    DEFAULT_FLEET_PREFIX,
    DEFAULT_FLEET_REFRIGERATED_SHARE,
    DEFAULT_FLEET_SLOTS,
    DEFAULT_JAM_RATE,
    DEFAULT_MODEL,
    DEFAULT_PAYMENT_METHODS,
    DEFAULT_PAYMENT_TIMEOUT,
    DEFAULT_PURCHASE_KEEP,
    DEFAULT_SALES_PER_HOUR,
    DEFAULT_SPEED,
    DEFAULT_SUMMARY_INTERVAL,
    DEFAULT_TARGET_TEMPERATURE,
    DEFAULT_TELEMETRY_INTERVAL,
    DEFAULT_TICK,
    PURCHASE_METHODS,
)

CONF_MACHINES = "machines"
CONF_FLEET = "fleet"
CONF_PURCHASE = "purchase"
CONF_PAYMENT_METHODS = "payment_methods"


def seconds(*, positive: bool = True) -> Callable[[Any], float]:
    """A time period (``30``, ``'5min'``, ``{minutes: 5}``) as seconds."""

    def validate(value: Any) -> float:
        result = time_period(value).total_seconds()
        if positive and result <= 0:
            raise vol.Invalid(f"expected a time period longer than 0, got {describe_value(value)}")
        return result

    return validate


MAX_SPEED = 10_000.0
"""The fastest simulated clock: 10,000 simulated seconds per real second, a week in about a
minute. Every simulated minute is model work and, at a sale or a temperature reading, a message
for the hub: far faster, a step takes longer than the tick and the hub only falls behind."""
MIN_TICK = 0.01
"""The shortest real time between steps (100 steps a second); shorter, the step loop never
rests and keeps a CPU busy."""
MAX_SIMULATED_STEP = 86_400.0
"""The most simulated time one step may cover (``speed`` times ``tick``): a day, about 550
messages per machine made at once, without a pause for the hub."""


def _speed(value: Any) -> float:
    result = number(0, above=True)(value)
    if result > MAX_SPEED:
        raise vol.Invalid(
            f"expected a speed of more than 0 and at most {MAX_SPEED:,.0f} (simulated seconds "
            f"per real second), got {describe_value(value)}: every simulated minute is work "
            "and messages for the hub, so a faster clock only makes the hub fall behind and "
            "grow its memory"
        )
    return result


def _tick(value: Any) -> float:
    result = time_period(value).total_seconds()
    if result < MIN_TICK:
        raise vol.Invalid(
            f"expected a tick of {MIN_TICK:g} s or more (and speed times tick at most "
            f"{MAX_SIMULATED_STEP:,.0f} s), got {describe_value(value)}: a shorter tick leaves "
            "the step loop no rest and keeps a CPU busy"
        )
    return result


def _check_step(config: dict[str, Any]) -> dict[str, Any]:
    """One step advances the machines ``speed`` times ``tick`` simulated seconds, all at once."""
    step = config["speed"] * config["tick"]
    if step > MAX_SIMULATED_STEP:
        raise vol.Invalid(
            f"speed times tick is the simulated time of one step and may be at most "
            f"{MAX_SIMULATED_STEP:,.0f} s (a day), got {config['speed']:g} times "
            f"{config['tick']:g} s = {step:,.0f} s: each machine would make all of that "
            "time's sales and readings at once; lower the speed or the tick",
            path=["speed"],
        )
    return config


def slot_code(value: Any) -> str:
    """A slot code: 1 to 8 letters and digits such as ``A1``."""
    text = string(value).strip()
    if not (1 <= len(text) <= 8 and text.isascii() and text.isalnum()):
        raise vol.Invalid(
            f"expected a slot code of 1 to 8 letters and digits such as 'A1', "
            f"got {describe_value(value)}"
        )
    return text


def daily_curve(value: Any) -> list[float]:
    """Exactly 24 non-negative numbers: the sales rate by local hour, relative to the peak."""
    if not isinstance(value, list):
        raise vol.Invalid(
            f"expected a list of 24 numbers (one per hour, 0 to 23), got {describe_value(value)}"
        )
    if len(value) != 24:
        raise vol.Invalid(f"expected exactly 24 numbers (one per hour, 0 to 23), got {len(value)}")
    validate = number(0)
    curve = []
    for hour, factor in enumerate(value):
        try:
            curve.append(validate(factor))
        except vol.Invalid as error:
            raise vol.Invalid(f"hour {hour}: {error.error_message}", path=[hour]) from None
    return curve


def start_time(value: Any) -> datetime:
    """An ISO 8601 date and time such as ``2024-05-01T11:30:00+02:00``."""
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(string(value))
    except (ValueError, vol.Invalid):
        raise vol.Invalid(
            "expected a date and time such as '2024-05-01T11:30:00+02:00', "
            f"got {describe_value(value)}"
        ) from None


def payment_methods(value: Any) -> list[str]:
    """The payment methods a simulated machine accepts: some of card, qr, cash, each once."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise vol.Invalid(
            f"expected a list of payment methods from {', '.join(PURCHASE_METHODS)}, "
            f"got {describe_value(value)}"
        )
    methods: list[str] = []
    for index, item in enumerate(value):
        method = item.strip().lower() if isinstance(item, str) else item
        if method not in PURCHASE_METHODS:
            raise vol.Invalid(
                f"expected one of {', '.join(PURCHASE_METHODS)}, got {describe_value(item)}",
                path=[index],
            )
        if method in methods:
            raise vol.Invalid(f"{method} is listed twice", path=[index])
        methods.append(method)
    return methods


SLOT_SCHEMA = vol.Schema(
    {
        vol.Required("product"): vol.All(string, vol.Length(min=1)),
        vol.Required("price"): money_minor_units,
        vol.Required("capacity"): slot_capacity,
        vol.Optional("stock"): non_negative_int,
        # Restock when the stock falls below this (default: a quarter of the capacity, min 1).
        vol.Optional("par"): non_negative_int,
    }
)


def _check_slots(slots: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Fill stock and par in (full; a quarter of the capacity), refuse them over capacity."""
    seen: dict[str, str] = {}
    result = {}
    for code, slot in slots.items():
        other = seen.setdefault(code.lower(), code)
        if other != code:
            raise vol.Invalid(
                "slot codes that differ only in case would share one entity id, got "
                f"{other!r} and {code!r}",
                path=[code],
            )
        stock = slot.get("stock", slot["capacity"])
        if stock > slot["capacity"]:
            raise vol.Invalid(
                f"slot {code}: stock may be at most its capacity {slot['capacity']}, got {stock}",
                path=[code, "stock"],
            )
        par = slot.get("par", max(1, slot["capacity"] // 4))
        if par > slot["capacity"]:
            raise vol.Invalid(
                f"slot {code}: par may be at most its capacity {slot['capacity']}, got {par}",
                path=[code, "par"],
            )
        result[code] = {**slot, "stock": stock, "par": par}
    return result


SLOTS_SCHEMA = vol.All(
    vol.Schema({slot_code: SLOT_SCHEMA}),
    vol.Length(min=1, msg="a machine needs at least one slot, got none"),
    _check_slots,
)


def _check_rates(machine: dict[str, Any]) -> dict[str, Any]:
    if machine["jam_rate"] + machine["failure_rate"] > 1:
        raise vol.Invalid(
            "jam_rate and failure_rate together may be at most 1, got "
            f"{machine['jam_rate']:g} + {machine['failure_rate']:g}",
            path=["failure_rate"],
        )
    return machine


MACHINE_SCHEMA = vol.All(
    vol.Schema(
        {
            vol.Required("id"): slug,
            vol.Optional("name"): vol.All(string, vol.Length(min=1)),
            vol.Optional("model", default=DEFAULT_MODEL): string,
            vol.Optional("firmware", default=DEFAULT_FIRMWARE): string,
            vol.Optional("location"): string,
            vol.Optional("refrigerated", default=False): boolean,
            vol.Optional("target_temperature", default=DEFAULT_TARGET_TEMPERATURE): number(-30, 30),
            vol.Optional("ambient_temperature", default=DEFAULT_AMBIENT_TEMPERATURE): number(
                -40, 60
            ),
            vol.Optional("sales_per_hour", default=DEFAULT_SALES_PER_HOUR): number(0),
            vol.Optional("daily_curve"): daily_curve,
            vol.Optional("jam_rate", default=DEFAULT_JAM_RATE): percentage,
            vol.Optional("failure_rate", default=DEFAULT_FAILURE_RATE): percentage,
            vol.Optional("door_openings_per_day", default=DEFAULT_DOOR_OPENINGS_PER_DAY): number(0),
            vol.Optional("slots"): SLOTS_SCHEMA,
            vol.Optional(
                CONF_PAYMENT_METHODS, default=list(DEFAULT_PAYMENT_METHODS)
            ): payment_methods,
        }
    ),
    _check_rates,
)

FLEET_SCHEMA = vol.Schema(
    {
        vol.Required("count"): vol.All(positive_int, vol.Range(max=10000)),
        vol.Optional("slots_per_machine", default=DEFAULT_FLEET_SLOTS): vol.All(
            positive_int, vol.Range(max=60)
        ),
        vol.Optional("refrigerated_share", default=DEFAULT_FLEET_REFRIGERATED_SHARE): percentage,
        vol.Optional("id_prefix", default=DEFAULT_FLEET_PREFIX): slug,
        vol.Optional("sales_per_hour"): number(0),
        vol.Optional("jam_rate"): percentage,
        vol.Optional("failure_rate"): percentage,
        vol.Optional("door_openings_per_day"): number(0),
    }
)


# The simulated purchase behind the kiosk (purchase.py): how long each waiting step lasts.
PURCHASE_SCHEMA = vol.Schema(
    {
        vol.Optional("payment_timeout", default=DEFAULT_PAYMENT_TIMEOUT): seconds(),
        vol.Optional("approval_delay", default=DEFAULT_APPROVAL_DELAY): seconds(positive=False),
        # False: card and QR payments wait for simulator.purchase_pay (tests, demos).
        vol.Optional("auto_approve", default=True): boolean,
        vol.Optional("dispense_time", default=DEFAULT_DISPENSE_TIME): seconds(positive=False),
        vol.Optional("keep", default=DEFAULT_PURCHASE_KEEP): seconds(),
    }
)


def _check_machines(config: dict[str, Any]) -> dict[str, Any]:
    """At least one machine, and every machine id used once."""
    machines = config.get(CONF_MACHINES, [])
    fleet = config.get(CONF_FLEET)
    if not machines and fleet is None:
        message = (
            "at least one machine is needed: list them under 'machines' or generate them "
            "with 'fleet'"
        )
        if CONF_MACHINES in config:
            raise vol.Invalid(f"{message}, got an empty list", path=[CONF_MACHINES])
        raise vol.RequiredFieldInvalid(message, path=[CONF_MACHINES])
    seen: set[str] = set()
    for index, machine in enumerate(machines):
        if machine["id"] in seen:
            raise vol.Invalid(
                f"duplicate machine id: got '{machine['id']}' a second time; every machine "
                "needs its own id",
                path=[CONF_MACHINES, index, "id"],
            )
        seen.add(machine["id"])
    if fleet is not None:
        for machine_id in fleet_ids(fleet):
            if machine_id in seen:
                raise vol.Invalid(
                    f"duplicate machine id: the fleet generates '{machine_id}', which "
                    f"'machines' lists too; change the fleet's id_prefix (got "
                    f"'{fleet['id_prefix']}')",
                    path=[CONF_FLEET, "id_prefix"],
                )
    return config


CONFIG_SCHEMA = vol.Schema(
    vol.All(
        vol.Schema(
            {
                vol.Optional("speed", default=DEFAULT_SPEED): _speed,
                vol.Optional("tick", default=DEFAULT_TICK): _tick,
                vol.Optional("telemetry_interval", default=DEFAULT_TELEMETRY_INTERVAL): seconds(),
                vol.Optional("seed"): integer,
                vol.Optional("summary_interval", default=DEFAULT_SUMMARY_INTERVAL): seconds(
                    positive=False
                ),
                vol.Optional("start"): start_time,
                vol.Optional(CONF_MACHINES): list_of(MACHINE_SCHEMA),
                vol.Optional(CONF_FLEET): FLEET_SCHEMA,
                vol.Optional(CONF_PURCHASE, default={}): PURCHASE_SCHEMA,
            }
        ),
        _check_step,
        _check_machines,
    )
)
