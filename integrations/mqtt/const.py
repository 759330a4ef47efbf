"""Names and defaults of the MQTT machine link."""

from typing import Final

DOMAIN: Final = "mqtt"
MANUFACTURER: Final = None

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_PORT: Final = 1883
DEFAULT_KEEPALIVE: Final = 30
DEFAULT_COMMAND_TIMEOUT: Final = 10.0
# How long the broker keeps the hub's session (its subscriptions and the QoS 1 messages
# published meanwhile) while the hub is away.
DEFAULT_SESSION_EXPIRY: Final = 7 * 24 * 3600
# Reconnect delays: the first retry comes after about RECONNECT_MIN_DELAY seconds, every
# further one waits twice as long, up to RECONNECT_MAX_DELAY, each with random jitter.
RECONNECT_MIN_DELAY: Final = 0.5
RECONNECT_MAX_DELAY: Final = 60.0
# How long a money event waits for the recorder's commit before the hub gives up acking it
# (the machine keeps it in its outbox and sends it again).
ACK_WAIT_TIMEOUT: Final = 300.0
SAVE_DELAY: Final = 2.0

STORAGE_KEY: Final = "mqtt.machines"
STORAGE_VERSION: Final = 1

SERVICE_ADOPT: Final = "adopt"
SERVICE_REMOVE: Final = "remove"
SERVICE_COMMAND: Final = "command"
SERVICE_PUBLISH_CONFIG: Final = "publish_config"
SERVICE_PENDING: Final = "pending"

EVENT_MACHINE_PENDING: Final = "mqtt_machine_pending"
EVENT_MACHINE_ADOPTED: Final = "mqtt_machine_adopted"
EVENT_MACHINE_REMOVED: Final = "mqtt_machine_removed"

# Kinds of message the hub subscribes to, under <prefix>/+/<kind>.
INBOUND_KINDS: Final = ("status", "announce", "telemetry", "event", "cmd_result")
# Kinds a machine may send before it is adopted.
UNADOPTED_KINDS: Final = ("status", "announce")
DEFAULT_CONFIG_CONFIRM_TIMEOUT: Final = 300.0  # seconds a machine has to confirm a config
