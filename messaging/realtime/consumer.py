"""The per-user websocket (``/ws/v1/events``) with its event stream. It only authenticates, subscribes
and forwards: every write goes over HTTP and reaches the socket after commit.

Client → server: ``{"type": "ping"}``; ``{"type": "resume", "after": <last event id>}`` (also
``?after=<id>`` on the URL) replays the stream after that id, then live events follow.
Server → client: ``{"type": "event", "event": {...}}`` for each event (``event.id`` orders and
deduplicates), ``{"type": "resumed", "last_id": n}`` when a replay is done, ``heartbeat`` (every
``PORTAL_WS_CLIENT_HEARTBEAT_SECONDS``), ``pong``,
``access.changed``. Close codes: 4401 not signed in (or the session ended or went idle), 4403 MFA
required, 4409 access revoked.

Live events are forwarded as they come: who receives an event was decided by the delivery rule when
it was written (``stream.emit``), and a change of access or session that commits later reaches the
socket as a control message (``access.revoked`` closes it with 4409, ``session.ended`` with 4401).
Replays check every stored event again (``stream.events_after``). The database is read when the
socket opens, to replay or catch up, and when its idle deadline passes; the process's heartbeat
(``heartbeat``) keeps an idle socket alive from the cache alone: it closes the socket when its
session left the session cache and the database confirms it is gone, and catches up from the
database when the user's stream head shows a lost event (a full channel), or on every beat while
the channel layer is unavailable.

A socket does not keep its session alive: the idle deadline (the session's last activity plus
``PORTAL_IDLE_TIMEOUT`` or ``PORTAL_STAFF_IDLE_TIMEOUT``) is read when it opens, and when it passes
the socket reads the session again (HTTP activity moves it on) or closes with 4401.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar
from urllib.parse import parse_qs, urlparse

from allauth.headless.internal.sessionkit import session_store
from asgiref.sync import sync_to_async
from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.security.websocket import OriginValidator, WebsocketDenier
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.sqlite3.creation import DatabaseCreation as SqliteCreation

from messaging.models import UserEvent
from messaging.realtime import presence, stream
from messaging.realtime.control import user_group
from messaging.realtime.heartbeat import Pulse, client_interval, heartbeat, interval
from portal.admission import mfa_state
from portal.auth import session_user
from portal.prepared import Prepared
from portal.sessions import LAST_SEEN_KEY, check_idle, idle_timeout_for

CLOSE_UNAUTHENTICATED = 4401
CLOSE_MFA_REQUIRED = 4403
CLOSE_ACCESS_REVOKED = 4409

REPLAY_PAGE = 500
SENT_MEMORY = 2000
# While the session cache does not answer (Redis down), every third beat asks the database instead.
RECHECK_EVERY = 3

P = ParamSpec("P")
R = TypeVar("R")


def on_any_thread(function: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """Run ``function``'s database work on a thread of the event loop's pool, not on the one thread
    per process that ``database_sync_to_async`` shares with every other socket: thousands of sockets
    opening at once (a reconnect storm) would otherwise wait in a single line behind each other's
    queries. An in-memory SQLite database (the test database) is the exception: its connections
    share table locks that do not wait, so its work stays on the one thread."""

    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        finally:
            # Give back every connection the call opened (to the pool, when there is one). It must
            # happen here, inside the call's context: Django's connections are context-local under
            # ASGI, and one opened here is seen neither by a later call on this thread nor by
            # ``close_old_connections`` run around it (``database_sync_to_async``), so it would be
            # held until the process ends.
            for connection in connections.all(initialized_only=True):
                connection.close()

    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        result: R = await sync_to_async(call, thread_sensitive=_in_memory_sqlite())(*args, **kwargs)
        return result

    return run


def _in_memory_sqlite() -> bool:
    # From the settings, never ``connections[...]``: that would make a connection in the event loop's
    # context, which every call from it would then share across threads (Django's connections are
    # context-local under ASGI).
    database = connections.settings[DEFAULT_DB_ALIAS]
    return "sqlite3" in database["ENGINE"] and SqliteCreation.is_in_memory_db(database["NAME"])


# The newest event id of the user: compiled once per process (a socket opening asks it every time).
NEWEST_EVENT = Prepared(lambda user: UserEvent.objects.filter(user_id=user).order_by("-id").values_list("id")[:1])


@dataclass(frozen=True)
class SignedIn:
    """A socket's session when it opened: whose it is, whether staff rules (MFA, the shorter idle
    timeout) apply, and its idle deadline (a Unix time)."""

    user: Any
    staff: bool
    idle_deadline: float
    enrolled: bool = False  # an MFA authenticator (asked only when ``staff``)


def _load_session(session_key: str) -> SignedIn | None:
    """The session's user, admitted when the socket opens (this counts as activity). Whether the user
    must use two factors, and has them, comes from the session when an API call settled it there
    (``portal.admission``), otherwise from the database."""
    session = session_store(session_key)
    user = session_user(session)
    if user is None or not user.is_active:
        return None
    mfa = mfa_state(session, user)
    if check_idle(session, user, persist=True, staff=mfa.required):
        return None
    last_seen = float(session.get(LAST_SEEN_KEY) or time.time())
    return SignedIn(
        user=user,
        staff=mfa.required,
        idle_deadline=last_seen + idle_timeout_for(user, mfa.required),
        enrolled=mfa.enrolled,
    )


def _idle_deadline(session_key: str, staff: bool) -> float | None:
    """The session's idle deadline as it stands now, or None when it ended, went idle or its user was
    deactivated. Reads the session without touching it: an open socket is not activity."""
    session = session_store(session_key)
    user = session_user(session)
    if user is None or not user.is_active:
        return None
    deadline = float(session.get(LAST_SEEN_KEY) or time.time()) + idle_timeout_for(user, staff)
    return deadline if deadline >= time.time() else None


def _admit(signed_in: SignedIn | None, latest: bool) -> tuple[int | None, int]:
    """The close code that refuses the socket (None: admitted), and the user's newest event id when
    ``latest`` (where the stream continues from when the client does not resume)."""
    if signed_in is None or not signed_in.user.is_authenticated:
        return CLOSE_UNAUTHENTICATED, 0
    if signed_in.staff and not signed_in.enrolled:
        return CLOSE_MFA_REQUIRED, 0
    if not latest:
        return None, 0
    newest = NEWEST_EVENT.rows(user=signed_in.user.pk)
    return None, int(newest[0][0]) if newest else 0


class WebsocketAuthMiddleware:
    """Authenticates a websocket by allauth's app token (``X-Session-Token`` header) or by the
    browser's session cookie. A cookie counts only with an allowed ``Origin`` (no cross-site socket
    hijacking); a request with a foreign ``Origin`` is refused outright."""

    def __init__(self, app: Any) -> None:
        self.app = app
        allowed = list(settings.ALLOWED_HOSTS) + list(getattr(settings, "PORTAL_WS_ALLOWED_ORIGINS", []))
        self.origins = OriginValidator(app, allowed)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        headers = {name.decode("latin1").lower(): value.decode("latin1") for name, value in scope.get("headers", [])}
        origin = headers.get("origin")
        if origin and not self.origins.valid_origin(urlparse(origin)):
            return await WebsocketDenier()(scope, receive, send)
        session_key = headers.get("x-session-token")
        if not session_key and origin:
            cookies = scope.get("cookies") or _parse_cookies(headers.get("cookie", ""))
            session_key = cookies.get(settings.SESSION_COOKIE_NAME)
        signed_in = await on_any_thread(_load_session)(session_key) if session_key else None
        scope = dict(
            scope,
            user=signed_in.user if signed_in else AnonymousUser(),
            session_key=session_key if signed_in else None,
            signed_in=signed_in,
        )
        return await self.app(scope, receive, send)


def _parse_cookies(raw: str) -> dict[str, str]:
    cookies = {}
    for part in raw.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            cookies[name] = value
    return cookies


class EventsConsumer(AsyncJsonWebsocketConsumer):
    """One socket per signed-in device; receives the user's events and control messages."""

    group: str | None = None
    replaying = False
    was_unsubscribed = False
    on_heartbeat = False

    # -- the socket's life ------------------------------------------------------------------------

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Hand the message to its handler. channels' own ``dispatch`` first hops to the process's one
        shared sync thread to close stale database connections, before every handshake and every
        live event: that line is what thousands of sockets would wait in. This consumer holds no
        connection between messages (its database work runs in ``on_any_thread``, which gives its
        connections back), so there is nothing to close."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        self.pending: list[dict[str, Any]] = []
        self.replayed: set[int] = set()
        # Ids already sent (bounded), the stream position a catch-up continues from, and the newest
        # id that reached this socket live (compared with the user's stream head on each beat).
        self.sent: OrderedDict[int, None] = OrderedDict()
        self.cursor = 0
        self.seen = 0
        self.beats = 0
        self.last_frame = time.time()  # when the client last got a ``heartbeat`` frame
        self.chores: dict[str, asyncio.Task[None]] = {}
        self.user = self.scope["user"]
        self.session_key = self.scope.get("session_key")
        signed_in: SignedIn | None = self.scope.get("signed_in")
        self.staff = bool(signed_in and signed_in.staff)
        self.idle_deadline = signed_in.idle_deadline if signed_in else 0.0
        query = parse_qs((self.scope.get("query_string") or b"").decode("latin1"))
        after = query.get("after", [""])[0]
        refusal, latest = await on_any_thread(_admit)(signed_in, not after.isdigit())
        if refusal is not None or signed_in is None:
            await self.close(code=refusal or CLOSE_UNAUTHENTICATED)
            return
        self.cursor = self.seen = latest
        self.group = user_group(self.user.pk)
        # With the degradable Redis layer this does not fail while Redis is down: the socket opens
        # anyway and catches up from the database (``subscribed`` says which mode it is in).
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        heartbeat().join(self)
        self.on_heartbeat = True
        await sync_to_async(presence.touch, thread_sensitive=False)(self.user.pk, self.channel_name)
        if after.isdigit():
            await self._resume(int(after))

    async def disconnect(self, code: int) -> None:
        user = getattr(self, "user", None)
        if self.on_heartbeat:
            self.on_heartbeat = False
            await heartbeat().leave(self)
        if self.group is not None and user is not None:
            # From now on what happens reaches no socket of this one: notify unless another is open.
            await sync_to_async(presence.leave, thread_sensitive=False)(user.pk, self.channel_name)
        for task in list(getattr(self, "chores", {}).values()):
            if task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "resume":
            after = content.get("after", 0)
            if not isinstance(after, int) or isinstance(after, bool) or after < 0:
                await self.send_json({"type": "error", "code": "invalid_after", "message": "after must be an id."})
                return
            await self._resume(after)
            return
        if kind == "ping":
            await self.send_json({"type": "pong"})
            return
        await self.send_json({"type": "error", "code": "unknown_type", "message": "Unknown message type."})

    # -- the heartbeat (``heartbeat``: one per process, from the cache) ---------------------------

    def pulse_key(self) -> tuple[Any, str | None]:
        return self.user.pk, self.session_key

    def subscribed(self) -> bool:
        """Whether live events reach this socket through the channel layer right now."""
        check = getattr(self.channel_layer, "subscribed", None)
        return bool(check(self.channel_name)) if check is not None else True

    async def on_pulse(self, pulse: Pulse) -> None:
        """What the process's heartbeat learnt from the cache: re-read the session from the database
        when it left the session cache (or the cache is down) or the idle deadline passed; catch up
        when an event was lost on the way or the channel layer is unavailable."""
        self.beats += 1
        unknown = pulse.session is None and self.beats % RECHECK_EVERY == 0
        if pulse.session is False or unknown or time.time() > self.idle_deadline:
            self._chore("recheck", self._recheck())
        # Unsubscribed (the channel layer is down), every beat catches up; so does the first beat
        # after it is back, for events written before the groups were joined again.
        subscribed = self.subscribed()
        due = pulse.head > self.seen or not subscribed or self.was_unsubscribed
        self.was_unsubscribed = not subscribed
        if due and not self.replaying:
            self._chore("catch_up", self._catch_up())
        # The frame on the beat nearest its due time (half a beat early at most).
        now = time.time()
        if now - self.last_frame >= client_interval() - interval() / 2:
            self.last_frame = now
            await self.send_json({"type": "heartbeat"})

    def _chore(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` beside the heartbeat (one of each kind at a time): a slow database answer for
        one socket must not hold up the beat of the others."""
        running = self.chores.get(name)
        if running is not None and not running.done():
            work.close()
            return
        self.chores[name] = asyncio.get_running_loop().create_task(work)

    async def _recheck(self) -> None:
        assert self.session_key is not None
        deadline = await on_any_thread(_idle_deadline)(self.session_key, self.staff)
        if deadline is None:
            await self._close(CLOSE_UNAUTHENTICATED)
            return
        self.idle_deadline = deadline

    async def _close(self, code: int) -> None:
        """Close the socket and take it off the heartbeat at once (a closed socket beats no more)."""
        if self.on_heartbeat:
            self.on_heartbeat = False
            await heartbeat().leave(self)
        await self.close(code=code)

    # -- the stream -------------------------------------------------------------------------------

    async def _send_event(self, event: dict[str, Any]) -> None:
        if event["id"] in self.sent:
            return
        self.sent[event["id"]] = None
        while len(self.sent) > SENT_MEMORY:
            self.sent.popitem(last=False)
        await self.send_json({"type": "event", "event": event})

    async def _resume(self, after: int) -> None:
        """Replay the stream after ``after``; live events arriving meanwhile wait, then follow (those
        already replayed are not sent twice)."""
        self.replaying = True
        self.replayed = set()
        cursor = after
        lookback = True
        try:
            while True:
                batch, last_id = await on_any_thread(stream.events_after)(
                    user=self.user, after=cursor, limit=REPLAY_PAGE, lookback=lookback
                )
                lookback = False
                for event in batch:
                    self.replayed.add(event["id"])
                    await self._send_event(event)
                if last_id == cursor:
                    break
                cursor = last_id
        finally:
            self.replaying = False
        self.cursor = max(self.cursor, cursor)
        self.seen = max(self.seen, cursor)
        await self.send_json({"type": "resumed", "last_id": cursor})
        waiting, self.pending = self.pending, []
        for message in waiting:
            await self._forward(message)

    async def stream_event(self, message: dict[str, Any]) -> None:
        """A live event: its recipients were decided when it was written, so it goes straight out."""
        self.seen = max(self.seen, int(message["event"]["id"]))
        if self.replaying:
            self.pending.append(message)
            return
        await self._forward(message)

    async def _forward(self, message: dict[str, Any]) -> None:
        event = message["event"]
        if event["id"] in self.replayed or event["id"] in self.sent:
            return
        await self._send_event(event)

    async def _catch_up(self) -> None:
        """Forward events the channel layer dropped (a full channel, a Redis outage): the database is
        the source of truth, so a socket never stays behind for longer than a heartbeat."""
        batch, last_id = await on_any_thread(stream.events_after)(user=self.user, after=self.cursor, limit=REPLAY_PAGE)
        for event in batch:
            await self._send_event(event)
        self.cursor = max(self.cursor, last_id)
        self.seen = max(self.seen, last_id)

    # -- control messages (``control``) ---------------------------------------------------------

    async def session_ended(self, message: dict[str, Any]) -> None:
        key = message.get("session_key")
        if key is None or key == self.session_key:
            await self._close(CLOSE_UNAUTHENTICATED)

    async def access_changed(self, message: dict[str, Any]) -> None:
        # Relationship changes decide which events are written for the user from now on (``emit``);
        # the socket stays open and the client re-reads what it shows.
        await self.send_json({"type": "access.changed"})

    async def access_revoked(self, message: dict[str, Any]) -> None:
        await self._close(CLOSE_ACCESS_REVOKED)
