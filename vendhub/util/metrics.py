"""A hub's metrics: named counters and gauges that any component registers as callbacks.

A component that knows a figure registers a function that reads it, once, and keeps the
returned callable to unregister when it unloads::

    remove = metrics_registry(hub).add_gauge(
        WEBSOCKET_CLIENTS, "WebSocket API clients connected now", lambda: len(clients)
    )

Nothing is counted here: the registry only knows where to read. ``/api/metrics``
(``vendhub.http.metrics``) reads every registered metric when it is scraped and writes the
Prometheus text format. A reader returns a number, or a mapping from label values (a tuple,
one value per label name) to numbers, or None when it has no value now (the metric is left
out). Counter names leave off ``_total``; the exposition adds it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, TypeAlias

if TYPE_CHECKING:
    from vendhub.core.hub import Hub

DATA_METRICS: Final = "core.metrics"

MetricValue: TypeAlias = float | int | Mapping[tuple[str, ...], float | int] | None
MetricReader: TypeAlias = Callable[[], MetricValue]
MetricKind: TypeAlias = Literal["counter", "gauge"]

# Well-known names, so the component that owns a figure and the hub's defaults agree.
WEBSOCKET_CLIENTS: Final = "vendhub_websocket_clients"
"""Gauge: WebSocket API connections open now (read from the WebSocket API's manager by
default; the WebSocket API may register its own reader)."""
MQTT_MESSAGES_RECEIVED: Final = "vendhub_mqtt_messages_received"
"""Counter: MQTT messages received from the broker (read from ``hub.data["mqtt"].received``
by default; the MQTT link may register its own reader)."""

_NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


@dataclass(frozen=True, slots=True)
class Metric:
    """One registered metric and how to read it."""

    name: str
    kind: MetricKind
    documentation: str
    labels: tuple[str, ...]
    read: MetricReader
    default: bool = False
    """A fallback the hub registers itself; a component's metric of the same name wins."""


class MetricsRegistry:
    """The metrics of one hub, by name; kept in ``hub.data["core.metrics"]``."""

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}
        self._defaults: dict[str, Metric] = {}

    def add_counter(
        self,
        name: str,
        documentation: str,
        read: MetricReader,
        labels: tuple[str, ...] = (),
        *,
        default: bool = False,
    ) -> Callable[[], None]:
        """Register a counter (a number that only grows); returns a callable that removes it."""
        return self._add(Metric(name, "counter", documentation, labels, read, default))

    def add_gauge(
        self,
        name: str,
        documentation: str,
        read: MetricReader,
        labels: tuple[str, ...] = (),
        *,
        default: bool = False,
    ) -> Callable[[], None]:
        """Register a gauge (a number that goes up and down); returns a callable that removes it."""
        return self._add(Metric(name, "gauge", documentation, labels, read, default))

    def _add(self, metric: Metric) -> Callable[[], None]:
        if not metric.name or set(metric.name) - _NAME_CHARACTERS or metric.name[0].isdigit():
            raise ValueError(
                f"invalid metric name {metric.name!r}: use lower-case letters, digits and _"
            )
        if metric.name.endswith("_total"):
            raise ValueError(f"leave '_total' off the name {metric.name!r}; it is added")
        table = self._defaults if metric.default else self._metrics
        if metric.name in table:
            raise ValueError(f"the metric {metric.name!r} is registered already")
        table[metric.name] = metric

        def remove() -> None:
            if table.get(metric.name) is metric:
                del table[metric.name]

        return remove

    def metrics(self) -> list[Metric]:
        """Every metric to read now, by name; a component's own wins over a default."""
        merged = {**self._defaults, **self._metrics}
        return [merged[name] for name in sorted(merged)]


def metrics_registry(hub: Hub) -> MetricsRegistry:
    """The hub's metrics registry (made on first use)."""
    registry: MetricsRegistry | None = hub.data.get(DATA_METRICS)
    if registry is None:
        registry = hub.data[DATA_METRICS] = MetricsRegistry()
    return registry


__all__ = [
    "MQTT_MESSAGES_RECEIVED",
    "WEBSOCKET_CLIENTS",
    "Metric",
    "MetricsRegistry",
    "metrics_registry",
]
