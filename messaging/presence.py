"""Whether a user has a socket open, kept in the default cache (Redis with REDIS_URL, so every daphne
process sees every socket). Each socket refreshes the mark on connect and on every heartbeat; the mark
expires a few heartbeats after the last socket goes."""

from __future__ import annotations

import logging
import time
import uuid

from django.core.cache import cache

from messaging.conf import presence_seconds

logger = logging.getLogger(__name__)


def _key(user_id: uuid.UUID | str) -> str:
    return f"presence:{uuid.UUID(str(user_id)).hex}"


def touch(user_id: uuid.UUID | str) -> None:
    try:
        cache.set(_key(user_id), time.time(), timeout=presence_seconds())
    except Exception:  # the cache is down: users count as offline and get notified
        logger.warning("presence cache unavailable")


def is_connected(user_id: uuid.UUID | str) -> bool:
    try:
        return cache.get(_key(user_id)) is not None
    except Exception:
        return False


def clear(user_id: uuid.UUID | str) -> None:
    try:
        cache.delete(_key(user_id))
    except Exception:
        logger.warning("presence cache unavailable")
