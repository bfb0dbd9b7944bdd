"""Benchmark: 200 concurrent clients against one daphne process on PostgreSQL, through the psycopg
connection pool. Reports every status (500s must be 0), the share of ``503 overloaded``, connections
that got no answer, and latency percentiles.

Usage (a scratch PostgreSQL database; ``migrate`` creates the tables, this script fills them)::

    psql -h 127.0.0.1 -U postgres -c 'create database bench_concurrency'
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_concurrency \\
        .venv/bin/python tests/benchmarks/bench_concurrency.py

Options: ``--clients`` (200), ``--seconds`` (15), ``--pool-max`` (``PORTAL_DB_POOL_MAX_SIZE`` of the
daphne process, 20), ``--pool-timeout`` (5 s), ``--writes`` (share of requests that post a message,
0.2). The load is bounded: the daphne process holds at most ``--pool-max`` PostgreSQL connections
(the machine's PostgreSQL is shared). Only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

USERS = 20


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _prepare() -> list[tuple[str, str, str]]:
    """Migrate; create guardians, each of one child with a medication plan and a thread. Returns
    (session token, child id, thread id) per guardian."""
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from datetime import date, timedelta

    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore
    from django.utils import timezone

    from care.models import MedicationPlan
    from messaging.models import Thread
    from portal import services
    from portal.models import CareTeamMembership, Department, DepartmentMembership, GuardianLink, User

    suffix = os.urandom(4).hex()
    doctor = User.objects.create_user(f"doctor-{suffix}@bench.invalid", "bench-password-1", display_name="Dr. Bench")
    dept = Department.objects.create(code=f"bench-{suffix}", name="Bench")
    DepartmentMembership.objects.create(department=dept, clinician=doctor, role="doctor")
    now = timezone.now()
    result = []
    for index in range(USERS):
        parent = User.objects.create_user(
            f"parent-{suffix}-{index}@bench.invalid", "bench-password-1", display_name="Parent"
        )
        child = services.child_create(
            actor=None,
            name=f"Bench Child {index}",
            mrn=f"BENCH-{suffix}-{index}",
            date_of_birth=date(2018, 1, 1),
            time_zone="America/New_York",
            conditions=["46635009"],
        )
        GuardianLink.objects.create(guardian=parent, child=child, relationship="mother", status="active")
        CareTeamMembership.objects.create(child=child, clinician=doctor, department=dept, role="primary")
        MedicationPlan.objects.create(
            child=child,
            prescriber=doctor,
            medication="Insulin",
            dose_quantity=6,
            dose_unit="units",
            schedule_kind="fixed_times",
            times_of_day=["07:30", "19:30"],
            start=now - timedelta(days=30),
            refills_allowed=3,
            refills_remaining=3,
        )
        thread = Thread.objects.create(
            child=child, subject="Bench", topic="medical", created_by=parent, last_message_at=now
        )
        session = SessionStore()
        session[SESSION_KEY] = str(parent.pk)
        session[BACKEND_SESSION_KEY] = "allauth.account.auth_backends.AuthenticationBackend"
        session[HASH_SESSION_KEY] = parent.get_session_auth_hash()
        session.create()
        result.append((str(session.session_key), str(child.pk), str(thread.pk)))
    return result


class Results:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: Counter[int] = Counter()
        self.no_answer: Counter[str] = Counter()
        self.latencies: list[float] = []


def _client(
    port: int, user: tuple[str, str, str], deadline: float, writes: float, start: threading.Barrier, out: Results
) -> None:
    token, child, thread = user
    reads = ["/api/v1/children", "/api/v1/me/today", f"/api/v1/children/{child}/medications", "/api/v1/me"]
    statuses: Counter[int] = Counter()
    failures: Counter[str] = Counter()
    latencies: list[float] = []
    rng = random.Random()
    start.wait()
    conn: http.client.HTTPConnection | None = None
    while time.perf_counter() < deadline:
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        headers = {"X-Session-Token": token}
        if rng.random() < writes:
            method, path = "POST", f"/api/v1/children/{child}/threads/{thread}/messages"
            body: bytes | None = json.dumps({"body": "Bench message", "client_id": str(uuid.uuid4())}).encode()
            headers["Content-Type"] = "application/json"
        else:
            method, path, body = "GET", rng.choice(reads), None
        began = time.perf_counter()
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as error:
            failures[type(error).__name__] += 1
            conn.close()
            conn = None
            continue
        latencies.append(time.perf_counter() - began)
        statuses[response.status] += 1
        if response.getheader("Connection", "").lower() == "close":
            conn.close()
            conn = None
    if conn is not None:
        conn.close()
    with out.lock:
        out.statuses.update(statuses)
        out.no_answer.update(failures)
        out.latencies.extend(latencies)


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--pool-max", type=int, default=20)
    parser.add_argument("--pool-timeout", type=float, default=5.0)
    parser.add_argument("--writes", type=float, default=0.2)
    parser.add_argument("--backlog", type=int, default=1024, help="daphne's listen backlog (as make run)")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        print("Set DATABASE_URL to a scratch PostgreSQL database (see the docstring).", file=sys.stderr)
        return 2
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    users = _prepare()
    port = _free_port()
    env = {
        **os.environ,
        "LOG_LEVEL": "ERROR",
        "PORTAL_DB_POOL_MAX_SIZE": str(args.pool_max),
        "PORTAL_DB_POOL_TIMEOUT": str(args.pool_timeout),
        "PORTAL_MESSAGE_RATE": "1000000/m",
    }
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daphne",
            "-e",
            f"tcp:port={port}:interface=127.0.0.1:backlog={args.backlog}",
            "portal.asgi:application",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    out = Results()
    try:
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        start = threading.Barrier(args.clients)
        deadline = time.perf_counter() + args.seconds
        clients = [
            threading.Thread(target=_client, args=(port, users[index % len(users)], deadline, args.writes, start, out))
            for index in range(args.clients)
        ]
        began = time.perf_counter()
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        elapsed = time.perf_counter() - began
    finally:
        server.terminate()
        server.wait(timeout=20)
    answered = sum(out.statuses.values())
    server_errors = sum(count for status, count in out.statuses.items() if status >= 500 and status != 503)
    print(
        f"{args.clients} clients, {args.seconds:.0f} s, one daphne, pool max {args.pool_max} "
        f"(timeout {args.pool_timeout:g} s), {args.writes:.0%} writes, listen backlog {args.backlog}"
    )
    print(f"answered {answered} ({answered / elapsed:.1f} req/s); statuses {dict(sorted(out.statuses.items()))}")
    print(f"500s and other 5xx except 503: {server_errors}")
    print(f"503 overloaded: {out.statuses[503]} ({out.statuses[503] / max(answered, 1):.1%})")
    print(f"no answer: {sum(out.no_answer.values())} {dict(out.no_answer)}")
    print(
        f"latency p50 {1000 * _quantile(out.latencies, 0.5):.0f} ms, p99 {1000 * _quantile(out.latencies, 0.99):.0f} ms"
    )
    return 1 if server_errors or out.no_answer else 0


if __name__ == "__main__":
    raise SystemExit(main())
