"""Every instance of a Redis cache in a process (Django makes one per thread and, under ASGI, per
context: per request and per open socket) shares one client and connection pool."""

from __future__ import annotations

import contextvars

from portal.cache import ResilientRedisCache

OPTIONS = {"socket_connect_timeout": 0.5, "socket_timeout": 0.5, "FALLBACK": "local"}


def _cache(server: str = "redis://127.0.0.1:1/9", **options: object) -> ResilientRedisCache:
    return ResilientRedisCache(server, {"KEY_PREFIX": "clients", "OPTIONS": {**OPTIONS, **options}})


def test_instances_share_one_client_per_server_and_options() -> None:
    first = _cache()
    # Made in another context, as a socket's task or a call from it into a thread would.
    second = contextvars.Context().run(_cache)
    assert first is not second
    assert first._cache is second._cache
    assert first._client().connection_pool is second._client().connection_pool


def test_another_server_or_other_options_get_their_own_client() -> None:
    assert _cache()._cache is not _cache("redis://127.0.0.1:2/9")._cache
    assert _cache()._cache is not _cache(socket_timeout=1.5)._cache


def test_one_redis_client_object_serves_every_call_and_thread() -> None:
    """Django's client builds a ``redis.Redis`` per cache call (most of an app token check's CPU)."""
    import threading

    client = _cache()._cache
    first = client.get_client(write=True)
    assert client.get_client(write=True) is first
    assert client.get_client(write=False) is first  # one server: reads and writes share its pool
    seen: list[object] = []
    thread = threading.Thread(target=lambda: seen.append(_cache()._client()))
    thread.start()
    thread.join()
    assert seen == [first]
