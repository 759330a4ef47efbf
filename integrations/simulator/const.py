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
