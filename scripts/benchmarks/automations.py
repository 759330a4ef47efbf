"""Latency from a state change to the first action of the automation it triggers.

``--automations`` automations are loaded through the real automation integration, each with a
state trigger on its own entity, a template condition, and an ``event`` action as its first
step. The benchmark changes one entity at a time and measures the time from
``hub.states.async_set`` to the moment that action fires its event, for ``--samples``
changes spread over all automations. The baseline is the same path with a plain bus listener
instead of an automation, measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from typing import Any

from vendhub.const import EVENT_STATE_CHANGED, __version__
from vendhub.core.hub import Hub
from vendhub.util.heap import freeze_startup_heap
from vendhub_integrations.automation import CONFIG_SCHEMA, _async_setup


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--automations", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=5000)


def _configs(count: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"bench_{index}",
            "mode": "parallel",
            "trigger": [{"platform": "state", "entity_id": f"sensor.bench_{index}"}],
            "condition": [
                {"condition": "template", "value_template": "{{ trigger.to_state.state != 'x' }}"}
            ],
            "action": [{"event": "bench_fired", "event_data": {"index": index}}],
        }
        for index in range(count)
    ]


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def _measure(automations: int, samples: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        hub = Hub(folder)
        started = time.perf_counter()
        await _async_setup(hub, CONFIG_SCHEMA(_configs(automations)))
        load_seconds = time.perf_counter() - started
        freeze_startup_heap()  # as vendhub.bootstrap does once the hub runs
        fired: asyncio.Queue[float] = asyncio.Queue()
        hub.bus.async_listen("bench_fired", lambda event: fired.put_nowait(time.perf_counter()))
        latencies = []
        for sample in range(samples):
            index = sample * 7919 % automations  # spread over all automations
            before = time.perf_counter()
            hub.states.async_set(f"sensor.bench_{index}", sample)
            latencies.append((await asyncio.wait_for(fired.get(), 5)) - before)

        baseline: list[float] = []
        seen: asyncio.Queue[float] = asyncio.Queue()
        hub.bus.async_listen(
            EVENT_STATE_CHANGED,
            lambda event: (
                seen.put_nowait(time.perf_counter())
                if event.data["entity_id"] == "sensor.baseline"
                else None
            ),
        )
        for sample in range(samples):
            before = time.perf_counter()
            hub.states.async_set("sensor.baseline", sample)
            baseline.append((await seen.get()) - before)
        await hub.async_stop()
    return {
        "automations": automations,
        "samples": samples,
        "load_seconds": round(load_seconds, 2),
        "p50_ms": round(_percentile(latencies, 0.5) * 1000, 3),
        "p99_ms": round(_percentile(latencies, 0.99) * 1000, 3),
        "max_ms": round(max(latencies) * 1000, 3),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 3),
        "baseline_p50_ms": round(_percentile(baseline, 0.5) * 1000, 4),
        "baseline_p99_ms": round(_percentile(baseline, 0.99) * 1000, 4),
    }


def run(args: argparse.Namespace) -> int:
    result = asyncio.run(_measure(args.automations, args.samples))
    print(
        f"VendHub {__version__} automations benchmark: {result['automations']:,} automations "
        f"loaded in {result['load_seconds']} s, {result['samples']:,} state changes"
    )
    print(
        f"state change -> first action: p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, "
        f"max {result['max_ms']} ms (plain listener: p50 {result['baseline_p50_ms']} ms, "
        f"p99 {result['baseline_p99_ms']} ms)"
    )
    verdict = "ok" if result["p99_ms"] < 5 else "MISSED"
    print(f"target: p99 under 5 ms with 1,000 automations: {verdict}")
    if args.json:
        print(json.dumps(result))
    return 0
