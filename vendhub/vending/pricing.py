"""Price lists with time-of-day pricing: what a slot costs at a given moment.

A ``PriceList`` belongs to one machine or is shared by several (or is the default of every
machine no other list names). It may set a base price per slot code or per product, and it
has ``PriceRule``s such as "15:00-17:00 on weekdays -20 %" or "a fixed 100 from 22:00 to
02:00". Windows are in the hub's time zone; a window whose end is not after its start runs
past midnight and belongs to the day it starts on (so "Friday 22:00-02:00" ends on Saturday).

Everything here is deterministic: ``price_at(slot, product, base_price, moment)`` depends on
its arguments only, and ``next_change(after)`` gives the next window edge, so a caller (the
MQTT link) can schedule the moment to publish the machine's new effective prices.

Daylight saving time: a window edge is the first instant whose local wall time is at or
after the edge's time on that day. An edge inside a spring-forward gap (02:30 on a night
that jumps from 02:00 to 03:00) is therefore the jump itself; an edge in a repeated hour
(autumn) is its first occurrence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from fractions import Fraction
from typing import Any, Final

import voluptuous as vol

DATA_PRICING: Final = "vending.pricing"
"""``hub.data`` key of the hub's ``PriceBook`` (set by the ``catalog`` integration)."""
EVENT_PRICE_LISTS_CHANGED: Final = "price_lists_changed"
"""Fired when the price lists were replaced: effective prices may have changed."""

WEEKDAY_NAMES: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_GROUPS: Final = {
    "weekdays": frozenset(range(5)),
    "weekend": frozenset({5, 6}),
    "daily": frozenset(range(7)),
}
_EDGE_HORIZON_DAYS = 8  # a weekly rule has an edge within 7 days
_MAX_PERCENT = 1000


# ---- time of day in a time zone -----------------------------------------------------------


def _wall(moment: datetime, tz: tzinfo) -> datetime:
    """The local wall time of ``moment`` in ``tz``, without a zone."""
    return moment.astimezone(tz).replace(tzinfo=None)


def local_instant(day: date, at: time, tz: tzinfo) -> datetime:
    """The first instant (UTC) whose wall time in ``tz`` is at or after ``day`` ``at``.

    A time the clocks skip (spring forward) gives the instant of the jump; a time the clocks
    repeat (fall back) gives its first occurrence.
    """
    naive = datetime.combine(day, at)
    first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    low, high = min(first, second), max(first, second)
    if _wall(low, tz) == naive:
        return low
    # A gap: the wall time jumps over ``naive`` somewhere in (low, high]. Find the jump to
    # the second (zones change offsets on whole seconds).
    low_s, high_s = int(low.timestamp()), int(high.timestamp())
    while high_s - low_s > 1:
        middle = (low_s + high_s) // 2
        if _wall(datetime.fromtimestamp(middle, UTC), tz) >= naive:
            high_s = middle
        else:
            low_s = middle
    return datetime.fromtimestamp(high_s, UTC)


# ---- rules and lists ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PriceRule:
    """A window of the week in which some slots cost a fixed price or a percentage more or less.

    ``start``/``end`` are local times of day; ``end <= start`` crosses midnight (equal: the
    whole day from ``start``). ``days`` are the weekdays (0 is Monday) a window starts on.
    ``percent`` changes the price (-20 is 20 % off), ``price`` replaces it (minor units).
    ``slots`` / ``products`` narrow the rule (both None: every slot).
    """

    start: time
    end: time
    days: frozenset[int] = frozenset(range(7))
    percent: Fraction | None = None
    price: int | None = None
    slots: frozenset[str] | None = None
    products: frozenset[str] | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if (self.percent is None) == (self.price is None):
            raise ValueError("a price rule needs exactly one of 'percent' and 'price'")
        if not self.days:
            raise ValueError("a price rule needs at least one day")

    def applies_to(self, slot: str, product: str | None) -> bool:
        """Whether the rule is about ``slot`` (a slot code) selling ``product``."""
        if self.slots is None and self.products is None:
            return True
        if self.slots is not None and slot.upper() in self.slots:
            return True
        return self.products is not None and product is not None and product in self.products

    def apply(self, price: int) -> int:
        """The price in the window: fixed, or ``percent`` applied and rounded half up."""
        if self.price is not None:
            return self.price
        assert self.percent is not None
        changed = Fraction(price) * (100 + self.percent) / 100
        return max(0, int(changed + Fraction(1, 2)) if changed >= 0 else 0)

    def window(self, day: date, tz: tzinfo) -> tuple[datetime, datetime]:
        """The window that starts on local ``day``: (start, end) as UTC instants."""
        starts = local_instant(day, self.start, tz)
        end_day = day if self.end > self.start else day + timedelta(days=1)
        return starts, local_instant(end_day, self.end, tz)

    def _days_around(self, moment: datetime, tz: tzinfo, before: int, after: int) -> list[date]:
        today = moment.astimezone(tz).date()
        return [
            day
            for offset in range(-before, after + 1)
            if (day := today + timedelta(days=offset)).weekday() in self.days
        ]

    def active_at(self, moment: datetime, tz: tzinfo) -> bool:
        """Whether ``moment`` (aware) is inside one of the rule's windows."""
        for day in self._days_around(moment, tz, 2, 0):
            starts, ends = self.window(day, tz)
            if starts <= moment < ends:
                return True
        return False

    def next_edge(self, after: datetime, tz: tzinfo) -> datetime | None:
        """The first window start or end strictly after ``after``."""
        edges = [
            edge
            for day in self._days_around(after, tz, 2, _EDGE_HORIZON_DAYS)
            for edge in self.window(day, tz)
            if edge > after
        ]
        return min(edges) if edges else None


@dataclass(frozen=True, slots=True)
class PriceList:
    """Base prices (by slot code or product) and time-of-day rules, in one time zone.

    ``machines`` names the machines it prices; None makes it the default list.
    """

    name: str
    tz: tzinfo
    machines: frozenset[str] | None = None
    prices: Mapping[str, int] = field(default_factory=dict)
    rules: tuple[PriceRule, ...] = ()

    def base_price(self, slot: str, product: str | None, base_price: int) -> int:
        """The list's own price for the slot (by code, then product), else ``base_price``."""
        if slot.upper() in self.prices:
            return self.prices[slot.upper()]
        if product is not None and product in self.prices:
            return self.prices[product]
        return base_price

    def price_at(self, slot: str, product: str | None, base_price: int, moment: datetime) -> int:
        """What ``slot`` selling ``product`` costs at ``moment``, in minor units.

        The first rule (in the order written) that is about the slot and whose window holds
        ``moment`` decides; without one the base price holds. ``moment`` must be aware.
        """
        if moment.tzinfo is None:
            raise ValueError("price_at needs an aware moment (with a time zone)")
        price = self.base_price(slot, product, base_price)
        for rule in self.rules:
            if rule.applies_to(slot, product) and rule.active_at(moment, self.tz):
                return rule.apply(price)
        return price

    def next_change(self, after: datetime) -> datetime | None:
        """The next instant after ``after`` at which a window starts or ends."""
        edges = [edge for rule in self.rules if (edge := rule.next_edge(after, self.tz))]
        return min(edges) if edges else None


class PriceBook:
    """Every price list of the hub, and which one prices each machine."""

    def __init__(self, lists: Iterable[PriceList] = ()) -> None:
        self.lists: dict[str, PriceList] = {}
        self._by_machine: dict[str, PriceList] = {}
        self._default: PriceList | None = None
        for price_list in lists:
            self.add(price_list)

    def add(self, price_list: PriceList) -> None:
        """Take in a list; raises ValueError when a machine or the default is taken."""
        if price_list.name in self.lists:
            raise ValueError(f"there is a price list named {price_list.name!r} already")
        if price_list.machines is None:
            if self._default is not None:
                raise ValueError(
                    f"price lists {self._default.name!r} and {price_list.name!r} both name no "
                    "machines; only one list may be the default"
                )
            self._default = price_list
        else:
            for machine_id in price_list.machines:
                taken = self._by_machine.get(machine_id)
                if taken is not None:
                    raise ValueError(
                        f"machine {machine_id} is in price lists {taken.name!r} and "
                        f"{price_list.name!r}; a machine has one price list"
                    )
                self._by_machine[machine_id] = price_list
        self.lists[price_list.name] = price_list

    def list_for(self, machine_id: str) -> PriceList | None:
        """The list that prices ``machine_id``: its own, else the default, else None."""
        return self._by_machine.get(machine_id, self._default)

    def price_at(
        self, machine_id: str, slot: str, product: str | None, base_price: int, moment: datetime
    ) -> int:
        """``PriceList.price_at`` of the machine's list; ``base_price`` without a list."""
        price_list = self.list_for(machine_id)
        if price_list is None:
            return base_price
        return price_list.price_at(slot, product, base_price, moment)

    def effective_slots(
        self, machine_id: str, slots: Mapping[str, Mapping[str, Any]], moment: datetime
    ) -> dict[str, dict[str, Any]]:
        """Slot plans (``product``, ``price``, ...) with the prices in force at ``moment``."""
        price_list = self.list_for(machine_id)
        result = {code: dict(plan) for code, plan in slots.items()}
        if price_list is None:
            return result
        for code, plan in result.items():
            plan["price"] = price_list.price_at(code, plan.get("product"), plan["price"], moment)
        return result

    def next_change(self, machine_ids: Iterable[str], after: datetime) -> datetime | None:
        """The next window edge of any list that prices one of ``machine_ids``."""
        seen: set[str] = set()
        edges = []
        for machine_id in machine_ids:
            price_list = self.list_for(machine_id)
            if price_list is None or price_list.name in seen:
                continue
            seen.add(price_list.name)
            if (edge := price_list.next_change(after)) is not None:
                edges.append(edge)
        return min(edges) if edges else None


# ---- configuration ------------------------------------------------------------------------

_TIME_PATTERN = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?")


def time_of_day(value: Any) -> time:
    """``"15:00"`` or ``"15:00:30"`` (24-hour clock) as a ``time``."""
    if isinstance(value, time):
        return value
    if isinstance(value, str) and (match := _TIME_PATTERN.fullmatch(value.strip())):
        hours, minutes, seconds = match.groups()
        return time(int(hours), int(minutes), int(seconds or 0))
    if value == "24:00":
        raise vol.Invalid("expected a time from 00:00 to 23:59:59; write midnight as '00:00'")
    raise vol.Invalid(f"expected a time of day such as '15:00' (in quotes), got {value!r}")


def weekdays(value: Any) -> frozenset[int]:
    """``weekdays``, ``weekend``, ``daily`` or a list of ``mon`` ... ``sun``."""
    if isinstance(value, str) and value.lower() in _DAY_GROUPS:
        return _DAY_GROUPS[value.lower()]
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise vol.Invalid(
            f"expected weekdays, weekend, daily or a list of days such as [mon, tue], got {value!r}"
        )
    days: set[int] = set()
    for index, item in enumerate(items):
        name = str(item).lower()[:3]
        if not isinstance(item, str) or name not in WEEKDAY_NAMES:
            raise vol.Invalid(
                f"expected a day: {', '.join(WEEKDAY_NAMES)}, got {item!r}", path=[index]
            )
        days.add(WEEKDAY_NAMES.index(name))
    return frozenset(days)


def _percent(value: Any) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise vol.Invalid(f"expected a percentage such as -20, got {value!r}")
    try:
        amount = Fraction(str(value).strip().removesuffix("%").strip())
    except (ValueError, ZeroDivisionError):
        raise vol.Invalid(f"expected a percentage such as -20, got {value!r}") from None
    if not -100 <= amount <= _MAX_PERCENT:
        raise vol.Invalid(f"expected a percentage from -100 to {_MAX_PERCENT}, got {value!r}")
    return amount


def _minor_units(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise vol.Invalid(
            f"expected a price in whole minor units (cents) such as 150, got {value!r}"
        )
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise vol.Invalid(f"expected text, got {value!r}")
    return str(value)


def _texts(value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise vol.Invalid(f"expected a name or a list of names, got {value!r}")
    return [_text(item) for item in items]


def _one_change(rule: dict[str, Any]) -> dict[str, Any]:
    given = [key for key in ("percent", "discount", "price") if key in rule]
    if len(given) != 1:
        raise vol.Invalid(
            "a rule changes the price in one way: give one of 'percent' (such as -20), "
            f"'discount' (such as 20, meaning -20 %) or 'price' (minor units); "
            f"got {given or 'none'}"
        )
    return rule


RULE_SCHEMA = vol.Schema(
    vol.All(
        {
            vol.Optional("name"): _text,
            vol.Optional("days", default="daily"): weekdays,
            vol.Optional("start", default="00:00"): time_of_day,
            vol.Optional("end", default="00:00"): time_of_day,
            vol.Optional("percent"): _percent,
            vol.Optional("discount"): _percent,
            vol.Optional("price"): _minor_units,
            vol.Optional("slots"): _texts,
            vol.Optional("products"): _texts,
        },
        _one_change,
    )
)

PRICE_LIST_SCHEMA = vol.Schema(
    {
        vol.Optional("machines"): vol.All(_texts, [vol.Match(r"^[a-z0-9_]{1,64}$")]),
        vol.Optional("prices", default=dict): {_text: _minor_units},
        vol.Optional("rules", default=list): [RULE_SCHEMA],
    }
)
PRICE_LISTS_SCHEMA = vol.Schema({vol.Match(r"^[a-z0-9_]{1,64}$"): PRICE_LIST_SCHEMA})
"""``price_lists:``: name → ``machines``, ``prices`` (slot code or product → minor units),
``rules`` (``days``, ``start``, ``end``, one of ``percent``/``discount``/``price``,
optional ``slots``/``products``)."""


def rule_from_config(config: Mapping[str, Any]) -> PriceRule:
    """A ``PriceRule`` from one validated rule of ``RULE_SCHEMA``."""
    percent = config.get("percent")
    if "discount" in config:
        percent = -config["discount"]
    return PriceRule(
        start=config["start"],
        end=config["end"],
        days=config["days"],
        percent=percent,
        price=config.get("price"),
        slots=frozenset(code.upper() for code in config["slots"]) if "slots" in config else None,
        products=frozenset(config["products"]) if "products" in config else None,
        name=config.get("name"),
    )


def book_from_config(lists: Mapping[str, Mapping[str, Any]], tz: tzinfo) -> PriceBook:
    """A ``PriceBook`` from validated ``PRICE_LISTS_SCHEMA`` data; ValueError on a clash."""
    book = PriceBook()
    for name, config in lists.items():
        book.add(
            PriceList(
                name=str(name),
                tz=tz,
                machines=frozenset(config["machines"]) if "machines" in config else None,
                prices={
                    (key.upper() if _looks_like_slot(key) else str(key)): price
                    for key, price in config["prices"].items()
                },
                rules=tuple(rule_from_config(rule) for rule in config["rules"]),
            )
        )
    return book


_SLOT_CODE = re.compile(r"[A-Za-z]{1,2}\d{1,3}")


def _looks_like_slot(key: str) -> bool:
    """``A1``, ``b12``: a slot code (slot codes compare case-insensitively); else a product."""
    return _SLOT_CODE.fullmatch(key) is not None
