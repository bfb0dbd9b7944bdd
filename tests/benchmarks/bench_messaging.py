"""Benchmark realtime delivery on daphne with PostgreSQL and Redis.

    psql -h 127.0.0.1 -U postgres -c 'create database bench_messaging'
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_messaging REDIS_URL=redis://127.0.0.1:6379/5 \\
        .venv/bin/python tests/benchmarks/bench_messaging.py --messages 300 --sockets 2000

It needs a database of its own (it migrates it and refuses one that already holds children) and
generates throw-away encryption keys. It starts one daphne process and reports:

* the raw channel-layer round trip (send to a channel and receive it back, through Redis), and a
  group_send reaching a socket through daphne (layer + consumer, without HTTP or the database write);
* delivery: from the moment a clinician's POST of a message starts to the moment the guardian's socket
  receives its ``message.created`` event, p50/p99, and its ratio to the raw round trip;
* memory: daphne's resident memory before and after opening N idle authenticated sockets, per socket.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=300, help="messages timed from POST to socket")
    parser.add_argument("--sockets", type=int, default=2000, help="idle authenticated sockets for the memory test")
    parser.add_argument("--port", type=int, default=0)
    return parser.parse_args(argv)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


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

    return {
        "child": str(child.pk),
        "guardian": str(guardian.pk),
        "guardian_token": token(guardian),
        "clinician_token": token(clinician),
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


async def next_event(ws: Any, wanted: str, entity: str | None = None) -> float:
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), timeout=30))
        event = message.get("event") or {}
        matches = entity is None or event.get("entity_id") == entity or event.get("data", {}).get("probe") == entity
        if message.get("type") == "event" and event.get("type") == wanted and matches:
            return time.perf_counter()


async def measure(port: int, world: dict[str, Any], args: argparse.Namespace, pid: int) -> dict[str, Any]:
    import websockets
    from channels.layers import get_channel_layer

    from messaging.realtime.control import user_group

    results: dict[str, Any] = {}
    raw = await raw_round_trips(max(args.messages, 200))
    results["raw_layer_round_trip_ms"] = (statistics.median(raw) * 1000, percentile(raw, 0.99) * 1000)
    url = f"ws://127.0.0.1:{port}/ws/v1/events"
    headers = {"X-Session-Token": world["guardian_token"]}
    async with websockets.connect(url, additional_headers=headers) as ws:
        await asyncio.sleep(0.5)
        layer = get_channel_layer()
        assert layer is not None
        pushes = []
        for index in range(max(args.messages, 200)):
            probe = uuid.uuid4().hex
            message = {
                "type": "stream.event",
                "event": {
                    "id": -1 - index,
                    "type": "bench.probe",
                    "child_id": world["child"],
                    "data": {"probe": probe},
                },
                "capability": "message",
                "confidential": False,
            }
            started = time.perf_counter()
            await layer.group_send(user_group(world["guardian"]), message)
            pushes.append(await next_event(ws, "bench.probe", probe) - started)
        results["group_send_to_socket_ms"] = (statistics.median(pushes) * 1000, percentile(pushes, 0.99) * 1000)
        thread = await asyncio.to_thread(
            post,
            port,
            f"/children/{world['child']}/threads",
            world["guardian_token"],
            {"subject": "Bench", "topic": "other", "body": "Bench thread", "client_id": str(uuid.uuid4())},
        )
        path = f"/children/{world['child']}/threads/{thread['id']}/messages"
        deliveries = []
        for index in range(args.messages):
            body = {"body": f"Reply {index}", "client_id": str(uuid.uuid4())}
            started = time.perf_counter()
            task = asyncio.create_task(asyncio.to_thread(post, port, path, world["clinician_token"], body))
            received = await next_event(ws, "message.created")
            await task
            deliveries.append(received - started)
        results["post_to_socket_ms"] = (statistics.median(deliveries) * 1000, percentile(deliveries, 0.99) * 1000)
    # Memory per idle authenticated socket.
    await asyncio.sleep(2)
    before = rss_kib(pid)
    sockets = []
    try:

        async def open_one() -> Any:
            for attempt in range(5):
                try:
                    return await websockets.connect(url, additional_headers=headers, open_timeout=60)
                except (OSError, websockets.exceptions.InvalidMessage, websockets.exceptions.InvalidHandshake):
                    await asyncio.sleep(0.5 * (attempt + 1))
            return await websockets.connect(url, additional_headers=headers, open_timeout=60)

        for start in range(0, args.sockets, 25):
            sockets += await asyncio.gather(*(open_one() for _ in range(min(25, args.sockets - start))))
        await asyncio.sleep(12)  # a few heartbeats: every socket is idle and settled
        after = rss_kib(pid)
        results["sockets_open"] = len(sockets)
        results["rss_before_kib"] = before
        results["rss_after_kib"] = after
        results["kib_per_socket"] = (after - before) / max(len(sockets), 1)
    except Exception as exc:  # report what was measured and why it stopped
        results["sockets_open"] = len(sockets)
        results["socket_error"] = f"{type(exc).__name__}: {exc}"
        results["rss_before_kib"] = before
        results["rss_after_kib"] = rss_kib(pid)
        results["kib_per_socket"] = (results["rss_after_kib"] - before) / max(len(sockets), 1)
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return results


def main(argv: list[str]) -> int:
    args = parse_args(argv)
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
        # Under 2,000 sockets' heartbeats a handshake can wait in line for longer than daphne's
        # default 5 s connect timeout.
        [daphne, "-b", "127.0.0.1", "-p", str(port), "--websocket_connect_timeout", "120", "portal.asgi:application"],
        cwd=ROOT,
        env=server_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("daphne did not start") from None
                time.sleep(0.2)
        results = asyncio.run(measure(port, world, args, process.pid))
    finally:
        process.terminate()
        process.wait(timeout=20)
    raw_p50, raw_p99 = results["raw_layer_round_trip_ms"]
    post_p50, post_p99 = results["post_to_socket_ms"]
    push_p50, push_p99 = results["group_send_to_socket_ms"]
    print(f"raw channel-layer round trip: p50 {raw_p50:.2f} ms, p99 {raw_p99:.2f} ms")
    print(f"group_send → socket via daphne: p50 {push_p50:.2f} ms, p99 {push_p99:.2f} ms")
    print(f"clinician POST → guardian socket ({args.messages} messages): p50 {post_p50:.2f} ms, p99 {post_p99:.2f} ms")
    print(f"ratio to the raw round trip: p50 {post_p50 / raw_p50:.1f}x, p99 {post_p99 / raw_p99:.1f}x")
    print(f"ratio to group_send → socket: p50 {post_p50 / push_p50:.1f}x, p99 {post_p99 / push_p99:.1f}x")
    before, after = results["rss_before_kib"], results["rss_after_kib"]
    print(f"idle sockets: {results['sockets_open']} open, RSS {before} → {after} KiB,", end=" ")
    print(f"{results['kib_per_socket']:.1f} KiB per socket")
    if "socket_error" in results:
        print(f"socket test stopped early: {results['socket_error']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
