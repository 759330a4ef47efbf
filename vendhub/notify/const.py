"""Names shared by the notify package and the ``notify`` integration."""

from typing import Final

DOMAIN: Final = "notify"

EVENT_NOTIFY_SENT: Final = "notify_sent"
EVENT_NOTIFY_FAILED: Final = "notify_failed"
EVENT_NOTIFY_ESCALATED: Final = "notify_escalated"

SERVICE_SEND: Final = "send"
SERVICE_DEAD_LETTERS: Final = "dead_letters"
SERVICE_RESEND_DEAD_LETTERS: Final = "resend_dead_letters"
SERVICE_CLEAR_DEAD_LETTERS: Final = "clear_dead_letters"
SERVICE_CANCEL_ESCALATION: Final = "cancel_escalation"

SEVERITY_INFO: Final = "info"
SEVERITY_WARNING: Final = "warning"
SEVERITY_CRITICAL: Final = "critical"
SEVERITIES: Final = (SEVERITY_INFO, SEVERITY_WARNING, SEVERITY_CRITICAL)

# The text put in front of titles and subjects by severity (info gets none).
SEVERITY_PREFIX: Final = {
    SEVERITY_INFO: "",
    SEVERITY_WARNING: "[WARNING] ",
    SEVERITY_CRITICAL: "[CRITICAL] ",
}

DATA_NOTIFY: Final = "notify"
STORAGE_DEAD_LETTERS: Final = "notify.dead_letters"
