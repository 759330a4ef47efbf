"""The built-in products and the planograms made from them, for virtual machines."""

from __future__ import annotations

import random
from typing import Any

# (product, price in minor units, slot capacity)
SNACKS: tuple[tuple[str, int, int], ...] = (
    ("Salted crisps", 150, 12),
    ("Paprika crisps", 150, 12),
    ("Chocolate bar", 130, 15),
    ("Peanut bar", 140, 15),
    ("Granola bar", 160, 15),
    ("Butter biscuits", 120, 12),
    ("Gummy bears", 110, 12),
    ("Salted peanuts", 170, 10),
    ("Pretzels", 140, 12),
    ("Oat cookies", 150, 12),
    ("Mint gum", 90, 20),
    ("Dried fruit mix", 220, 10),
)
CHILLED: tuple[tuple[str, int, int], ...] = (
    ("Still water 0.5 l", 120, 10),
    ("Sparkling water 0.5 l", 120, 10),
    ("Cola 0.33 l", 180, 10),
    ("Orange juice 0.33 l", 220, 8),
    ("Iced tea 0.5 l", 200, 10),
    ("Energy drink 0.25 l", 240, 10),
    ("Ham sandwich", 350, 6),
    ("Cheese sandwich", 320, 6),
    ("Yoghurt", 150, 8),
    ("Fruit salad", 280, 6),
    ("Cold coffee", 250, 8),
    ("Chocolate milk", 190, 8),
)
SLOTS_PER_ROW = 6
DEFAULT_PLANOGRAM_SLOTS = 6


def slot_codes(count: int) -> list[str]:
    """``A1`` … ``A6``, ``B1`` …: six slots to a row."""
    return [
        f"{chr(ord('A') + index // SLOTS_PER_ROW)}{index % SLOTS_PER_ROW + 1}"
        for index in range(count)
    ]


def planogram(
    count: int, refrigerated: bool, rng: random.Random | None = None
) -> dict[str, dict[str, Any]]:
    """A full planogram of ``count`` slots from the built-in products.

    Without ``rng`` the products are laid out in list order, so the default planogram of a
    machine is always the same.
    """
    products = list(CHILLED if refrigerated else SNACKS)
    if rng is not None:
        rng.shuffle(products)
    slots = {}
    for index, code in enumerate(slot_codes(count)):
        product, price, capacity = products[index % len(products)]
        slots[code] = {"product": product, "price": price, "capacity": capacity, "stock": capacity}
    return slots
