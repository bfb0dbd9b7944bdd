"""Benchmark: scale-out. ``GET /api/v1/me/today`` throughput of 2 server processes with 2 task workers
against 1 server process with 1 worker, the same PostgreSQL and Redis, enough clients to saturate
them (32 by default). Nothing global serialises requests: audit appends are plain inserts, and the
ledger's sequencer runs in every worker but seals in one at a time (an advisory try-lock), so two
processes should answer about twice as much where there are two cores for them.

Rounds alternate the two shapes (each started afresh, warmed up, measured, stopped), so the machine's
load falls on both alike. After each round the script counts the PostgreSQL connections the shape
held and the audit rows still unsealed (the sequencers keeping up).

The load generator is ``wrk`` (``apt-get install wrk``; ``brew install wrk``): one C thread on an
event loop, which still shares the machine's cores with the servers, the workers and PostgreSQL.

Usage (a scratch PostgreSQL database, migrated and filled by this script)::

    psql -h 127.0.0.1 -U postgres -c 'create database bench_scale'
    pip install -e '.[serve]'
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_scale REDIS_URL=redis://127.0.0.1:6379/0 \
        .venv/bin/python tests/benchmarks/bench_scale.py

Options: ``--server`` (uvicorn, gunicorn-gthread or gunicorn-sync; default uvicorn), ``--seconds`` per
round (15), ``--rounds`` (3), ``--concurrency`` (32), ``--processes`` of the larger shape (2).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.benchmarks.bench_servers import (  # noqa: E402
    Round,
    free_port,
    prepare,
    running,
    server_command,
    server_env,
    summarize,
    wait_for_port,
    wrk_round,
)

PATH = "/api/v1/me/today"


def _database_state() -> tuple[int, int]:
    """(connections open to this database, audit rows not yet sealed)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        row = cursor.fetchone()
        assert row is not None
        held = int(row[0]) - 1  # not this script's own
        cursor.execute(
            "SELECT count(*) FROM portal_auditevent e "
            "WHERE NOT EXISTS (SELECT 1 FROM portal_ledgerleaf l WHERE l.event_seq = e.seq)"
        )
        row = cursor.fetchone()
        assert row is not None
        unsealed = int(row[0])
    connection.close()
    return held, unsealed


def _shape_round(kind: str, processes: int, token: str, args: argparse.Namespace) -> tuple[Round, int, int]:
    port = free_port()
    worker = [sys.executable, "manage.py", "portal_worker", "-v", "0"]
    commands = [server_command(kind, port, processes), *([worker] * processes)]
    with running(commands, server_env(args.pool_max)) as started:
        wait_for_port(port, started[0])
        wrk_round(port, PATH, token, 3, args.concurrency)  # warm up every process and its pool
        result = wrk_round(port, PATH, token, args.seconds, args.concurrency)
        held, _ = _database_state()
        time.sleep(2)  # the sealing interval (0.5 s) and then some
        _, unsealed = _database_state()
    return result, held, unsealed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", choices=["uvicorn", "gunicorn-gthread", "gunicorn-sync"], default="uvicorn")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--pool-max", type=int, default=10)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        print("Set DATABASE_URL to a scratch PostgreSQL database (see the docstring).", file=sys.stderr)
        return 2
    if not shutil.which("wrk"):
        print("wrk is needed: apt-get install wrk (Debian/Ubuntu) or brew install wrk.", file=sys.stderr)
        return 2
    token = prepare()
    shapes = (1, args.processes)
    results: dict[int, list[Round]] = {shape: [] for shape in shapes}
    print(f"{args.server}, {args.concurrency} clients (wrk), {args.rounds} rounds of {args.seconds:g} s")
    print(f"on {os.cpu_count()} cores shared with the load generator, the workers and PostgreSQL")
    for number in range(args.rounds):
        for shape in shapes:
            result, held, unsealed = _shape_round(args.server, shape, token, args)
            results[shape].append(result)
            print(
                f"round {number + 1}: {shape} server process(es) + {shape} worker(s): {result.rate:7.1f} req/s, "
                f"p50 {1000 * result.p50:6.1f} ms, p99 {1000 * result.p99:6.1f} ms, errors {result.errors}; "
                f"{held} PostgreSQL connections; {unsealed} audit rows unsealed 2 s later",
                flush=True,
            )
    rates = {}
    for shape, rounds in results.items():
        rate, p50, p99, errors = summarize(rounds)
        rates[shape] = rate
        print(
            f"{shape} + {shape}: {rate:7.1f} req/s  p50 {1000 * p50:6.1f} ms  p99 {1000 * p99:6.1f} ms  errors {errors}"
        )
    print(f"scale-out: {args.processes} processes = {rates[args.processes] / rates[1]:.2f} x 1 process (goal ~2x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
