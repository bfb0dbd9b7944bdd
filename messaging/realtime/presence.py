"""Whether a user has a socket open on any daphne process, so notifications skip what reaches it.

Each socket is an entry of its own with an expiry, refreshed on connect and on every heartbeat and
removed when the socket closes; a user is connected while any entry is fresh. With ``REDIS_URL`` the
entries are a Redis sorted set per user (socket id → expiry), shared by every daphne process (one
round trip per touch or check, through the cache's own connection pool; the process's heartbeat
refreshes a group of sockets in one command, ``touch_many``: a script that sets each entry and trims
the expired ones of each user); without it, the local-memory cache of the one embedded process holds
a small dict per user. A socket that dies without closing (a killed process) stops counting when its
entry expires, a few heartbeats later.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from django.core.cache import cache
from redis.commands.core import Script

from messaging.conf import presence_seconds
from portal.cache import redis_client as cache_redis_client

logger = logging.getLogger(__name__)


def _key(user_id: uuid.UUID | str) -> str:
    return f"presence:{uuid.UUID(str(user_id)).hex}"


def redis_client() -> Any | None:
    """The default cache's Redis client, or None when the cache is not Redis."""
    return cache_redis_client()


# KEYS: one presence key per user; ARGV: now, the new expiry, the key's lifetime, then for each key
# the number of its sockets followed by their ids.
_TOUCH_MANY = """
local now, expires, keep = ARGV[1], ARGV[2], ARGV[3]
local at = 4
for _, key in ipairs(KEYS) do
  local count = tonumber(ARGV[at])
  for offset = 1, count do
    redis.call('ZADD', key, expires, ARGV[at + offset])
  end
  at = at + count + 1
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  redis.call('EXPIRE', key, keep)
end
return #KEYS
"""
_touch_many: Script | None = None  # registered once (by its SHA-1), run with whichever client asks


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
    """``touch`` for each (user, socket id), in one Redis command for all of them."""
    if not sockets:
        return
    try:
        client = redis_client()
        if client is None:
            for user_id, socket_id in sockets:
                touch(user_id, socket_id)
            return
        by_user: dict[str, list[str]] = {}
        for user_id, socket_id in sockets:
            by_user.setdefault(cache.make_key(_key(user_id)), []).append(socket_id or "-")
        now = time.time()
        args: list[Any] = [repr(now), repr(now + presence_seconds()), int(presence_seconds()) + 1]
        for ids in by_user.values():
            args += [len(ids), *ids]
        global _touch_many
        if _touch_many is None:
            _touch_many = client.register_script(_TOUCH_MANY)
        _touch_many(keys=list(by_user), args=args, client=client)
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
