"""Whether a user has a socket open on any daphne process, so notifications skip what reaches it.

Each socket is an entry of its own with an expiry, refreshed on connect and on every heartbeat and
removed when the socket closes; a user is connected while any entry is fresh. With ``REDIS_URL`` the
entries are a Redis sorted set per user (socket id → expiry), shared by every daphne process (one
round trip per touch or check, through the cache's own connection pool; the process's heartbeat
refreshes all its sockets in one round trip, ``touch_many``); without it, the local-memory cache of
the one embedded process holds a small dict per user. A socket that dies without closing
(a killed process) stops counting when its entry expires, a few heartbeats later.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from django.core.cache import cache
from django.core.cache.backends.redis import RedisCache

from messaging.conf import presence_seconds

logger = logging.getLogger(__name__)


def _key(user_id: uuid.UUID | str) -> str:
    return f"presence:{uuid.UUID(str(user_id)).hex}"


def redis_client() -> Any | None:
    """The cache's Redis client, or None when the cache is not Redis."""
    if isinstance(cache, RedisCache):
        # Django's RedisCache keeps its client (and connection pool) on ``_cache``.
        return getattr(cache, "_cache").get_client(write=True)  # noqa: B009
    return None


def touch(user_id: uuid.UUID | str, socket_id: str = "") -> None:
    """Mark this socket of the user as connected for the next ``presence_seconds``."""
    expires = time.time() + presence_seconds()
    try:
        client = redis_client()
        if client is not None:
            key = cache.make_key(_key(user_id))
            pipe = client.pipeline()
            pipe.zadd(key, {socket_id or "-": expires})
            pipe.zremrangebyscore(key, "-inf", time.time())
            pipe.expire(key, int(presence_seconds()) + 1)
            pipe.execute()
            return
        entries: dict[str, float] = cache.get(_key(user_id)) or {}
        entries = {sid: until for sid, until in entries.items() if until > time.time()}
        entries[socket_id or "-"] = expires
        cache.set(_key(user_id), entries, timeout=presence_seconds())
    except Exception:  # the cache is down: users count as offline and get notified
        logger.warning("presence cache unavailable")


def touch_many(sockets: list[tuple[uuid.UUID, str]]) -> None:
    """``touch`` for each (user, socket id), in one Redis round trip for all of them."""
    if not sockets:
        return
    try:
        client = redis_client()
        if client is None:
            for user_id, socket_id in sockets:
                touch(user_id, socket_id)
            return
        now = time.time()
        expires, keep = now + presence_seconds(), int(presence_seconds()) + 1
        pipe = client.pipeline(transaction=False)
        for user_id, socket_id in sockets:
            key = cache.make_key(_key(user_id))
            pipe.zadd(key, {socket_id or "-": expires})
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.expire(key, keep)
        pipe.execute()
    except Exception:  # the cache is down: users count as offline and get notified
        logger.warning("presence cache unavailable")


def leave(user_id: uuid.UUID | str, socket_id: str = "") -> None:
    """This socket closed: the user stays connected only through their other sockets."""
    try:
        client = redis_client()
        if client is not None:
            client.zrem(cache.make_key(_key(user_id)), socket_id or "-")
            return
        entries: dict[str, float] = cache.get(_key(user_id)) or {}
        entries.pop(socket_id or "-", None)
        cache.set(_key(user_id), entries, timeout=presence_seconds())
    except Exception:
        logger.warning("presence cache unavailable")


def is_connected(user_id: uuid.UUID | str) -> bool:
    try:
        now = time.time()
        client = redis_client()
        if client is not None:
            return bool(client.zcount(cache.make_key(_key(user_id)), f"({now}", "+inf"))
        entries: dict[str, float] = cache.get(_key(user_id)) or {}
        return any(until > now for until in entries.values())
    except Exception:
        return False
