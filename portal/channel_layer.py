"""channels_redis' layer, degradable: a socket opens and stays open while Redis is unavailable.

The layer remembers which groups each of this process's channels joined. ``group_add`` that cannot
reach Redis is kept for later instead of failing the websocket handshake; ``receive`` waits and
retries instead of raising (which would close every socket of the process), and after an outage it
joins the remembered groups again before receiving (a restarted Redis has forgotten them). While the
layer is down, sockets catch up from the persisted event stream on every heartbeat
(``messaging.realtime.consumer``); ``send``/``group_send`` still raise, and their callers already treat the
stream in the database as the source of truth. Every call but the blocking receive is bounded by
``operation_timeout`` (a Redis that hangs instead of refusing), and while an outage is known calls
fail at once until the next probe (``portal.resilience``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

import redis.exceptions
from channels_redis.core import RedisChannelLayer

from portal.cache import REDIS_DOWN
from portal.resilience import Outage, Skipped, outage

LAYER_OUTAGE = "Redis channel layer"
T = TypeVar("T")


def layer_outage() -> Outage:
    return outage(LAYER_OUTAGE, 1.0)


class LayerUnavailable(Skipped, redis.exceptions.ConnectionError):
    """Raised without touching Redis while an outage is known and not yet due for a probe."""


class ResilientRedisChannelLayer(RedisChannelLayer):
    def __init__(self, *args: Any, retry_seconds: float = 1.0, operation_timeout: float = 2.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_seconds = retry_seconds
        # A Redis that hangs (rather than refusing connections) must not hang a request or a handshake.
        self.operation_timeout = operation_timeout
        self.memberships: dict[str, set[str]] = {}
        self.unsubscribed: set[str] = set()

    async def _call(self, operation: Coroutine[Any, Any, T]) -> T:
        known = layer_outage()
        if not known.should_try():
            operation.close()
            raise LayerUnavailable("the channel layer is unavailable")
        try:
            result = await asyncio.wait_for(operation, self.operation_timeout)
        except REDIS_DOWN as error:
            known.failed(error)
            raise
        known.succeeded()
        return result

    async def group_add(self, group: str, channel: str) -> None:
        self.memberships.setdefault(channel, set()).add(group)
        try:
            await self._call(super().group_add(group, channel))
        except REDIS_DOWN:
            self.unsubscribed.add(channel)

    async def group_discard(self, group: str, channel: str) -> None:
        groups = self.memberships.get(channel)
        if groups is not None:
            groups.discard(group)
            if not groups:
                self.memberships.pop(channel, None)
                self.unsubscribed.discard(channel)
        with contextlib.suppress(*REDIS_DOWN):  # the membership expires in Redis by itself
            await self._call(super().group_discard(group, channel))

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        await self._call(super().send(channel, message))

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        await self._call(super().group_send(group, message))

    async def receive(self, channel: str) -> dict[str, Any]:
        while True:
            try:
                if channel in self.unsubscribed:
                    for group in list(self.memberships.get(channel, ())):
                        await self._call(super().group_add(group, channel))
                    self.unsubscribed.discard(channel)
                message: dict[str, Any] = await super().receive(channel)
            except LayerUnavailable:  # not an attempt: wait for the next probe without delaying it
                if channel in self.memberships:
                    self.unsubscribed.add(channel)
                await asyncio.sleep(self.retry_seconds)
                continue
            except REDIS_DOWN as error:
                layer_outage().failed(error)
                if channel in self.memberships:
                    self.unsubscribed.add(channel)
                await asyncio.sleep(self.retry_seconds)
                continue
            layer_outage().succeeded()
            return message

    def subscribed(self, channel: str) -> bool:
        """False while ``channel``'s groups could not be joined (events then come from the database)."""
        return channel not in self.unsubscribed and not layer_outage().down
