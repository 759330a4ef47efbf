"""``<config>/agent.yaml``: how ``vendhub agent`` connects one machine to its hub.

Example::

    machine_id: lobby_1
    broker:                      # or: broker: mqtt://user:password@hub.local:1883
                                 # or, without a broker: http(s)://lobby_1:PASSWORD@hub.local:8700
      host: hub.local
      port: 1883
      username: lobby_1
      password: !secret lobby_1_password
      tls: false
    prefix: vendhub
    outbox: outbox.db            # relative to this folder
    resend_after: 10s
    keepalive: 30
    # The machine itself. Real boards (MDB, dispenser boards, sensors) come later; until then
    # the agent drives a simulated machine with these slots.
    simulated:
      model: VendHub Simulator
      refrigerated: true
      slots: 12                  # or a planogram: {A1: {product: Cola, price: 150, capacity: 10}}
      speed: 1

The file is read with the hub's YAML loader, so ``!secret`` (``secrets.yaml`` beside it),
``!env_var`` and ``!include`` work, and every error names its file and line.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import voluptuous as vol

from vendhub.config.errors import ConfigError, ConfigIssue
from vendhub.config.validation import validate
from vendhub.config.validators import (
    boolean,
    currency,
    money_minor_units,
    non_negative_int,
    number,
    port,
    positive_int,
    slot_capacity,
    slug,
    string,
    time_period,
)
from vendhub.config.yaml_loader import load_yaml
from vendhub.machine import protocol
from vendhub.machine.catalog import planogram
from vendhub.machine.simulate import (
    DEFAULT_SALES_PER_HOUR,
    SIMULATED_FIRMWARE,
    SIMULATED_MODEL,
    HubAddress,
    SimulatedMachine,
    Simulation,
    agent_class,
    parse_hub_url,
    virtual_machine,
    with_par,
)

AGENT_FILE_NAME = "agent.yaml"


def _seconds(value: Any) -> float:
    result = time_period(value).total_seconds()
    if result <= 0:
        raise vol.Invalid(f"expected a time period longer than 0, got {value!r}")
    return result


def _hub_url(value: Any) -> dict[str, Any]:
    try:
        address = parse_hub_url(string(value))
    except ValueError as error:
        raise vol.Invalid(str(error)) from None
    broker = {
        "host": address.host,
        "port": address.port,
        "username": address.username,
        "password": address.password,
        "tls": address.tls,
    }
    if address.transport != "mqtt":
        broker["transport"] = address.transport
    return broker


def _prefix(value: Any) -> str:
    text = string(value)
    try:
        protocol.topic_filter("#", prefix=text)
    except ValueError as error:
        raise vol.Invalid(str(error)) from None
    return text


BROKER_SCHEMA = vol.Any(
    vol.Schema(
        {
            vol.Required("host"): string,
            vol.Optional("port", default=1883): port,
            vol.Optional("username"): string,
            vol.Optional("password"): string,
            vol.Optional("tls", default=False): boolean,
            # "http": the hub's HTTP transport (host and port of its HTTP API; no broker)
            vol.Optional("transport"): vol.In(["mqtt", "http"]),
        }
    ),
    _hub_url,
)

SLOT_SCHEMA = vol.Schema(
    {
        vol.Required("product"): string,
        vol.Required("price"): money_minor_units,
        vol.Required("capacity"): slot_capacity,
        vol.Optional("par"): non_negative_int,
        vol.Optional("stock"): non_negative_int,
    }
)

SIMULATED_SCHEMA = vol.Schema(
    {
        vol.Optional("model", default=SIMULATED_MODEL): string,
        vol.Optional("firmware", default=SIMULATED_FIRMWARE): string,
        vol.Optional("currency", default="EUR"): currency,
        vol.Optional("refrigerated", default=False): boolean,
        vol.Optional("slots", default=12): vol.Any(
            vol.All(positive_int, vol.Range(max=protocol.MAX_SLOTS)),
            {vol.Match(r"^[A-Za-z0-9_-]{1,16}$"): SLOT_SCHEMA},
        ),
        vol.Optional("sales_per_hour", default=DEFAULT_SALES_PER_HOUR): number(0),
        vol.Optional("speed", default=1.0): number(0, above=True),
        vol.Optional("tick", default=1.0): number(0, above=True),
        vol.Optional("seed"): vol.Any(int, string),
    }
)

AGENT_SCHEMA = vol.Schema(
    {
        vol.Required("machine_id"): slug,
        vol.Required("broker"): BROKER_SCHEMA,
        vol.Optional("prefix", default=protocol.DEFAULT_PREFIX): _prefix,
        vol.Optional("outbox", default="outbox.db"): string,
        vol.Optional("resend_after", default=10.0): _seconds,
        vol.Optional("keepalive", default=30): positive_int,
        vol.Optional("simulated", default=dict): SIMULATED_SCHEMA,
    }
)


def load_agent_config(config_dir: str | Path) -> dict[str, Any]:
    """``<config_dir>/agent.yaml``, validated, with the outbox path made absolute.

    Raises ``ConfigError`` naming the file and line of every problem.
    """
    folder = Path(config_dir).resolve()
    file = folder / AGENT_FILE_NAME
    if not file.is_file():
        raise ConfigError(
            ConfigIssue(
                f"no {AGENT_FILE_NAME} in {folder}; run with --config pointing at the folder "
                f"that holds it",
                None,
                None,
            )
        )
    tree = load_yaml(file, config_root=folder)
    config: dict[str, Any] = dict(validate(AGENT_SCHEMA, tree if tree else {}))
    outbox = Path(config["outbox"]).expanduser()
    config["outbox"] = outbox if outbox.is_absolute() else folder / outbox
    return config


def build_agent(config: dict[str, Any]) -> Simulation:
    """One machine agent (driving a simulated machine) from a validated ``agent.yaml``."""
    simulated = config["simulated"]
    machine_id = config["machine_id"]
    slots = simulated["slots"]
    if isinstance(slots, int):
        rng = random.Random(f"{simulated.get('seed', 0)}/{machine_id}")
        slots = planogram(slots, simulated["refrigerated"], rng)
    slots = with_par(slots)
    spec = {
        "machine_id": machine_id,
        "model": simulated["model"],
        "firmware": simulated["firmware"],
        "refrigerated": simulated["refrigerated"],
        "sales_per_hour": simulated["sales_per_hour"],
        "seed": simulated.get("seed"),
        "slots": slots,
    }
    broker = HubAddress(**config["broker"])
    machine = SimulatedMachine(
        virtual_machine(spec),
        par={code: slot["par"] for code, slot in slots.items()},
        currency=simulated["currency"],
        broker_host=broker.host,
        broker_port=broker.port,
        username=broker.username,
        password=broker.password,
        tls=broker.tls,
        agent_factory=agent_class(broker),
        prefix=config["prefix"],
        outbox_path=config["outbox"],
        resend_after=config["resend_after"],
        keepalive=config["keepalive"],
    )
    return Simulation([machine], speed=simulated["speed"], tick=simulated["tick"])
