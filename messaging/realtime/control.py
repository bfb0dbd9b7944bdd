"""Control messages to a user's open sockets: portal publishes ``ControlEvent``s (a session ended,
access changed or was revoked) and this module sends them on the channel layer after the transaction
commits.

The database stays the source of truth: if the channel layer is unreachable, the HTTP request still
succeeds and the sockets catch up (their heartbeat re-checks the session) when they reconnect.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from portal import events
from portal.vocabulary import EventType

logger = logging.getLogger(__name__)


def user_group(user_id: uuid.UUID | str) -> str:
    """The channel-layer group every socket of the user joins."""
    return f"user.{uuid.UUID(str(user_id)).hex}"


def _send(group: str, message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # the layer is down: sockets re-check on their heartbeat
        logger.warning("channel layer unavailable; control message %s not delivered", message.get("type"))


def message_for(event: events.ControlEvent) -> dict[str, Any]:
    """The channel-layer message; its ``type`` names the consumer's handler (``session.ended`` →
    ``session_ended``)."""
    if event.type == EventType.SESSION_ENDED:
        return {"type": str(event.type), "session_key": event.session_key}
    return {"type": str(event.type)}


def on_event(event: events.Event) -> None:
    if isinstance(event, events.ControlEvent):
        group, message = user_group(event.user_id), message_for(event)
        transaction.on_commit(lambda: _send(group, message))
