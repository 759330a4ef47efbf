"""Event names and event data of the vend engine (besides those in ``vendhub.const``).

``vend_completed`` and ``vend_failed`` carry the fields the recorder's ledger reads
(``vendhub/recorder/ledger.py``): ``machine_id``, ``event_id`` (the session id, so a repeat
after a restart is written once), ``vend_id``, ``slot``, ``product``, ``price``, ``currency``,
``payment_method``, ``payment_provider``, ``payment_reference``, ``reason``, ``stock``.
"""

from __future__ import annotations

from typing import Any, Final

from vendhub.const import EVENT_VEND_COMPLETED, EVENT_VEND_FAILED
from vendhub.util.dt import utcnow
from vendhub.vending.session import SessionState, VendSession

# Every change of a session (new state, provider progress): data is VendSession.as_dict().
EVENT_VEND_SESSION_UPDATED: Final = "vend_session_updated"
# A provider approved: machine_id, session_id, provider, method, reference, amount, currency.
EVENT_PAYMENT_AUTHORIZED: Final = "payment_authorized"
# Held money was taken: same fields as payment_authorized.
EVENT_PAYMENT_CAPTURED: Final = "payment_captured"
# Held money was released without taking anything: same fields as payment_authorized.
EVENT_PAYMENT_VOIDED: Final = "payment_voided"
# A local machine's mode changed: machine_id, mode, previous.
EVENT_VENDING_MODE_CHANGED: Final = "vending_mode_changed"


def payment_data(session: VendSession) -> dict[str, Any]:
    """The data of a payment_* event of ``session``."""
    authorization = session.authorization
    return {
        "machine_id": session.machine_id,
        "session_id": session.id,
        "vend_id": session.id,
        "provider": session.provider,
        "method": session.method.value,
        "reference": authorization.reference if authorization else None,
        "amount": session.price.amount,
        "currency": session.price.currency,
    }


def ledger_event(session: VendSession) -> str:
    """The ledger event of a finished session: ``vend_completed`` when it sold, else
    ``vend_failed``."""
    return EVENT_VEND_COMPLETED if session.state is SessionState.completed else EVENT_VEND_FAILED


def ledger_data(session: VendSession) -> dict[str, Any]:
    """The data of ``vend_completed`` / ``vend_failed`` for ``session`` (the ledger's fields)."""
    authorization = session.authorization
    return {
        "machine_id": session.machine_id,
        "event_id": session.id,
        "vend_id": session.id,
        "session_id": session.id,
        "slot": session.slot,
        "product": session.product,
        "price": 0 if session.free_vend else session.price.amount,
        "currency": session.price.currency,
        "payment_method": "free_vend" if session.free_vend else session.method.value,
        "payment_provider": "free_vend" if session.free_vend else session.provider,
        "payment_reference": authorization.reference if authorization else None,
        "reason": session.reason,
        "outcome": session.outcome.value if session.outcome else None,
        "stock": session.stock_after,
        "ts": utcnow().isoformat(),
    }
