"""Serial vending controller boards: the common ``FA FB`` protocol of Chinese VMC boards.

The board (VMC) polls the host over RS-232 at 57600 8N1; the host answers each poll within
100 ms with its pending command or an ACK. This integration provides the dispenser platform
``serial_board`` (``board.py``) for a machine's ``dispenser:`` in the ``vending:`` block, and
``emulator.py``, an emulated board for tests and for integrators without hardware. The bytes
and their sources are in README.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vendhub.plugins import hookimpl

from .board import PLATFORM, SerialBoardDispenser

if TYPE_CHECKING:
    from vendhub.core.hub import Hub
    from vendhub.vending.dispenser import Dispenser

__all__ = ["PLATFORM", "SerialBoardDispenser"]


@hookimpl
def vendhub_config_schema() -> None:
    """The ``serial_board:`` block takes no options: each board is a machine's dispenser."""
    return None


@hookimpl
def vendhub_setup(hub: Hub, config: Any) -> bool:
    """Nothing to start: the vending integration creates one dispenser per machine."""
    return True


@hookimpl
def vendhub_dispenser(platform: str) -> type[Dispenser] | None:
    """``serial_board``: a VMC board speaking the ``FA FB`` protocol on a serial port."""
    return SerialBoardDispenser if platform == PLATFORM else None
