"""Profile the guardian's hot reads in-process: where one request's CPU goes.

Runs ``GET /api/v1/me/today`` (a guardian of 3 children, demo-like data) and ``GET /api/v1/health``
through Django's ASGI handler in this process (the middleware, allauth's token, ninja, the ORM and the
JSON rendering, without daphne's socket work), and prints for each path: CPU per request (process
time over N requests, no profiler attached), SQL queries and Redis commands per request, then the
functions with the most cumulative CPU time under cProfile (timed by each thread's CPU clock, so
waits on PostgreSQL or Redis do not count).

Usage (a scratch PostgreSQL database and a Redis database number of your own)::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/scratch REDIS_URL=redis://127.0.0.1:6379/3 \\
        .venv/bin/python tests/benchmarks/profile_requests.py -n 500 --top 30

Without ``DATABASE_URL`` it uses the embedded SQLite default. ``--path`` limits the run to one path;
``--sort tottime`` ranks by time spent in the function itself.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

PATHS = ("/api/v1/me/today", "/api/v1/health")


@contextmanager
def _counting_redis() -> Iterator[list[int]]:
    """Count commands sent to Redis (the cache's sync client and the channel layer's async one)."""
    import redis.asyncio.connection
    import redis.connection

    count = [0]
    patched: list[tuple[Any, str, Any]] = []
    for cls in (redis.connection.AbstractConnection, redis.asyncio.connection.AbstractConnection):
        original = cls.send_command

        if asyncio.iscoroutinefunction(original):

            def make_async(original: Any) -> Callable[..., Any]:
                async def send_command(self: Any, *args: Any, **kwargs: Any) -> Any:
                    count[0] += 1
                    return await original(self, *args, **kwargs)

                return send_command

            replacement = make_async(original)
        else:

            def make_sync(original: Any) -> Callable[..., Any]:
                def send_command(self: Any, *args: Any, **kwargs: Any) -> Any:
                    count[0] += 1
                    return original(self, *args, **kwargs)

                return send_command

            replacement = make_sync(original)
        patched.append((cls, "send_command", original))
        cls.send_command = replacement  # type: ignore[method-assign]
    try:
        yield count
    finally:
        for cls, name, original in patched:
            setattr(cls, name, original)


class AsgiCaller:
    """Calls the ASGI application in this process, the way daphne hands it a request."""

    def __init__(self, token: str) -> None:
        from portal.asgi import application

        self.application = application
        self.headers = [(b"host", b"127.0.0.1"), (b"x-session-token", token.encode())]
        self.loop = asyncio.new_event_loop()

    def get(self, path: str) -> int:
        return self.loop.run_until_complete(self._get(path))

    async def _get(self, path: str) -> int:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": self.headers,
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8000),
        }
        sent = False
        status = 0

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])

        await self.application(scope, receive, send)
        return status


@contextmanager
def _counting_queries() -> Iterator[list[int]]:
    """Count SQL statements from every thread (Django's sync work runs on asgiref's executor threads)."""
    from django.db.backends.utils import CursorWrapper

    count = [0]
    execute, executemany = CursorWrapper.execute, CursorWrapper.executemany

    def counted_execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return execute(self, *args, **kwargs)

    def counted_executemany(self: Any, *args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return executemany(self, *args, **kwargs)

    CursorWrapper.execute = counted_execute  # type: ignore[method-assign]
    CursorWrapper.executemany = counted_executemany  # type: ignore[method-assign]
    try:
        yield count
    finally:
        CursorWrapper.execute = execute  # type: ignore[method-assign]
        CursorWrapper.executemany = executemany  # type: ignore[method-assign]


def _measure(caller: AsgiCaller, path: str, requests: int) -> tuple[float, float, float]:
    """CPU ms per request (no profiler), SQL queries and Redis commands per request."""
    for _ in range(20):  # warm up: imports, the pool, compiled queries, cached probes
        status = caller.get(path)
        if status != 200:
            raise SystemExit(f"{path} answered {status}")
    began = time.process_time()
    for _ in range(requests):
        caller.get(path)
    cpu_ms = 1000 * (time.process_time() - began) / requests
    counted = min(requests, 50)
    with _counting_queries() as queries, _counting_redis() as redis_commands:
        for _ in range(counted):
            caller.get(path)
    return cpu_ms, queries[0] / counted, redis_commands[0] / counted


def _profile(caller: AsgiCaller, path: str, requests: int, top: int, sort: str) -> str:
    """cProfile on every thread: the event loop here and each executor thread Django's ASGI handler
    starts for a request's sync work (one profiler per thread, merged). The timer is the thread's CPU
    time, so waiting on the database, Redis or a lock counts for nothing: what is left is CPU."""
    profilers: list[cProfile.Profile] = []

    def start_in_thread(*_: Any) -> None:
        profiler = cProfile.Profile(time.thread_time)
        profilers.append(profiler)
        profiler.enable()  # replaces this hook for the rest of the thread

    main = cProfile.Profile(time.thread_time)
    threading.setprofile(start_in_thread)
    main.enable()
    try:
        for _ in range(requests):
            caller.get(path)
    finally:
        main.disable()
        threading.setprofile(None)
    out = io.StringIO()
    stats = pstats.Stats(main, stream=out)
    for profiler in profilers:
        profiler.disable()
        stats.add(profiler)
    stats.strip_dirs().sort_stats(sort).print_stats(top)
    return out.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--requests", type=int, default=300)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--sort", default="cumulative", choices=["cumulative", "tottime"])
    parser.add_argument("--path", choices=PATHS, action="append")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from tests.benchmarks.demo_guardian import guardian_of_three

    caller = AsgiCaller(guardian_of_three().session_token)
    for path in args.path or PATHS:
        cpu_ms, queries, redis_commands = _measure(caller, path, args.requests)
        counts = f"{queries:.1f} SQL queries, {redis_commands:.1f} Redis commands"
        print(f"== {path}: {cpu_ms:.2f} ms CPU per request, {counts}")
        print(_profile(caller, path, args.requests, args.top, args.sort))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
