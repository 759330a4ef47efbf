"""The machines the MQTT link knows: pending ones that announced themselves, adopted ones.

Kept in ``.storage/mqtt.machines``, so adoption, names and the config last published
survive a restart.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

from vendhub.helpers.storage import Store
from vendhub.machine import protocol
from vendhub.util.dt import utcnow

from .const import SAVE_DELAY, STORAGE_KEY, STORAGE_VERSION

if TYPE_CHECKING:
    from vendhub.core.hub import Hub


def jsonable(message: dict[str, Any]) -> dict[str, Any]:
    """A decoded protocol message as plain JSON data (times as ISO 8601 text)."""
    result: dict[str, Any] = json.loads(protocol.encode(message))
    return result


@dataclass(slots=True)
class MachineRecord:
    """One machine as stored: its last announcement, adoption and the hub's config for it."""

    machine_id: str
    announce: dict[str, Any]  # the last announce message, as JSON data
    first_seen: str
    last_seen: str
    adopted: bool = False
    adopted_at: str | None = None
    name: str | None = None
    location: str | None = None
    status: str | None = None  # the last status the machine reported: online or offline
    # The config the hub keeps for the machine: {"version", "mode", "slots"}; None until adopted.
    config: dict[str, Any] | None = None
    config_published: int = 0  # the config version last published to the broker
    # What the machine confirmed with config_applied: the version (0: none yet) and the mode
    # and slot plans it runs ({"mode", "slots"}; from its announcement until it confirms).
    config_applied: int = 0
    applied: dict[str, Any] | None = None
    # The content ({"mode", "slots"}, prices as in force then) of each version published from
    # the one confirmed last onward, by version as text (JSON keys are text).
    sent: dict[str, dict[str, Any]] = field(default_factory=dict)
    config_published_at: str | None = None  # when the newest version was first published
    config_rejected: dict[str, str] = field(default_factory=dict)  # what the machine refused
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def config_pending(self) -> bool:
        """True from publishing a config version until the machine confirms it."""
        return self.config is not None and self.config_applied < self.config["version"]

    @property
    def display_name(self) -> str:
        """The operator's name for the machine, else its id."""
        return self.name or self.machine_id

    def summary(self) -> dict[str, Any]:
        """What ``mqtt.pending`` shows of a machine."""
        announce = self.announce
        return {
            "machine_id": self.machine_id,
            "model": announce.get("model"),
            "firmware": announce.get("firmware"),
            "currency": announce.get("currency"),
            "refrigerated": announce.get("refrigerated"),
            "capabilities": announce.get("capabilities", []),
            "slots": sorted(announce.get("slots", {})),
            "status": self.status,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "adopted": self.adopted,
        }


class MachineDirectory:
    """Pending and adopted machines, saved with a short delay after each change."""

    def __init__(self, hub: Hub) -> None:
        self.store: Store[dict[str, Any]] = Store(hub, STORAGE_KEY, STORAGE_VERSION)
        self.machines: dict[str, MachineRecord] = {}

    async def async_load(self) -> None:
        """Read the stored machines (keys a newer minor version added are kept aside)."""
        data = await self.store.async_load() or {}
        known = {item.name for item in fields(MachineRecord)}
        for raw in data.get("machines", []):
            record = MachineRecord(**{key: value for key, value in raw.items() if key in known})
            record.extra.update({key: value for key, value in raw.items() if key not in known})
            self.machines[record.machine_id] = record

    def _data(self) -> dict[str, Any]:
        return {"machines": [asdict(record) for record in self.machines.values()]}

    def schedule_save(self) -> None:
        """Save soon; many changes make one write."""
        self.store.async_delay_save(self._data, SAVE_DELAY)

    async def async_save(self) -> None:
        """Save now (adoption and removal are not left to a delay)."""
        await self.store.async_save(self._data())

    async def async_flush(self) -> None:
        """Write a pending delayed save now."""
        await self.store.async_flush()

    def get(self, machine_id: str) -> MachineRecord | None:
        """The record of ``machine_id``, or None."""
        return self.machines.get(machine_id)

    def is_adopted(self, machine_id: str) -> bool:
        """True when ``machine_id`` is adopted."""
        record = self.machines.get(machine_id)
        return record is not None and record.adopted

    def pending(self) -> list[MachineRecord]:
        """Machines that announced themselves and wait for adoption, oldest first."""
        return sorted(
            (record for record in self.machines.values() if not record.adopted),
            key=lambda record: record.first_seen,
        )

    def adopted(self) -> list[MachineRecord]:
        """Adopted machines."""
        return [record for record in self.machines.values() if record.adopted]

    def announced(
        self, machine_id: str, announce: dict[str, Any], now: datetime | None = None
    ) -> tuple[MachineRecord, bool]:
        """Record an announcement; returns (record, is_new)."""
        stamp = (now or utcnow()).isoformat()
        record = self.machines.get(machine_id)
        is_new = record is None
        if record is None:
            record = self.machines[machine_id] = MachineRecord(
                machine_id=machine_id, announce=announce, first_seen=stamp, last_seen=stamp
            )
        else:
            record.announce = announce
            record.last_seen = stamp
        self.schedule_save()
        return record, is_new

    def remove(self, machine_id: str) -> MachineRecord | None:
        """Forget ``machine_id``."""
        record = self.machines.pop(machine_id, None)
        if record is not None:
            self.schedule_save()
        return record
