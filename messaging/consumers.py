"""The per-user socket with its event stream. It only authenticates (``portal.consumers``), subscribes
and forwards: every write goes over HTTP and reaches the socket after commit.

Client → server: ``{"type": "ping"}``; ``{"type": "resume", "after": <last event id>}`` (also
``?after=<id>`` on the URL) replays the stream after that id, then live events follow.
Server → client: ``{"type": "event", "event": {...}}`` for each event (``event.id`` orders and
deduplicates), ``{"type": "resumed", "last_id": n}`` when a replay is done, ``heartbeat``, ``pong``.
Every third heartbeat the socket also catches up from the database (events the channel layer dropped
are delivered late, never lost), and every heartbeat while the channel layer is unavailable. Each
event is re-checked against the access policy before it is forwarded, so a guardian whose link was
revoked receives nothing more (and ``access.revoked`` closes the socket with 4409).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.db.models import Max

from messaging import presence, stream
from messaging.models import UserEvent
from portal.consumers import EventsConsumer

REPLAY_PAGE = 500
SENT_MEMORY = 2000
# Every third heartbeat (15 s in production) the socket checks the database for events it missed.
CATCH_UP_EVERY = 3


def _latest_event_id(user: Any) -> int:
    return int(UserEvent.objects.filter(user=user).aggregate(m=Max("id"))["m"] or 0)


class StreamConsumer(EventsConsumer):
    replaying = False
    was_unsubscribed = False

    async def connect(self) -> None:
        self.pending: list[dict[str, Any]] = []
        self.replayed: set[int] = set()
        # Ids already sent (bounded), and the stream position the catch-up continues from.
        self.sent: OrderedDict[int, None] = OrderedDict()
        self.cursor = 0
        self.beats = 0
        await super().connect()
        if getattr(self, "group", None) is None:
            return
        await sync_to_async(presence.touch, thread_sensitive=False)(self.user.pk, self.channel_name)
        query = parse_qs((self.scope.get("query_string") or b"").decode("latin1"))
        after = query.get("after", [""])[0]
        if after.isdigit():
            await self._resume(int(after))
        else:
            self.cursor = await database_sync_to_async(_latest_event_id)(self.user)

    async def disconnect(self, code: int) -> None:
        user = getattr(self, "user", None)
        if getattr(self, "group", None) is not None and user is not None:
            # From now on what happens reaches no socket of this one: notify unless another is open.
            await sync_to_async(presence.leave, thread_sensitive=False)(user.pk, self.channel_name)
        await super().disconnect(code)

    async def _send_event(self, event: dict[str, Any]) -> None:
        if event["id"] in self.sent:
            return
        self.sent[event["id"]] = None
        while len(self.sent) > SENT_MEMORY:
            self.sent.popitem(last=False)
        await self.send_json({"type": "event", "event": event})

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "resume":
            after = content.get("after", 0)
            if not isinstance(after, int) or isinstance(after, bool) or after < 0:
                await self.send_json({"type": "error", "code": "invalid_after", "message": "after must be an id."})
                return
            await self._resume(after)
            return
        await super().receive_json(content, **kwargs)

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
        allowed = await database_sync_to_async(stream.may_receive)(
            self.user,
            event.get("child_id"),
            message.get("capability", "message"),
            bool(message.get("confidential")),
            (event.get("data") or {}).get("group_id"),
        )
        if allowed:
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
