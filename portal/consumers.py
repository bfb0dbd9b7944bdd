"""The per-user websocket (``/ws/v1/events``). It only authenticates, subscribes and forwards: every
write goes over HTTP and is broadcast after commit."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import urlparse

from allauth.core.internal.sessionkit import get_session_user
from allauth.headless.internal.sessionkit import session_store
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.security.websocket import OriginValidator, WebsocketDenier
from django.conf import settings
from django.contrib.auth.models import AnonymousUser

from portal.access import has_mfa, requires_mfa
from portal.realtime import user_group
from portal.sessions import check_idle

CLOSE_UNAUTHENTICATED = 4401
CLOSE_MFA_REQUIRED = 4403
CLOSE_ACCESS_REVOKED = 4409


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

    async def connect(self) -> None:
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

    async def disconnect(self, code: int) -> None:
        if self.heartbeat_task is not None:
            self.heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.heartbeat_task
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})
            return
        await self.send_json({"type": "error", "code": "unknown_type", "message": "Unknown message type."})

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
        """A hook for subclasses: runs on every beat while the session is still valid."""

    async def session_ended(self, message: dict[str, Any]) -> None:
        key = message.get("session_key")
        if key is None or key == self.session_key:
            await self.close(code=CLOSE_UNAUTHENTICATED)

    async def access_changed(self, message: dict[str, Any]) -> None:
        # Relationship changes matter to the event stream (filtered per event); the socket stays open.
        await self.send_json({"type": "access.changed"})

    async def access_revoked(self, message: dict[str, Any]) -> None:
        await self.close(code=CLOSE_ACCESS_REVOKED)
