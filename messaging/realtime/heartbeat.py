"""One heartbeat per process for its open sockets, without the database.

Every ``PORTAL_WS_HEARTBEAT_SECONDS`` each socket of the process gets a pulse from the cache. The
sockets are taken in groups of ``GROUP`` spread evenly over the interval, so no beat holds the event
loop for all of them at once (5,000 sockets: a group of 100 every 0.1 s, not 5,000 in one burst that
live events wait behind). For each group the process asks the cache in one hop off the event loop and
one Redis round trip per kind of key: it refreshes the sockets' presence marks, reads whether each
socket's session is still in the session cache, and reads their users' stream heads. Each socket then
decides on its own (``EventsConsumer.on_pulse``): close (the session is gone or went idle), catch up
from the database (an event was lost on the way), and send the client ``heartbeat`` when
``PORTAL_WS_CLIENT_HEARTBEAT_SECONDS`` (30) passed since the last one; the loop runs whatever
else is ready (a live event) between one socket's pulse and the next. An idle socket costs one
dictionary entry and a share of those round trips; the database is read only when the cache cannot
answer (Redis down, an evicted session), when a socket's idle deadline passes, or to catch up.

The session ending, a revoked link, a changed relationship reach the sockets at once as control
messages (``control``); the heartbeat is the safety net for what no message announces: a session
deleted or expired behind the portal's back, the idle timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
import weakref
from dataclasses import dataclass
from typing import Protocol

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.sessions.backends.cached_db import KEY_PREFIX
from django.core.cache import caches

from messaging.realtime import presence, stream
from portal.cache import redis_client

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pulse:
    """What the cache says about one socket: ``session`` is True (cached), False (not cached: ended,
    expired or evicted) or None (the cache did not answer); ``head`` is the user's stream head."""

    session: bool | None
    head: int


class Beating(Protocol):
    """A socket on the heartbeat (the consumer)."""

    channel_name: str

    def pulse_key(self) -> tuple[uuid.UUID, str | None]: ...

    async def on_pulse(self, pulse: Pulse) -> None: ...


def session_cache_key(session_key: str) -> str:
    """Where ``cached_db`` keeps the session in its cache (``SessionStore.cache_key``)."""
    return KEY_PREFIX + session_key


def _sessions_cached(session_keys: list[str]) -> list[bool | None]:
    sessions = caches[settings.SESSION_CACHE_ALIAS]
    try:
        client = redis_client(settings.SESSION_CACHE_ALIAS)
        if client is not None:
            pipe = client.pipeline(transaction=False)
            for key in session_keys:
                pipe.exists(sessions.make_key(session_cache_key(key)))
            return [bool(found) for found in pipe.execute()]
        return [sessions.has_key(session_cache_key(key)) for key in session_keys]
    except Exception:  # the cache is down: the sockets ask the database instead
        return [None] * len(session_keys)


def _heads(user_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
    try:
        return stream.heads(user_ids)
    except Exception:  # the cache is down: nothing to compare (the sockets catch up on reconnect)
        return {}


def pulse(sockets: list[tuple[uuid.UUID, str, str | None]]) -> list[Pulse]:
    """For each (user, socket id, session key): refresh its presence and read its session and head.
    Cache only, never the database."""
    presence.touch_many([(user_id, socket_id) for user_id, socket_id, _ in sockets])
    with_session = [key for _, _, key in sockets if key]
    cached = iter(_sessions_cached(with_session)) if with_session else iter(())
    heads = _heads(sorted({user_id for user_id, _, _ in sockets}, key=str))
    return [Pulse(session=next(cached) if key else False, head=heads.get(user_id, 0)) for user_id, _, key in sockets]


def interval() -> float:
    return float(getattr(settings, "PORTAL_WS_HEARTBEAT_SECONDS", 5))


def client_interval() -> float:
    """How often a socket sends the client a ``heartbeat`` frame (0: on every beat). The server-side
    checks run on every beat; the frame only tells the client the socket is alive, and writing one to
    every socket on every beat was most of what idle sockets cost."""
    return float(getattr(settings, "PORTAL_WS_CLIENT_HEARTBEAT_SECONDS", 30))


# The sockets one hop off the event loop serves (one Redis round trip per kind of key for all of them).
GROUP = 100


class Heartbeat:
    """The sockets of one event loop (one daphne process) and the task that beats for them."""

    def __init__(self) -> None:
        self.sockets: dict[str, Beating] = {}
        self.task: asyncio.Task[None] | None = None

    def join(self, socket: Beating) -> None:
        self.sockets[socket.channel_name] = socket
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    async def leave(self, socket: Beating) -> None:
        self.sockets.pop(socket.channel_name, None)
        if not self.sockets and self.task is not None and self.task is not asyncio.current_task():
            task, self.task = self.task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while self.sockets:
            due = max(due + interval(), loop.time())
            await asyncio.sleep(due - loop.time())
            await self.beat(spread=interval())

    async def beat(self, spread: float = 0.0) -> None:
        """One beat for every socket open now, in groups of ``GROUP``: group ``i`` of ``n`` starts
        ``i * spread / n`` seconds into the beat (at once when ``spread`` is 0), and the loop runs what
        else is ready between one socket's pulse and the next."""
        sockets = list(self.sockets.values())
        if not sockets:
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        groups = [sockets[start : start + GROUP] for start in range(0, len(sockets), GROUP)]
        for index, group in enumerate(groups):
            if index:
                await asyncio.sleep(max(0.0, started + index * spread / len(groups) - loop.time()))
            await self._beat_group(group)

    async def _beat_group(self, sockets: list[Beating]) -> None:
        sockets = [socket for socket in sockets if socket.channel_name in self.sockets]
        if not sockets:
            return
        keys = [(*socket.pulse_key(), socket.channel_name) for socket in sockets]
        pulses = await sync_to_async(pulse, thread_sensitive=False)(
            [(user_id, channel, session_key) for user_id, session_key, channel in keys]
        )
        for socket, result in zip(sockets, pulses, strict=True):
            if socket.channel_name in self.sockets:
                try:
                    await socket.on_pulse(result)
                except Exception:  # one broken socket must not stop the beat of the others
                    logger.exception("heartbeat failed for a socket")
                # A pulse does not wait for anything (its frame is written at once): hand the loop
                # back, so a live event for another socket does not wait for the whole group.
                await asyncio.sleep(0)


_beats: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Heartbeat] = weakref.WeakKeyDictionary()


def heartbeat() -> Heartbeat:
    """This event loop's heartbeat."""
    loop = asyncio.get_running_loop()
    beat = _beats.get(loop)
    if beat is None:
        beat = _beats[loop] = Heartbeat()
    return beat
