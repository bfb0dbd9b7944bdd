"""Benchmark the metrics: the monthly report endpoint against the raw SQL of its rollup queries, and
the refresh of one day of rollups, over generated data (calls + portal actions).

    psql -h 127.0.0.1 -U postgres -c 'create database metricsbench'
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/metricsbench .venv/bin/python tests/benchmarks/bench_metrics.py

It migrates the database it is given, replaces its synthetic metrics data (``seed_metrics``), and
never reads the portal's real keys (throw-away keys are generated). Output: rows, seed and full
rollup times, endpoint p50/p95, raw SQL p50/p95 of the same queries, their ratio, and the time to
refresh one day of rollups.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")


def configure(workdir: Path) -> None:
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        raise SystemExit("Set DATABASE_URL to a PostgreSQL database of its own (see the docstring).")
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    os.environ["PORTAL_VAR_DIR"] = str(workdir)
    os.environ["PORTAL_ENCRYPTION_KEYS"] = f"bench:{_key()}"
    os.environ["PORTAL_BLIND_INDEX_KEY"] = _key()
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=570_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--effect", type=float, default=0.6)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--reuse", action="store_true", help="keep the data already seeded")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as workdir:
        configure(Path(workdir))
        run(args)


def run(args: argparse.Namespace) -> None:
    from allauth.mfa.totp.internal.auth import TOTP
    from django.contrib.auth.models import Permission
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from fixtures.metrics_seed import SeedParams, seed_metrics
    from portal.metrics.common import days_between
    from portal.metrics.models import CallRecord, DailyTopicRollup, DirtyDay, SelfServiceEvent
    from portal.metrics.population import cohort_sizes_refresh
    from portal.metrics.rollups import rollups_refresh
    from portal.models import User

    call_command("migrate", verbosity=0)
    if not args.reuse:
        started = time.perf_counter()
        summary = seed_metrics(SeedParams(patients=args.patients, months=args.months, effect=args.effect))
        print(f"seed: {summary.calls} calls + {summary.events} events in {time.perf_counter() - started:.0f}s")
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        started = time.perf_counter()
        rollups_refresh(days=days_between(summary.start, summary.end))
        cohort_sizes_refresh()
        print(f"full rollup of {(summary.end - summary.start).days + 1} days: {time.perf_counter() - started:.0f}s")
    calls, events = CallRecord.objects.count(), SelfServiceEvent.objects.count()
    print(f"rows: {calls} calls + {events} events = {calls + events}; {DailyTopicRollup.objects.count()} rollup rows")

    user = User.objects.filter(email="bench-admin@example.org").first()
    if user is None:
        user = User.objects.create_user("bench-admin@example.org", None)
        user.user_permissions.add(Permission.objects.get(codename="view_metrics"))
        TOTP.activate(user, "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
    client = Client()
    client.force_login(user)
    url = "/api/v1/metrics/report?period=month"
    assert client.get(url).status_code == 200
    with CaptureQueriesContext(connection) as captured:
        client.get(url)
    # The rollup queries of the report (not the session and permission look-ups around it).
    statements = [q["sql"] for q in captured.captured_queries if "metrics_" in q["sql"]]
    endpoint, raw = [], []
    for _ in range(args.requests):
        started = time.perf_counter()
        response = client.get(url)
        endpoint.append(time.perf_counter() - started)
        assert response.status_code == 200
        started = time.perf_counter()
        with connection.cursor() as cursor:
            for sql in statements:
                cursor.execute(sql)
                cursor.fetchall()
        raw.append(time.perf_counter() - started)
    e50, e95 = percentile(endpoint, 0.5) * 1000, percentile(endpoint, 0.95) * 1000
    r50, r95 = percentile(raw, 0.5) * 1000, percentile(raw, 0.95) * 1000
    print(f"monthly report endpoint: p50 {e50:.1f} ms, p95 {e95:.1f} ms ({len(statements)} rollup queries)")
    print(f"raw SQL of its rollup queries: p50 {r50:.1f} ms, p95 {r95:.1f} ms")
    print(f"ratio endpoint/raw: p50 {e50 / r50:.2f}x, p95 {e95 / r95:.2f}x")

    last = DailyTopicRollup.objects.order_by("-day").values_list("day", flat=True).first()
    assert last is not None
    timings = []
    for offset in (10, 40, 70, 100, 130):
        DirtyDay.objects.create(day=last - timedelta(days=offset))
        started = time.perf_counter()
        rollups_refresh()
        timings.append(time.perf_counter() - started)
    print(
        f"refresh one day of rollups: median {statistics.median(timings) * 1000:.0f} ms, "
        f"max {max(timings) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
