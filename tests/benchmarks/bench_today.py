"""Benchmark: throughput and latency of ``GET /api/v1/me/today`` (a guardian of 3 children) against
``GET /api/v1/health`` on the same daphne server, measured side by side in one run.

Usage (PostgreSQL; the database is created from scratch by ``migrate`` and filled by this script)::

    psql -h 127.0.0.1 -U postgres -c 'create database bench_today'
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_today .venv/bin/python tests/benchmarks/bench_today.py

Options: ``--seconds`` per round (default 10), ``--rounds`` (default 3, alternating endpoints),
``--concurrency`` (default 8 client threads). Only loopback addresses are used.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _prepare() -> str:
    """Migrate, create a guardian of 3 children with care data; return an app session token."""
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from datetime import date, timedelta

    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore
    from django.utils import timezone

    from care.models import Appointment, MedicationPlan, RefillRequest
    from portal import services
    from portal.models import Department, DepartmentMembership, GuardianLink, User

    suffix = os.urandom(4).hex()
    doctor = User.objects.create_user(f"doctor-{suffix}@bench.invalid", "bench-password-1", display_name="Dr. Bench")
    dept = Department.objects.create(code=f"bench-{suffix}", name="Bench")
    DepartmentMembership.objects.create(department=dept, clinician=doctor, role="doctor")
    parent = User.objects.create_user(f"parent-{suffix}@bench.invalid", "bench-password-1", display_name="Parent")
    now = timezone.now()
    for index in range(3):
        child = services.child_create(
            actor=None,
            name=f"Bench Child {index}",
            mrn=f"BENCH-{suffix}-{index}",
            date_of_birth=date(2018, 1, 1),
            time_zone="America/New_York",
            conditions=["46635009"],
        )
        GuardianLink.objects.create(guardian=parent, child=child, relationship="mother", status="active")
        for day in range(3):
            start = now + timedelta(days=day + 1, hours=index)
            Appointment.objects.create(
                child=child,
                clinician=doctor,
                location="Clinic",
                visit_type="Review",
                start=start,
                end=start + timedelta(minutes=30),
            )
        plan = MedicationPlan.objects.create(
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
        MedicationPlan.objects.create(
            child=child,
            prescriber=doctor,
            medication="Salbutamol",
            dose_quantity=2,
            dose_unit="puffs",
            schedule_kind="as_needed",
            min_interval_minutes=240,
            max_per_day=4,
            start=now - timedelta(days=30),
        )
        RefillRequest.objects.create(plan=plan, child=child, pharmacy="Bench Pharmacy", requested_by=parent)
    session = SessionStore()
    session[SESSION_KEY] = str(parent.pk)
    session[BACKEND_SESSION_KEY] = "allauth.account.auth_backends.AuthenticationBackend"
    session[HASH_SESSION_KEY] = parent.get_session_auth_hash()
    session.create()
    return str(session.session_key)


def _round(port: int, path: str, token: str, seconds: float, concurrency: int) -> tuple[int, list[float], int]:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        nonlocal errors
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        bad = 0
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            conn.request("GET", path, headers={"X-Session-Token": token})
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                bad += 1
            mine.append(time.perf_counter() - began)
        conn.close()
        with lock:
            latencies.extend(mine)
            errors += bad

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(latencies), latencies, errors


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        print("Set DATABASE_URL to a scratch PostgreSQL database (see the docstring).", file=sys.stderr)
        return 2
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    token = _prepare()
    port = _free_port()
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    server = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "portal.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        for path in ("/api/v1/health", "/api/v1/me/today"):  # warm up
            _round(port, path, token, 2, 2)
        results: dict[str, list[tuple[int, list[float], int]]] = {"/api/v1/health": [], "/api/v1/me/today": []}
        for _ in range(args.rounds):
            for path in results:
                results[path].append(_round(port, path, token, args.seconds, args.concurrency))
    finally:
        server.terminate()
        server.wait(timeout=10)
    summary = {}
    for path, rounds in results.items():
        count = sum(r[0] for r in rounds)
        latencies = [value for r in rounds for value in r[1]]
        errors = sum(r[2] for r in rounds)
        rate = count / (args.seconds * args.rounds)
        summary[path] = rate
        print(
            f"{path:<20} {rate:8.1f} req/s   p50 {1000 * statistics.median(latencies):6.1f} ms   "
            f"p99 {1000 * _quantile(latencies, 0.99):6.1f} ms   errors {errors}"
        )
    ratio = summary["/api/v1/me/today"] / summary["/api/v1/health"]
    print(f"me/today throughput = {ratio:.2f} x health (goal >= 0.5)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
