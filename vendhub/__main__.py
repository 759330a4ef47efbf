"""The ``vendhub`` command line: run the hub, check a configuration, run machine agents."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from vendhub.config.errors import ConfigError
from vendhub.const import __version__
from vendhub.helpers.storage import StorageError

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
    _add_machine_commands(commands)
    _add_credential_commands(commands)
    _add_certs_command(commands)
    return parser


def _add_certs_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``vendhub certs generate``: a self-signed certificate for the HTTP API."""
    help_text = "make a self-signed TLS certificate for the hub's HTTP API on a local network"
    certs = commands.add_parser("certs", help=help_text, description=help_text)
    actions = certs.add_subparsers(dest="certs_command", required=True, metavar="ACTION")
    generate = actions.add_parser(
        "generate",
        help="write <config>/certs/vendhub.crt and vendhub.key",
        description=(
            "Write a self-signed certificate and its key (mode 0600) into <config>/certs/, "
            "for localhost, this host's name, the loopback addresses and every --host."
        ),
    )
    generate.add_argument("--config", "-c", default="config", metavar="DIR")
    generate.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="NAME_OR_IP",
        help="another name or address the hub is reached by (repeatable), e.g. 192.168.1.20",
    )
    generate.add_argument("--days", type=int, default=3650, help="validity (default: 3650)")
    generate.add_argument("--force", action="store_true", help="replace existing files")


def _add_credential_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """``vendhub machine add|list|remove|hub-user|mosquitto-files``: machine credentials."""
    help_text = "issue and revoke machine credentials; write Mosquitto's password and ACL files"
    machine = commands.add_parser(
        "machine",
        help=help_text,
        description=(
            f"{help_text}. Every machine gets its own MQTT user (its machine id) and may publish "
            "only under its own topics; the hub connects as 'vendhub-hub'. Passwords are shown "
            "once and stored only as hashes. See docs/mosquitto.md."
        ),
    )
    actions = machine.add_subparsers(dest="machine_command", required=True, metavar="ACTION")
    config = {
        "default": "config",
        "metavar": "DIR",
        "help": "the hub's configuration folder (default: ./config)",
    }
    add = actions.add_parser("add", help="issue credentials for a machine and print them once")
    add.add_argument("name", metavar="NAME", help="the machine id: a-z, 0-9 and _")
    add.add_argument("--config", "-c", **config)
    add.add_argument(
        "--rotate", action="store_true", help="replace the password of an existing machine"
    )
    listing = actions.add_parser("list", help="list machines with credentials (no secrets)")
    listing.add_argument("--config", "-c", **config)
    remove = actions.add_parser("remove", help="revoke a machine's credentials")
    remove.add_argument("name", metavar="NAME")
    remove.add_argument("--config", "-c", **config)
    hub_user = actions.add_parser(
        "hub-user", help="create the hub's own MQTT user (or --rotate its password)"
    )
    hub_user.add_argument("--config", "-c", **config)
    hub_user.add_argument("--rotate", action="store_true", help="issue a new password")
    files = actions.add_parser(
        "mosquitto-files", help="write Mosquitto's password file and ACL file"
    )
    files.add_argument("--config", "-c", **config)
    files.add_argument("--out", required=True, metavar="DIR", help="where to write them")
    files.add_argument(
        "--prefix", default="vendhub", help="the topic prefix (default: %(default)s)"
    )


MAX_SIMULATED_MACHINES = 10_000
"""The most machines ``vendhub simulate`` runs: each is a whole agent, with its own broker
connection and outbox file; far more only use up the memory and open files of the host."""


def _positive(
    kind: type[int] | type[float], maximum: float | None = None, why: str = ""
) -> Callable[[str], float]:
    """An argument type: a finite number above 0 (and at most ``maximum``, for ``why``)."""

    def convert(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number above 0, got {text}")
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a number above 0, got {text}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(
                f"expected a number from 1 to {maximum:,}, got {text}{why}"
                if kind is int
                else f"expected a number above 0 and at most {maximum:,}, got {text}{why}"
            )
        return value

    return convert


def _add_machine_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``vendhub simulate`` and ``vendhub agent``: the machine side of the machine protocol."""
    log_level = {
        "choices": LOG_LEVELS,
        "default": argparse.SUPPRESS,
        "type": str.lower,
        "help": "how much to log (default: info)",
    }
    help_text = "run N virtual machines, each through its own machine agent, against a hub"
    sim = commands.add_parser(
        "simulate",
        help=help_text,
        description=(
            f"{help_text}. Every machine speaks the real machine protocol over MQTT: retained "
            "status and announce, events through an on-disk outbox until the hub acknowledges "
            "them, telemetry, commands and config. Stop with Ctrl+C or SIGTERM: every machine "
            "then says it is offline."
        ),
        epilog=(
            "A broker with one user per machine (docs/mosquitto.md): 'vendhub simulate -n 3 "
            "--hub mqtt://HOST:1883 --config config --credentials sim.yaml' issues "
            "credentials for sim_001 to sim_003 in the hub's folder 'config' and writes their "
            "passwords to sim.yaml; write the Mosquitto files again and reload Mosquitto, and "
            "the machines connect. Later runs read the passwords from sim.yaml."
        ),
    )
    sim.add_argument("--log-level", **log_level)
    sim.add_argument(
        "--machines",
        "-n",
        type=_positive(
            int,
            MAX_SIMULATED_MACHINES,
            ": each machine is a whole agent with its own broker connection and outbox file",
        ),
        default=1,
        metavar="N",
        help="how many machines: sim_001, sim_002, ... (default: 1)",
    )
    sim.add_argument(
        "--hub",
        default="mqtt://127.0.0.1:1883",
        metavar="URL",
        help="the hub's broker: mqtt://[USER:PASSWORD@]HOST[:PORT] or mqtts:// for TLS "
        "(default: mqtt://127.0.0.1:1883); a USER:PASSWORD here is used by every machine, "
        "which a broker with one user per machine refuses: use --credentials there. "
        "http(s)://HOST[:PORT] (default port 8700): the hub's HTTP transport, no broker; "
        "each machine signs in with its own credentials (--credentials)",
    )
    sim.add_argument(
        "--credentials",
        default=None,
        metavar="FILE",
        help="every machine connects as its own MQTT user, its machine id, with the password "
        "FILE gives it: YAML, one 'sim_001: PASSWORD' line per machine, as 'vendhub machine "
        "add' printed them (keep it mode 0600). For a broker with the password and ACL "
        "files of 'vendhub machine mosquitto-files' (docs/mosquitto.md)",
    )
    sim.add_argument(
        "--config",
        "-c",
        default=None,
        metavar="DIR",
        help="with --credentials: the hub's configuration folder. Machines that have no "
        "credentials there get them issued, as 'vendhub machine add' does, and their "
        "passwords written to FILE; the passwords in FILE are checked against it. After "
        "issuing, write the Mosquitto files again and reload Mosquitto: the machines keep "
        "retrying until it knows them",
    )
    sim.add_argument(
        "--speed",
        type=_positive(float),
        default=60.0,
        help="simulated seconds per real second (default: %(default)g)",
    )
    sim.add_argument(
        "--tick",
        type=_positive(float),
        default=1.0,
        metavar="SECONDS",
        help="real seconds between steps of the machines (default: %(default)g)",
    )
    sim.add_argument(
        "--seed", type=int, default=None, help="makes the fleet and its sales repeatable"
    )
    sim.add_argument(
        "--outbox-dir",
        default=None,
        metavar="DIR",
        help="where each machine keeps its outbox, <ID>.db "
        "(default: $XDG_STATE_HOME/vendhub/simulate, else ~/.local/state/vendhub/simulate)",
    )
    sim.add_argument("--prefix", default="vendhub", help="the topic prefix (default: %(default)s)")
    sim.add_argument(
        "--id-prefix",
        default="sim",
        help="machine ids are <ID_PREFIX>_001, ... (default: %(default)s)",
    )
    sim.add_argument(
        "--sales-per-hour",
        type=float,
        default=6.0,
        help="sales per simulated hour at the daily peak, per machine (default: %(default)g)",
    )
    sim.add_argument(
        "--summary-interval",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="real seconds between summary lines in the log; 0: none (default: %(default)g)",
    )
    sim.add_argument(
        "--resend-after",
        type=_positive(float),
        default=10.0,
        metavar="SECONDS",
        help="resend an unacknowledged event after this long (default: %(default)g)",
    )
    sim.add_argument(
        "--keepalive",
        type=_positive(int),
        default=30,
        metavar="SECONDS",
        help="MQTT keepalive; a dead machine shows offline within 1.5 times it "
        "(default: %(default)s)",
    )

    help_text = "run the machine agent of one machine, configured by DIR/agent.yaml"
    agent = commands.add_parser(
        "agent",
        help=help_text,
        description=(
            f"{help_text}: it connects to the hub's broker, keeps unacknowledged events in an "
            "on-disk outbox and resends them, publishes telemetry and its health, and applies "
            "config and commands. For now the machine it drives is simulated (the 'simulated:' "
            "block of agent.yaml); real boards, payment devices and sensors come later."
        ),
    )
    agent.add_argument("--log-level", **log_level)
    agent.add_argument(
        "--config",
        "-c",
        default="agent",
        metavar="DIR",
        help="the folder holding agent.yaml (default: ./agent)",
    )
    agent.add_argument(
        "--hub",
        default=None,
        metavar="URL",
        help="connect here instead of agent.yaml's broker: mqtt(s)://HOST[:PORT], or "
        "http(s)://HOST[:PORT] for the hub's HTTP transport (no broker; the machine signs in "
        "with its credentials). USER:PASSWORD@ in the URL, else agent.yaml's, are used",
    )


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


def simulate(args: argparse.Namespace) -> int:
    """Run ``args.machines`` simulated machines until Ctrl+C or SIGTERM."""
    from vendhub.machine.credentials import CredentialError
    from vendhub.machine.protocol import is_machine_id
    from vendhub.machine.simulate import (
        CredentialsFileError,
        build_simulation,
        fleet_ids,
        machine_passwords,
        parse_hub_url,
        run_until_signalled,
    )

    log = logging.getLogger("vendhub.simulate")
    try:
        hub = parse_hub_url(args.hub)
    except ValueError as error:
        log.error("Cannot simulate: %s", error)
        return 2
    if args.config is not None and args.credentials is None:
        log.error(
            "Cannot simulate: --config issues credentials for the machines, and needs "
            "--credentials FILE to keep their passwords in"
        )
        return 2
    if hub.transport == "http" and args.credentials is None and hub.password is None:
        log.error(
            "Cannot simulate: over the hub's HTTP transport every machine signs in with its own "
            "credentials: give --credentials FILE (with --config DIR to issue them)"
        )
        return 2
    if args.credentials is not None and hub.username is not None:
        log.error(
            "Cannot simulate: with --credentials every machine connects as its own user; "
            "leave USER:PASSWORD@ out of --hub"
        )
        return 2
    machine_ids = fleet_ids(args.machines, args.id_prefix)
    if not is_machine_id(machine_ids[-1]):
        log.error(
            "Cannot simulate: machine ids such as %r are not valid (1 to 64 of a-z, 0-9 and _); "
            "choose another --id-prefix",
            machine_ids[-1],
        )
        return 2
    passwords = None
    if args.credentials is not None:
        credentials_file = Path(args.credentials)
        config_dir = Path(args.config) if args.config is not None else None
        try:
            passwords, issued = machine_passwords(machine_ids, credentials_file, config_dir)
        except (CredentialsFileError, CredentialError, StorageError) as error:
            log.error("Cannot simulate: %s", error)
            return 1
        if issued:
            log.warning(
                "Issued MQTT credentials in %s for %d machines (%s) and wrote their passwords "
                "to %s. The broker accepts them once it has its files again and reloads: "
                "vendhub machine mosquitto-files --config %s --out DIR, install them, then "
                "kill -HUP <mosquitto pid> (docs/mosquitto.md). The machines retry until then",
                config_dir,
                len(issued),
                ", ".join(issued) if len(issued) <= 5 else f"{issued[0]} ... {issued[-1]}",
                credentials_file,
                config_dir,
            )
    try:
        simulation = build_simulation(
            machines=args.machines,
            hub=hub,
            speed=args.speed,
            tick=args.tick,
            seed=args.seed,
            outbox_dir=Path(args.outbox_dir) if args.outbox_dir else None,
            prefix=args.prefix,
            id_prefix=args.id_prefix,
            sales_per_hour=args.sales_per_hour,
            summary_interval=args.summary_interval,
            resend_after=args.resend_after,
            keepalive=args.keepalive,
            passwords=passwords,
        )
    except ValueError as error:  # a bad --prefix, say
        log.error("Cannot simulate: %s", error)
        return 2
    first = simulation.machines[0].agent.outbox_path.parent
    who = ""
    if passwords is not None:
        who = f", each as its own MQTT user (passwords from {args.credentials})"
    elif hub.username:
        who = f" as MQTT user {hub.username}"
    log.info(
        "Simulating %d machines against %s at %gx speed%s (outboxes in %s); Ctrl+C stops",
        len(simulation.machines),
        hub,
        args.speed,
        who,
        first,
    )
    asyncio.run(run_until_signalled(simulation))
    return 0


def agent(config_dir: str, hub_url: str | None = None) -> int:
    """Run one machine agent from ``<config_dir>/agent.yaml`` until Ctrl+C or SIGTERM.

    ``hub_url`` (``--hub``) replaces the broker of agent.yaml (``http(s)://``: the hub's HTTP
    transport), keeping its username and password unless the URL has its own.
    """
    from vendhub.machine.agent_config import build_agent, load_agent_config
    from vendhub.machine.simulate import parse_hub_url, run_until_signalled

    log = logging.getLogger("vendhub.agent")
    try:
        config = load_agent_config(config_dir)
    except ConfigError as error:
        log.error(
            "Cannot start the agent: the configuration in %s is invalid:\n  %s",
            config_dir,
            "\n  ".join(str(issue) for issue in error.issues),
        )
        return 1
    if hub_url is not None:
        try:
            address = parse_hub_url(hub_url)
        except ValueError as error:
            log.error("Cannot start the agent: %s", error)
            return 2
        broker = config["broker"]
        config["broker"] = {
            "host": address.host,
            "port": address.port,
            "username": address.username or broker.get("username"),
            "password": address.password or broker.get("password"),
            "tls": address.tls,
            "transport": address.transport,
        }

    async def run_agent() -> None:
        simulation = build_agent(config)
        log.info(
            "Agent of machine %s (simulated) for %s:%s%s; outbox %s",
            config["machine_id"],
            config["broker"]["host"],
            config["broker"]["port"],
            " (HTTP transport)" if config["broker"].get("transport") == "http" else "",
            config["outbox"],
        )
        await run_until_signalled(simulation)

    asyncio.run(run_agent())
    return 0


def machine_credentials(args: argparse.Namespace) -> int:
    """``vendhub machine ...``: prints to stdout, never logs a password."""
    from vendhub.machine import credentials, mosquitto_files
    from vendhub.machine.broker_address import read_last_listeners

    config_dir = Path(args.config)
    action = args.machine_command
    try:
        if action == "add":
            username, password = credentials.add_machine(config_dir, args.name, rotate=args.rotate)
            embedded = read_last_listeners(config_dir)
            if embedded is None:
                where = "HUB_HOST:1883  (mqtts://...:8883 with TLS)"
            else:
                tls = f"; mqtts://...:{embedded.tls_port} with TLS" if embedded.tls_port else ""
                where = (
                    f"HUB_HOST:{embedded.port}  (where the hub's embedded broker listened at "
                    f"its last start, {embedded.started}{tls})"
                )
            print(
                f"Credentials of machine {username} (shown only this once; put them on the "
                "machine now):\n"
                f"  username: {username}\n"
                f"  password: {password}\n"
                f"  broker:   mqtt://{username}:{password}@{where}"
            )
            _print_new_hub_user(config_dir, credentials.ensure_hub_user(config_dir))
            if embedded is not None:
                print("The embedded broker takes the new login within 5 s. With Mosquitto:")
            print(
                "Then: vendhub machine mosquitto-files --out DIR, and reload Mosquitto "
                "(kill -HUP <pid>)."
            )
        elif action == "list":
            machines = credentials.list_machines(config_dir)
            if not machines:
                print("No machine has credentials yet: vendhub machine add NAME")
            for entry in machines:
                print(f"{entry.machine_id}\t{entry.created}")
        elif action == "remove":
            credentials.remove_machine(config_dir, args.name)
            print(
                f"Removed the credentials of machine {args.name}. Write the Mosquitto files "
                "again and reload Mosquitto (kill -HUP <pid>) to lock it out."
            )
        elif action == "hub-user":
            new = credentials.ensure_hub_user(config_dir, rotate=args.rotate)
            if new is None:
                print(
                    f"The hub's MQTT user {credentials.HUB_USERNAME} exists; its password was "
                    "shown when it was created. Use --rotate for a new one."
                )
            _print_new_hub_user(config_dir, new)
        else:  # mosquitto-files
            _print_new_hub_user(config_dir, credentials.ensure_hub_user(config_dir))
            password_file, acl_file = mosquitto_files.write_mosquitto_files(
                config_dir, args.out, prefix=args.prefix
            )
            print(
                f"Wrote {password_file} and {acl_file} (mode 0600).\n"
                "Install them readable by the mosquitto user, use them in mosquitto.conf:\n\n"
                + mosquitto_files.mosquitto_conf_lines(password_file.resolve(), acl_file.resolve())
                + "\nand reload Mosquitto: kill -HUP <pid> (see docs/mosquitto.md)."
            )
    except (credentials.CredentialError, ValueError, StorageError) as error:
        print(f"vendhub machine {action}: {error}", file=sys.stderr)
        return 1
    return 0


def certs(args: argparse.Namespace) -> int:
    """``vendhub certs generate``: prints where the files are and the lines to configure."""
    from vendhub.http.certs import CERT_DIR, CertificateExists, generate_certificate

    try:
        made = generate_certificate(args.config, hosts=args.host, days=args.days, force=args.force)
    except (CertificateExists, ValueError, OSError) as error:
        print(f"vendhub certs generate: {error}", file=sys.stderr)
        return 1
    print(
        f"Wrote {made.certificate} and {made.key} (the key: mode 0600).\n"
        f"Valid until {made.not_after:%Y-%m-%d} for: {', '.join(made.names)}\n"
        f"SHA-256 fingerprint (compare it when a browser asks): {made.fingerprint_sha256}\n\n"
        "Serve the API over HTTPS with these lines in configuration.yaml:\n\n"
        "  http:\n"
        f"    ssl_certificate: {CERT_DIR}/{made.certificate.name}\n"
        f"    ssl_key: {CERT_DIR}/{made.key.name}\n"
    )
    return 0


def _print_new_hub_user(config_dir: Path, password: str | None) -> None:
    if password is None:
        return
    from vendhub.machine.credentials import HUB_USERNAME

    print(
        f"\nThe hub's own MQTT user {HUB_USERNAME} has a new password (shown only this once).\n"
        f"Add this line to {config_dir / 'secrets.yaml'}:\n\n"
        f'  vendhub_mqtt_password: "{password}"\n\n'
        "and point the hub at the broker in configuration.yaml:\n\n"
        "  mqtt:\n"
        "    broker:\n"
        "      host: HUB_BROKER_HOST\n"
        f"      username: {HUB_USERNAME}\n"
        "      password: !secret vendhub_mqtt_password\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vendhub`` console script."""
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        if args.command == "check-config":
            return check_config(args.config)
        if args.command == "simulate":
            return simulate(args)
        if args.command == "agent":
            return agent(args.config, args.hub)
        if args.command == "machine":
            return machine_credentials(args)
        if args.command == "certs":
            return certs(args)
        return run(args.config)
    except KeyboardInterrupt:  # Ctrl+C before the hub's own signal handling is in place
        return 130


if __name__ == "__main__":
    sys.exit(main())
