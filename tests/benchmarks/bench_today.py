"""Benchmark: the guardian's glance against the cheapest answers, side by side on one daphne process
(PostgreSQL + Redis): ``GET /api/v1/me/today`` (a guardian of 3 children), ``GET /api/v1/health``, and a
bare Django view with no middleware (``/bench/bare``, served by a benchmark-only ASGI app defined
here, never by the portal's URLs). Reports each one's request rate at full load, the server's CPU per
``/me/today`` request (the daphne process's CPU time over the requests it answered) and the p99
latency of ``/me/today`` at half its full-load rate (requests sent on a fixed schedule; latency counted
from the scheduled moment, so queueing counts).

Usage (the database is migrated and filled by this script; use a Redis database of your own)::

    psql -h 127.0.0.1 -U postgres -c 'create database bench_today'
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_today REDIS_URL=redis://127.0.0.1:6379/3 \
        .venv/bin/python tests/benchmarks/bench_today.py

Options: ``--seconds`` per round (default 8), ``--rounds`` (default 3, alternating paths),
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
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

APP_MODULE = "tests.benchmarks.bench_today"
TODAY, HEALTH, BARE = "/api/v1/me/today", "/api/v1/health", "/bench/bare"
GOALS = "goals: today >= 0.5x health; health >= 0.3x bare; CPU <= 5 ms per today; p99 <= 50 ms at half max rate"


def _bare_application() -> Any:
    """Django's ASGI handler with no middleware at all and one view, routed by its own URLconf."""
    from django.core.handlers.asgi import ASGIHandler
    from django.core.handlers.exception import convert_exception_to_response
    from django.http import HttpRequest, HttpResponse, JsonResponse
    from django.urls import path

    def bare(request: HttpRequest) -> HttpResponse:
        return JsonResponse({"status": "ok"})

    class Urls:
        urlpatterns = [path("bench/bare", bare)]

    class BareHandler(ASGIHandler):
        def load_middleware(self, is_async: bool = False) -> None:
            self._view_middleware: list[Any] = []
            self._template_response_middleware: list[Any] = []
            self._exception_middleware: list[Any] = []
            self._middleware_chain = convert_exception_to_response(self._routed)

        async def _routed(self, request: HttpRequest) -> HttpResponse:
            request.urlconf = Urls  # type: ignore[attr-defined]
            return await self._get_response_async(request)  # type: ignore[attr-defined]

    return BareHandler()


def _server_application() -> Any:
    """What daphne serves in this benchmark: the portal, and the bare view beside it."""
    from portal.asgi import application as portal

    bare = _bare_application()

    async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == BARE:
            await bare(scope, receive, send)
        else:
            await portal(scope, receive, send)

    return application


def __getattr__(name: str) -> Any:
    # daphne imports ``tests.benchmarks.bench_today:application``; build it only then.
    if name == "application":
        return _server_application()
    raise AttributeError(name)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _prepare() -> str:
    """Migrate and create a guardian of 3 children with care data; return the app session token."""
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from tests.benchmarks.demo_guardian import guardian_of_three

    return guardian_of_three().session_token


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


def _paced(port: int, path: str, token: str, rate: float, seconds: float, workers: int = 8) -> tuple[list[float], int]:
    """Requests on a fixed schedule at ``rate`` per second; latency from each scheduled moment."""
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    began = time.perf_counter() + 0.2
    total = int(rate * seconds)

    def worker(offset: int) -> None:
        nonlocal errors
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[float] = []
        bad = 0
        for index in range(offset, total, workers):
            scheduled = began + index / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            conn.request("GET", path, headers={"X-Session-Token": token})
            response = conn.getresponse()
            response.read()
            bad += response.status != 200
            mine.append(time.perf_counter() - scheduled)
        conn.close()
        with lock:
            latencies.extend(mine)
            errors += bad

    threads = [threading.Thread(target=worker, args=(offset,)) for offset in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _report(results: dict[str, list[tuple[int, list[float], int]]], seconds: float, rounds: int) -> dict[str, float]:
    rates = {}
    for path, runs in results.items():
        count = sum(r[0] for r in runs)
        latencies = [value for r in runs for value in r[1]]
        errors = sum(r[2] for r in runs)
        rates[path] = count / (seconds * rounds)
        print(
            f"{path:<18} {rates[path]:8.1f} req/s   p50 {1000 * statistics.median(latencies):6.1f} ms   "
            f"p99 {1000 * _quantile(latencies, 0.99):6.1f} ms   errors {errors}"
        )
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres") or not os.environ.get("REDIS_URL"):
        print("Set DATABASE_URL to a scratch PostgreSQL database and REDIS_URL (see the docstring).", file=sys.stderr)
        return 2
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    token = _prepare()
    port = _free_port()
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "tests.benchmarks.bench_today:application",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(600):  # daphne can take a while to start on a loaded machine
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        for path in (HEALTH, TODAY, BARE):  # warm up
            _round(port, path, token, 2, 2)
        results: dict[str, list[tuple[int, list[float], int]]] = {TODAY: [], HEALTH: [], BARE: []}
        today_cpu = 0.0
        for _ in range(args.rounds):
            for path in results:
                before = _cpu_seconds(server.pid)
                results[path].append(_round(port, path, token, args.seconds, args.concurrency))
                if path == TODAY:
                    today_cpu += _cpu_seconds(server.pid) - before
        rates = _report(results, args.seconds, args.rounds)
        half = rates[TODAY] / 2
        paced, paced_errors = _paced(port, TODAY, token, half, max(args.seconds, 10.0))
    finally:
        server.terminate()
        server.wait(timeout=10)
    today_count = sum(r[0] for r in results[TODAY])
    cpu_ms = 1000 * today_cpu / today_count
    p99 = 1000 * _quantile(paced, 0.99)
    print(
        f"me/today = {rates[TODAY] / rates[HEALTH]:.2f}x health; health = {rates[HEALTH] / rates[BARE]:.2f}x bare view"
    )
    print(f"server CPU per me/today request: {cpu_ms:.1f} ms (daphne process CPU time / requests answered)")
    print(
        f"me/today at half its max rate ({half:.1f} req/s): p50 {1000 * statistics.median(paced):.1f} ms, "
        f"p99 {p99:.1f} ms, errors {paced_errors}"
    )
    print(GOALS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
