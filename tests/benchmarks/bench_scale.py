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
    pip install -e '.[dev]'
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_scale REDIS_URL=redis://127.0.0.1:6379/0 \
        .venv/bin/python tests/benchmarks/bench_scale.py

Options: ``--server`` (daphne, the deployment's choice, by default: its processes share one listening
socket; or uvicorn, gunicorn-gthread, gunicorn-sync with their own ``--workers``), ``--seconds`` per
round (15), ``--rounds`` (3), ``--concurrency`` (32), ``--processes`` of the larger shape (2).
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
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
_DAPHNES: list[subprocess.Popen[bytes]] = []  # the running daphne processes (their CPU time is read)


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


@contextmanager
def _daphnes(processes: int, env: dict[str, str]) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """``processes`` daphne processes accepting from one listening socket (``--fd``, as a socket-
    activating supervisor would hand it to them): the kernel shares the connections among them."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    fd = listener.fileno()
    command = [sys.executable, "-m", "daphne", "--fd", str(fd), "portal.asgi:application"]
    started = [
        subprocess.Popen(
            command, cwd=ROOT, env=env, pass_fds=(fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(processes)
    ]
    _DAPHNES[:] = started
    try:
        yield int(listener.getsockname()[1]), started[0]
    finally:
        listener.close()
        for process in started:
            process.terminate()
        for process in started:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def _servers(kind: str, processes: int, env: dict[str, str]) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    if kind == "daphne":
        with _daphnes(processes, env) as found:
            yield found
        return
    port = free_port()
    with running([server_command(kind, port, processes)], env) as started:
        yield port, started[0]


def _wait_for_workers(count: int, since: datetime, seconds: float = 120) -> None:
    """Until ``count`` workers started after ``since`` have beaten (loading Django takes a while)."""
    from messaging.models import WorkerHeartbeat

    deadline = time.monotonic() + seconds
    while WorkerHeartbeat.objects.filter(started_at__gte=since).count() < count:
        if time.monotonic() > deadline:
            raise SystemExit("the workers did not start")
        time.sleep(0.5)


def _shape_round(kind: str, processes: int, token: str, args: argparse.Namespace) -> tuple[Round, int, int, float]:
    from django.utils import timezone

    began = timezone.now()
    worker = [sys.executable, "manage.py", "portal_worker", "-v", "0"]
    env = server_env(args.pool_max)
    with running([worker] * processes, env), _servers(kind, processes, env) as (port, first):
        wait_for_port(port, first)
        _wait_for_workers(processes, began)
        # Warm up under load: every server process done loading (they share one port, so the first
        # answer says nothing of the others) and its pool filled.
        wrk_round(port, PATH, token, args.warmup, args.concurrency)
        pids = _process_tree(first.pid) if kind != "daphne" else None
        cpu_before = _cpu_seconds(pids or [process.pid for process in _DAPHNES])
        result = wrk_round(port, PATH, token, args.seconds, args.concurrency)
        cpu = _cpu_seconds(pids or [process.pid for process in _DAPHNES]) - cpu_before
        held, _ = _database_state()
        time.sleep(2)  # the sealing interval (0.5 s) and then some
        _, unsealed = _database_state()
    return result, held, unsealed, cpu


def _process_tree(pid: int) -> list[int]:
    """A server's process and its children (gunicorn's and uvicorn's worker processes)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid, *(int(child) for child in children)]


def _cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) the processes have used so far, from /proc (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--server", choices=["daphne", "uvicorn", "gunicorn-gthread", "gunicorn-sync"], default="daphne"
    )
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--pool-max", type=int, default=10)
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds of load before each measured round")
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
    cpu: dict[int, float] = dict.fromkeys(shapes, 0.0)
    for number in range(args.rounds):
        for shape in shapes:
            result, held, unsealed, used = _shape_round(args.server, shape, token, args)
            results[shape].append(result)
            cpu[shape] += used
            print(
                f"round {number + 1}: {shape} server process(es) + {shape} worker(s): {result.rate:7.1f} req/s, "
                f"p50 {1000 * result.p50:6.1f} ms, p99 {1000 * result.p99:6.1f} ms, errors {result.errors}; "
                f"servers' CPU {used / result.seconds:.2f} cores; {held} PostgreSQL connections; "
                f"{unsealed} audit rows unsealed 2 s later",
                flush=True,
            )
    rates = {}
    per_cpu = {}
    for shape, rounds in results.items():
        rate, p50, p99, errors = summarize(rounds)
        rates[shape] = rate
        per_cpu[shape] = sum(r.requests for r in rounds) / cpu[shape]
        print(
            f"{shape} + {shape}: {rate:7.1f} req/s  p50 {1000 * p50:6.1f} ms  p99 {1000 * p99:6.1f} ms"
            f"  errors {errors}; "
            f"{per_cpu[shape]:.1f} requests per server CPU-second"
        )
    print(
        f"requests per server CPU-second: {args.processes} processes = {per_cpu[args.processes] / per_cpu[1]:.2f} x "
        "1 process (1.0: nothing shared slows a process down; throughput then follows the cores given)"
    )
    print(f"scale-out: {args.processes} processes = {rates[args.processes] / rates[1]:.2f} x 1 process (goal ~2x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
