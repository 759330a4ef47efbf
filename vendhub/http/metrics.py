"""The hub's own metrics and their Prometheus text exposition, for ``/api/metrics``.

``install_hub_metrics(hub)`` registers, once per hub, the figures the core knows (events by
type, vend outcomes, states by domain, state writes, the recorder's queue and counters) and
fallbacks for figures that components own: MQTT messages received and WebSocket clients.
A component registers its own figure under the same name in ``vendhub.util.metrics`` and
that one is exported instead. ``exposition(hub)`` renders everything with
``prometheus_client``, each reader isolated: one that raises is logged and left out.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from vendhub.const import EVENT_VEND_COMPLETED, EVENT_VEND_FAILED, MATCH_ALL, __version__
from vendhub.recorder.recorder import DATA_RECORDER
from vendhub.util.metrics import (
    MQTT_MESSAGES_RECEIVED,
    WEBSOCKET_CLIENTS,
    Metric,
    MetricsRegistry,
    MetricValue,
    metrics_registry,
)

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric as PromMetric

    from vendhub.core.events import Event
    from vendhub.core.hub import Hub

_LOGGER = logging.getLogger(__name__)

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
_DATA_INSTALLED: Final = "http.metrics"
_DATA_WEBSOCKET: Final = "http.websocket"


class HubMetrics:
    """The core's figures for one hub; its bus listener counts events by type."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.events: Counter[str] = Counter()
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_RegistryCollector(metrics_registry(hub)))
        self._unsubscribe = hub.bus.async_listen(MATCH_ALL, self._count_event)

    def _count_event(self, event: Event) -> None:
        self.events[event.event_type] += 1

    def close(self) -> None:
        self._unsubscribe()

    # ---- readers -------------------------------------------------------------------------

    def events_by_type(self) -> dict[tuple[str, ...], int]:
        return {(event_type,): count for event_type, count in self.events.items()}

    def vends(self) -> dict[tuple[str, ...], int]:
        return {
            ("completed",): self.events[EVENT_VEND_COMPLETED],
            ("failed",): self.events[EVENT_VEND_FAILED],
        }

    def states_by_domain(self) -> dict[tuple[str, ...], int]:
        counts: Counter[str] = Counter(state.domain for state in self.hub.states.async_all())
        return {(domain,): count for domain, count in counts.items()}

    def state_writes(self) -> int:
        return self.hub.states.writes

    def _recorder(self) -> Any:
        return self.hub.data.get(DATA_RECORDER)

    def recorder_queue(self) -> int | None:
        recorder = self._recorder()
        return None if recorder is None else recorder.queue.qsize()

    def recorder_backlog(self) -> int | None:
        recorder = self._recorder()
        return None if recorder is None else recorder.stats.backlog

    def recorder_connected(self) -> int | None:
        recorder = self._recorder()
        return None if recorder is None else int(recorder.stats.connected)

    def recorder_written(self) -> dict[tuple[str, ...], int] | None:
        recorder = self._recorder()
        if recorder is None:
            return None
        stats = recorder.stats
        return {
            ("state",): stats.states_written,
            ("event",): stats.events_written,
            ("money",): stats.money_written,
        }

    def recorder_dropped(self) -> dict[tuple[str, ...], int] | None:
        recorder = self._recorder()
        if recorder is None:
            return None
        stats = recorder.stats
        return {
            ("state",): stats.states_dropped,
            ("event",): stats.events_dropped,
            ("money",): stats.money_dropped,
        }

    def mqtt_received(self) -> int | None:
        # Read from what the MQTT link keeps in hub.data["mqtt"], without importing it; the
        # link may register MQTT_MESSAGES_RECEIVED itself, which then replaces this reader.
        received = getattr(self.hub.data.get("mqtt"), "received", None)
        return received if isinstance(received, int) else None

    def websocket_clients(self) -> int:
        # The WebSocket API keeps its manager in hub.data["http.websocket"]; it may register
        # WEBSOCKET_CLIENTS itself, which then replaces this reader.
        connections = getattr(self.hub.data.get(_DATA_WEBSOCKET), "connections", None)
        return len(connections) if connections is not None else 0

    def register(self, registry: MetricsRegistry) -> None:
        counter, gauge = registry.add_counter, registry.add_gauge
        gauge(
            "vendhub_info",
            "The hub's version.",
            lambda: {(__version__,): 1},
            ("version",),
            default=True,
        )
        counter(
            "vendhub_events",
            "Events fired on the bus since the API started, by type.",
            self.events_by_type,
            ("event_type",),
            default=True,
        )
        counter(
            "vendhub_vends",
            "Vend outcomes (vend_completed and vend_failed events) since the API started.",
            self.vends,
            ("outcome",),
            default=True,
        )
        gauge(
            "vendhub_states",
            "Entities with a state now, by domain.",
            self.states_by_domain,
            ("domain",),
            default=True,
        )
        counter(
            "vendhub_state_writes",
            "State changes written since the hub started.",
            self.state_writes,
            default=True,
        )
        gauge(
            "vendhub_recorder_queue_depth",
            "Records waiting in the recorder's queue for its writer thread.",
            self.recorder_queue,
            default=True,
        )
        gauge(
            "vendhub_recorder_backlog",
            "Records the recorder's writer holds in memory, not yet committed.",
            self.recorder_backlog,
            default=True,
        )
        gauge(
            "vendhub_recorder_connected",
            "1 while the recorder's database answers.",
            self.recorder_connected,
            default=True,
        )
        counter(
            "vendhub_recorder_written",
            "Records the recorder wrote, by kind.",
            self.recorder_written,
            ("kind",),
            default=True,
        )
        counter(
            "vendhub_recorder_dropped",
            "Records the recorder dropped because its backlog was full, by kind.",
            self.recorder_dropped,
            ("kind",),
            default=True,
        )
        counter(
            MQTT_MESSAGES_RECEIVED,
            "MQTT messages received from the broker.",
            self.mqtt_received,
            default=True,
        )
        gauge(
            WEBSOCKET_CLIENTS,
            "WebSocket API clients connected now.",
            self.websocket_clients,
            default=True,
        )


class _RegistryCollector(Collector):
    """Reads every metric of a ``MetricsRegistry`` at each scrape."""

    def __init__(self, registry: MetricsRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[PromMetric]:
        for metric in self._registry.metrics():
            try:
                value = metric.read()
            except Exception:
                _LOGGER.exception("Reading the metric %s failed; left out", metric.name)
                continue
            family = _family(metric, value)
            if family is not None:
                yield family


def _family(metric: Metric, value: MetricValue) -> PromMetric | None:
    if value is None:
        return None
    kind = CounterMetricFamily if metric.kind == "counter" else GaugeMetricFamily
    if isinstance(value, Mapping):
        family = kind(metric.name, metric.documentation, labels=list(metric.labels))
        for labels, number in sorted(value.items()):
            family.add_metric(list(labels), float(number))
        return family
    if metric.labels:
        _LOGGER.error("The metric %s has labels but read a bare number; left out", metric.name)
        return None
    return kind(metric.name, metric.documentation, value=float(value))


def install_hub_metrics(hub: Hub) -> HubMetrics:
    """Start counting and register the core's metrics (once per hub)."""
    installed: HubMetrics | None = hub.data.get(_DATA_INSTALLED)
    if installed is None:
        installed = hub.data[_DATA_INSTALLED] = HubMetrics(hub)
        installed.register(metrics_registry(hub))
    return installed


def exposition(hub: Hub) -> bytes:
    """Every metric of the hub in the Prometheus text format 0.0.4."""
    return generate_latest(install_hub_metrics(hub).registry)
