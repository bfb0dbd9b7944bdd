"""Control messages to a user's open sockets, sent on the channel layer after the transaction commits.

The database stays the source of truth: if the channel layer is unreachable, the HTTP request still
succeeds and the sockets catch up when they reconnect.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)


def user_group(user_id: uuid.UUID | str) -> str:
    return f"user.{uuid.UUID(str(user_id)).hex}"


def _send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # the layer is down: sockets re-check on their heartbeat
        logger.warning("channel layer unavailable; control message %s not delivered", message.get("type"))


def send_after_commit(user_id: uuid.UUID | str, message: dict[str, Any]) -> None:
    group = user_group(user_id)
    transaction.on_commit(lambda: _send(group, message))


def end_sessions(*, user_id: uuid.UUID | str, session_key: str | None = None) -> None:
    """Close the user's sockets opened with ``session_key`` (all of them when it is None)."""
    send_after_commit(user_id, {"type": "session.ended", "session_key": session_key})


def access_changed(*, user_id: uuid.UUID | str) -> None:
    """The user's relationships changed (for example a revoked link): sockets re-check access."""
    send_after_commit(user_id, {"type": "access.changed"})


def access_revoked(*, user_id: uuid.UUID | str) -> None:
    """The user lost (or may have lost) access to a child: close their sockets so that nothing more is
    forwarded under the old access; clients reconnect and start again from what they may now see."""
    send_after_commit(user_id, {"type": "access.revoked"})
