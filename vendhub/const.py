"""Constants shared by the whole hub: version, event names, storage names."""

from typing import Final

__version__: Final = "0.1.0"

EVENT_STATE_CHANGED: Final = "state_changed"
EVENT_CALL_SERVICE: Final = "call_service"
EVENT_SERVICE_REGISTERED: Final = "service_registered"
EVENT_SERVICE_REMOVED: Final = "service_removed"
EVENT_HUB_START: Final = "hub_start"
EVENT_HUB_STARTED: Final = "hub_started"
EVENT_HUB_STOP: Final = "hub_stop"
EVENT_HUB_FINAL_WRITE: Final = "hub_final_write"
EVENT_HUB_CLOSE: Final = "hub_close"
EVENT_INTEGRATION_LOADED: Final = "integration_loaded"
EVENT_AUTOMATION_TRIGGERED: Final = "automation_triggered"
EVENT_AUTOMATION_RELOADED: Final = "automation_reloaded"
EVENT_VEND_STARTED: Final = "vend_started"
EVENT_VEND_COMPLETED: Final = "vend_completed"
EVENT_VEND_FAILED: Final = "vend_failed"
EVENT_STOCK_REFILLED: Final = "stock_refilled"
EVENT_CASH_COLLECTED: Final = "cash_collected"
EVENT_MONEY_RECORDED: Final = "money_recorded"
EVENT_MACHINE_ONLINE: Final = "machine_online"
EVENT_MACHINE_OFFLINE: Final = "machine_offline"
EVENT_ALARM_RAISED: Final = "alarm_raised"
EVENT_ALARM_CLEARED: Final = "alarm_cleared"

MATCH_ALL: Final = "*"

STORAGE_DIR: Final = ".storage"

# Fraud and anomaly detection (docs/anomaly.md). Fired by transports, payment integrations,
# the API and the anomaly integration's services; the detectors in vendhub/anomaly listen.
# A technician signed in at a machine: machine_id, user, duration (seconds; 0 signs out).
EVENT_SERVICE_LOGIN: Final = "service_login"
# A machine's transport connection came or went: machine_id, connection_id, transport,
# remote (address), state ("connected", "disconnected"; "reset" drops a transport's all).
EVENT_MACHINE_CONNECTION: Final = "machine_connection"
# A payment was declined: machine_id, card_token (or token), reason, amount, currency.
EVENT_PAYMENT_DECLINED: Final = "payment_declined"
# A payment was refunded: machine_id, vend_id (when it refunds a vend), amount, currency.
EVENT_PAYMENT_REFUNDED: Final = "payment_refunded"
# Cash from a collection was counted: machine_id, amount (minor units), currency,
# event_id (the cash_collected it counts, optional), counted_by.
EVENT_CASH_COUNTED: Final = "cash_counted"
