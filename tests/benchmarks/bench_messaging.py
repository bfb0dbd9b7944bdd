"""Benchmark realtime delivery on daphne with PostgreSQL and Redis.

    psql -h 127.0.0.1 -U postgres -c 'create database bench_messaging'
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_messaging REDIS_URL=redis://127.0.0.1:6379/5 \\
        .venv/bin/python tests/benchmarks/bench_messaging.py --messages 200 --idle 100 5000

It needs a database of its own (it migrates it and refuses one that already holds children) and
generates throw-away encryption keys. It starts one daphne process and, for each number of idle
authenticated sockets (held by a separate client process, spread over 100 users of their own),
measures side by side in one run:

* the raw channel-layer round trip (send to a channel and receive it back, through Redis);
* a bare ``group_send`` reaching the guardian's socket through daphne (layer + consumer, no HTTP, no
  database write);
* delivery: from the moment a clinician's POST of a message starts to the moment the guardian's socket
  receives the ``message.created`` event of that very message (matched by its id: outside business
  hours the automatic reply adds an event of the same type), p50/p99, and its ratio to the raw round
  trip; the POST's own duration beside it;
* what the idle sockets cost: daphne's resident memory per socket, its CPU and the database's
  transactions per second over a quiet window of a few heartbeats.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=200, help="messages timed from POST to socket, per phase")
    parser.add_argument(
        "--idle", type=int, nargs="+", default=[100, 5000], help="idle authenticated sockets held in each phase"
    )
    parser.add_argument("--quiet-seconds", type=float, default=15.0, help="the idle window CPU is measured over")
    parser.add_argument("--port", type=int, default=0)
    # Internal: the process that holds the idle sockets.
    parser.add_argument("--hold", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def raise_file_limit() -> None:
    """Thousands of sockets need as many descriptors (daphne and the client inherit the limit)."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def make_world() -> dict[str, Any]:
    from allauth.account.models import EmailAddress
    from allauth.mfa.totp.internal.auth import TOTP
    from django.core.management import call_command
    from django.test import Client

    from portal import services
    from portal.models import CareTeamMembership, Child, Department, DepartmentMembership, GuardianLink, User

    call_command("migrate", verbosity=0)
    if Child.objects.exists():
        raise SystemExit("This database already holds children: give the benchmark an empty database of its own.")
    department = Department.objects.create(code="bench", name="Bench")
    guardian = User.objects.create_user("bench-guardian@example.org", secrets.token_urlsafe(16))
    clinician = User.objects.create_user("bench-clinician@example.org", secrets.token_urlsafe(16))
    for user in (guardian, clinician):
        EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    TOTP.activate(clinician, "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
    DepartmentMembership.objects.create(department=department, clinician=clinician, role="nurse", is_lead=True)
    from datetime import date

    child = services.child_create(
        actor=None, name="Bench Child", mrn="BENCH-1", date_of_birth=date(2018, 1, 1), sex="unknown", time_zone="UTC"
    )
    CareTeamMembership.objects.create(child=child, clinician=clinician, department=department, role="nurse")
    GuardianLink.objects.create(guardian=guardian, child=child, relationship="mother", status="active")

    def token(user: Any) -> str:
        client = Client()
        client.force_login(user)
        return str(client.session.session_key)

    # Idle users of their own (no child): none of the timed events reaches their sockets.
    idle_tokens = []
    for index in range(100):
        idle = User.objects.create_user(f"bench-idle-{index}@example.org", None)  # no password to hash
        idle_tokens.append(token(idle))
    return {
        "child": str(child.pk),
        "guardian": str(guardian.pk),
        "guardian_token": token(guardian),
        "clinician_token": token(clinician),
        "idle_tokens": idle_tokens,
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def post(port: int, path: str, token: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-Session-Token": token},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        result: dict[str, Any] = json.loads(answer.read())
        return result


async def raw_round_trips(count: int) -> list[float]:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    assert layer is not None
    channel = await layer.new_channel("bench.")
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        await layer.send(channel, {"type": "bench.ping"})
        await layer.receive(channel)
        samples.append(time.perf_counter() - started)
    return samples


def ms(samples: list[float]) -> tuple[float, float]:
    return statistics.median(samples) * 1000, percentile(samples, 0.99) * 1000


class Listener:
    """Reads the guardian's socket and notes when each event arrives, by its entity id (or probe)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.arrived: dict[str, float] = {}
        # Wall-clock seconds from the event's row being written (inside the POST's transaction, its
        # ``created_at``) to its arrival: the rest of the POST's work, the commit and the push.
        self.since_written: dict[str, float] = {}
        self.waiters: dict[str, asyncio.Future[float]] = {}
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            now, wall = time.perf_counter(), time.time()
            message = json.loads(raw)
            if message.get("type") != "event":
                continue
            event = message["event"]
            key = str((event.get("data") or {}).get("probe") or event.get("entity_id"))
            self.arrived[key] = now
            if event.get("created_at"):
                self.since_written[key] = wall - datetime.fromisoformat(event["created_at"]).timestamp()
            waiter = self.waiters.pop(key, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(now)

    async def arrival(self, key: str) -> float:
        if key in self.arrived:
            return self.arrived.pop(key)
        waiter = self.waiters[key] = asyncio.get_running_loop().create_future()
        result = await asyncio.wait_for(waiter, timeout=30)
        self.arrived.pop(key, None)
        return result


async def measure_delivery(port: int, world: dict[str, Any], count: int, thread_path: str) -> dict[str, Any]:
    """The three figures side by side, on the guardian's socket."""
    import websockets
    from channels.layers import get_channel_layer

    from messaging.realtime.control import user_group

    results: dict[str, Any] = {}
    url = f"ws://127.0.0.1:{port}/ws/v1/events"
    async with websockets.connect(url, additional_headers={"X-Session-Token": world["guardian_token"]}) as ws:
        listener = Listener(ws)
        await asyncio.sleep(0.5)
        layer = get_channel_layer()
        assert layer is not None
        raw, pushes, deliveries, posts, written = [], [], [], [], []
        channel = await layer.new_channel("bench.")
        for index in range(count):
            # 1. the raw channel-layer round trip
            started = time.perf_counter()
            await layer.send(channel, {"type": "bench.ping"})
            await layer.receive(channel)
            raw.append(time.perf_counter() - started)
            # 2. a bare group_send to the guardian's socket through daphne
            probe = uuid.uuid4().hex
            event = {"id": -1 - index, "type": "bench.probe", "data": {"probe": probe}}
            started = time.perf_counter()
            await layer.group_send(user_group(world["guardian"]), {"type": "stream.event", "event": event})
            pushes.append(await listener.arrival(probe) - started)
            # 3. a clinician's POST to the guardian's socket, matched by the message's id
            body = {"body": f"Reply {index}", "client_id": str(uuid.uuid4())}
            started = time.perf_counter()
            answer = await asyncio.to_thread(post, port, thread_path, world["clinician_token"], body)
            posts.append(time.perf_counter() - started)
            deliveries.append(await listener.arrival(str(answer["id"])) - started)
            written.append(listener.since_written.pop(str(answer["id"])))
        listener.task.cancel()
    results["raw_layer_round_trip_ms"] = ms(raw)
    results["group_send_to_socket_ms"] = ms(pushes)
    results["post_to_socket_ms"] = ms(deliveries)
    results["post_ms"] = ms(posts)
    results["written_to_socket_ms"] = ms(written)
    return results


async def hold_idle_sockets(url: str, tokens: list[str], count: int) -> None:
    """The client process: open ``count`` sockets (tokens round robin), say so, hold them until stdin
    closes; every frame that arrives is read (as a real client would)."""
    import websockets

    async def keep(ws: Any) -> None:
        with contextlib.suppress(Exception):
            async for _ in ws:
                pass

    async def open_one(index: int) -> Any:
        headers = {"X-Session-Token": tokens[index % len(tokens)]}
        for attempt in range(5):
            try:
                return await websockets.connect(url, additional_headers=headers, open_timeout=120)
            except (OSError, websockets.exceptions.InvalidMessage, websockets.exceptions.InvalidHandshake):
                await asyncio.sleep(0.5 * (attempt + 1))
        return await websockets.connect(url, additional_headers=headers, open_timeout=120)

    sockets: list[Any] = []
    readers = []
    for start in range(0, count, 50):
        opened = await asyncio.gather(*(open_one(start + i) for i in range(min(50, count - start))))
        sockets += opened
        readers += [asyncio.create_task(keep(ws)) for ws in opened]
    print(f"ready {len(sockets)}", flush=True)
    await asyncio.to_thread(sys.stdin.read)
    for task in readers:
        task.cancel()
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


def database_transactions() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()")
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def idle_phase(port: int, pid: int, world: dict[str, Any], count: int, args: argparse.Namespace) -> dict[str, Any]:
    """Open ``count`` idle sockets from a client process, measure what they cost while quiet, then the
    delivery figures with them open."""
    url = f"ws://127.0.0.1:{port}/ws/v1/events"
    time.sleep(2)
    before = rss_kib(pid)
    client = subprocess.Popen(
        [sys.executable, __file__, "--hold", str(count), "--url", url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "BENCH_IDLE_TOKENS": ",".join(world["idle_tokens"])},
    )
    assert client.stdin is not None and client.stdout is not None
    results: dict[str, Any] = {"idle": count}
    try:
        opening = time.monotonic()
        line = client.stdout.readline().split()
        results["open_seconds"] = time.monotonic() - opening
        results["sockets_open"] = int(line[1]) if len(line) == 2 and line[0] == "ready" else 0
        time.sleep(float(os.environ.get("PORTAL_WS_HEARTBEAT_SECONDS", "5")) * 2)  # settled
        cpu, transactions, started = cpu_seconds(pid), database_transactions(), time.monotonic()
        time.sleep(args.quiet_seconds)
        elapsed = time.monotonic() - started
        results["idle_cpu_percent"] = (cpu_seconds(pid) - cpu) / elapsed * 100
        # Less the two statements this reads with (and the one that read the starting figure).
        results["idle_db_transactions_per_s"] = max(0, database_transactions() - transactions - 1) / elapsed
        after = rss_kib(pid)
        results["rss_before_kib"], results["rss_after_kib"] = before, after
        results["kib_per_socket"] = (after - before) / max(results["sockets_open"], 1)
        results.update(asyncio.run(measure_delivery(port, world, args.messages, world["thread_path"])))
    finally:
        client.stdin.close()
        client.wait(timeout=120)
    return results


def report(phase: dict[str, Any]) -> None:
    raw_p50, raw_p99 = phase["raw_layer_round_trip_ms"]
    push_p50, push_p99 = phase["group_send_to_socket_ms"]
    post_p50, post_p99 = phase["post_to_socket_ms"]
    alone_p50, alone_p99 = phase["post_ms"]
    print(f"-- with {phase['sockets_open']} idle sockets open (asked for {phase['idle']})", end=" ")
    print(
        f"opened in {phase['open_seconds']:.1f} s, 50 at a time ({phase['sockets_open'] / phase['open_seconds']:.0f}/s)"
    )
    print(f"raw channel-layer round trip: p50 {raw_p50:.2f} ms, p99 {raw_p99:.2f} ms")
    print(f"group_send → socket via daphne: p50 {push_p50:.2f} ms, p99 {push_p99:.2f} ms")
    print(f"clinician POST → guardian socket (by message id): p50 {post_p50:.2f} ms, p99 {post_p99:.2f} ms")
    print(f"  the POST alone (until its answer): p50 {alone_p50:.2f} ms, p99 {alone_p99:.2f} ms")
    written_p50, written_p99 = phase["written_to_socket_ms"]
    print(
        f"  from the event's row written in the POST to the socket: p50 {written_p50:.2f} ms, p99 {written_p99:.2f} ms"
    )
    print(f"  ratio to the raw round trip: p50 {post_p50 / raw_p50:.1f}x, p99 {post_p99 / raw_p99:.1f}x")
    print(f"  ratio to group_send → socket: p50 {post_p50 / push_p50:.1f}x, p99 {post_p99 / push_p99:.1f}x")
    before, after = phase["rss_before_kib"], phase["rss_after_kib"]
    print(f"idle sockets: RSS {before} → {after} KiB, {phase['kib_per_socket']:.1f} KiB per socket;", end=" ")
    print(f"daphne CPU while idle {phase['idle_cpu_percent']:.1f}% of a core;", end=" ")
    print(f"database {phase['idle_db_transactions_per_s']:.1f} transactions/s", flush=True)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    raise_file_limit()
    if args.hold:
        tokens = os.environ["BENCH_IDLE_TOKENS"].split(",")
        asyncio.run(hold_idle_sockets(args.url, tokens, args.hold))
        return 0
    database_url = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    if not database_url.startswith("postgres") or not redis_url:
        raise SystemExit("Set DATABASE_URL (PostgreSQL, a database of its own) and REDIS_URL.")
    env = {
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "PORTAL_ENCRYPTION_KEYS": f"bench:{_key()}",
        "PORTAL_BLIND_INDEX_KEY": _key(),
        "PORTAL_ALLOW_LOCAL_KEY_FILE": "0",
        "CHANNEL_PREFIX": f"bench-{uuid.uuid4().hex[:8]}",
        "LOG_LEVEL": "WARNING",
        "PORTAL_MESSAGE_RATE": "100000/m",
    }
    setup_django(env)
    from django.conf import settings

    settings.PORTAL_MESSAGE_RATE = "100000/m"
    world = make_world()
    port = args.port or free_port()
    daphne = str(Path(sys.executable).with_name("daphne"))
    server_env = {**os.environ, **env, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        # Thousands of handshakes at once can wait in line for longer than daphne's default 5 s.
        [daphne, "-b", "127.0.0.1", "-p", str(port), "--websocket_connect_timeout", "120", "portal.asgi:application"],
        cwd=ROOT,
        env=server_env,
        stdout=subprocess.DEVNULL,
        # BENCH_SERVER_LOG=<file> keeps daphne's own log (errors, tracebacks) for a failed run.
        stderr=open(os.environ["BENCH_SERVER_LOG"], "ab") if os.environ.get("BENCH_SERVER_LOG") else subprocess.DEVNULL,  # noqa: SIM115
    )
    phases = []
    try:
        deadline = time.monotonic() + 120  # a loaded machine starts daphne slowly
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("daphne did not start") from None
                time.sleep(0.2)
        thread = post(
            port,
            f"/children/{world['child']}/threads",
            world["guardian_token"],
            {"subject": "Bench", "topic": "other", "body": "Bench thread", "client_id": str(uuid.uuid4())},
        )
        world["thread_path"] = f"/children/{world['child']}/threads/{thread['id']}/messages"
        # Warm up (imports, pools, the triage word lists) before anything is timed.
        asyncio.run(measure_delivery(port, world, 20, world["thread_path"]))
        for count in args.idle:
            phases.append(idle_phase(port, process.pid, world, count, args))
            report(phases[-1])  # at once: a later phase may take long
    finally:
        process.terminate()
        process.wait(timeout=20)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
