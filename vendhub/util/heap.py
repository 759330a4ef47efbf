"""Keeping the garbage collector from stalling the event loop."""

from __future__ import annotations

import gc
import logging

_LOGGER = logging.getLogger(__name__)


def freeze_startup_heap() -> int:
    """Move everything alive after start-up out of the collector's reach; return how many.

    A full collection walks every tracked object while holding the GIL. After start-up a hub
    holds hundreds of thousands of long-lived objects (modules, SQLAlchemy metadata, registries,
    states); walking them took 40-50 ms per full collection, a stall the event loop and the
    recorder's purge both felt (measured by ``scripts/bench purge``). Frozen objects are never
    walked again; what is created later is collected as usual.
    """
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    _LOGGER.debug("Froze %d start-up objects out of the garbage collector's reach", frozen)
    return frozen
