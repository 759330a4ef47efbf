"""Names and defaults of the simulator integration."""

from typing import Final

DOMAIN: Final = "simulator"
MANUFACTURER: Final = "VendHub"

DEFAULT_MODEL: Final = "VendHub Simulator"
DEFAULT_FIRMWARE: Final = "1.0.0"
DEFAULT_SPEED: Final = 1.0
DEFAULT_TICK: Final = 1.0
# Real seconds between the activity lines in the log; 0 turns them off.
DEFAULT_SUMMARY_INTERVAL: Final = 60.0
DEFAULT_TELEMETRY_INTERVAL: Final = 60.0
DEFAULT_TARGET_TEMPERATURE: Final = 4.0
DEFAULT_AMBIENT_TEMPERATURE: Final = 22.0
DEFAULT_SALES_PER_HOUR: Final = 6.0
DEFAULT_JAM_RATE: Final = 0.01
DEFAULT_FAILURE_RATE: Final = 0.005
DEFAULT_DOOR_OPENINGS_PER_DAY: Final = 1.0
DEFAULT_FLEET_PREFIX: Final = "sim"
DEFAULT_FLEET_SLOTS: Final = 12
DEFAULT_FLEET_REFRIGERATED_SHARE: Final = 0.3

SERVICE_VEND: Final = "vend"
SERVICE_RESTOCK: Final = "restock"
SERVICE_SET_DOOR: Final = "set_door"
SERVICE_SET_COMPRESSOR: Final = "set_compressor"

# ---- the simulated purchase (integrations/simulator/purchase.py) ------------------------
PURCHASE_METHODS: Final = ("card", "qr", "cash")
"""What a simulated machine may accept; ``payment_methods`` of a machine picks from these."""
DEFAULT_PAYMENT_METHODS: Final = PURCHASE_METHODS
EVENT_PURCHASE_UPDATED: Final = "purchase_updated"
DEFAULT_PAYMENT_TIMEOUT: Final = 90.0
"""Real seconds a customer has to pay (each inserted coin starts it again)."""
DEFAULT_APPROVAL_DELAY: Final = 3.0
"""Real seconds after which the simulated card or QR payment approves by itself."""
DEFAULT_DISPENSE_TIME: Final = 2.0
"""Real seconds the simulated dispensing takes before the vend."""
DEFAULT_PURCHASE_KEEP: Final = 600.0
"""Real seconds a finished purchase stays readable (purchase_status)."""
MAX_CASH_INSERT: Final = 100_000
"""The largest single coin or note the simulated acceptor takes, in minor units."""

SERVICE_PURCHASE_OPTIONS: Final = "purchase_options"
SERVICE_PURCHASE_START: Final = "purchase_start"
SERVICE_PURCHASE_PAY: Final = "purchase_pay"
SERVICE_PURCHASE_INSERT_CASH: Final = "purchase_insert_cash"
SERVICE_PURCHASE_CANCEL: Final = "purchase_cancel"
SERVICE_PURCHASE_STATUS: Final = "purchase_status"
