"""Benchmark: does ``GET /api/v1/me/today`` slow down as the audit trail and the event tables grow?

The same guardian of 3 children (the ``bench_today.py`` data) is timed in-process (Django's test
client, PostgreSQL) with 10,000 rows in each growing table, then again after filling them up to
10,000,000 rows each: the audit trail (``portal_auditevent``), the realtime stream's per-user events
(``messaging_userevent``) and the email/SMS notifications (``messaging_notification``). Rows are
made by PostgreSQL itself (``INSERT ... SELECT generate_series``), spread over 50,000 other users,
100,000 other children and a year. ``/api/v1/health`` is timed beside it in each phase as a control
for the machine's load: the figure that matters is the ratio of ``/me/today`` with big tables to
``/me/today`` with small ones, corrected by the same ratio for ``/health``. At the end the plan of
every query ``/me/today`` makes is checked for a sequential scan of a growing table.

Usage (a scratch PostgreSQL database, emptied and migrated by this script; filling 3 x 10 M rows
takes several minutes and ~6 GB)::

    psql -h 127.0.0.1 -U postgres -c 'create database bench_growth'
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_growth .venv/bin/python tests/benchmarks/bench_growth.py

Options: ``--small`` and ``--big`` rows per table (10,000 and 10,000,000), ``--requests`` per round
(200), ``--rounds`` (3, alternating endpoints).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

GROWING = ("portal_auditevent", "messaging_userevent", "messaging_notification")
CHUNK = 1_000_000

_FILL = {
    # Audit rows of other people about other children, over the past year (no foreign keys).
    "portal_auditevent": (
        "INSERT INTO portal_auditevent (id, recorded_at, actor_id, on_behalf_of_id, action, entity_type, "
        "entity_id, child_id, outcome, reason, client_address, user_agent, prev_hash, hash, count) "
        "SELECT md5('audit' || g)::uuid, now() - (g %% 31536000) * interval '1 second', "
        "md5('actor' || (g %% 50000))::uuid, NULL, 'read', 'Patient', g::text, md5('child' || (g %% 100000))::uuid, "
        "'allow', '', '', '', '', '', 1 FROM generate_series(%s, %s) g"
    ),
    # Stream events of other users (user ids taken from the filler accounts).
    "messaging_userevent": (
        "INSERT INTO messaging_userevent (type, child_id, capability, confidential, entity_type, entity_id, "
        "data, created_at, user_id) "
        "SELECT 'message.created', md5('child' || (g %% 100000))::uuid, 'messages', false, 'Communication', "
        "md5('entity' || g)::uuid, '{}'::jsonb, now() - (g %% 31536000) * interval '1 second', "
        "(%s::uuid[])[1 + g %% %s] FROM generate_series(%s, %s) g"
    ),
    "messaging_notification": (
        "INSERT INTO messaging_notification (id, channel, kind, urgent, status, attempts, not_before, "
        "last_error, created_at, sent_at, user_id) "
        "SELECT md5('notification' || g)::uuid, 'email', 'message', false, 'sent', 1, "
        "now() - (g %% 31536000) * interval '1 second', '', now() - (g %% 31536000) * interval '1 second', "
        "now() - (g %% 31536000) * interval '1 second', (%s::uuid[])[1 + g %% %s] FROM generate_series(%s, %s) g"
    ),
}


def _filler_users(count: int = 500) -> list[str]:
    """Accounts that own the filler events (the foreign key needs real users)."""
    from portal.models import User

    existing = list(User.objects.filter(email__endswith="@filler.invalid").values_list("id", flat=True))
    if len(existing) < count:
        User.objects.bulk_create(
            [
                User(email=f"filler-{index}@filler.invalid", display_name="Filler", password="!")
                for index in range(len(existing), count)
            ]
        )
        existing = list(User.objects.filter(email__endswith="@filler.invalid").values_list("id", flat=True))
    return [str(pk) for pk in existing]


def _count(table: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table}")  # a constant table name
        row = cursor.fetchone()
        assert row is not None
        return int(row[0])


def _secondary_indexes(cursor: Any, table: str) -> list[tuple[str, str]]:
    """(name, definition) of the table's indexes other than its primary key; unique constraints
    as ``ALTER TABLE ... ADD CONSTRAINT``."""
    cursor.execute(
        "SELECT i.relname, c.conname, pg_get_indexdef(i.oid), pg_get_constraintdef(c.oid) "
        "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.conrelid = x.indrelid "
        "WHERE x.indrelid = %s::regclass AND NOT x.indisprimary",
        [table],
    )
    found = []
    for index, constraint, index_sql, constraint_sql in cursor.fetchall():
        if constraint:
            found.append((constraint, f"ALTER TABLE {table} ADD CONSTRAINT {constraint} {constraint_sql}"))
        else:
            found.append((index, index_sql))
    return found


def _fill(targets: dict[str, int], users: list[str]) -> None:
    """Grow each table to ``target`` rows, in chunks of one transaction each. For a large fill the
    secondary indexes are dropped first and built again after (a sorted build is many times faster
    than ten million random inserts into each B-tree), with the same names and definitions."""
    from django.db import connection

    for table in GROWING:
        target = targets[table]
        have = _count(table)
        began = time.perf_counter()
        with connection.cursor() as cursor:
            rebuild = _secondary_indexes(cursor, table) if target - have > CHUNK else []
            for name, sql in rebuild:
                if sql.startswith("ALTER TABLE"):
                    cursor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
                else:
                    cursor.execute(f"DROP INDEX {name}")
            # Filler rows are older than every real one and are never sealed; the sequencer is not run here.
            start = have + 1
            while start <= target:
                end = min(start + CHUNK - 1, target)
                if table == "portal_auditevent":
                    cursor.execute(_FILL[table], [start, end])
                else:
                    cursor.execute(_FILL[table], [users, len(users), start, end])
                start = end + 1
            cursor.execute("SET maintenance_work_mem = '256MB'")
            for _, sql in rebuild:
                cursor.execute(sql)
            cursor.execute(f"ANALYZE {table}")
        added = target - have
        if added > 0:
            seconds = time.perf_counter() - began
            print(f"  {table}: +{added:,} rows in {seconds:.1f} s ({added / seconds:,.0f} rows/s)", flush=True)


def _time(client: Any, path: str, token: str, requests: int) -> list[float]:
    latencies = []
    for _ in range(requests):
        began = time.perf_counter()
        answer = client.get(path, headers={"X-Session-Token": token})
        latencies.append(time.perf_counter() - began)
        if answer.status_code != 200:
            raise SystemExit(f"{path} answered {answer.status_code}: {answer.content[:200]!r}")
    return latencies


def _phase(client: Any, token: str, requests: int, rounds: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {"/api/v1/health": [], "/api/v1/me/today": []}
    for path in samples:  # warm up (caches, connections, plans)
        _time(client, path, token, 20)
    for _ in range(rounds):
        for path, values in samples.items():
            values.extend(_time(client, path, token, requests))
    return {path: statistics.median(values) for path, values in samples.items()}


def _queries(client: Any, token: str) -> list[str]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        client.get("/api/v1/me/today", headers={"X-Session-Token": token})
    return [query["sql"] for query in captured.captured_queries]


def _scans_of_growing_tables(queries: list[str]) -> list[str]:
    """The queries whose plan reads a growing table sequentially."""
    from django.db import connection

    found = []
    with connection.cursor() as cursor:
        for sql in queries:
            if not sql.lstrip().upper().startswith("SELECT"):
                continue
            cursor.execute("EXPLAIN " + sql)
            plan = "\n".join(row[0] for row in cursor.fetchall())
            if any(f"Seq Scan on {table}" in plan for table in GROWING):
                found.append(f"{sql[:160]}...\n{plan}")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--big", type=int, default=10_000_000)
    parser.add_argument("--big-events", type=int, help="big size of the two event tables (default: --big)")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--measure-only",
        action="store_true",
        help="fill nothing: time the tables as they are (e.g. a fill that was stopped part way) and check the plans",
    )
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        print("Set DATABASE_URL to a scratch PostgreSQL database (see the docstring).", file=sys.stderr)
        return 2
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.conf import settings
    from django.test import Client

    from tests.benchmarks.bench_today import _prepare

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    if args.measure_only:
        return _measure_only(args)
    if _has_tables() and _count("portal_auditevent") > args.small:
        print("The database already holds more audit rows than --small: use a fresh one.", file=sys.stderr)
        return 2
    token = _prepare()
    users = _filler_users()
    client = Client()
    results = {}
    big_events = args.big_events or args.big
    for label, rows, events in (("small", args.small, args.small), ("big", args.big, big_events)):
        print(f"filling to {rows:,} audit rows and {events:,} rows per event table", flush=True)
        _fill({"portal_auditevent": rows, "messaging_userevent": events, "messaging_notification": events}, users)
        results[label] = _phase(client, token, args.requests, args.rounds)
        print(
            f"{label:>5} ({rows:>11,} audit, {events:>11,} events): "
            f"/me/today p50 {1000 * results[label]['/api/v1/me/today']:.2f} ms, "
            f"/health p50 {1000 * results[label]['/api/v1/health']:.2f} ms",
            flush=True,
        )
    queries = _queries(client, token)
    today = results["big"]["/api/v1/me/today"] / results["small"]["/api/v1/me/today"]
    health = results["big"]["/api/v1/health"] / results["small"]["/api/v1/health"]
    print(f"/me/today makes {len(queries)} queries:")
    for sql in queries:
        print(f"  {sql[:150]}")
    print(f"/me/today big/small = {today:.2f}x; /health big/small = {health:.2f}x; corrected {today / health:.2f}x")
    scans = _scans_of_growing_tables(queries)
    print(f"sequential scans of a growing table in /me/today's plans: {len(scans)}")
    for scan in scans:
        print(scan)
    return 0


def _measure_only(args: argparse.Namespace) -> int:
    from django.test import Client

    from tests.benchmarks.bench_today import _prepare

    token = _prepare()
    client = Client()
    sizes = ", ".join(f"{table} {_count(table):,}" for table in GROWING)
    result = _phase(client, token, args.requests, args.rounds)
    print(
        f"as is ({sizes}): /me/today p50 {1000 * result['/api/v1/me/today']:.2f} ms, "
        f"/health p50 {1000 * result['/api/v1/health']:.2f} ms"
    )
    scans = _scans_of_growing_tables(_queries(client, token))
    print(f"sequential scans of a growing table in /me/today's plans: {len(scans)}")
    for scan in scans:
        print(scan)
    return 0


def _has_tables() -> bool:
    from django.db import connection

    return "portal_user" in connection.introspection.table_names()


if __name__ == "__main__":
    raise SystemExit(main())
