"""channels_redis' layer, degradable: a socket opens and stays open while Redis is unavailable.

The layer remembers which groups each of this process's channels joined. ``group_add`` that cannot
reach Redis is kept for later instead of failing the websocket handshake; ``receive`` waits and
retries instead of raising (which would close every socket of the process), and after an outage it
joins the remembered groups again before receiving (a restarted Redis has forgotten them). While the
layer is down, sockets catch up from the persisted event stream on every heartbeat
(``messaging.consumers``); ``send``/``group_send`` still raise, and their callers already treat the
stream in the database as the source of truth.
"""

from __future__ import annotations

import asyncio
from typing import Any

from channels_redis.core import RedisChannelLayer

from portal.cache import REDIS_DOWN
from portal.resilience import Outage, outage

LAYER_OUTAGE = "Redis channel layer"


def layer_outage() -> Outage:
    return outage(LAYER_OUTAGE, 1.0)


class ResilientRedisChannelLayer(RedisChannelLayer):
    def __init__(self, *args: Any, retry_seconds: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_seconds = retry_seconds
        self.memberships: dict[str, set[str]] = {}
        self.unsubscribed: set[str] = set()

    async def group_add(self, group: str, channel: str) -> None:
        self.memberships.setdefault(channel, set()).add(group)
        try:
            await super().group_add(group, channel)
        except REDIS_DOWN as error:
            layer_outage().failed(error)
            self.unsubscribed.add(channel)

    async def group_discard(self, group: str, channel: str) -> None:
        groups = self.memberships.get(channel)
        if groups is not None:
            groups.discard(group)
            if not groups:
                self.memberships.pop(channel, None)
                self.unsubscribed.discard(channel)
        try:
            await super().group_discard(group, channel)
        except REDIS_DOWN as error:  # the membership expires in Redis by itself
            layer_outage().failed(error)

    async def receive(self, channel: str) -> dict[str, Any]:
        while True:
            try:
                if channel in self.unsubscribed:
                    for group in list(self.memberships.get(channel, ())):
                        await super().group_add(group, channel)
                    self.unsubscribed.discard(channel)
                    layer_outage().succeeded()
                message: dict[str, Any] = await super().receive(channel)
            except REDIS_DOWN as error:
                layer_outage().failed(error)
                if channel in self.memberships:
                    self.unsubscribed.add(channel)
                await asyncio.sleep(self.retry_seconds)
                continue
            layer_outage().succeeded()
            return message

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        try:
            await super().send(channel, message)
        except REDIS_DOWN as error:
            layer_outage().failed(error)
            raise
        layer_outage().succeeded()

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        try:
            await super().group_send(group, message)
        except REDIS_DOWN as error:
            layer_outage().failed(error)
            raise
        layer_outage().succeeded()

    def subscribed(self, channel: str) -> bool:
        """False while ``channel``'s groups could not be joined (events then come from the database)."""
        return channel not in self.unsubscribed and not layer_outage().down
