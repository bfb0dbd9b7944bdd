"""``/health``: the state of each component the portal depends on, cheap enough to be polled hard.

Load balancers and monitors poll it many times a second across many processes. Each process probes
its dependencies (a database ``SELECT 1``, a Redis ``PING``, a channel-layer round trip, the worker's
heartbeat) at most once per ``PORTAL_HEALTH_PROBE_SECONDS`` (1 s) and answers the probes in between
from that result: a flood of probes costs each dependency about one round trip a second per process,
and a failure still shows within a second of the next probe. One request probes at a time; the
others wait for its answer rather than probing too.

The answer is served by ``portal.middleware.HealthMiddleware`` before the session and authentication
middleware (no session lookup, no user); the ninja operation in ``portal.api`` documents it and
answers other methods.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import caches
from django.db import connection

logger = logging.getLogger(__name__)

DEFAULT_PROBE_SECONDS = 1.0
_clock = time.monotonic  # tests move it


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:
        return False


def _cache_ok() -> bool:
    """A real round trip to the cache's server (the degradable Redis cache ``probe``s it)."""
    backend = caches["default"]
    probe = getattr(backend, "probe", None)
    if probe is not None:
        return bool(probe())
    try:
        backend.set("health:probe", 1, timeout=5)
        return bool(backend.get("health:probe") == 1)
    except Exception:
        return False


async def _channel_layer_round_trip() -> bool:
    layer = get_channel_layer()
    if layer is None:
        return False
    channel = await layer.new_channel("health.")
    await layer.send(channel, {"type": "health.ping"})
    message = await asyncio.wait_for(layer.receive(channel), timeout=2)
    return bool(message.get("type") == "health.ping")


def _channel_layer_ok() -> bool:
    try:
        return async_to_sync(_channel_layer_round_trip)()
    except Exception:
        return False


def _up(check: Callable[[], bool]) -> Callable[[], str]:
    return lambda: "ok" if check() else "unavailable"


@dataclass(frozen=True)
class HealthComponent:
    # "ok" (or "inline": the worker's tasks run in the request) is healthy; any other state is not.
    check: Callable[[], str]
    # Critical: without it the portal cannot answer (503 "down"); otherwise it runs "degraded".
    critical: bool = False


HEALTHY = frozenset({"ok", "inline"})

# The portal's own components; apps add theirs with ``register_health_component`` from their
# ``AppConfig.ready`` (messaging: "worker", whose state is read from the database, so it is asked only
# when the database answers).
HEALTH_COMPONENTS: dict[str, HealthComponent] = {
    "database": HealthComponent(_up(_database_ok), critical=True),
    "cache": HealthComponent(_up(_cache_ok)),
    "channel_layer": HealthComponent(_up(_channel_layer_ok)),
}


def register_health_component(name: str, check: Callable[[], str], *, critical: bool = False) -> None:
    """Report ``check``'s state under ``name`` in ``/health``; a check that raises reports "error"."""

    def guarded() -> str:
        try:
            return check()
        except Exception:
            logger.exception("%s health check failed", name)
            return "error"

    HEALTH_COMPONENTS[name] = HealthComponent(guarded, critical=critical)
    forget()


def probe() -> tuple[int, dict[str, Any]]:
    """Ask every component now: the status code and the ``HealthOut`` body."""
    results: dict[str, str] = {}
    for name, component in HEALTH_COMPONENTS.items():
        # The worker's heartbeat lives in the database: without it, its state is unknown, not failed.
        needs_database = name == "worker" and results.get("database") != "ok"
        results[name] = "unknown" if needs_database else component.check()
    failed = [name for name, state in results.items() if state not in HEALTHY and state != "unknown"]
    down = any(HEALTH_COMPONENTS[name].critical for name in failed)
    body = {
        "status": "down" if down else "degraded" if failed else "ok",
        "components": results,
        "degraded": [name for name in failed if not HEALTH_COMPONENTS[name].critical],
    }
    return (503 if down else 200), body


class _Recent:
    """The last answer of this process and when it was probed (``_clock``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answer: tuple[int, dict[str, Any]] | None = None
        self.at = 0.0
        self.components: dict[str, HealthComponent] = {}

    def fresh(self, now: float) -> tuple[int, dict[str, Any]] | None:
        ttl = float(getattr(settings, "PORTAL_HEALTH_PROBE_SECONDS", DEFAULT_PROBE_SECONDS))
        # A component added or replaced since (tests swap them) makes the last answer stale.
        if self.answer is None or now - self.at >= ttl or self.components != HEALTH_COMPONENTS:
            return None
        return self.answer


_recent = _Recent()


def forget() -> None:
    with _recent.lock:
        _recent.answer = None


def cached() -> tuple[int, dict[str, Any]] | None:
    """The last answer while it is fresh, without any I/O (safe to call from the event loop)."""
    return _recent.fresh(_clock())


def answer() -> tuple[int, dict[str, Any]]:
    """The last answer while it is fresh, otherwise a new probe (one at a time per process)."""
    recent = cached()
    if recent is not None:
        return recent
    with _recent.lock:
        recent = cached()  # another request probed while this one waited for the lock
        if recent is not None:
            return recent
        components = dict(HEALTH_COMPONENTS)
        status, body = probe()
        _recent.answer, _recent.at, _recent.components = (status, body), _clock(), components
        return status, body
