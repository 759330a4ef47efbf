"""The built-in product list and the planograms and fleets generated from it."""

from __future__ import annotations

import random
from typing import Any

from .const import (
    DEFAULT_AMBIENT_TEMPERATURE,
    DEFAULT_DOOR_OPENINGS_PER_DAY,
    DEFAULT_FAILURE_RATE,
    DEFAULT_FIRMWARE,
    DEFAULT_JAM_RATE,
    DEFAULT_MODEL,
    DEFAULT_SALES_PER_HOUR,
    DEFAULT_TARGET_TEMPERATURE,
)

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
LOCATIONS: tuple[str, ...] = (
    "Main lobby",
    "Station hall",
    "Office floor 2",
    "Gym",
    "Campus library",
    "Hospital waiting room",
    "Factory canteen",
    "Airport gate B",
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


def fleet_ids(fleet: dict[str, Any]) -> list[str]:
    """The machine ids a ``fleet`` block generates: ``sim_001``, ``sim_002``, …"""
    width = max(3, len(str(fleet["count"])))
    return [f"{fleet['id_prefix']}_{number:0{width}d}" for number in range(1, fleet["count"] + 1)]


def generate_fleet(fleet: dict[str, Any], seed: int | None) -> list[dict[str, Any]]:
    """Machine configurations for a validated ``fleet`` block.

    The layout depends only on ``seed`` (0 when none is set), so a fleet keeps its
    products and locations from one start to the next.
    """
    rng = random.Random(f"{0 if seed is None else seed}/fleet")
    machines = []
    for number, machine_id in enumerate(fleet_ids(fleet), start=1):
        refrigerated = rng.random() < fleet["refrigerated_share"]
        machines.append(
            {
                "id": machine_id,
                "name": f"Simulated machine {number}",
                "model": DEFAULT_MODEL,
                "firmware": DEFAULT_FIRMWARE,
                "location": rng.choice(LOCATIONS),
                "refrigerated": refrigerated,
                "target_temperature": DEFAULT_TARGET_TEMPERATURE,
                "ambient_temperature": DEFAULT_AMBIENT_TEMPERATURE,
                "sales_per_hour": fleet.get("sales_per_hour", DEFAULT_SALES_PER_HOUR),
                "daily_curve": None,
                "jam_rate": fleet.get("jam_rate", DEFAULT_JAM_RATE),
                "failure_rate": fleet.get("failure_rate", DEFAULT_FAILURE_RATE),
                "door_openings_per_day": fleet.get(
                    "door_openings_per_day", DEFAULT_DOOR_OPENINGS_PER_DAY
                ),
                "slots": planogram(fleet["slots_per_machine"], refrigerated, rng),
            }
        )
    return machines
