"""Where the hub's embedded MQTT broker last listened, for the command line.

The ``mqtt`` integration keeps it in ``.storage/mqtt.embedded_broker`` each time the broker
starts (with no port set, 1883 or the next free port). ``vendhub machine add`` runs without
the hub and reads it, so it tells the machine the port the broker really uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vendhub.helpers.storage import read_stored_data

STORAGE_KEY = "mqtt.embedded_broker"
STORAGE_VERSION = 1


@dataclass(frozen=True, slots=True)
class BrokerListeners:
    """The embedded broker's listeners at its last start."""

    port: int
    tls_port: int | None
    started: str  # ISO time of that start

    def as_data(self) -> dict[str, Any]:
        return {"port": self.port, "tls_port": self.tls_port, "started": self.started}


def read_last_listeners(config_dir: Path) -> BrokerListeners | None:
    """The listeners the hub in ``config_dir`` last started its embedded broker with; None when
    it never did, or the file cannot be read (the caller then says what the default is)."""
    data = read_stored_data(config_dir, STORAGE_KEY, STORAGE_VERSION)
    if data is None:
        return None
    try:
        tls_port = data.get("tls_port")
        return BrokerListeners(
            port=int(data["port"]),
            tls_port=int(tls_port) if tls_port is not None else None,
            started=str(data["started"]),
        )
    except (AttributeError, ValueError, KeyError, TypeError):
        return None
