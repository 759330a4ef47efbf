"""The ``anomaly:`` block: one optional section per detector, each with its defaults."""

from __future__ import annotations

import voluptuous as vol

from .registry import DETECTORS
from .validation import section

CONFIG_SCHEMA = vol.Schema(
    {
        vol.Optional(spec.name, default=dict): section(spec.schema, *spec.checks)
        for spec in DETECTORS
    }
)
"""Validates the ``anomaly:`` block; an empty block turns every detector on with defaults."""
