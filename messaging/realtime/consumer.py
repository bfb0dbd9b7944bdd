"""The per-user websocket (``/ws/v1/events``) with its event stream. It only authenticates, subscribes
and forwards: every write goes over HTTP and reaches the socket after commit.

Client → server: ``{"type": "ping"}``; ``{"type": "resume", "after": <last event id>}`` (also
``?after=<id>`` on the URL) replays the stream after that id, then live events follow.
Server → client: ``{"type": "event", "event": {...}}`` for each event (``event.id`` orders and
deduplicates), ``{"type": "resumed", "last_id": n}`` when a replay is done, ``heartbeat``, ``pong``,
``access.changed``. Every third heartbeat the socket also catches up from the database (events the
channel layer dropped are delivered late, never lost), and every heartbeat while the channel layer is
unavailable. Each event is re-checked against its delivery rule (``delivery``) before it is forwarded,
so a guardian whose link was revoked receives nothing more (and ``access.revoked`` closes the socket
with 4409). Close codes: 4401 not signed in (or the session ended or went idle), 4403 MFA required.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import OrderedDict
from typing import Any
from urllib.parse import parse_qs, urlparse

from allauth.core.internal.sessionkit import get_session_user
from allauth.headless.internal.sessionkit import session_store
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.security.websocket import OriginValidator, WebsocketDenier
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db.models import Max

from messaging.models import UserEvent
from messaging.realtime import presence, stream
from messaging.realtime.control import user_group
from messaging.realtime.delivery import Delivery, may_receive
from portal.access import has_mfa, requires_mfa
from portal.sessions import check_idle

CLOSE_UNAUTHENTICATED = 4401
CLOSE_MFA_REQUIRED = 4403
CLOSE_ACCESS_REVOKED = 4409

REPLAY_PAGE = 500
SENT_MEMORY = 2000
# Every third heartbeat (15 s in production) the socket checks the database for events it missed.
CATCH_UP_EVERY = 3


def _load_session_user(session_key: str) -> Any:
    session = session_store(session_key)
    user = get_session_user(session)
    if user is None or not user.is_active or check_idle(session, user, persist=True):
        return None
    return user


def _admissible(user: Any) -> int | None:
    if user is None or not user.is_authenticated:
        return CLOSE_UNAUTHENTICATED
    if requires_mfa(user) and not has_mfa(user):
        return CLOSE_MFA_REQUIRED
    return None


def _latest_event_id(user: Any) -> int:
    return int(UserEvent.objects.filter(user=user).aggregate(m=Max("id"))["m"] or 0)


def _may_receive(user: Any, message: dict[str, Any]) -> bool:
    event = message["event"]
    child_id = event.get("child_id")
    return may_receive(
        user,
        Delivery(
            entity_type=event.get("entity_type") or "",
            child_id=uuid.UUID(str(child_id)) if child_id else None,
            capability=message.get("capability", "message"),
            confidential=bool(message.get("confidential")),
            data=event.get("data") or {},
        ),
    )


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
        user = await database_sync_to_async(_load_session_user)(session_key) if session_key else None
        scope = dict(scope, user=user or AnonymousUser(), session_key=session_key if user else None)
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

    heartbeat_task: asyncio.Task[None] | None = None
    group: str | None = None
    replaying = False
    was_unsubscribed = False

    # -- the socket's life ------------------------------------------------------------------------

    async def connect(self) -> None:
        self.pending: list[dict[str, Any]] = []
        self.replayed: set[int] = set()
        # Ids already sent (bounded), and the stream position the catch-up continues from.
        self.sent: OrderedDict[int, None] = OrderedDict()
        self.cursor = 0
        self.beats = 0
        self.user = self.scope["user"]
        self.session_key = self.scope.get("session_key")
        refusal = await database_sync_to_async(_admissible)(self.user)
        if refusal is not None:
            await self.close(code=refusal)
            return
        self.group = user_group(self.user.pk)
        # With the degradable Redis layer this does not fail while Redis is down: the socket opens
        # anyway and catches up from the database (``subscribed`` says which mode it is in).
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        self.heartbeat_task = asyncio.create_task(self._heartbeat())
        await sync_to_async(presence.touch, thread_sensitive=False)(self.user.pk, self.channel_name)
        query = parse_qs((self.scope.get("query_string") or b"").decode("latin1"))
        after = query.get("after", [""])[0]
        if after.isdigit():
            await self._resume(int(after))
        else:
            self.cursor = await database_sync_to_async(_latest_event_id)(self.user)

    async def disconnect(self, code: int) -> None:
        user = getattr(self, "user", None)
        if self.group is not None and user is not None:
            # From now on what happens reaches no socket of this one: notify unless another is open.
            await sync_to_async(presence.leave, thread_sensitive=False)(user.pk, self.channel_name)
        if self.heartbeat_task is not None:
            self.heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.heartbeat_task
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

    # -- the heartbeat ----------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        """Re-check the session on a short period; a signed-out or idle session closes the socket."""
        interval = float(getattr(settings, "PORTAL_WS_HEARTBEAT_SECONDS", 5))
        while True:
            await asyncio.sleep(interval)
            user = await database_sync_to_async(_load_session_user)(self.session_key)
            if user is None:
                await self.close(code=CLOSE_UNAUTHENTICATED)
                return
            await self.on_heartbeat(user)
            await self.send_json({"type": "heartbeat"})

    def subscribed(self) -> bool:
        """Whether live events reach this socket through the channel layer right now."""
        check = getattr(self.channel_layer, "subscribed", None)
        return bool(check(self.channel_name)) if check is not None else True

    async def on_heartbeat(self, user: Any) -> None:
        """Keep the user's presence mark fresh (no email or SMS while connected) and catch up on events
        the channel layer may have dropped."""
        # Cache only (no database): off the single database thread that every socket shares.
        await sync_to_async(presence.touch, thread_sensitive=False)(user.pk, self.channel_name)
        self.beats += 1
        # Unsubscribed (the channel layer is down), every beat catches up; so does the first beat
        # after it is back, for events written before the groups were joined again.
        subscribed = self.subscribed()
        due = self.beats % CATCH_UP_EVERY == 0 or not subscribed or self.was_unsubscribed
        self.was_unsubscribed = not subscribed
        if due and not self.replaying:
            await self._catch_up()

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
                batch, last_id = await database_sync_to_async(stream.events_after)(
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
        await self.send_json({"type": "resumed", "last_id": cursor})
        waiting, self.pending = self.pending, []
        for message in waiting:
            await self._forward(message)

    async def stream_event(self, message: dict[str, Any]) -> None:
        if self.replaying:
            self.pending.append(message)
            return
        await self._forward(message)

    async def _forward(self, message: dict[str, Any]) -> None:
        event = message["event"]
        if event["id"] in self.replayed or event["id"] in self.sent:
            return
        if await database_sync_to_async(_may_receive)(self.user, message):
            await self._send_event(event)

    async def _catch_up(self) -> None:
        """Forward events the channel layer dropped (a full channel, a Redis outage): the database is
        the source of truth, so a socket never stays behind for longer than the catch-up period."""
        batch, last_id = await database_sync_to_async(stream.events_after)(
            user=self.user, after=self.cursor, limit=REPLAY_PAGE
        )
        for event in batch:
            await self._send_event(event)
        self.cursor = max(self.cursor, last_id)

    # -- control messages (``control``) ---------------------------------------------------------

    async def session_ended(self, message: dict[str, Any]) -> None:
        key = message.get("session_key")
        if key is None or key == self.session_key:
            await self.close(code=CLOSE_UNAUTHENTICATED)

    async def access_changed(self, message: dict[str, Any]) -> None:
        # Relationship changes matter to the event stream (filtered per event); the socket stays open.
        await self.send_json({"type": "access.changed"})

    async def access_revoked(self, message: dict[str, Any]) -> None:
        await self.close(code=CLOSE_ACCESS_REVOKED)
