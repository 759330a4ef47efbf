"""State writes and event dispatches per second through the real bus and state machine.

Each figure is the best of several rounds. The baseline is the same loop writing to a plain
dict and calling the listeners directly, measured in the same run, so the ratio (how many
times slower than bare Python) means something on any machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import tempfile
import time
from collections.abc import Callable
from typing import Any

from vendhub.const import EVENT_STATE_CHANGED, __version__
from vendhub.core.hub import Hub

ENTITIES = 100


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--writes", type=int, default=200_000, help="operations per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the best one counts")


def _best_rate(operation: Callable[[int], None], count: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        operation(count)
        best = min(best, time.perf_counter() - started)
    return count / best


def _listeners(count: int) -> tuple[list[Callable[[Any], None]], list[int]]:
    received = [0]

    def listener(event: Any) -> None:
        received[0] += 1

    return [listener] * count, received


def _baseline(listener_count: int, count: int, rounds: int) -> float:
    listeners, _ = _listeners(listener_count)
    table: dict[str, int] = {}
    ids = [f"sensor.bench_{i}" for i in range(ENTITIES)]

    def operation(n: int) -> None:
        for i in range(n):
            entity_id = ids[i % ENTITIES]
            table[entity_id] = i
            for listener in listeners:
                listener(entity_id)

    return _best_rate(operation, count, rounds)


async def _hub_rates(listener_count: int, count: int, rounds: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as folder:
        hub = Hub(folder)
        listeners, received = _listeners(listener_count)
        for listener in listeners:
            hub.bus.async_listen(EVENT_STATE_CHANGED, listener)
            hub.bus.async_listen("bench_event", listener)
        ids = [f"sensor.bench_{i}" for i in range(ENTITIES)]
        set_state = hub.states.async_set
        fire = hub.bus.async_fire
        value = [0]

        def write_states(n: int) -> None:
            start = value[0]
            for i in range(start, start + n):
                set_state(ids[i % ENTITIES], i)
            value[0] = start + n

        def fire_events(n: int) -> None:
            data = {"machine_id": "bench", "price": 150}
            for _ in range(n):
                fire("bench_event", data)

        writes = _best_rate(write_states, count, rounds)
        events = _best_rate(fire_events, count, rounds)
        expected = listener_count * count * rounds * 2
        if received[0] != expected:
            raise SystemExit(f"listeners received {received[0]} calls, expected {expected}")
        await hub.async_stop()
        return writes, events


def run(args: argparse.Namespace) -> int:
    results: dict[str, Any] = {}
    rows = []
    for listener_count in (1, 20):
        baseline = _baseline(listener_count, args.writes, args.rounds)
        writes, events = asyncio.run(_hub_rates(listener_count, args.writes, args.rounds))
        suffix = "" if listener_count == 1 else f"_{listener_count}_listeners"
        results[f"state_writes_per_s{suffix}"] = round(writes)
        results[f"events_per_s{suffix}"] = round(events)
        results[f"baseline_dict_writes_per_s{suffix}"] = round(baseline)
        rows.append((f"state writes/s, {listener_count} listener(s)", writes, baseline))
        rows.append((f"events/s, {listener_count} listener(s)", events, baseline))
    results.update(
        writes_per_round=args.writes,
        rounds=args.rounds,
        python=platform.python_version(),
        machine=platform.machine(),
        vendhub=__version__,
    )
    print(
        f"VendHub {__version__} core benchmark, Python {platform.python_version()}, "
        f"{args.writes:,} operations per round, best of {args.rounds}"
    )
    print(f"{'figure':<34}{'per second':>14}{'baseline/s':>14}{'x slower':>10}")
    for name, rate, baseline in rows:
        print(f"{name:<34}{rate:>14,.0f}{baseline:>14,.0f}{baseline / rate:>10.1f}")
    target = 150_000
    verdict = "meets" if results["state_writes_per_s"] >= target else "MISSES"
    print(f"target: {target:,} state writes/s with one listener: {verdict}")
    if args.json:
        print(json.dumps(results))
    return 0
