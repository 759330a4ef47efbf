"""Which services a caller without ``manage_hub`` may call directly, and with what data.

The REST API decides per resource: each operation declares the permission it needs (the role
table in docs/api.md), and it calls an integration's service for the caller. A service call
over the WebSocket API reaches the services themselves, so this table gives each service the
permission of the REST resource that makes the same change, with what its data must name:

- ``Permission.manage_hub`` (owners, admins) calls any service, as with ``POST
  /api/services/{domain}/{service}``. For everyone else a service that is not in
  ``SERVICE_RULES`` is refused: a new service is for ``manage_hub`` until it is added here.
- A machine's service needs its permission and, in ``machine_id``, a machine within the
  caller's reach (a technician: one of theirs); the service's schema must declare
  ``machine_id`` (so the key cannot be slipped into the data of a service that ignores it).
- A machine's config (``simulator.set_config``, ``mqtt.publish_config``,
  ``vending.set_slots``: each link's ``LinkServices.config``) needs
  ``operate_machines`` for its mode alone (``PUT /api/machines/{id}/mode``) and
  ``manage_catalog`` for anything else: slots, prices, products, capacities
  (``PUT /api/machines/{id}/slots/{code}``, ``PUT /api/planograms/{id}``).
- An alarm is acknowledged or cleared with ``operate_machines`` when it is within the caller's
  reach (``POST /api/alarms/{id}/acknowledge``); ``alarm_id`` is looked up in the ``alarm.*``
  states, since ``alarm_id`` wins over ``machine_id`` in the service.
- A catalog service acting on no machine needs ``manage_catalog`` and a caller who reaches
  every machine.

The names come from where the REST API keeps them (``fleet.LINK_SERVICES``, the kiosk
modules, the protocol's command names); the core names services, it imports no integration.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import voluptuous as vol

from vendhub.auth.roles import Permission
from vendhub.http.api.alarms import DOMAIN as ALARM_DOMAIN
from vendhub.http.api.alarms import sees_alarm
from vendhub.http.api.automations import DOMAIN as AUTOMATION_DOMAIN
from vendhub.http.api.kiosk import SERVICE_DOMAIN as KIOSK_SIMULATOR
from vendhub.http.api.kiosk_vend import (
    ENGINE_DOMAIN,
    SERVICE_CANCEL,
    SERVICE_SELECT,
    SERVICE_SESSION,
)
from vendhub.machine import protocol
from vendhub.machine.fleet import ADOPT_SERVICE, LINK_SERVICES, LINK_SIMULATOR

if TYPE_CHECKING:
    from vendhub.auth.identity import Identity
    from vendhub.core.hub import Hub

Check = Callable[["Identity", "Hub", Mapping[str, Any]], "str | None"]
"""What else the data must satisfy: why the call is refused, or None."""


@dataclass(frozen=True, slots=True)
class ServiceRule:
    """What a caller without ``manage_hub`` needs to call one service."""

    permission: Permission
    machine: bool = True
    """The data must name, in ``machine_id``, a machine within the caller's reach."""
    check: Check | None = None


def refusal(permission: Permission) -> str:
    """The reason REST gives for a missing permission (``view.require``)."""
    return f"your role may not {permission.value.replace('_', ' ')}"


MODE_ONLY: Final = frozenset({"machine_id", "mode"})


def _config(identity: Identity, hub: Hub, data: Mapping[str, Any]) -> str | None:
    """A change of the mode alone is operating the machine; of its slots, the catalog's."""
    if set(data) <= MODE_ONLY or identity.has(Permission.manage_catalog):
        return None
    return refusal(Permission.manage_catalog)


def _alarm(identity: Identity, hub: Hub, data: Mapping[str, Any]) -> str | None:
    """The alarm named (by ``alarm_id``, or by ``code`` and ``machine_id``) is in reach."""
    if identity.machine_ids is None and not identity.is_machine:
        return None  # every alarm is within reach
    alarm_id = data.get("alarm_id")
    if alarm_id is None:
        alarm: Mapping[str, Any] | None = {"machine_id": data.get("machine_id")}
    else:
        alarm = next(
            (
                state.attributes
                for state in hub.states.async_all(ALARM_DOMAIN)
                if state.attributes.get("alarm_id") == alarm_id
            ),
            None,
        )
    if alarm is None or not sees_alarm(identity, dict(alarm)):
        return f"no active alarm {alarm_id or data.get('code')!r} within your reach"
    return None


def _every_machine(identity: Identity, hub: Hub, data: Mapping[str, Any]) -> str | None:
    if identity.machine_ids is None and not identity.is_machine:
        return None
    return "this service acts on every machine; your role reaches only some"


OPERATE: Final = ServiceRule(Permission.operate_machines)
CONFIG: Final = ServiceRule(Permission.operate_machines, check=_config)
ALARM: Final = ServiceRule(Permission.operate_machines, machine=False, check=_alarm)
CATALOG_MACHINE: Final = ServiceRule(Permission.manage_catalog)
CATALOG_FLEET: Final = ServiceRule(Permission.manage_catalog, machine=False, check=_every_machine)

SERVICE_RULES: Final[Mapping[tuple[str, str], ServiceRule]] = {
    # A machine's mode (operate) or slots (catalog): PUT .../mode, .../slots/{code}, planograms.
    **{link.config: CONFIG for link in LINK_SERVICES.values() if link.config is not None},
    # Commands: POST /api/machines/{id}/commands/{command} and .../restock. A virtual machine
    # has one service per command (machines.run_command); ping is answered by the hub.
    **{link.command: OPERATE for link in LINK_SERVICES.values() if link.command is not None},
    **{
        (LINK_SIMULATOR, command): OPERATE
        for command in (
            protocol.COMMAND_RESTOCK,
            protocol.COMMAND_LOCK_SLOTS,
            protocol.COMMAND_SET_DOOR,
            protocol.COMMAND_VEND,
        )
    },
    # The kiosk's purchases, /api/kiosk/{id}/purchases...: simulated (kiosk.py) ...
    **{
        (KIOSK_SIMULATOR, service): OPERATE
        for service in (
            "purchase_options",
            "purchase_start",
            "purchase_status",
            "purchase_pay",
            "purchase_insert_cash",
            "purchase_cancel",
        )
    },
    # ... and the vend engine's (kiosk_vend.py), with its mode and stock.
    (ENGINE_DOMAIN, SERVICE_SELECT): OPERATE,
    (ENGINE_DOMAIN, SERVICE_SESSION): OPERATE,
    (ENGINE_DOMAIN, SERVICE_CANCEL): OPERATE,
    (ENGINE_DOMAIN, "set_mode"): OPERATE,
    (ENGINE_DOMAIN, "restock"): OPERATE,
    # POST /api/alarms/{id}/acknowledge, /clear.
    (ALARM_DOMAIN, "acknowledge"): ALARM,
    (ALARM_DOMAIN, "clear"): ALARM,
    # Adopting and removing machines: POST /api/machines/{id}/adopt, DELETE /api/machines/{id}.
    ADOPT_SERVICE: ServiceRule(Permission.adopt_machines),
    **{
        link.remove: ServiceRule(Permission.adopt_machines)
        for link in LINK_SERVICES.values()
        if link.remove is not None
    },
    # POST /api/automations/{id}/enable, /disable, /trigger.
    **{
        (AUTOMATION_DOMAIN, service): ServiceRule(Permission.manage_automations, machine=False)
        for service in ("turn_on", "turn_off", "trigger")
    },
    # The product catalog (no REST resource yet): prices and products are the catalog's.
    ("catalog", "upsert_product"): CATALOG_FLEET,
    ("catalog", "remove_product"): CATALOG_FLEET,
    ("catalog", "products"): CATALOG_FLEET,
    ("catalog", "price_at"): CATALOG_MACHINE,
}
"""Every service a caller without ``manage_hub`` may call; the rest need ``manage_hub``.

Not here on purpose (``manage_hub`` only): the list of machines pending adoption
(``mqtt.pending``: ``GET /api/machines/pending`` scopes it, the service does not);
``simulator.set_compressor``; ``alarm.raise`` and ``alarm.list`` (unscoped); the other
``automation.*`` services (reload, traces: unscoped), ``notify.*``, ``recorder.*``,
``vendhub.reload``; ``anomaly.*`` (what a person reports, under a name the data gives); money:
``cash.*``, ``wallet.*``.
"""

CALLER_PERMISSIONS: Final = frozenset(
    {Permission.manage_hub, *(rule.permission for rule in SERVICE_RULES.values())}
)
"""A caller holding none of these may call no service at all."""


def declares(schema: Any, key: str) -> bool:
    """Whether a voluptuous schema (or validator chain) names ``key`` among its keys."""
    if isinstance(schema, vol.Schema):
        return declares(schema.schema, key)
    if isinstance(schema, dict):
        return any((k.schema if isinstance(k, vol.Marker) else k) == key for k in schema)
    if isinstance(schema, vol.All | vol.Any):
        return any(declares(validator, key) for validator in schema.validators)
    return False


def service_refusal(
    identity: Identity, hub: Hub, domain: str, service: str, data: Mapping[str, Any]
) -> str | None:
    """Why ``identity`` may not call ``domain.service`` with ``data``, or None if it may."""
    if identity.has(Permission.manage_hub):
        return None
    rule = SERVICE_RULES.get((domain, service))
    if rule is None:
        if not any(identity.has(permission) for permission in CALLER_PERMISSIONS):
            return "your role may not call services"
        return f"your role may not call {domain}.{service} (it needs manage_hub)"
    if not identity.has(rule.permission):
        return refusal(rule.permission)
    if rule.machine:
        machine_id = data.get("machine_id")
        if not isinstance(machine_id, str):
            return f"{domain}.{service} needs machine_id: one of your machines"
        if not identity.sees_machine(machine_id):
            return f"machine {machine_id!r} is not one of yours"
        entry = hub.services.async_services().get(domain, {}).get(service)
        if entry is not None and not declares(entry.schema, "machine_id"):
            return f"{domain}.{service} does not act on one machine; your role may not call it"
    return rule.check(identity, hub, data) if rule.check is not None else None
