"""The fleets generated from the built-in products (``vendhub.machine.catalog``)."""

from __future__ import annotations

import random
from typing import Any

# The products and planograms live in the core, where the simulate command uses them too.
from vendhub.machine.catalog import DEFAULT_PLANOGRAM_SLOTS as DEFAULT_PLANOGRAM_SLOTS
from vendhub.machine.catalog import planogram as planogram

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
