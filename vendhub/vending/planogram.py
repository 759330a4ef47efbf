"""A local machine's planogram (what each slot sells, at what price) and its selling modes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

SLOT_CODE = re.compile(r"[A-Za-z0-9]{1,8}")


class MachineMode(StrEnum):
    """Whether and how a machine sells."""

    normal = "normal"  # sells for money
    free_vend = "free_vend"  # dispenses without payment (promotions, staff machines)
    service = "service"  # a technician is at it: no sales
    out_of_order = "out_of_order"  # broken: no sales

    @property
    def sells(self) -> bool:
        return self in (MachineMode.normal, MachineMode.free_vend)


@dataclass(frozen=True, slots=True)
class SlotPlan:
    """What one slot sells: ``price`` in minor units of the machine's currency."""

    product: str
    price: int
    capacity: int
    par: int | None = None
    """The level a route driver fills to; the capacity when not given or 0 (no par level)."""

    def __post_init__(self) -> None:
        if type(self.price) is not int or self.price < 0:
            raise ValueError(f"price must be whole minor units >= 0, got {self.price!r}")
        if type(self.capacity) is not int or self.capacity < 1:
            raise ValueError(f"capacity must be a whole number >= 1, got {self.capacity!r}")
        if self.par is not None and not 0 <= self.par <= self.capacity:
            raise ValueError(f"par must be between 0 and capacity {self.capacity}, got {self.par}")
        if not self.product:
            raise ValueError("a slot needs a product name")

    @property
    def fill_level(self) -> int:
        """The level a restock without counts fills to: the par level, or the capacity for a
        slot without one (``par`` None or 0: a par of 0 would be a slot never filled)."""
        return self.par or self.capacity

    def as_dict(self) -> dict[str, Any]:
        """The plan as the machine protocol and the services give it (par: the fill level)."""
        return {
            "product": self.product,
            "price": self.price,
            "capacity": self.capacity,
            "par": self.fill_level,
        }


Planogram = Mapping[str, SlotPlan]


def check_planogram(planogram: Planogram, stock: Mapping[str, int]) -> None:
    """Raise ValueError naming the problem when slot codes or stock do not fit the plan."""
    if not planogram:
        raise ValueError("the planogram has no slots")
    for code in planogram:
        if not SLOT_CODE.fullmatch(code):
            raise ValueError(f"slot code {code!r} must be 1-8 letters or digits")
    for code, count in stock.items():
        plan = planogram.get(code)
        if plan is None:
            raise ValueError(f"stock given for slot {code!r}, which is not in the planogram")
        if type(count) is not int or not 0 <= count <= plan.capacity:
            raise ValueError(
                f"stock of slot {code} must be between 0 and its capacity {plan.capacity}, "
                f"got {count!r}"
            )
