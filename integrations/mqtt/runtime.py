"""The running MQTT link: messages from the broker to the machine link, adoption, config, acks.

Configs: the hub publishes a machine's config (retained, a new ``version`` at every change,
prices as the machine's price list has them at that moment) and waits for the machine's
``config_applied`` event with that version. Until then the machine and the changed slots
show ``config_pending`` and the values not confirmed (``pending_price``, ``pending_mode``,
...); a machine that does not confirm within ``config_confirm_timeout`` gets
``config_overdue`` and, when the ``alarm`` integration is loaded, a ``config_not_confirmed``
alarm. Machines that never confirm (agents older than ``config_applied``) keep working:
their configs just stay pending. When a price window starts or ends, the prices in force
change and the hub publishes a new version (one timer for the next edge of any list).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from datetime import datetime, timedelta
from datetime import time as wall_time
from functools import partial
from typing import TYPE_CHECKING, Any

import aiomqtt

from vendhub.automation.triggers.mqtt import EVENT_MQTT_MESSAGE_RECEIVED
from vendhub.core.context import Context
from vendhub.core.errors import InvalidServiceData, VendHubError
from vendhub.core.events import Event, Unsubscribe
from vendhub.core.timers import async_track_point_in_time
from vendhub.helpers.alarms import async_raise_alarm
from vendhub.helpers.entity_platform import async_add_entities
from vendhub.machine import protocol
from vendhub.machine.entities import (
    ConfigStatus,
    LinkErrorsSensor,
    MachineEntities,
    MachineEntity,
    MachineEntityBase,
    MachineInfo,
    SlotEntity,
    TemperatureSensor,
)
from vendhub.machine.link import LEDGER_EVENT_TYPES, Handled, MachineLink, Outcome
from vendhub.recorder.ledger import has_money_event
from vendhub.recorder.queries import completed_vends
from vendhub.recorder.recorder import DATA_RECORDER, RecorderNotRunning, recorder_configured
from vendhub.registry import device_registry
from vendhub.util.dt import hub_time_zone, utcnow
from vendhub.util.heap import freeze_startup_heap
from vendhub.vending.pricing import DATA_PRICING, EVENT_PRICE_LISTS_CHANGED, PriceBook

from .acks import Acknowledger
from .commands import CommandRunner
from .connection import BrokerConnection, NotConnected
from .const import (
    ACK_WAIT_TIMEOUT,
    DEFAULT_CONFIG_CONFIRM_TIMEOUT,
    DOMAIN,
    EVENT_MACHINE_ADOPTED,
    EVENT_MACHINE_PENDING,
    EVENT_MACHINE_REMOVED,
    INBOUND_KINDS,
    MANUFACTURER,
    UNADOPTED_KINDS,
)
from .directory import MachineDirectory, MachineRecord, jsonable
from .schema import BrokerSettings

if TYPE_CHECKING:
    from vendhub.core.hub import Hub
    from vendhub.recorder.recorder import Recorder

    from .embedded_broker import EmbeddedBroker
    from .http_transport import MachineHttpTransport

_LOGGER = logging.getLogger(__name__)

# Reasons a message is dropped, as counted by the link-errors sensors.
REASON_BAD_PAYLOAD = "bad_payload"  # not UTF-8, not JSON, too large
REASON_WRONG_VERSION = "wrong_version"  # no "v", or another major version
REASON_SCHEMA = "schema"  # valid JSON that breaks the message's schema
REASON_NOT_ADOPTED = "not_adopted"  # from a machine that is not adopted (yet)
REASON_BAD_TOPIC = "bad_topic"  # under the prefix, but not a protocol topic
WARN_INTERVAL = 60.0  # seconds between warnings about one source's bad messages
# When this many machines were adopted and then none for HEAP_SETTLE_SECONDS, their objects
# leave the garbage collector's reach, as the start-up heap does (vendhub/util/heap.py): with
# a fleet adopted after start-up, every full collection walked all of it (0.4 s for 1,000
# machines), and a few machines are not worth the one collection that settling takes.
HEAP_SETTLE_MACHINES = 100
HEAP_SETTLE_SECONDS = 2.0
# How long a machine may take to confirm a config before it is overdue (and alarmed).
CONF_CONFIG_CONFIRM_TIMEOUT = "config_confirm_timeout"
ALARM_CONFIG_NOT_CONFIRMED = "config_not_confirmed"
PLAN_KEYS = ("product", "price", "capacity", "par")


class MqttLinkError(VendHubError):
    """A request the MQTT link cannot carry out (unknown machine, not adopted, ...)."""


def classify(error: protocol.ProtocolError) -> str:
    """The link-errors reason of a decoding error."""
    if isinstance(error, protocol.UnsupportedVersion):
        return REASON_WRONG_VERSION
    if error.reason.startswith(("payload", "expected bytes")):
        return REASON_BAD_PAYLOAD
    return REASON_SCHEMA


def _payload_bytes(payload: Any) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    if payload is None:
        return b""
    return str(payload).encode()


class MqttRuntime:
    """What one set-up MQTT link owns; kept in ``hub.data["mqtt"]``."""

    def __init__(
        self,
        hub: Hub,
        config: dict[str, Any],
        *,
        settings: BrokerSettings | None = None,
        embedded_broker: EmbeddedBroker | None = None,
    ) -> None:
        self.hub = hub
        self.config = config
        self.prefix: str = config["topic_prefix"]
        self.auto_adopt: bool = config["auto_adopt"]
        self.command_timeout: float = config["command_timeout"]
        # An embedded broker (started by the caller) gives the settings of its listener.
        self.embedded_broker = embedded_broker
        self.settings = settings or BrokerSettings.from_config(config)
        self.directory = MachineDirectory(hub)
        self.link = MachineLink(hub)
        self.entities: dict[str, MachineEntities] = {}
        self.error_sensors: dict[str, LinkErrorsSensor] = {}
        self.hub_errors = LinkErrorsSensor(
            "mqtt_link_errors", "MQTT link errors", "link_errors", info=None
        )
        self.acks = Acknowledger(
            hub, self._async_publish_ack, self._record_money_again, ACK_WAIT_TIMEOUT
        )
        self.commands = CommandRunner(self._async_publish_command)
        self.connection = BrokerConnection(
            hub,
            self.settings,
            [(protocol.topic_filter(kind, prefix=self.prefix), 1) for kind in INBOUND_KINDS],
            self._async_on_message,
            self._async_on_connect,
        )
        self.connection.behind = self._recorder_behind
        self.received = 0
        # Machines on the HTTP transport (http_transport.py): acks, configs and commands go
        # to a machine's live WebSocket when it has one, else over MQTT.
        self.http_transport: MachineHttpTransport | None = None
        self._last_warning: dict[str | None, float] = {}
        # The last status of machines not adopted, also of those that did not announce yet.
        self._statuses: dict[str, str] = {}
        self._heap_settle: asyncio.TimerHandle | None = None
        self._adopted_unsettled = 0
        self.confirm_timeout = float(
            config.get(CONF_CONFIG_CONFIRM_TIMEOUT, DEFAULT_CONFIG_CONFIRM_TIMEOUT)
        )
        self._overdue_timers: dict[str, Unsubscribe] = {}
        self._alarmed: set[str] = set()  # machines with a config_not_confirmed alarm raised
        self._price_timer: Unsubscribe | None = None
        self._price_listener: Unsubscribe | None = None
        self._sales_loads: set[asyncio.Task[None]] = set()  # reading today's sales
        # Machines whose copies of events acked before this start are past (see
        # _async_recorded_earlier).
        self._resends_past: set[str] = set()
        self._resend_lookup_warned = False

    # ---- set up and tear down ------------------------------------------------------------

    async def async_setup(self) -> None:
        """Load the machines, bring the adopted ones' entities in, start connecting."""
        await self.directory.async_load()
        await async_add_entities(self.hub, DOMAIN, [self.hub_errors])
        for record in self.directory.adopted():
            await self._async_add_machine(record, online=False)
            self._watch_confirmation(record)
        self._load_sales_today(list(self.entities))
        self._price_listener = self.hub.bus.async_listen(
            EVENT_PRICE_LISTS_CHANGED, self._on_price_lists_changed
        )
        self._schedule_price_change()
        if self._recording() and self.hub.data.get(DATA_RECORDER) is None:
            _LOGGER.error(
                "The recorder is configured but not running (see why above): sales and other "
                "ledger events from machines are NOT acknowledged, and stay in the machines' "
                "outboxes until it runs; fix it, then restart the hub"
            )
        elif not self._recording():
            _LOGGER.warning(
                "No recorder is set up: sales and other ledger events from machines are "
                "acknowledged once processed and are NOT recorded; add 'recorder:' to "
                "configuration.yaml to keep a ledger"
            )
        self.connection.start()
        pending = len(self.directory.pending())
        _LOGGER.info(
            "MQTT link to %s under '%s/': %d adopted machines, %d pending%s",
            self.settings.address,
            self.prefix,
            len(self.entities),
            pending,
            "; new machines are adopted automatically" if self.auto_adopt else "",
        )

    async def async_stop(self) -> None:
        """Disconnect cleanly, stop acking, fail waiting commands, save the machines."""
        await self.connection.async_stop()
        if self.embedded_broker is not None:
            await self.embedded_broker.async_stop()
        if self._heap_settle is not None:
            self._heap_settle.cancel()
        if self._price_listener is not None:
            self._price_listener()
            self._price_listener = None
        if self._price_timer is not None:
            self._price_timer()
            self._price_timer = None
        for cancel in self._overdue_timers.values():
            cancel()
        self._overdue_timers.clear()
        for task in list(self._sales_loads):
            task.cancel()
        self.acks.stop()
        self.commands.cancel_all()
        for machine_id in list(self.entities):
            self.link.remove_machine(machine_id)
        await self.directory.async_flush()

    def _recording(self) -> bool:
        """Whether ledger events wait for the recorder's commit before their ack: also while
        a configured recorder is not running (then they are not acked at all)."""
        return recorder_configured(self.hub)

    def _record_money_again(self, event: Event) -> bool:
        recorder = self.hub.data.get(DATA_RECORDER)
        if recorder is None:
            # A configured recorder that is not running: the event waits again, unacked.
            return recorder_configured(self.hub)
        try:
            recorder.async_record_money_again(event)
        except RecorderNotRunning:
            return recorder_configured(self.hub)
        return True

    def _recorder_behind(self) -> bool:
        recorder = self.hub.data.get(DATA_RECORDER)
        return recorder is not None and recorder.behind()

    # ---- the day's sales -----------------------------------------------------------------

    def _load_sales_today(self, machine_ids: list[str]) -> None:
        """Count the local day's completed vends of ``machine_ids`` that the ledger holds, in
        the background (the query runs in a worker thread); without a recorder the day's
        sales count from the machines' start.

        The machines' entities count live sales meanwhile: a sale in both (one that came in
        while the ledger was read, or a machine's resend whose ack was lost before a restart)
        is counted once, by its event id.
        """
        recorder: Recorder | None = self.hub.data.get(DATA_RECORDER)
        if recorder is None or not machine_ids:
            return
        task = self.hub.async_create_task(
            self._async_load_sales_today(recorder, machine_ids), name="mqtt sales today"
        )
        self._sales_loads.add(task)
        task.add_done_callback(self._sales_loads.discard)

    async def _async_load_sales_today(self, recorder: Recorder, machine_ids: list[str]) -> None:
        zone = hub_time_zone(self.hub)
        today = datetime.now(zone).date()
        start = datetime.combine(today, wall_time.min, tzinfo=zone)
        end = datetime.combine(today + timedelta(days=1), wall_time.min, tzinfo=zone)
        try:
            vends = await recorder.async_query(
                partial(completed_vends, start=start, end=end, machine_ids=machine_ids)
            )
        except Exception as error:  # the database is out of reach, or the recorder stopped
            _LOGGER.warning(
                "Could not read today's sales of %d machines from the ledger; their "
                "sales_today counts from their start (%s: %s)",
                len(machine_ids),
                type(error).__name__,
                error,
            )
            return
        counted: dict[str, MachineEntity] = {}
        for vend in vends:
            bundle = self.entities.get(vend.machine_id)
            if bundle is None:
                continue  # removed meanwhile
            machine = bundle.machine
            day = vend.time.astimezone(zone).date()
            if machine.count_sale_once(vend.source_event_id, vend.price, day, vend.currency):
                counted[vend.machine_id] = machine
        for machine in counted.values():
            machine.async_write_state()
        _LOGGER.debug(
            "Today's sales from the ledger: %d vends of %d machines", len(vends), len(counted)
        )

    # ---- publishing ----------------------------------------------------------------------

    def topic(self, machine_id: str, kind: str) -> str:
        """The topic of ``kind`` for ``machine_id`` under this link's prefix."""
        return protocol.topic(machine_id, kind, self.prefix)

    async def _async_publish_ack(self, machine_id: str, ids: list[str]) -> None:
        message = {"v": protocol.PROTOCOL_VERSION, "ids": ids}
        if self.http_transport is not None and await self.http_transport.async_deliver_ack(
            machine_id, message
        ):
            return
        await self.connection.async_publish(
            self.topic(machine_id, protocol.KIND_ACK), protocol.encode(message), qos=1
        )

    async def _async_publish_command(self, machine_id: str, kind: str, payload: bytes) -> None:
        if self.http_transport is not None and await self.http_transport.async_deliver(
            machine_id, kind, payload
        ):
            return
        await self.connection.async_publish(self.topic(machine_id, kind), payload, qos=1)

    async def _async_on_connect(self) -> None:
        """Publish the configs that changed while the broker could not be reached.

        The embedded broker keeps no retained messages across a hub restart: every config.
        """
        every = self.embedded_broker is not None
        for record in self.directory.adopted():
            if record.config is None:
                continue
            repriced = self._content(record, utcnow()) != record.sent.get(
                str(record.config["version"])
            )
            if every or repriced or record.config_published < record.config["version"]:
                await self._async_publish_config(record)

    # ---- receiving -----------------------------------------------------------------------

    async def _async_on_message(self, message: aiomqtt.Message) -> None:
        self.received += 1
        topic = message.topic.value
        payload = _payload_bytes(message.payload)
        self.hub.bus.async_fire(
            EVENT_MQTT_MESSAGE_RECEIVED,
            {
                "topic": topic,
                "payload": payload.decode("utf-8", errors="replace"),
                "qos": message.qos,
                "retain": bool(message.retain),
            },
        )
        parsed = protocol.parse_topic(topic, self.prefix)
        if parsed is None:
            self._count_error(None, REASON_BAD_TOPIC, f"not a machine protocol topic: {topic}")
            return
        machine_id, kind = parsed
        if kind not in INBOUND_KINDS:
            return  # what the hub itself publishes (ack, config, cmd/...)
        await self.async_handle_inbound(machine_id, kind, payload, retained=bool(message.retain))

    async def async_handle_inbound(
        self,
        machine_id: str,
        kind: str,
        payload: bytes | str | dict[str, Any],
        *,
        retained: bool = False,
    ) -> None:
        """Handle one message a machine sent, whichever transport carried it (MQTT, HTTP).

        ``kind`` is one of ``INBOUND_KINDS``; the transport has made sure ``machine_id`` is the
        sender's. Decoding errors are counted; events are acked as usual (after the commit).
        """
        if not payload and kind in UNADOPTED_KINDS:
            return  # a retained status or announce was cleared
        adopted = machine_id in self.entities
        try:
            decoded = protocol.decode(kind, payload)
        except protocol.ProtocolError as error:
            self._count_error(machine_id, classify(error), str(error), adopted=adopted)
            return
        if kind == protocol.KIND_ANNOUNCE:
            await self._async_on_announce(machine_id, decoded, live=not retained)
        elif not adopted:
            if kind == protocol.KIND_STATUS:
                self._pending_status(machine_id, decoded)
            else:
                self._count_error(
                    machine_id,
                    REASON_NOT_ADOPTED,
                    f"its {kind} message was dropped: the machine is not adopted; adopt it "
                    "with mqtt.adopt",
                    adopted=False,
                )
        elif kind == protocol.KIND_COMMAND_RESULT:
            self.commands.resolve(machine_id, decoded)
        elif kind == protocol.KIND_EVENT:
            if await self._async_recorded_earlier(machine_id, decoded):
                self.link.remember_event(machine_id, decoded["id"])  # then a duplicate
            self._on_event(machine_id, decoded)
        else:
            handled = self._apply(machine_id, kind, decoded)
            if kind == protocol.KIND_STATUS and handled.outcome is Outcome.applied:
                record = self.directory.get(machine_id)
                if record is not None and record.status != decoded["state"]:
                    record.status = decoded["state"]
                    self.directory.schedule_save()

    def _apply(self, machine_id: str, kind: str, message: dict[str, Any]) -> Handled:
        gaps = self.link.seq_gaps.get(machine_id, 0)
        handled = self.link.handle_decoded(machine_id, kind, message)
        if self.link.seq_gaps.get(machine_id, 0) != gaps:
            sensor = self.error_sensors.get(machine_id)
            if sensor is not None:
                sensor.seq_gaps = self.link.seq_gaps[machine_id]
                sensor.async_write_state()
        return handled

    async def _async_recorded_earlier(self, machine_id: str, event: dict[str, Any]) -> bool:
        """True for a ledger event the ledger holds although the link has not seen it.

        The link remembers event ids in memory only: a machine's copy of an event whose ack
        was lost with the hub's restart would be applied again (the slot's stock taken down
        twice, ``vend_completed`` fired twice), while the ledger's keys write it once. A
        machine sends its outbox oldest first, so the ledger is asked until the first of
        its ledger events that it does not hold; after that they are new.
        """
        if (
            machine_id in self._resends_past
            or event["event"] not in protocol.LEDGER_EVENTS
            or self.link.seen_event(machine_id, event["id"])
        ):
            return False
        recorder = self.hub.data.get(DATA_RECORDER)
        if recorder is None:
            return False
        money_event = LEDGER_EVENT_TYPES[event["event"]]
        try:
            recorded = await recorder.async_query(
                has_money_event, money_event, machine_id, event["id"]
            )
        except Exception as error:  # the database is out of reach, or the recorder stopped
            self._resends_past.add(machine_id)  # not to wait on it for every event
            if not self._resend_lookup_warned:
                self._resend_lookup_warned = True
                _LOGGER.warning(
                    "Could not ask the ledger whether machine %s's event %s was recorded "
                    "before the hub started (%s: %s); its events are handled as new, and "
                    "one it sent again is recorded once but may change its entities twice",
                    machine_id,
                    event["id"],
                    type(error).__name__,
                    error,
                )
            return False
        if not recorded:
            self._resends_past.add(machine_id)
        return bool(recorded)

    def _on_event(self, machine_id: str, event: dict[str, Any]) -> None:
        event_id = event["id"]
        ledger = event["event"] in protocol.LEDGER_EVENTS and self._recording()
        if self.link.seen_event(machine_id, event_id):
            self._apply(machine_id, protocol.KIND_EVENT, event)  # counted as a duplicate
            if ledger:
                self.acks.copy_received(machine_id, event_id)
            else:
                self.acks.ack(machine_id, event_id)
            return
        if ledger:
            self.acks.expect_recorded(machine_id, event_id)
        handled = self._apply(machine_id, protocol.KIND_EVENT, event)
        if handled.outcome is Outcome.failed:
            self.acks.forget(machine_id, event_id)
            return
        if event["event"] == protocol.EVENT_CONFIG_APPLIED and handled.outcome is Outcome.applied:
            self._config_confirmed(machine_id, event["data"])
        if not ledger:
            self.acks.ack(machine_id, event_id)

    def _pending_status(self, machine_id: str, status: dict[str, Any]) -> None:
        self._statuses[machine_id] = status["state"]
        record = self.directory.get(machine_id)
        if record is not None and record.status != status["state"]:
            record.status = status["state"]
            self.directory.schedule_save()

    async def _async_on_announce(
        self, machine_id: str, announce: dict[str, Any], *, live: bool
    ) -> None:
        record, is_new = self.directory.announced(machine_id, jsonable(announce))
        if machine_id in self._statuses:
            record.status = self._statuses[machine_id]
        if record.adopted:
            if announce["refrigerated"]:
                await self._async_add_temperature_sensor(machine_id)
            self._apply(machine_id, protocol.KIND_ANNOUNCE, announce)
            if live:
                self._stock_from_announce(machine_id, announce)
            return
        if is_new:
            _LOGGER.info(
                "Machine %s (%s, firmware %s, %d slots) announced itself and waits for adoption%s",
                machine_id,
                announce["model"],
                announce["firmware"],
                len(announce["slots"]),
                "" if self.auto_adopt else ": adopt it with mqtt.adopt",
            )
            self.hub.bus.async_fire(
                EVENT_MACHINE_PENDING,
                {
                    "machine_id": machine_id,
                    "model": announce["model"],
                    "firmware": announce["firmware"],
                },
            )
        if self.auto_adopt:
            await self.async_adopt(machine_id, automatic=True)

    async def _async_add_temperature_sensor(self, machine_id: str) -> None:
        """An adopted machine that announces a thermometer it lacked gets its sensor (a sensor
        fitted later, or a board whose status could not be read when it started)."""
        bundle = self.entities.get(machine_id)
        if bundle is None or bundle.temperature is not None:
            return
        sensor = TemperatureSensor(bundle.machine.info, None)
        bundle.temperature = sensor
        await async_add_entities(self.hub, DOMAIN, [sensor])
        _LOGGER.info("Machine %s reports a temperature now: added %s", machine_id, sensor.entity_id)

    def _stock_from_announce(self, machine_id: str, announce: dict[str, Any]) -> None:
        """A machine announces itself on every connect: its stock then is the truth."""
        entities = self.entities[machine_id]
        for code, slot in announce["slots"].items():
            entity = entities.slot(code)
            if entity is not None and entity.state != slot["stock"]:
                entity.set_stock(slot["stock"])
                entity.async_write_state()

    # ---- diagnostics ---------------------------------------------------------------------

    def _count_error(
        self, machine_id: str | None, reason: str, detail: str, *, adopted: bool = False
    ) -> None:
        sensor = self.error_sensors.get(machine_id) if adopted and machine_id else None
        now = utcnow()
        if sensor is not None:
            sensor.add(reason, detail, now)
            sensor.async_write_state()
            count = sensor.count
        else:
            self.hub_errors.add(reason, f"{machine_id or '?'}: {detail}", now)
            self.hub_errors.async_write_state()
            count = self.hub_errors.count
        source = machine_id or "an unknown source"
        last = self._last_warning.get(machine_id)
        clock = time.monotonic()
        if last is None or clock - last >= WARN_INTERVAL:
            self._last_warning[machine_id] = clock
            _LOGGER.warning(
                "Dropped a message from machine %s (%s): %s; %d dropped so far (see %s)",
                source,
                reason,
                detail,
                count,
                sensor.entity_id if sensor is not None else self.hub_errors.entity_id,
            )
        else:
            _LOGGER.debug("Dropped a message from machine %s (%s): %s", source, reason, detail)

    # ---- adoption ------------------------------------------------------------------------

    def _settle_heap(self) -> None:
        self._heap_settle = None
        self._adopted_unsettled = 0
        frozen = freeze_startup_heap()
        _LOGGER.debug("Adopted machines settled: %d objects out of the collector's reach", frozen)

    def _record(self, machine_id: str) -> MachineRecord:
        record = self.directory.get(machine_id)
        if record is None:
            pending = ", ".join(r.machine_id for r in self.directory.pending()[:20]) or "none"
            raise MqttLinkError(
                f"no machine {machine_id!r} has announced itself on {self.prefix}/"
                f"{machine_id}/announce; pending machines: {pending}"
            )
        return record

    def _adopted_record(self, machine_id: str) -> MachineRecord:
        record = self._record(machine_id)
        if not record.adopted:
            raise MqttLinkError(
                f"machine {machine_id} is not adopted yet; adopt it with mqtt.adopt first"
            )
        return record

    async def async_adopt(
        self,
        machine_id: str,
        name: str | None = None,
        location: str | None = None,
        context: Context | None = None,
        automatic: bool = False,
    ) -> dict[str, Any]:
        """Adopt a pending machine: its device and entities, then its retained config."""
        record = self._record(machine_id)
        if record.adopted:
            raise MqttLinkError(f"machine {machine_id} is adopted already")
        announce = record.announce
        record.adopted = True
        record.adopted_at = utcnow().isoformat()
        record.name = name or record.name
        record.location = location or record.location
        record.config = {
            "version": 1,
            "mode": protocol.MODE_NORMAL,
            "slots": {
                code: {key: slot[key] for key in ("product", "price", "capacity", "par")}
                for code, slot in announce["slots"].items()
            },
        }
        record.config_published = 0
        # Until it confirms a config, the machine runs what it announced.
        record.applied = {
            "mode": protocol.MODE_NORMAL,
            "slots": copy.deepcopy(record.config["slots"]),
        }
        record.config_applied = 0
        record.sent = {}
        record.config_rejected = {}
        if automatic:
            # A fleet adopting itself would rewrite the whole directory once per machine;
            # one delayed write covers them all, and a machine whose adoption a crash lost
            # announces itself again and is adopted again.
            self.directory.schedule_save()
        else:
            await self.directory.async_save()
        bundle = await self._async_add_machine(record, online=record.status == "online")
        self._load_sales_today([machine_id])  # removed and adopted again the same day
        self._adopted_unsettled += 1
        if self._adopted_unsettled >= HEAP_SETTLE_MACHINES:
            if self._heap_settle is not None:
                self._heap_settle.cancel()
            self._heap_settle = self.hub.loop.call_later(HEAP_SETTLE_SECONDS, self._settle_heap)
        published = await self._async_publish_config(record, context)
        _LOGGER.info(
            "Adopted machine %s (%s) with %d slots; config version 1 %s",
            machine_id,
            announce["model"],
            len(bundle.slots),
            "published" if published else "will be published when the broker is reachable",
        )
        self.hub.bus.async_fire(EVENT_MACHINE_ADOPTED, {"machine_id": machine_id}, context=context)
        self._schedule_price_change()  # its price list may have edges no other machine has
        return {
            "machine_id": machine_id,
            "entities": [entity.entity_id for entity in bundle.all()]
            + [self.error_sensors[machine_id].entity_id],
            "config_version": 1,
            "config_published": published,
        }

    async def _async_add_machine(self, record: MachineRecord, *, online: bool) -> MachineEntities:
        announce = record.announce
        info = MachineInfo(
            domain=DOMAIN,
            machine_id=record.machine_id,
            name=record.display_name,
            model=announce["model"],
            firmware=announce["firmware"],
            location=record.location,
            currency=announce["currency"],
            manufacturer=MANUFACTURER,
        )
        content = self._latest_content(record)
        planned_slots = content["slots"] if content is not None else {}
        slots = {
            code: {**slot, **planned_slots.get(code, {})}
            for code, slot in announce["slots"].items()
        }
        for code, planned in planned_slots.items():
            slots.setdefault(code, dict(planned))
        bundle = MachineEntities.build(
            info, slots, refrigerated=bool(announce["refrigerated"]), online=online
        )
        if content is not None:
            bundle.machine.mode = content["mode"]
            self._set_config_status(record, bundle)
        errors = LinkErrorsSensor.for_machine(info)
        entities: list[Any] = [*bundle.all(), errors]
        await async_add_entities(self.hub, DOMAIN, entities)
        self.entities[record.machine_id] = bundle
        self.error_sensors[record.machine_id] = errors
        self.link.add_machine(record.machine_id, bundle)
        return bundle

    async def async_remove(self, machine_id: str, context: Context | None = None) -> dict[str, Any]:
        """Forget a machine: its device, entities and stored record; clear its retained topics.

        If it announces itself again it shows up as pending.
        """
        record = self._record(machine_id)
        self.link.remove_machine(machine_id)
        cancel = self._overdue_timers.pop(machine_id, None)
        if cancel is not None:
            cancel()
        self.entities.pop(machine_id, None)
        self.error_sensors.pop(machine_id, None)
        devices = device_registry(self.hub)
        device = devices.async_get_device({(DOMAIN, machine_id)})
        if device is not None:
            devices.async_remove_device(device.id)
        self.directory.remove(machine_id)
        await self.directory.async_save()
        cleared = True
        for kind in (protocol.KIND_CONFIG, protocol.KIND_ANNOUNCE):
            try:
                await self.connection.async_publish(self.topic(machine_id, kind), b"", retain=True)
            except NotConnected:
                cleared = False
        _LOGGER.info("Removed machine %s", machine_id)
        self.hub.bus.async_fire(
            EVENT_MACHINE_REMOVED,
            {"machine_id": machine_id, "was_adopted": record.adopted},
            context=context,
        )
        return {"machine_id": machine_id, "was_adopted": record.adopted, "cleared": cleared}

    def pending(self) -> list[dict[str, Any]]:
        """The machines waiting for adoption."""
        return [record.summary() for record in self.directory.pending()]

    # ---- config --------------------------------------------------------------------------

    def _content(self, record: MachineRecord, now: datetime) -> dict[str, Any]:
        """What the machine should run at ``now``: the mode, and the slot plans with the
        prices in force then (the machine's price list applied to the hub's plan)."""
        assert record.config is not None
        book: PriceBook | None = self.hub.data.get(DATA_PRICING)
        slots = record.config["slots"]
        return {
            "mode": record.config["mode"],
            "slots": (
                book.effective_slots(record.machine_id, slots, now)
                if book is not None
                else copy.deepcopy(slots)
            ),
        }

    @staticmethod
    def _latest_content(record: MachineRecord) -> dict[str, Any] | None:
        """The content of the newest version published (the hub's plan if none was)."""
        if record.config is None:
            return None
        sent = record.sent.get(str(record.config["version"]))
        if sent is not None:
            return sent
        return {"mode": record.config["mode"], "slots": record.config["slots"]}

    def _prepare_config(self, record: MachineRecord, now: datetime) -> dict[str, Any]:
        """The config message to publish now; a new version when the content changed since
        the current version went out (a price window started or ended)."""
        assert record.config is not None
        content = self._content(record, now)
        sent = record.sent.get(str(record.config["version"]))
        if sent is not None and sent != content:
            record.config["version"] += 1
            sent = None
        version = record.config["version"]
        if sent is None:
            record.sent[str(version)] = content
            record.config_published_at = now.isoformat()
        return {
            "v": protocol.PROTOCOL_VERSION,
            "version": version,
            "ts": now,
            "mode": content["mode"],
            "slots": content["slots"],
        }

    def config_message(self, record: MachineRecord) -> dict[str, Any]:
        """The machine's newest config message as published (prices as in force then)."""
        assert record.config is not None
        content = self._latest_content(record)
        assert content is not None
        return {
            "v": protocol.PROTOCOL_VERSION,
            "version": record.config["version"],
            "ts": utcnow(),
            "mode": content["mode"],
            "slots": content["slots"],
        }

    def _config_message(self, config: dict[str, Any]) -> dict[str, Any]:
        """The config message of a config as stored (the prices as written, not in force)."""
        return {
            "v": protocol.PROTOCOL_VERSION,
            "version": config["version"],
            "ts": utcnow(),
            "mode": config["mode"],
            "slots": config["slots"],
        }

    async def _async_publish_config(
        self, record: MachineRecord, context: Context | None = None
    ) -> bool:
        """Publish the machine's config, retained; False when the broker is not reachable.

        Its entities show the new plan, pending, before it goes out: the machine's
        confirmation may come back before the publish returns.
        """
        assert record.config is not None
        message = self._prepare_config(record, utcnow())
        self._watch_confirmation(record)
        if record.machine_id in self.entities:
            await self._async_apply_config(record, context)
        direct = self.http_transport is not None and await self.http_transport.async_deliver(
            record.machine_id, protocol.KIND_CONFIG, protocol.encode(message)
        )
        try:
            await self.connection.async_publish(
                self.topic(record.machine_id, protocol.KIND_CONFIG),
                protocol.encode(message),
                qos=1,
                retain=True,
            )
        except NotConnected as error:
            _LOGGER.info(
                "Config version %d of %s is published once the broker is reachable (%s)",
                message["version"],
                record.machine_id,
                error,
            )
            self.directory.schedule_save()
            return direct
        record.config_published = message["version"]
        self.directory.schedule_save()
        return True

    async def async_publish_config(
        self,
        machine_id: str,
        mode: str | None = None,
        slots: dict[str, dict[str, Any]] | None = None,
        context: Context | None = None,
    ) -> dict[str, Any]:
        """Change a machine's mode or slots (merged per slot), and publish it retained."""
        record = self._adopted_record(machine_id)
        assert record.config is not None
        config = copy.deepcopy(record.config)
        if mode is not None:
            config["mode"] = mode
        for code, changes in (slots or {}).items():
            merged = {**config["slots"].get(code, {}), **changes}
            if "capacity" in merged and "par" not in merged:
                merged["par"] = max(1, merged["capacity"] // 4)
            config["slots"][code] = merged
        config["version"] += 1
        try:
            protocol.validate(protocol.KIND_CONFIG, self._config_message(config))
        except protocol.ProtocolError as error:
            raise MqttLinkError(
                f"the config for {machine_id} is not valid: {error.reason}"
            ) from None
        record.config = config
        await self.directory.async_save()
        published = await self._async_publish_config(record, context)
        content = self._latest_content(record)
        assert content is not None
        return {
            "machine_id": machine_id,
            "version": config["version"],
            "mode": content["mode"],
            "slots": content["slots"],
            "published": published,
            "config_pending": record.config_pending,
        }

    async def _async_apply_config(self, record: MachineRecord, context: Context | None) -> None:
        """Show the newest plan on the machine's entities; new slots get entities of their own."""
        content = self._latest_content(record)
        assert content is not None
        bundle = self.entities[record.machine_id]
        change = Context(parent_id=context.id, user_id=context.user_id) if context else None
        bundle.machine.mode = content["mode"]
        new_slots: list[MachineEntityBase] = []
        for code, plan in content["slots"].items():
            slot = bundle.slot(code)
            if slot is None:
                slot = SlotEntity(
                    bundle.machine.info,
                    code,
                    plan["product"],
                    plan["price"],
                    plan["capacity"],
                    None,
                    plan["par"],
                )
                slot.set_available(bundle.machine.online)
                bundle.add_slot(slot)
                new_slots.append(slot)
                continue
            slot.set_plan(plan["product"], plan["price"], plan["capacity"], plan["par"])
        self._set_config_status(record, bundle)
        for entity in (bundle.machine, *bundle.slots.values()):
            if entity not in new_slots:
                entity.async_write_state(change)
        if new_slots:
            await async_add_entities(self.hub, DOMAIN, new_slots)

    # ---- confirmation --------------------------------------------------------------------

    def _set_config_status(self, record: MachineRecord, bundle: MachineEntities) -> None:
        """Put the published and confirmed versions and the unconfirmed values on the
        machine's entities (write their states afterwards)."""
        content = self._latest_content(record)
        assert content is not None and record.config is not None
        applied = record.applied if record.applied is not None else content
        rejected = record.config_rejected
        published_at = record.config_published_at
        bundle.machine.config = ConfigStatus(
            version=record.config["version"],
            applied_version=record.config_applied,
            pending_mode=content["mode"] if content["mode"] != applied.get("mode") else None,
            overdue=record.machine_id in self._alarmed or self._is_overdue(record),
            published_at=datetime.fromisoformat(published_at) if published_at else None,
            rejected=dict(rejected),
        )
        applied_slots = applied.get("slots", {})
        for code, slot in bundle.slots.items():
            plan = content["slots"].get(code)
            confirmed = applied_slots.get(code, {})
            pending = {
                key: plan[key]
                for key in PLAN_KEYS
                if plan is not None and key in plan and confirmed.get(key) != plan[key]
            }
            reason = rejected.get(f"slots.{code}") or rejected.get("config") if pending else None
            slot.set_pending(pending, reason)

    def _show_config_status(self, record: MachineRecord, context: Context | None) -> None:
        """Write the config status of the machine and its slots when it changed."""
        bundle = self.entities.get(record.machine_id)
        if bundle is None or record.config is None:
            return
        self._set_config_status(record, bundle)
        bundle.machine.async_write_state(context)
        for slot in bundle.slots.values():
            slot.async_write_state(context)

    def _is_overdue(self, record: MachineRecord, now: datetime | None = None) -> bool:
        if not record.config_pending or record.config_published_at is None:
            return False
        published = datetime.fromisoformat(record.config_published_at)
        return (now or utcnow()) - published >= timedelta(seconds=self.confirm_timeout)

    def _watch_confirmation(self, record: MachineRecord) -> None:
        """(Re)start the wait for the machine to confirm its newest config version."""
        cancel = self._overdue_timers.pop(record.machine_id, None)
        if cancel is not None:
            cancel()
        if not record.config_pending or record.config_published_at is None:
            return
        due = datetime.fromisoformat(record.config_published_at) + timedelta(
            seconds=self.confirm_timeout
        )
        machine_id = record.machine_id

        async def async_check(_now: datetime) -> None:
            self._overdue_timers.pop(machine_id, None)
            await self._async_config_overdue(machine_id)

        self._overdue_timers[machine_id] = async_track_point_in_time(self.hub, async_check, due)

    async def _async_config_overdue(self, machine_id: str) -> None:
        record = self.directory.get(machine_id)
        if record is None or not record.adopted or not record.config_pending:
            return
        assert record.config is not None
        version = record.config["version"]
        content = self._latest_content(record) or {}
        applied = record.applied or content
        changed = sorted(
            code
            for code, plan in content.get("slots", {}).items()
            if applied.get("slots", {}).get(code) != plan
        )
        what = (
            f"slots {', '.join(changed)}" if changed else "no value changes (a new machine)"
        ) + (f", mode {content['mode']}" if content.get("mode") != applied.get("mode") else "")
        message = (
            f"Machine {machine_id} did not confirm config version {version} within "
            f"{self.confirm_timeout:g} s (it confirmed version {record.config_applied}; "
            f"pending: {what}); it may be offline or run an agent that does not send "
            "config_applied"
        )
        _LOGGER.warning(message)
        self._alarmed.add(machine_id)
        self._show_config_status(record, None)
        await async_raise_alarm(
            self.hub,
            ALARM_CONFIG_NOT_CONFIRMED,
            message,
            machine_id=machine_id,
            data={
                "version": version,
                "applied_version": record.config_applied,
                "slots": changed,
            },
        )

    def _config_confirmed(self, machine_id: str, data: dict[str, Any]) -> None:
        """The machine applied config ``data["version"]`` (minus what it rejected)."""
        record = self.directory.get(machine_id)
        if record is None or record.config is None:
            return
        version = data["version"]
        rejected = {str(key): str(reason) for key, reason in (data.get("rejected") or {}).items()}
        if version > record.config["version"]:
            _LOGGER.warning(
                "Machine %s confirmed config version %d, but the hub published only up to %d; "
                "ignored",
                machine_id,
                version,
                record.config["version"],
            )
            return
        if version <= record.config_applied:
            _LOGGER.debug("Machine %s confirmed config version %d again", machine_id, version)
            return
        # Late (also before a restart, when an alarm may have been raised): clear it below.
        late = machine_id in self._alarmed or self._is_overdue(record)
        content = record.sent.get(str(version))
        applied = copy.deepcopy(record.applied) or {"mode": None, "slots": {}}
        if content is not None and "config" not in rejected:
            if "mode" not in rejected:
                applied["mode"] = content["mode"]
            for code, plan in content["slots"].items():
                if f"slots.{code}" not in rejected:
                    applied["slots"][code] = copy.deepcopy(plan)
        record.applied = applied
        record.config_applied = version
        record.config_rejected = rejected
        record.sent = {key: sent for key, sent in record.sent.items() if int(key) >= version}
        self.directory.schedule_save()
        if rejected:
            _LOGGER.warning(
                "Machine %s applied config version %d but rejected: %s",
                machine_id,
                version,
                "; ".join(f"{key}: {reason}" for key, reason in sorted(rejected.items())),
            )
        else:
            _LOGGER.info("Machine %s confirmed config version %d", machine_id, version)
        if not record.config_pending:
            cancel = self._overdue_timers.pop(machine_id, None)
            if cancel is not None:
                cancel()
            self._alarmed.discard(machine_id)
            if late:
                self.hub.async_create_task(
                    self._async_clear_alarm(machine_id), name=f"clear config alarm {machine_id}"
                )
        self._show_config_status(record, None)

    async def _async_clear_alarm(self, machine_id: str) -> None:
        if not self.hub.services.has_service("alarm", "clear"):
            return
        with contextlib.suppress(InvalidServiceData):  # someone cleared it already
            await self.hub.services.async_call(
                "alarm", "clear", {"machine_id": machine_id, "code": ALARM_CONFIG_NOT_CONFIRMED}
            )

    # ---- prices that change with the time of day -----------------------------------------

    def _schedule_price_change(self) -> None:
        """Set the one timer for the next price window edge of any adopted machine."""
        if self._price_timer is not None:
            self._price_timer()
            self._price_timer = None
        book: PriceBook | None = self.hub.data.get(DATA_PRICING)
        if book is None:
            return
        machine_ids = [record.machine_id for record in self.directory.adopted()]
        edge = book.next_change(machine_ids, utcnow())
        if edge is None:
            return
        _LOGGER.debug("Next price window edge at %s", edge.isoformat())
        self._price_timer = async_track_point_in_time(self.hub, self._async_price_edge, edge)

    async def _async_price_edge(self, _now: datetime) -> None:
        self._price_timer = None
        try:
            await self.async_reprice()
        finally:
            self._schedule_price_change()

    def _on_price_lists_changed(self, _event: Event) -> None:
        self.hub.async_create_task(self._async_price_lists_changed(), name="mqtt reprice")

    async def _async_price_lists_changed(self) -> None:
        try:
            await self.async_reprice()
        finally:
            self._schedule_price_change()

    async def async_reprice(self) -> list[str]:
        """Publish a new config version to every adopted machine whose prices in force
        changed; returns their ids."""
        now = utcnow()
        changed = []
        for record in self.directory.adopted():
            if record.config is None or record.machine_id not in self.entities:
                continue
            if self._content(record, now) == record.sent.get(str(record.config["version"])):
                continue
            await self._async_publish_config(record)
            changed.append(record.machine_id)
        if changed:
            _LOGGER.info("Prices in force changed: new config versions for %s", ", ".join(changed))
        return changed

    # ---- commands ------------------------------------------------------------------------

    async def async_command(
        self,
        machine_id: str,
        name: str,
        args: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Send ``cmd/<name>`` to an adopted machine and return its ``cmd_result``."""
        self._adopted_record(machine_id)
        try:
            valid_args = protocol.validate_command_args(name, dict(args or {}))
        except protocol.ProtocolError as error:
            raise MqttLinkError(f"command {name} to {machine_id}: {error.reason}") from None
        return await self.commands.async_run(
            machine_id, name, valid_args, self.command_timeout if timeout is None else timeout
        )
