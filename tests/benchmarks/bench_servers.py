"""Benchmark: the same application served over HTTP by daphne and uvicorn (ASGI) and by gunicorn
(WSGI, ``sync`` and ``gthread`` workers), one process each, PostgreSQL + Redis, measured side by side:
``GET /api/v1/me/today`` (a guardian of 3 children, beside the demo data) and ``GET /api/v1/health``,
requests a second and p50/p99 latency at 8 concurrent keep-alive clients. All four servers run at
once; the rounds go server by server, endpoint by endpoint, so the machine's load falls on each alike.

The load generator is ``wrk`` (C, one thread, event loop: it takes little of the CPU it shares with
the servers). Install it with ``apt-get install wrk`` (Debian/Ubuntu) or ``brew install wrk``;
without it a Python thread client is used (``--client python``), which takes more CPU.

Usage (a scratch PostgreSQL database, migrated and filled by this script; Redis optional)::

    psql -h 127.0.0.1 -U postgres -c 'create database bench_servers'
    pip install -e '.[dev]'
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_servers REDIS_URL=redis://127.0.0.1:6379/0 \
        .venv/bin/python tests/benchmarks/bench_servers.py

Options: ``--seconds`` per round (default 10), ``--rounds`` (3), ``--concurrency`` (8).
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

PATHS = ("/api/v1/me/today", "/api/v1/health")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_command(kind: str, port: int, processes: int = 1) -> list[str]:
    """The command line of one server kind listening on ``port`` with ``processes`` processes."""
    python = sys.executable
    bind = f"127.0.0.1:{port}"
    commands = {
        "daphne": [python, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "portal.asgi:application"],
        "uvicorn": [
            *(python, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "--workers", str(processes)),
            *("--lifespan", "off", "--no-access-log", "--log-level", "warning", "portal.asgi:application"),
        ],
        "gunicorn-sync": [python, "-m", "gunicorn", "-w", str(processes), "-b", bind, "portal.wsgi:application"],
        "gunicorn-gthread": [
            *(python, "-m", "gunicorn", "-w", str(processes), "-k", "gthread", "--threads", "8"),
            *("-b", bind, "portal.wsgi:application"),
        ],
    }
    return commands[kind]


def server_env(pool_max: int = 10) -> dict[str, str]:
    return {**os.environ, "LOG_LEVEL": "WARNING", "PORTAL_DB_POOL_MAX_SIZE": str(pool_max)}


def wait_for_port(port: int, process: subprocess.Popen[bytes], seconds: float = 120) -> None:
    """Wait until the server answers ``/api/v1/health`` (gunicorn listens before its worker has loaded
    the application)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server on port {port} exited with {process.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/api/v1/health")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"server on port {port} did not start")


@contextmanager
def running(commands: list[list[str]], env: dict[str, str]) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Start every command, stop them all (SIGTERM, then SIGKILL) on the way out."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for command in commands:
            processes.append(
                subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        yield processes
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@dataclass
class Round:
    requests: int
    seconds: float
    p50: float  # seconds
    p99: float
    errors: int  # non-2xx answers and socket errors

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _duration(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    assert match, text
    return float(match.group(1)) * _UNITS[match.group(2)]


def wrk_round(port: int, path: str, token: str, seconds: float, connections: int) -> Round:
    """One round of ``wrk`` (one thread, ``connections`` keep-alive connections)."""
    output = subprocess.run(
        [
            *("wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "--timeout", "30s"),
            *("-H", f"X-Session-Token: {token}", f"http://127.0.0.1:{port}{path}"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    requests = int(re.search(r"(\d+) requests in ([\d.]+\w+)", output).group(1))  # type: ignore[union-attr]
    elapsed = _duration(re.search(r"requests in ([\d.]+\w+)", output).group(1))  # type: ignore[union-attr]
    p50 = _duration(re.search(r"50%\s+([\d.]+\w+)", output).group(1))  # type: ignore[union-attr]
    p99 = _duration(re.search(r"99%\s+([\d.]+\w+)", output).group(1))  # type: ignore[union-attr]
    errors = sum(int(value) for value in re.findall(r"Non-2xx or 3xx responses: (\d+)", output))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket_errors:
        errors += sum(int(value) for value in socket_errors.groups())
    return Round(requests, elapsed, p50, p99, errors)


def python_round(port: int, path: str, token: str, seconds: float, connections: int) -> Round:
    """The same round from Python threads (``bench_today``'s client) when ``wrk`` is missing."""
    from tests.benchmarks.bench_today import _quantile, _round

    count, latencies, errors = _round(port, path, token, seconds, connections)
    return Round(count, seconds, statistics.median(latencies), _quantile(latencies, 0.99), errors)


def prepare() -> str:
    """Migrate, load the demo data and a guardian of 3 children; return the guardian's app token."""
    import django
    from django.core.management import call_command

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    django.setup()
    from portal.models import User
    from tests.benchmarks.bench_today import _prepare

    call_command("migrate", verbosity=0)
    if not User.objects.filter(email__endswith="@demo.family").exists():
        call_command("load_demo", verbosity=0)
    token = _prepare()
    from django.db import connections

    connections.close_all()
    return token


def summarize(rounds: list[Round]) -> tuple[float, float, float, int]:
    """Requests a second over all rounds, the median of the rounds' p50 and p99, and the errors."""
    rate = sum(r.requests for r in rounds) / sum(r.seconds for r in rounds)
    return (
        rate,
        statistics.median(r.p50 for r in rounds),
        statistics.median(r.p99 for r in rounds),
        sum(r.errors for r in rounds),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--client", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python")
    parser.add_argument("--servers", default="daphne,uvicorn,gunicorn-sync,gunicorn-gthread")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        print("Set DATABASE_URL to a scratch PostgreSQL database (see the docstring).", file=sys.stderr)
        return 2
    token = prepare()
    kinds = args.servers.split(",")
    ports = {kind: free_port() for kind in kinds}
    measure = wrk_round if args.client == "wrk" else python_round
    print(f"load generator: {args.client}; {args.concurrency} clients; {args.rounds} rounds of {args.seconds:g} s")
    results: dict[tuple[str, str], list[Round]] = {(kind, path): [] for kind in kinds for path in PATHS}
    with running([server_command(kind, ports[kind]) for kind in kinds], server_env()) as processes:
        for kind, process in zip(kinds, processes, strict=True):
            wait_for_port(ports[kind], process)
            for path in PATHS:  # warm up: connections, caches
                measure(ports[kind], path, token, 2, 2)
        for _ in range(args.rounds):
            for kind in kinds:
                for path in PATHS:
                    results[kind, path].append(measure(ports[kind], path, token, args.seconds, args.concurrency))
    print(f"{'server':<18} {'endpoint':<18} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    rates: dict[tuple[str, str], float] = {}
    for (kind, path), rounds in results.items():
        rate, p50, p99, errors = summarize(rounds)
        rates[kind, path] = rate
        print(f"{kind:<18} {path:<18} {rate:8.1f} {1000 * p50:8.1f} {1000 * p99:8.1f} {errors:7d}")
    base = rates["daphne", PATHS[0]] if "daphne" in kinds else None
    if base:
        for kind in kinds:
            print(f"{kind:<18} /me/today throughput = {rates[kind, PATHS[0]] / base:.2f} x daphne")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
