"""Entry point of scripts/bench: ``scripts/bench NAME [options]``."""

from __future__ import annotations

import argparse
import sys

from scripts.benchmarks import core, purge, recorder, recorder_engines

BENCHMARKS = {
    "core": core,
    "recorder": recorder,
    "recorder-engines": recorder_engines,
    "purge": purge,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench", description="VendHub benchmarks")
    commands = parser.add_subparsers(dest="name", required=True, metavar="BENCHMARK")
    for name, module in BENCHMARKS.items():
        sub = commands.add_parser(name, help=module.__doc__.strip().splitlines()[0])
        sub.add_argument("--json", action="store_true", help="print one JSON object last")
        module.add_arguments(sub)
    args = parser.parse_args(argv)
    return BENCHMARKS[args.name].run(args)


if __name__ == "__main__":
    sys.exit(main())
