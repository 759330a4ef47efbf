"""Hub-side vend overhead: select → dispense command issued to the board.

``--machines`` local machines (50 by default) run through the real ``VendEngine`` with its
durable journal (SQLite, WAL, ``synchronous=FULL`` in a temporary folder: two journal commits
lie between a selection and the dispense command, ``authorize begin`` and ``authorize done`` +
``dispense begin``), the ``instant`` payment provider and a ``simulator`` board with zero
dispense time. The figure is the time from calling ``async_select`` to the board receiving
the dispense command, in three runs:

- concurrent (the headline ``p50_ms`` / ``p99_ms``): ``--rounds`` rounds in which every
  machine selects at the same instant, so that all sessions are in flight together; the next
  round starts when all have finished. ``cpu_ms_per_vend`` is the process's CPU time per vend
  of these rounds (the event loop's share in ``loop_cpu_ms_per_vend``, the rest is mostly the
  journal's writer thread): steadier than wall time on a machine that does other work.
- paced: every machine starts a vend every ``--interval`` seconds (1 s: 50 vends a second
  from 50 machines, far busier than any real fleet) at its own random phase, for
  ``--seconds``; sessions overlap as they would in a busy fleet.
- saturated: every machine vends back to back without pause (``--vends`` each), which no
  fleet does (it is about a thousand vends a second); it gives the throughput and the
  latency of a hub with no idle time left.

Two references are measured in the same run, on the same disk:

- the floor (``floor_p50_ms`` / ``floor_p99_ms``, ``scripts/benchmarks/vend_floor.py``): the
  same all-at-once rounds with only what any hub that keeps the journal's rule must do, a small
  JSON row committed twice by a group-commit thread, run round for round with the hub's, so
  that both meet the machine in the same state; ``p99_over_floor`` is the hub's p99 over it;
- the baseline: one durable SQLite commit of the same kind (the floor under each write).

As the hub does once it runs (``vendhub.bootstrap``), the start-up heap is frozen out of the
garbage collector's reach before measuring. No listener is on the bus unless ``--listen``
adds one for every event (as the recorder, the metrics and the websocket API do in a full
hub): the engine makes an event's data only when someone listens.

    scripts/bench vend [--machines 50] [--rounds 40] [--interval 1] [--seconds 10]
                       [--vends 40] [--listen] [--json]
    .venv/bin/python -m scripts.benchmarks.vend --json     (runs without the bench registry)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from scripts.benchmarks.vend_floor import FloorJournal, async_floor_round
from vendhub.const import MATCH_ALL, __version__
from vendhub.core.events import Event
from vendhub.core.hub import Hub
from vendhub.util.heap import freeze_startup_heap
from vendhub.vending.engine import SESSIONS_IN_MEMORY, MachineSetup, VendEngine
from vendhub.vending.journal import VendJournal
from vendhub.vending.planogram import SlotPlan
from vendhub.vending.session import VendOutcome
from vendhub_integrations.vending.instant_payment import KEEP_PAYMENTS, InstantPaymentProvider
from vendhub_integrations.vending.simulator_board import KEEP_COMMANDS, SimulatorDispenser

TARGET_P99_MS = 10.0
_STUCK_AFTER = 300.0
"""Seconds after which a phase of the benchmark gives up: a session that never ends."""
SLOTS = ("A1", "A2", "A3", "A4")
WARM_UP_VENDS = max(SESSIONS_IN_MEMORY, KEEP_PAYMENTS, KEEP_COMMANDS) + 2
"""Vends per machine before measuring: enough to fill what the hub remembers of past vends."""
FLOOR_WARM_UP_ROUNDS = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--machines", type=int, default=50, help="machines vending at once")
    parser.add_argument("--rounds", type=int, default=40, help="concurrent rounds")
    parser.add_argument("--interval", type=float, default=1.0, help="paced: seconds per vend")
    parser.add_argument("--seconds", type=float, default=10.0, help="paced: how long")
    parser.add_argument("--vends", type=int, default=40, help="saturated vends per machine")
    parser.add_argument(
        "--listen", action="store_true", help="a listener for every event on the bus"
    )


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _baseline_commits(folder: Path, samples: int) -> list[float]:
    """Durations of single-row durable commits (WAL, synchronous=FULL) on the same disk."""
    connection = sqlite3.connect(folder / "baseline.db", isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("CREATE TABLE steps (id INTEGER PRIMARY KEY, detail TEXT)")
    durations = []
    for index in range(samples):
        before = time.perf_counter()
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO steps (detail) VALUES (?)", (f"step {index}",))
        connection.execute("COMMIT")
        durations.append(time.perf_counter() - before)
    connection.close()
    return durations


async def _machine_loop(engine: VendEngine, vends: int, latencies: list[float]) -> int:
    failures = 0
    for index in range(vends):
        if not await _one_vend(engine, SLOTS[index % len(SLOTS)], latencies):
            failures += 1
    return failures


async def _one_vend(engine: VendEngine, slot: str, latencies: list[float]) -> bool:
    dispenser = engine.machine.dispenser
    assert isinstance(dispenser, SimulatorDispenser)
    before = time.perf_counter()
    session = await engine.async_select(slot=slot, method="card")
    # No timer per wait (it would be the benchmark's cost, not the hub's): each phase as a
    # whole runs under _STUCK_AFTER.
    final = await engine.async_wait(session.id)
    if final.outcome is not VendOutcome.completed:
        return False
    command = dispenser.commands[-1]  # a machine runs one session at a time
    assert command.vend_id == session.id
    latencies.append(command.issued - before)
    return True


async def _paced_loop(
    engine: VendEngine, interval: float, until: float, phase: float, latencies: list[float]
) -> int:
    failures = 0
    await asyncio.sleep(phase)
    index = 0
    while time.perf_counter() < until:
        started = time.perf_counter()
        if not await _one_vend(engine, SLOTS[index % len(SLOTS)], latencies):
            failures += 1
        index += 1
        await asyncio.sleep(max(0.0, started + interval - time.perf_counter()))
    return failures


async def _measure(
    machines: int, rounds: int, interval: float, seconds: float, vends: int, listen: bool
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        hub = Hub(root)
        events_heard = 0

        def hear(event: Event) -> None:
            nonlocal events_heard
            events_heard += 1

        if listen:
            hub.bus.async_listen(MATCH_ALL, hear)
        journal = VendJournal(root / ".storage" / "vending.journal.db")
        await journal.async_open()
        planogram = {slot: SlotPlan(f"Product {slot}", 150, 1000) for slot in SLOTS}
        engines = []
        for number in range(machines):
            machine_id = f"bench_{number}"
            engine = VendEngine(
                hub,
                MachineSetup(
                    machine_id=machine_id,
                    currency="EUR",
                    planogram=planogram,
                    stock=dict.fromkeys(SLOTS, 1000),
                    dispenser=SimulatorDispenser(hub, machine_id, {"dispense_time": 0}),
                    providers=[InstantPaymentProvider(hub, machine_id, {})],
                ),
                journal,
            )
            await engine.async_start()
            engines.append(engine)
        # Warm-up: first-use costs (imports, SQLite page cache) stay out, and the hub reaches
        # its steady state, in which what it remembers of past vends (the engine's sessions,
        # the provider's payments, the board's commands) no longer grows.
        async with asyncio.timeout(_STUCK_AFTER):
            await asyncio.gather(*(_machine_loop(engine, WARM_UP_VENDS, []) for engine in engines))
        floor_journal = FloorJournal(root / "floor.db")
        await floor_journal.async_open()
        for number in range(FLOOR_WARM_UP_ROUNDS):
            await async_floor_round(floor_journal, machines, SLOTS[number % len(SLOTS)], [])
        freeze_startup_heap()
        concurrent: list[float] = []
        floor: list[float] = []
        concurrent_failed = 0
        cpu = loop_cpu = 0.0
        async with asyncio.timeout(_STUCK_AFTER):
            for number in range(rounds):
                slot = SLOTS[number % len(SLOTS)]
                # Round for round, so that both meet the machine in the same mood.
                await async_floor_round(floor_journal, machines, slot, floor)
                cpu_before, loop_cpu_before = time.process_time(), time.thread_time()
                done = await asyncio.gather(
                    *(_one_vend(engine, slot, concurrent) for engine in engines)
                )
                cpu += time.process_time() - cpu_before
                loop_cpu += time.thread_time() - loop_cpu_before
                concurrent_failed += done.count(False)
        await floor_journal.async_close()
        randomness = random.Random(7)
        paced: list[float] = []
        until = time.perf_counter() + seconds
        async with asyncio.timeout(seconds + _STUCK_AFTER):
            paced_failed = await asyncio.gather(
                *(
                    _paced_loop(engine, interval, until, randomness.uniform(0, interval), paced)
                    for engine in engines
                )
            )
        commits_before = journal.commits
        latencies: list[float] = []
        started = time.perf_counter()
        async with asyncio.timeout(_STUCK_AFTER):
            failures = await asyncio.gather(
                *(_machine_loop(engine, vends, latencies) for engine in engines)
            )
        elapsed = time.perf_counter() - started
        commits = journal.commits - commits_before
        for engine in engines:
            await engine.async_stop()
        await journal.async_close()
        await hub.async_stop()
        baseline = await asyncio.get_running_loop().run_in_executor(
            None, _baseline_commits, root, 500
        )
    completed = len(latencies)
    p99, floor_p99 = _percentile(concurrent, 0.99), _percentile(floor, 0.99)
    return {
        "machines": machines,
        "vends": len(concurrent),
        "failed": concurrent_failed,
        "p50_ms": round(_percentile(concurrent, 0.5) * 1000, 3),
        "p99_ms": round(p99 * 1000, 3),
        "max_ms": round(max(concurrent) * 1000, 3),
        "mean_ms": round(statistics.fmean(concurrent) * 1000, 3),
        "floor_p50_ms": round(_percentile(floor, 0.5) * 1000, 3),
        "floor_p99_ms": round(floor_p99 * 1000, 3),
        "p99_over_floor": round(p99 / floor_p99, 2),
        "cpu_ms_per_vend": round(cpu / (machines * rounds) * 1000, 4),
        "loop_cpu_ms_per_vend": round(loop_cpu / (machines * rounds) * 1000, 4),
        "listen": listen,
        "events_heard": events_heard,
        "paced_interval_s": interval,
        "paced_vends": len(paced),
        "paced_failed": sum(paced_failed),
        "paced_p50_ms": round(_percentile(paced, 0.5) * 1000, 3),
        "paced_p99_ms": round(_percentile(paced, 0.99) * 1000, 3),
        "paced_max_ms": round(max(paced) * 1000, 3),
        "saturated_vends": completed,
        "saturated_failed": sum(failures),
        "saturated_vends_per_second": round(completed / elapsed, 1),
        "saturated_journal_commits": commits,
        "saturated_p50_ms": round(_percentile(latencies, 0.5) * 1000, 3),
        "saturated_p99_ms": round(_percentile(latencies, 0.99) * 1000, 3),
        "baseline_commit_p50_ms": round(_percentile(baseline, 0.5) * 1000, 3),
        "baseline_commit_p99_ms": round(_percentile(baseline, 0.99) * 1000, 3),
    }


def run(args: argparse.Namespace) -> int:
    result = asyncio.run(
        _measure(args.machines, args.rounds, args.interval, args.seconds, args.vends, args.listen)
    )
    print(
        f"VendHub {__version__} vend benchmark: {result['machines']} machines; concurrent: "
        f"{result['vends']:,} vends ({result['failed']} failed); saturated: "
        f"{result['saturated_vends']:,} vends ({result['saturated_failed']} failed), "
        f"{result['saturated_vends_per_second']:,} vends/s, "
        f"{result['saturated_journal_commits']:,} journal commits; CPU per vend (all at "
        f"once): {result['cpu_ms_per_vend']} ms, event loop {result['loop_cpu_ms_per_vend']} ms"
        f"{'; a listener heard every event' if result['listen'] else ''}"
    )
    rows = [
        (
            f"select -> dispense, {result['machines']} at once",
            result["p50_ms"],
            result["p99_ms"],
            result["max_ms"],
        ),
        (
            f"select -> dispense, paced 1 per {result['paced_interval_s']:g} s each",
            result["paced_p50_ms"],
            result["paced_p99_ms"],
            result["paced_max_ms"],
        ),
        (
            "select -> dispense, saturated",
            result["saturated_p50_ms"],
            result["saturated_p99_ms"],
            None,
        ),
        (
            f"floor: two group commits, {result['machines']} at once",
            result["floor_p50_ms"],
            result["floor_p99_ms"],
            None,
        ),
        (
            "baseline: one durable SQLite commit",
            result["baseline_commit_p50_ms"],
            result["baseline_commit_p99_ms"],
            None,
        ),
    ]
    print(f"{'':42} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}")
    for name, p50, p99, worst in rows:
        print(f"{name:42} {p50:>9} {p99:>9} {'' if worst is None else worst:>9}")
    for name, key in (("all at once", "p99_ms"), ("paced", "paced_p99_ms")):
        verdict = "ok" if result[key] < TARGET_P99_MS else "MISSED"
        print(
            f"target: p99 under {TARGET_P99_MS:g} ms at {result['machines']} machines, "
            f"{name}: {verdict}"
        )
    if args.json:
        print(json.dumps(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vend", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
