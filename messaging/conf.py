"""Messaging configuration: every knob with its default, overridable from Django settings.

Read through these functions (not at import time) so tests can change settings with
``override_settings``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

MB = 1024 * 1024


def _get(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def reply_within() -> dict[str, tuple[int, bool]]:
    """Default reply-by per priority when no routing rule says otherwise: (minutes, business hours
    only). Routine: one business day (9 business hours); urgent: one hour around the clock."""
    default = {"routine": (9 * 60, True), "urgent": (60, False)}
    raw: dict[str, Any] = _get("PORTAL_REPLY_WITHIN", {})
    return {**default, **{key: (int(value[0]), bool(value[1])) for key, value in raw.items()}}


def emergency_number() -> str:
    return str(_get("PORTAL_EMERGENCY_NUMBER", "911"))


def triage_numbers() -> dict[str, str]:
    """Numbers the red-flag replies give: ``emergency`` (``PORTAL_EMERGENCY_NUMBER``), ``poison``
    (``PORTAL_POISON_CONTROL_NUMBER``, US Poison Control by default) and ``crisis``
    (``PORTAL_CRISIS_LINE_NUMBER``, the US 988 Suicide and Crisis Lifeline by default)."""
    return {
        "emergency": emergency_number(),
        "poison": str(_get("PORTAL_POISON_CONTROL_NUMBER", "1-800-222-1222")),
        "crisis": str(_get("PORTAL_CRISIS_LINE_NUMBER", "988")),
    }


def triage_replies() -> dict[str, dict[str, str]]:
    """``PORTAL_TRIAGE_REPLIES``: per category and language, the advice a deployment gives instead of
    the built-in one, e.g. ``{"poisoning": {"en": "Call the poison centre on {poison}.", "es": ...}}``
    (placeholders: ``{emergency}``, ``{poison}``, ``{crisis}``)."""
    raw: dict[str, dict[str, str]] = _get("PORTAL_TRIAGE_REPLIES", {}) or {}
    return {str(category): {str(k): str(v) for k, v in texts.items()} for category, texts in raw.items()}


def max_attachment_bytes() -> int:
    return int(_get("PORTAL_ATTACHMENT_MAX_BYTES", 10 * MB))


def max_attachments_per_message() -> int:
    return int(_get("PORTAL_ATTACHMENTS_PER_MESSAGE", 5))


def resume_lookback_seconds() -> float:
    """Event ids are allocated before commit, so on PostgreSQL a later id can commit first; a resume
    also returns this many seconds of events before the given id (clients drop duplicates by id)."""
    return float(_get("PORTAL_EVENTS_LOOKBACK_SECONDS", 5))


def presence_seconds() -> float:
    """How long a socket's last heartbeat counts as "connected" (no notification is sent)."""
    return float(_get("PORTAL_WS_HEARTBEAT_SECONDS", 5)) * 3 + 5


def notification_max_attempts() -> int:
    return int(_get("PORTAL_NOTIFICATION_MAX_ATTEMPTS", 5))


def notification_backoff_seconds(attempt: int) -> int:
    return int(_get("PORTAL_NOTIFICATION_BACKOFF_SECONDS", 30)) * (2 ** max(attempt - 1, 0))


def send_rate() -> str:
    return str(_get("PORTAL_MESSAGE_RATE", "30/m"))


def upload_rate() -> str:
    return str(_get("PORTAL_ATTACHMENT_RATE", "20/m"))


def alert_ack_minutes() -> int:
    """Minutes an urgent alert waits for an acknowledgement before it escalates one level."""
    return int(_get("PORTAL_ALERT_ACK_MINUTES", 10))


def worker_heartbeat_seconds() -> float:
    return float(_get("PORTAL_WORKER_HEARTBEAT_SECONDS", 5))


def worker_stale_seconds() -> float:
    """A worker whose last heartbeat is older than this counts as down."""
    return float(_get("PORTAL_WORKER_STALE_SECONDS", 30))


def queue_lag_seconds() -> float:
    """The oldest ready task waiting longer than this makes /health say "degraded"."""
    return float(_get("PORTAL_QUEUE_LAG_SECONDS", 120))


def worker_sweep_seconds() -> float:
    return float(_get("PORTAL_WORKER_SWEEP_SECONDS", 15))
