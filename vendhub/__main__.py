"""The ``vendhub`` command line: run the hub or check a configuration."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Sequence

from vendhub.config.errors import ConfigError
from vendhub.const import __version__

LOG_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)-7s [%(name)s] %(message)s"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``vendhub`` command."""
    parser = argparse.ArgumentParser(
        prog="vendhub", description="VendHub: a self-hosted hub for vending machine fleets."
    )
    parser.add_argument("--version", action="version", version=f"vendhub {__version__}")
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default="info",
        type=str.lower,
        help="how much to log (default: info)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in (
        ("run", "run the hub until stopped with Ctrl+C or SIGTERM"),
        ("check-config", "validate the configuration without starting anything"),
    ):
        command = commands.add_parser(name, help=help_text, description=help_text)
        command.add_argument(
            "--log-level",
            choices=LOG_LEVELS,
            default=argparse.SUPPRESS,
            type=str.lower,
            help="how much to log (default: info)",
        )
        command.add_argument(
            "--config",
            "-c",
            default="config",
            metavar="DIR",
            help="the folder holding configuration.yaml (default: ./config)",
        )
    return parser


def configure_logging(level: str) -> None:
    """Readable logs on stderr; noisy libraries kept at warning."""
    logging.basicConfig(
        level=level.upper(), format=LOG_FORMAT, datefmt="%Y-%m-%d %H:%M:%S", force=True
    )
    logging.getLogger("asyncio").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def check_config(config_dir: str) -> int:
    """Print every problem in the configuration; return 0 when there is none."""
    from vendhub.bootstrap import prepare

    try:
        prepared = prepare(config_dir)
    except ConfigError as error:
        print(f"Configuration in {config_dir} is invalid:", file=sys.stderr)
        for issue in error.issues:
            print(f"  {issue}", file=sys.stderr)
        return 1
    if prepared.issues:
        print(f"Configuration in {prepared.config_dir} is invalid:", file=sys.stderr)
        for issue in prepared.issues:
            print(f"  {issue}", file=sys.stderr)
        return 1
    domains = ", ".join(prepared.plan.order) or "none"
    print(f"Configuration in {prepared.config_dir} is valid. Integrations: {domains}")
    return 0


def run(config_dir: str) -> int:
    """Run the hub until it is stopped; return its exit code."""
    from vendhub.bootstrap import async_run, prepare

    started = time.monotonic()
    log = logging.getLogger("vendhub")
    try:
        prepared = prepare(config_dir)
    except ConfigError as error:
        log.error(
            "Cannot start: the configuration in %s is invalid:\n  %s",
            config_dir,
            "\n  ".join(str(issue) for issue in error.issues),
        )
        return 1
    return asyncio.run(async_run(prepared, started))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vendhub`` console script."""
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        if args.command == "check-config":
            return check_config(args.config)
        return run(args.config)
    except KeyboardInterrupt:  # Ctrl+C before the hub's own signal handling is in place
        return 130


if __name__ == "__main__":
    sys.exit(main())
