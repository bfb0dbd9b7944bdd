"""Profile the guardian's hot reads, and a clinician's message POST, in-process: where one request's
CPU goes.

Runs ``GET /api/v1/me/today`` (a guardian of 3 children, demo-like data) and ``GET /api/v1/health``
through Django's ASGI handler in this process (the middleware, allauth's token, ninja, the ORM and the
JSON rendering, without daphne's socket work), and prints for each path: CPU per request (process
time over N requests, no profiler attached), SQL queries and Redis commands per request, then the
functions with the most cumulative CPU time under cProfile (timed by each thread's CPU clock, so
waits on PostgreSQL or Redis do not count).

Usage (a scratch PostgreSQL database and a Redis database number of your own)::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/scratch REDIS_URL=redis://127.0.0.1:6379/3 \\
        .venv/bin/python tests/benchmarks/profile_requests.py -n 500 --top 30

``--message`` profiles a clinician's ``POST /api/v1/children/{id}/threads/{id}/messages`` instead (a
clinician on the child's care team with two factors, into a thread the demo guardian opened, a new
``client_id`` each call, the send rate raised for the run) and splits each POST's wall time, SQL
statements (each with its count and time per request) and Redis commands into: before the
``message.created`` event's rows are written, from there to the COMMIT, the COMMIT, and after it.

Without ``DATABASE_URL`` it uses the embedded SQLite default. ``--path`` limits the run to one path;
``--sort tottime`` ranks by time spent in the function itself.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import io
import json
import os
import pstats
import sys
import threading
import time
import uuid
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
        return self.loop.run_until_complete(self._call("GET", path, b""))

    def post(self, path: str, body: dict[str, Any]) -> int:
        return self.loop.run_until_complete(self._call("POST", path, json.dumps(body).encode()))

    async def _call(self, method: str, path: str, body: bytes) -> int:
        headers = self.headers
        if method != "GET":
            headers = [*headers, (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8000),
        }
        sent = False
        status = 0

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
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


def _measure(call: Callable[[], int], requests: int) -> tuple[float, float, float]:
    """CPU ms per request (no profiler), SQL queries and Redis commands per request."""
    for _ in range(20):  # warm up: imports, the pool, compiled queries, cached probes
        status = call()
        if status not in (200, 201):
            raise SystemExit(f"answered {status}")
    began = time.process_time()
    for _ in range(requests):
        call()
    cpu_ms = 1000 * (time.process_time() - began) / requests
    counted = min(requests, 50)
    with _counting_queries() as queries, _counting_redis() as redis_commands:
        for _ in range(counted):
            call()
    return cpu_ms, queries[0] / counted, redis_commands[0] / counted


def _profile(call: Callable[[], int], requests: int, top: int, sort: str) -> str:
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
            call()
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


# -- the clinician's message POST, in phases ------------------------------------------------------

PHASES = ("before", "between", "commit", "after")
PHASE_NAMES = {
    "before": "request start → message.created row written",
    "between": "row written → COMMIT sent",
    "commit": "COMMIT",
    "after": "commit → answer sent (the pushes after commit, the answer)",
}


class PhaseClock:
    """Splits each message POST at the moment its ``message.created`` rows are written and at the
    commit: wall time, SQL statements (with their text and time) and Redis commands in each part."""

    def __init__(self) -> None:
        self.phase = "before"
        self.mark = 0.0
        self.wall: dict[str, list[float]] = {name: [] for name in PHASES}
        self.statements: dict[str, dict[str, list[float]]] = {name: {} for name in PHASES}
        self.redis = dict.fromkeys(PHASES, 0)
        self.redis_counter = [0]  # the running count of Redis commands (``_counting_redis``)
        self.redis_seen = 0
        self.requests = 0

    def start(self) -> None:
        self.phase, self.mark = "before", time.perf_counter()

    def enter(self, phase: str) -> None:
        now = time.perf_counter()
        self.wall[self.phase].append(now - self.mark)
        self.redis[self.phase] += self.redis_counter[0] - self.redis_seen
        self.redis_seen = self.redis_counter[0]
        self.phase, self.mark = phase, now

    def finish(self) -> None:
        self.enter("before")
        self.requests += 1

    def statement(self, sql: str, seconds: float) -> None:
        text = " ".join(str(sql).split())[:90]
        self.statements[self.phase].setdefault(text, []).append(seconds)

    def report(self) -> str:
        lines = []
        for name in PHASES:
            spent = sum(self.wall[name]) / self.requests * 1000
            statements = self.statements[name]
            count = sum(len(times) for times in statements.values()) / self.requests
            redis_commands = self.redis[name] / self.requests
            lines.append(
                f"  {PHASE_NAMES[name]}: {spent:.2f} ms wall, {count:.1f} SQL statements, "
                f"{redis_commands:.1f} Redis commands"
            )
            ranked = sorted(statements.items(), key=lambda item: -sum(item[1]))
            for text, times in ranked:
                lines.append(
                    f"      {len(times) / self.requests:4.1f}x {sum(times) / self.requests * 1000:6.2f} ms  {text}"
                )
        return "\n".join(lines)


@contextmanager
def _phases(clock: PhaseClock) -> Iterator[None]:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.backends.utils import CursorWrapper

    from messaging.realtime import stream
    from portal.vocabulary import EventType

    execute, executemany, emit = CursorWrapper.execute, CursorWrapper.executemany, stream.emit
    commit, hooks = BaseDatabaseWrapper.commit, BaseDatabaseWrapper.run_and_clear_commit_hooks

    def timed(original: Callable[..., Any]) -> Callable[..., Any]:
        def run(self: Any, sql: str, *args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return original(self, sql, *args, **kwargs)
            finally:
                clock.statement(sql, time.perf_counter() - began)

        return run

    def emitting(*args: Any, **kwargs: Any) -> Any:
        rows = emit(*args, **kwargs)
        if kwargs.get("type") == EventType.MESSAGE_CREATED and clock.phase == "before":
            clock.enter("between")
        return rows

    def committing(self: Any) -> None:
        clock.enter("commit")
        commit(self)

    def running_hooks(self: Any) -> None:
        if clock.phase == "commit":
            clock.enter("after")
        hooks(self)

    CursorWrapper.execute, CursorWrapper.executemany = timed(execute), timed(executemany)  # type: ignore[method-assign]
    stream.emit = emitting
    BaseDatabaseWrapper.commit = committing  # type: ignore[method-assign]
    BaseDatabaseWrapper.run_and_clear_commit_hooks = running_hooks  # type: ignore[method-assign]
    try:
        with _counting_redis() as redis_commands:
            clock.redis_counter = redis_commands
            yield
    finally:
        CursorWrapper.execute, CursorWrapper.executemany = execute, executemany  # type: ignore[method-assign]
        stream.emit = emit
        BaseDatabaseWrapper.commit = commit  # type: ignore[method-assign]
        BaseDatabaseWrapper.run_and_clear_commit_hooks = hooks  # type: ignore[method-assign]


def message_post() -> tuple[AsgiCaller, Callable[[], int]]:
    """A clinician of the demo guardian's first child (on the care team, TOTP enrolled: two factors
    satisfied) and a call that posts a message into a thread the guardian opened, a new client_id
    each time (the message send rate raised for the run)."""
    from allauth.mfa.totp.internal.auth import TOTP
    from django.conf import settings

    from messaging.models import Thread
    from portal.models import CareTeamMembership, GuardianLink
    from tests.benchmarks.demo_guardian import app_session, guardian_of_three

    settings.PORTAL_MESSAGE_RATE = "1000000/m"
    guardian = guardian_of_three()
    links = GuardianLink.objects.filter(guardian_id=uuid.UUID(guardian.user_id))
    child_id = links.values_list("child_id", flat=True)[0]
    clinician = CareTeamMembership.objects.filter(child_id=child_id).select_related("clinician")[0].clinician
    TOTP.activate(clinician, "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
    status = AsgiCaller(guardian.session_token).post(
        f"/api/v1/children/{child_id}/threads",
        {"subject": "Profile", "topic": "other", "body": "A question", "client_id": str(uuid.uuid4())},
    )
    if status != 201:
        raise SystemExit(f"the guardian's thread was not opened ({status})")
    thread = Thread.objects.filter(child_id=child_id).latest("created_at")
    caller = AsgiCaller(app_session(clinician))
    path = f"/api/v1/children/{child_id}/threads/{thread.pk}/messages"

    def call() -> int:
        return caller.post(path, {"body": "A reply from the care team", "client_id": str(uuid.uuid4())})

    return caller, call


def _message_phases(call: Callable[[], int], requests: int) -> str:
    clock = PhaseClock()
    with _phases(clock):
        for _ in range(requests):
            clock.start()
            status = call()
            if status != 201:
                raise SystemExit(f"the message POST answered {status}")
            clock.finish()
    return clock.report()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--requests", type=int, default=300)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--sort", default="cumulative", choices=["cumulative", "tottime"])
    parser.add_argument("--path", choices=PATHS, action="append")
    parser.add_argument(
        "--message",
        action="store_true",
        help="profile a clinician's message POST instead (phases around its message.created row and the commit)",
    )
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from tests.benchmarks.demo_guardian import guardian_of_three

    if args.message:
        _, call = message_post()
        cpu_ms, queries, redis_commands = _measure(call, args.requests)
        counts = f"{queries:.1f} SQL queries, {redis_commands:.1f} Redis commands"
        print(f"== POST .../threads/{{id}}/messages (clinician): {cpu_ms:.2f} ms CPU per request, {counts}")
        print(_message_phases(call, args.requests))
        print(_profile(call, args.requests, args.top, args.sort))
        return 0
    caller = AsgiCaller(guardian_of_three().session_token)
    for path in args.path or PATHS:
        call = functools.partial(caller.get, path)
        cpu_ms, queries, redis_commands = _measure(call, args.requests)
        counts = f"{queries:.1f} SQL queries, {redis_commands:.1f} Redis commands"
        print(f"== {path}: {cpu_ms:.2f} ms CPU per request, {counts}")
        print(_profile(call, args.requests, args.top, args.sort))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
