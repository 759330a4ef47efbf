"""Entry point of scripts/bench: ``scripts/bench NAME [options]``.

Each benchmark module is imported only when it runs, so one benchmark's dependencies never
stop another from running.
"""

from __future__ import annotations

import argparse
import importlib
import sys

BENCHMARKS = {
    "core": "state writes and event dispatches per second through the real bus",
    "recorder": "state rows/s through the recorder against the raw driver, bytes per state",
    "recorder-engines": "the recorder's writer thread against an asyncio engine",
    "purge": "compiling statistics for and purging millions of history rows",
    "automations": "state change to first action latency with many automations",
    "ingest": "fleet telemetry over Mosquitto into the hub and recorder, against a raw subscriber",
    "embedded-broker": "the hub's embedded amqtt broker against Mosquitto, messages per second",
    "api": "WebSocket state pushes to many clients and GET /api/states with many entities",
    "vend": "hub-side vend overhead: select to dispense command at 50 local machines",
}


def _module(name: str):  # type: ignore[no-untyped-def]
    return importlib.import_module(f"scripts.benchmarks.{name.replace('-', '_')}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="scripts/bench", description="VendHub benchmarks")
    commands = parser.add_subparsers(dest="name", required=True, metavar="BENCHMARK")
    for name, summary in BENCHMARKS.items():
        sub = commands.add_parser(name, help=summary, description=summary)
        sub.add_argument("--json", action="store_true", help="print one JSON object last")
        if argv[:1] == [name]:
            _module(name).add_arguments(sub)
    args = parser.parse_args(argv)
    return int(_module(args.name).run(args))


if __name__ == "__main__":
    sys.exit(main())
