"""Benchmark: the family "today" page (``/children/<id>/``) under Lighthouse on its default mobile
profile (a mid-range phone, Moto G Power, with simulated slow-4G throttling and a 4x CPU slowdown),
performance and accessibility, run several times; and the JavaScript the family app ships, raw and
gzip-compressed, against the goal of at most 100 KB compressed.

The database gets the demo hospital (``migrate`` + ``load_demo``); the portal is served by daphne on
a free local port, as ``make run`` serves it; a demo guardian (no second factor: guardians are not
required to enrol one) is signed in through Django's test client (``force_login``) against the same
database, and Lighthouse sends that session cookie with every request (``--extra-headers``).

Lighthouse comes from the npm registry into the git-ignored ``node_modules/`` (``make lighthouse``)
and drives Debian's chromium (``/usr/bin/chromium``); no browser is downloaded.

Usage (a scratch PostgreSQL database, migrated and filled by this script; Redis optional)::

    make lighthouse
    psql -h 127.0.0.1 -U postgres -c 'create database bench_lighthouse'
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_lighthouse \\
        .venv/bin/python tests/benchmarks/bench_lighthouse.py

Options: ``--runs`` (default 3), ``--guardian`` (default ``emily.smith@demo.family``), ``--chrome``
(default ``/usr/bin/chromium``), ``--keep`` a directory to keep the JSON reports in.
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import io
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

LIGHTHOUSE = ROOT / "node_modules" / ".bin" / "lighthouse"
TEMPLATES = ROOT / "web" / "templates" / "web"
JS_GOAL_BYTES = 100 * 1024
# The service worker is not in a template: app.js and push.js register it at /sw.js (web/pwa.py).
SERVICE_WORKER = "/sw.js"
# Family pages: everything under web/templates/web except the care team's own pages.
CARE_TEAM_TEMPLATES = ("care",)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int, path: str, cookie: str = "") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_for_port(port: int, process: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"daphne exited with {process.returncode}")
        try:
            get(port, "/api/v1/health")
            return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("daphne did not start")


@dataclass(frozen=True)
class Target:
    path: str
    cookie: str


def prepare(guardian: str) -> Target:
    """Migrate, load the demo hospital, sign the guardian in; return the today page and the cookie."""
    import django
    from django.core.management import call_command

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    django.setup()
    from django.conf import settings
    from django.db import connections
    from django.test import Client

    from fixtures import demo
    from portal.access import has_mfa, requires_mfa
    from portal.models import GuardianLink, User

    call_command("migrate", verbosity=0)
    if not demo.already_loaded():
        call_command("load_demo", verbosity=0, stdout=io.StringIO())
    user = User.objects.get(email=guardian)
    if requires_mfa(user) and not has_mfa(user):
        raise SystemExit(f"{guardian} must enrol a second factor first; pick a guardian who need not")
    link = GuardianLink.objects.filter(guardian=user, status="active").order_by("pk").first()
    if link is None:
        raise SystemExit(f"{guardian} has no active link to a child")
    client = Client()
    client.force_login(user)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    connections.close_all()
    return Target(path=f"/children/{link.child_id}/", cookie=f"{settings.SESSION_COOKIE_NAME}={session}")


@dataclass(frozen=True)
class Run:
    performance: float
    accessibility: float
    fcp_ms: float
    lcp_ms: float
    tbt_ms: float
    cls: float
    speed_index_ms: float
    transfer_bytes: float
    report: dict[str, Any]


def lighthouse(url: str, cookie: str, chrome: str, output: Path) -> Run:
    command = [
        str(LIGHTHOUSE),
        url,
        "--only-categories=performance,accessibility",
        f"--chrome-path={chrome}",
        "--chrome-flags=--headless=new --no-sandbox",
        f"--extra-headers={json.dumps({'Cookie': cookie})}",
        "--output=json",
        f"--output-path={output}",
        "--quiet",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"lighthouse failed ({done.returncode}): {done.stderr[-2000:]}")
    report = json.loads(output.read_text(encoding="utf-8"))
    if report.get("runtimeError"):
        raise SystemExit(f"lighthouse: {report['runtimeError']}")
    final = report.get("finalDisplayedUrl") or report.get("finalUrl", "")
    if not final.startswith(url):
        raise SystemExit(f"lighthouse ended at {final}, not the today page: is the session cookie accepted?")
    audits = report["audits"]

    def value(key: str) -> float:
        return float(audits[key]["numericValue"])

    return Run(
        performance=100 * report["categories"]["performance"]["score"],
        accessibility=100 * report["categories"]["accessibility"]["score"],
        fcp_ms=value("first-contentful-paint"),
        lcp_ms=value("largest-contentful-paint"),
        tbt_ms=value("total-blocking-time"),
        cls=value("cumulative-layout-shift"),
        speed_index_ms=value("speed-index"),
        transfer_bytes=value("total-byte-weight"),
        report=report,
    )


def failing_accessibility(report: dict[str, Any]) -> list[str]:
    audits = report["audits"]
    failing = []
    for ref in report["categories"]["accessibility"]["auditRefs"]:
        audit = audits[ref["id"]]
        if ref.get("weight", 0) > 0 and audit.get("score") is not None and audit["score"] < 1:
            failing.append(f"{ref['id']}: {audit['title']}")
    return failing


def where_time_goes(report: dict[str, Any]) -> list[str]:
    """The opportunities with savings, the server's response time and the main thread's work."""
    audits = report["audits"]
    lines = []
    for key in ("server-response-time", "mainthread-work-breakdown", "bootup-time", "render-blocking-resources"):
        audit = audits.get(key)
        if audit and audit.get("displayValue"):
            lines.append(f"{key}: {audit['displayValue']} (score {audit.get('score')})")
    for key, audit in audits.items():
        details = audit.get("details") or {}
        savings = details.get("overallSavingsMs") or 0
        if details.get("type") == "opportunity" and savings > 0:
            lines.append(f"opportunity {key}: {audit['title']}, saves ~{savings:.0f} ms")
    return lines


def family_scripts() -> list[str]:
    """The script URLs the family pages load: every ``{% static 'web/*.js' %}`` in the base template
    and the family templates, and the service worker."""
    found: set[str] = set()
    pattern = re.compile(r"""\{%\s*static\s+['"](web/[^'"]+\.js)['"]\s*%\}""")
    for template in TEMPLATES.rglob("*.html"):
        if template.relative_to(TEMPLATES).parts[0] in CARE_TEAM_TEMPLATES:
            continue
        found.update(f"/static/{name}" for name in pattern.findall(template.read_text(encoding="utf-8")))
    return [*sorted(found), SERVICE_WORKER]


def measure_scripts(port: int, cookie: str) -> tuple[list[tuple[str, int, int]], int, int]:
    """Each script as the server sends it: its path, raw bytes and gzip (level 9) bytes; the totals."""
    rows = []
    for path in family_scripts():
        status, body = get(port, path, cookie)
        if status != 200:
            raise SystemExit(f"{path} answered {status}")
        rows.append((path, len(body), len(gzip.compress(body, compresslevel=9))))
    return rows, sum(r[1] for r in rows), sum(r[2] for r in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--guardian", default="emily.smith@demo.family")
    parser.add_argument("--chrome", default="/usr/bin/chromium")
    parser.add_argument("--keep", type=Path, help="a directory to keep the Lighthouse JSON reports in")
    args = parser.parse_args()
    if not LIGHTHOUSE.exists():
        print("Lighthouse is not installed: run `make lighthouse` first.", file=sys.stderr)
        return 2
    if not Path(args.chrome).exists():
        print(f"No chromium at {args.chrome} (apt-get install chromium, or pass --chrome).", file=sys.stderr)
        return 2
    target = prepare(args.guardian)
    port = free_port()
    python = sys.executable
    server = [python, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "portal.asgi:application"]
    env = {**os.environ, "LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(server, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs: list[Run] = []
    try:
        wait_for_port(port, process)
        url = f"http://127.0.0.1:{port}{target.path}"
        status, _ = get(port, target.path, target.cookie)
        if status != 200:
            raise SystemExit(f"the today page answered {status} to the signed-in session")
        scripts, raw_total, gzip_total = measure_scripts(port, target.cookie)
        with tempfile.TemporaryDirectory() as scratch:
            out_dir = args.keep or Path(scratch)
            out_dir.mkdir(parents=True, exist_ok=True)
            for index in range(args.runs):
                run = lighthouse(url, target.cookie, args.chrome, out_dir / f"today-{index + 1}.json")
                runs.append(run)
                print(
                    f"run {index + 1}: performance {run.performance:.0f}, accessibility {run.accessibility:.0f}; "
                    f"FCP {run.fcp_ms:.0f} ms, LCP {run.lcp_ms:.0f} ms, TBT {run.tbt_ms:.0f} ms, "
                    f"CLS {run.cls:.3f}, Speed Index {run.speed_index_ms:.0f} ms, "
                    f"transfer {run.transfer_bytes / 1024:.1f} KiB",
                    flush=True,
                )
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def median(key: str) -> float:
        return statistics.median(getattr(run, key) for run in runs)

    config = runs[0].report["configSettings"]
    throttling = config["throttling"]
    print(
        f"\nLighthouse {runs[0].report['lighthouseVersion']}: {config['formFactor']}, {config['throttlingMethod']} "
        f"throttling ({throttling['rttMs']:.0f} ms RTT, {throttling['throughputKbps'] / 1024:.1f} Mbit/s, "
        f"CPU x{throttling['cpuSlowdownMultiplier']:g}); load average {os.getloadavg()[0]:.1f}"
    )
    print(f"today page ({args.guardian}'s first child), {len(runs)} runs, medians:")
    print(
        f"  performance {median('performance'):.0f} (goal >= 90: {'met' if median('performance') >= 90 else 'not met'})"
    )
    print(
        f"  accessibility {median('accessibility'):.0f} "
        f"(goal 100: {'met' if min(r.accessibility for r in runs) >= 100 else 'not met'})"
    )
    print(
        f"  FCP {median('fcp_ms'):.0f} ms, LCP {median('lcp_ms'):.0f} ms, TBT {median('tbt_ms'):.0f} ms, "
        f"CLS {median('cls'):.3f}, Speed Index {median('speed_index_ms'):.0f} ms, "
        f"transfer {median('transfer_bytes') / 1024:.1f} KiB"
    )
    failing = sorted({line for run in runs for line in failing_accessibility(run.report)})
    if failing:
        print("  failing accessibility audits:")
        for line in failing:
            print(f"    {line}")
    middle = sorted(runs, key=lambda run: run.performance)[len(runs) // 2]
    print("  where the time goes (median run):")
    for line in where_time_goes(middle.report):
        print(f"    {line}")

    print("\nJavaScript the family app ships (as served; gzip level 9):")
    for path, raw, packed in scripts:
        print(f"  {path:<28} {raw:>7,} B raw {packed:>7,} B gzip")
    met = "met" if gzip_total <= JS_GOAL_BYTES else "not met"
    print(f"  {'total':<28} {raw_total:>7,} B raw {gzip_total:>7,} B gzip (goal <= {JS_GOAL_BYTES:,} B: {met})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
