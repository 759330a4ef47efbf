"""A machine's credentials used from two connections at once.

Each machine has credentials of its own and one device should ever hold them, so one machine
id with two live connections means they were copied (or the machine was cloned). Transports
tell the hub about connections with ``machine_connection`` events: ``machine_id``,
``connection_id`` (unique per connection), ``transport`` (``http``, ``websocket``, ...),
``remote`` (the peer's address) and ``state``: ``connected``, ``disconnected``, or
``reset`` (the transport restarted: forget all of its connections, of one machine or, without
``machine_id``, of every machine). When a machine has two or more live connections for
longer than ``grace`` (a reconnect may briefly overlap its old connection), the detector
raises ``anomaly_shared_credentials`` (critical); it clears when one connection is left.

Over MQTT the hub sees no connections, only what the broker delivers. The machine's
``status`` messages carry a ``session`` id, new at every connection, and the broker publishes
the machine's last will (``offline`` with that session) when a connection dies. With
``mqtt_sessions: true`` the detector reads them from ``mqtt_message_received``: an ``online``
opens a session, an ``offline`` closes it, and an ``online`` of a new session while an older
one has not said ``offline`` for ``mqtt_grace`` is taken as two connections. This is off by
default, because a broker that restarts does not publish the wills of the connections it
drops, which looks exactly the same (see docs/anomaly.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import voluptuous as vol

from vendhub.config import validators as cv
from vendhub.const import EVENT_MACHINE_CONNECTION
from vendhub.util.dt import hub_time_zone, utcnow

from . import text
from .base import AlarmRequest, AlarmSink, Clock, Detector, machine_id_of
from .validation import period_at_least, severity

if TYPE_CHECKING:
    from vendhub.core.context import Context
    from vendhub.core.events import Event
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

CODE = "anomaly_shared_credentials"
# Fired by the mqtt integration for every message it receives (integrations/mqtt/README.md).
EVENT_MQTT_MESSAGE_RECEIVED = "mqtt_message_received"
TRANSPORT_MQTT = "mqtt"
STATE_CONNECTED = "connected"
STATE_DISCONNECTED = "disconnected"
STATE_RESET = "reset"
_MACHINE_ID = re.compile(r"[a-z0-9_]{1,64}")

SCHEMA: dict[Any, Any] = {
    vol.Optional("enabled", default=True): cv.boolean,
    vol.Optional("grace", default="30s"): period_at_least(timedelta(0)),
    vol.Optional("mqtt_sessions", default=False): cv.boolean,
    vol.Optional("mqtt_grace", default="2min"): period_at_least(timedelta(0)),
    vol.Optional("severity", default="critical"): severity,
}


@dataclass(frozen=True, slots=True)
class CredentialSettings:
    """The ``credentials:`` settings."""

    enabled: bool = True
    grace: timedelta = timedelta(seconds=30)
    mqtt_sessions: bool = False
    mqtt_grace: timedelta = timedelta(minutes=2)
    severity: str = "critical"

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> CredentialSettings:
        """From the validated block."""
        return cls(**config)


@dataclass(frozen=True, slots=True)
class Connection:
    """One live connection of a machine."""

    transport: str
    connection_id: str
    remote: str | None
    since: datetime

    @property
    def key(self) -> tuple[str, str]:
        """Transport and connection id: what a disconnect names."""
        return (self.transport, self.connection_id)


def status_of_mqtt_message(data: Any) -> tuple[str, str, str | None, bool] | None:
    """(machine id, state, session, retained) of an MQTT ``status`` message; None otherwise.

    The topic is ``<prefix>/<machine_id>/status`` whatever the prefix.
    """
    topic = data.get("topic")
    if not isinstance(topic, str):
        return None
    parts = topic.split("/")
    if len(parts) < 3 or parts[-1] != "status" or not _MACHINE_ID.fullmatch(parts[-2]):
        return None
    try:
        payload = json.loads(data.get("payload") or "")
    except (TypeError, ValueError):
        return None
    if not isinstance(payload, dict) or payload.get("state") not in ("online", "offline"):
        return None
    session = payload.get("session")
    return (
        parts[-2],
        payload["state"],
        session if isinstance(session, str) and session else None,
        bool(data.get("retain")),
    )


class CredentialsDetector(Detector):
    """Raises ``anomaly_shared_credentials`` for a machine with two live connections."""

    name = "credentials"
    codes = (CODE,)

    def __init__(
        self, hub: Hub, sink: AlarmSink, settings: CredentialSettings, *, clock: Clock = utcnow
    ) -> None:
        super().__init__(hub, sink, clock=clock)
        self.settings = settings
        self.tz = hub_time_zone(hub)
        self.connections: dict[str, dict[tuple[str, str], Connection]] = {}
        self.checks: dict[str, asyncio.TimerHandle] = {}

    def _subscribe(self) -> None:
        self.listen(EVENT_MACHINE_CONNECTION, self._on_connection)
        if self.settings.mqtt_sessions:
            self.listen(EVENT_MQTT_MESSAGE_RECEIVED, self._on_mqtt_message)
        self.track(self._cancel_checks)

    def _cancel_checks(self) -> None:
        for handle in self.checks.values():
            handle.cancel()
        self.checks.clear()

    def live(self, machine_id: str) -> list[Connection]:
        """The machine's live connections, oldest first."""
        return sorted(self.connections.get(machine_id, {}).values(), key=lambda c: c.since)

    # ---- what transports report ----------------------------------------------------------

    def _on_connection(self, event: Event) -> None:
        data = event.data
        machine_id = machine_id_of(event)
        transport = str(data.get("transport") or "unknown")
        state = data.get("state")
        if state is None and isinstance(data.get("connected"), bool):
            state = STATE_CONNECTED if data["connected"] else STATE_DISCONNECTED
        if state == STATE_RESET:
            self._reset(transport, machine_id, event.context)
            return
        connection_id = data.get("connection_id")
        if machine_id is None or connection_id in (None, ""):
            return
        if state == STATE_CONNECTED:
            remote = data.get("remote")
            self._connected(
                machine_id,
                Connection(
                    transport, str(connection_id), str(remote) if remote else None, self.now()
                ),
                event.context,
            )
        elif state == STATE_DISCONNECTED:
            self._disconnected(machine_id, (transport, str(connection_id)), event.context)

    def _on_mqtt_message(self, event: Event) -> None:
        status = status_of_mqtt_message(event.data)
        if status is None:
            return
        machine_id, state, session, _retained = status
        if state == "online":
            if session is None:
                return  # a machine that sends no session cannot be followed
            known = self.connections.get(machine_id, {})
            if (TRANSPORT_MQTT, session) not in known:
                self._connected(
                    machine_id, Connection(TRANSPORT_MQTT, session, None, self.now()), event.context
                )
        elif session is None:
            self._reset(TRANSPORT_MQTT, machine_id, event.context)
        else:
            self._disconnected(machine_id, (TRANSPORT_MQTT, session), event.context)

    # ---- judging -------------------------------------------------------------------------

    def _connected(self, machine_id: str, connection: Connection, context: Context) -> None:
        live = self.connections.setdefault(machine_id, {})
        live[connection.key] = connection
        if len(live) < 2 or machine_id in self.checks:
            return
        grace = (
            self.settings.mqtt_grace
            if connection.transport == TRANSPORT_MQTT
            else self.settings.grace
        ).total_seconds()
        if grace <= 0:
            self._check(machine_id, context)
        else:
            self.checks[machine_id] = self.hub.loop.call_later(
                grace, self._check, machine_id, context
            )

    def _disconnected(self, machine_id: str, key: tuple[str, str], context: Context) -> None:
        live = self.connections.get(machine_id, {})
        live.pop(key, None)
        if not live:
            self.connections.pop(machine_id, None)
        self._settle(machine_id, context)

    def _reset(self, transport: str, machine_id: str | None, context: Context) -> None:
        machines = [machine_id] if machine_id is not None else list(self.connections)
        for machine in machines:
            live = self.connections.get(machine, {})
            for key in [key for key in live if key[0] == transport]:
                del live[key]
            if not live:
                self.connections.pop(machine, None)
            self._settle(machine, context)

    def _settle(self, machine_id: str, context: Context) -> None:
        if len(self.connections.get(machine_id, {})) >= 2:
            return
        handle = self.checks.pop(machine_id, None)
        if handle is not None:
            handle.cancel()
        self.end_episode(machine_id, CODE, context)

    def _check(self, machine_id: str, context: Context) -> None:
        self.checks.pop(machine_id, None)
        live = self.live(machine_id)
        if len(live) < 2:
            return
        described = ", ".join(self._describe(connection) for connection in live)
        self.raise_once(
            AlarmRequest(
                CODE,
                machine_id,
                self.settings.severity,
                f"{machine_id}'s credentials are in use on {len(live)} connections at once: "
                f"{described}. Only one device should hold a machine's credentials.",
                {
                    "connections": [
                        {
                            "transport": c.transport,
                            "connection_id": c.connection_id,
                            "remote": c.remote,
                            "since": c.since.isoformat(),
                        }
                        for c in live
                    ]
                },
            ),
            context,
        )

    def _describe(self, connection: Connection) -> str:
        since = text.clock(connection.since, self.tz)
        if connection.transport == TRANSPORT_MQTT:
            return f"MQTT session {connection.connection_id[:8]} since {since}"
        where = f" from {connection.remote}" if connection.remote else ""
        return f"{connection.transport}{where} since {since}"
