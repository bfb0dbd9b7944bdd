"""Django's Redis cache, degradable: when Redis fails, the portal keeps answering.

``OPTIONS["FALLBACK"]`` says what a call does while Redis is unavailable:

* ``"local"`` (the default alias: allauth's and the portal's rate limits, socket presence): a
  per-process local-memory cache takes over, so rate limits keep counting in each process;
* ``"none"`` (the session alias): every read misses and writes are dropped, so ``cached_db`` sessions
  resolve from the database, the source of truth.

Keys written or deleted while Redis was unreachable are remembered and deleted from Redis before it
is used again, so a session ended during an outage cannot come back from a stale cache entry. The
outage is logged once (``portal.resilience``), not per request.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import redis.exceptions
from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.utils.functional import cached_property

from portal.resilience import Outage, outage

T = TypeVar("T")

# What "Redis is not there" looks like: refused or reset connections, timeouts, a server still loading
# or demoted to a read-only replica. Other errors (a bad command) are bugs and propagate.
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.ReadOnlyError, OSError)

# Past this many remembered keys, recovery deletes every key under the alias's prefix instead.
MAX_STALE_KEYS = 100_000


class _StaleKeys:
    """Redis keys changed elsewhere (fallback or dropped) during an outage; shared per alias."""

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.overflow = False
        self.lock = threading.Lock()
        # Held while stale keys are deleted: a thread probing Redis at the same moment waits, so it
        # cannot read a stale entry that another thread has taken but not yet deleted.
        self.flush_lock = threading.Lock()

    def add(self, keys: Iterable[str]) -> None:
        with self.lock:
            if self.overflow:
                return
            self.keys.update(keys)
            if len(self.keys) > MAX_STALE_KEYS:
                self.keys.clear()
                self.overflow = True

    def take(self) -> tuple[set[str], bool]:
        with self.lock:
            keys, overflow = self.keys, self.overflow
            self.keys, self.overflow = set(), False
            return keys, overflow

    def put_back(self, keys: set[str], overflow: bool) -> None:
        with self.lock:
            self.overflow = self.overflow or overflow
            if not self.overflow:
                self.keys.update(keys)


_stale: dict[str, _StaleKeys] = {}
_stale_lock = threading.Lock()
_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def redis_client(alias: str = DEFAULT_CACHE_ALIAS) -> Any | None:
    """The ``redis.Redis`` behind a cache alias (its process-wide pool), or None when that cache is not
    Redis: for commands the cache API has no word for (sorted sets, pipelines, scripts). The alias's
    instance is asked, not ``django.core.cache.cache``, a proxy that is no backend's instance."""
    found = caches[alias]
    if isinstance(found, RedisCache):
        # Django's RedisCache keeps its client (and connection pool) on ``_cache``.
        return getattr(found, "_cache").get_client(write=True)  # noqa: B009
    return None


class SharedRedisCacheClient(RedisCacheClient):
    """Django's Redis cache client, keeping its ``redis.Redis`` objects instead of building one per call.

    ``RedisCacheClient.get_client`` makes a new ``redis.Redis`` over the pool for every cache operation,
    and redis-py's constructor fills a table of some 160 response callbacks each time: two of them were
    about half of the CPU of authenticating an app token (``tests/benchmarks/profile_requests.py``).
    A ``redis.Redis`` holds no connection of its own (each command borrows one from the pool), so one
    per pool serves every thread of the process."""

    def __init__(self, servers: Any, **options: Any) -> None:
        super().__init__(servers, **options)
        self._redis: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        # RedisCacheClient's own helpers (not in django-stubs): which server, its pool, the client class.
        index = getattr(self, "_get_connection_pool_index")(write)  # noqa: B009
        client = self._redis.get(index)
        if client is None:
            pool = getattr(self, "_get_connection_pool")(write)  # noqa: B009
            client = self._redis[index] = getattr(self, "_client")(connection_pool=pool)  # noqa: B009
        return client


class ResilientRedisCache(RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        params = dict(params)
        options = dict(params.get("OPTIONS", {}))
        mode = options.pop("FALLBACK", "local")
        retry_seconds = float(options.pop("RETRY_SECONDS", 5))
        params["OPTIONS"] = options
        super().__init__(server, params)
        self._class = SharedRedisCacheClient
        name = f"{server}|{self.key_prefix}"
        # One record per alias, server and process (every thread's instance shares it); the log names
        # the key prefix, never the URL (which may hold a password).
        # The record is keyed by the server too (hashed: the URL may hold a password), so an instance
        # pointed at another Redis never marks this one down.
        where = hashlib.sha256(repr(server).encode()).hexdigest()
        self._outage: Outage = outage(
            f"Redis cache '{self.key_prefix}' ({mode} fallback)", retry_seconds, key=f"{where}|{self.key_prefix}|{mode}"
        )
        with _stale_lock:
            self._stale = _stale.setdefault(name, _StaleKeys())
        self._fallback: BaseCache
        if mode == "none":
            self._fallback = DummyCache("", {})
        elif mode == "local":
            self._fallback = LocMemCache(
                f"portal-fallback-{name}", {"TIMEOUT": params.get("TIMEOUT", 300), "OPTIONS": {"MAX_ENTRIES": 10_000}}
            )
        else:
            raise ValueError(f"Unknown cache FALLBACK {mode!r}: use 'local' or 'none'.")

    @cached_property
    def _cache(self) -> Any:
        """One Redis client (and connection pool) per server, options and process. Django makes a
        cache instance per thread and, under ASGI, per context: each websocket's task and each call
        from it into a thread got its own instance and with it its own pool and connections, about
        two Redis connections per open socket (5,000 sockets reached Redis' 10,000-client limit)."""
        # RedisCache's own attributes (not in django-stubs): the client class, servers and options.
        servers, options, make = getattr(self, "_servers"), getattr(self, "_options"), getattr(self, "_class")  # noqa: B009
        where = hashlib.sha256(repr((servers, sorted(options.items(), key=str))).encode()).hexdigest()
        with _clients_lock:
            client = _clients.get(where)
            if client is None:
                client = _clients[where] = make(servers, **options)
        return client

    # -- the guard ----------------------------------------------------------------------------

    def _redis_key(self, key: Any, version: int | None) -> str:
        return self.make_and_validate_key(key, version=version)

    def _guard(self, primary: Callable[[], T], fallback: Callable[[], T], written: Iterable[str] = ()) -> T:
        if self._outage.should_try():
            try:
                if self._outage.down:
                    self._forget_stale()
                result = primary()
            except REDIS_DOWN as error:
                self._outage.failed(error)
            else:
                self._outage.succeeded()
                return result
        self._stale.add(written)
        return fallback()

    def _forget_stale(self) -> None:
        """Before Redis answers again: delete what changed while it was away. Raises if it is still down."""
        with self._stale.flush_lock:
            keys, overflow = self._stale.take()
            try:
                client = self._client()
                if overflow:
                    for key in client.scan_iter(match=f"{self.key_prefix}:*", count=1000):
                        client.delete(key)
                batch = list(keys)
                for start in range(0, len(batch), 1000):
                    client.delete(*batch[start : start + 1000])
            except BaseException:
                self._stale.put_back(keys, overflow)
                raise

    def _client(self) -> Any:
        return self._cache.get_client(None, write=True)

    def probe(self) -> bool:
        """A real round trip to Redis (for ``/health``), whatever the outage record says."""
        try:
            return bool(self._client().ping())
        except REDIS_DOWN:
            return False

    # -- the cache API ------------------------------------------------------------------------

    def add(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        return self._guard(
            lambda: super(ResilientRedisCache, self).add(key, value, timeout, version),
            lambda: self._fallback.add(key, value, timeout, version),
            [self._redis_key(key, version)],
        )

    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        return self._guard(
            lambda: super(ResilientRedisCache, self).get(key, default, version),
            lambda: self._fallback.get(key, default, version),
        )

    def set(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> None:
        self._guard(
            lambda: super(ResilientRedisCache, self).set(key, value, timeout, version),
            lambda: self._fallback.set(key, value, timeout, version),
            [self._redis_key(key, version)],
        )

    def touch(self, key: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        return self._guard(
            lambda: super(ResilientRedisCache, self).touch(key, timeout, version),
            lambda: self._fallback.touch(key, timeout, version),
            [self._redis_key(key, version)],
        )

    def delete(self, key: Any, version: int | None = None) -> bool:
        return self._guard(
            lambda: super(ResilientRedisCache, self).delete(key, version),
            lambda: self._fallback.delete(key, version),
            [self._redis_key(key, version)],
        )

    def get_many(self, keys: Any, version: int | None = None) -> dict[Any, Any]:
        return self._guard(
            lambda: super(ResilientRedisCache, self).get_many(keys, version),
            lambda: self._fallback.get_many(keys, version),
        )

    def has_key(self, key: Any, version: int | None = None) -> bool:
        return self._guard(
            lambda: super(ResilientRedisCache, self).has_key(key, version),
            lambda: self._fallback.has_key(key, version),
        )

    def incr(self, key: Any, delta: int = 1, version: int | None = None) -> int:
        return self._guard(
            lambda: super(ResilientRedisCache, self).incr(key, delta, version),
            lambda: self._fallback.incr(key, delta, version),
            [self._redis_key(key, version)],
        )

    def set_many(self, data: dict[Any, Any], timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> list[Any]:
        return self._guard(
            lambda: super(ResilientRedisCache, self).set_many(data, timeout, version),
            lambda: self._fallback.set_many(data, timeout, version),
            [self._redis_key(key, version) for key in data],
        )

    def delete_many(self, keys: Any, version: int | None = None) -> None:
        keys = list(keys)
        self._guard(
            lambda: super(ResilientRedisCache, self).delete_many(keys, version),
            lambda: self._fallback.delete_many(keys, version),
            [self._redis_key(key, version) for key in keys],
        )

    def clear(self) -> None:
        self._guard(lambda: super(ResilientRedisCache, self).clear(), self._fallback.clear)
