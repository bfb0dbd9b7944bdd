"""Benchmark: the FHIR API's outbox (``$changes``) page time at the start, the middle and the end of a
large audit ledger, side by side in one run (flat: a page is a range of ledger leaves, never an
OFFSET); and the token endpoint (an RS384 and an ES384 assertion verified, a token issued).

Usage (a scratch PostgreSQL database; ``migrate`` creates the tables, this script fills them)::

    createdb -h 127.0.0.1 -U postgres bench_fhir_api
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_fhir_api \\
        .venv/bin/python -m tests.benchmarks.bench_fhir_api [--rows 200000] [--pages 30]

The ledger is filled with ``--rows`` audit rows in one INSERT ... SELECT (one in twenty a write the
outbox lists, the rest reads it skips), sealed, and analysed (as autovacuum would); a later run over
the same database reuses them. Each position is timed over ``--pages`` pages of 100 changes (the three
positions taking turns, five rounds), in the Django test client (no HTTP server), with the poll's own
audit row included.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

FILL = (
    "INSERT INTO portal_auditevent (id, recorded_at, actor_id, on_behalf_of_id, action, entity_type, entity_id, "
    "child_id, outcome, reason, client_address, user_agent, count, prev_hash, hash) "
    "SELECT gen_random_uuid(), now(), NULL, NULL, CASE WHEN g %% 20 = 0 THEN 'create' ELSE 'read' END, "
    "CASE WHEN g %% 20 = 0 THEN 'Task' ELSE 'Patient' END, md5(g::text), NULL, 'success', '', '127.0.0.1', "
    "'bench', 1, '', '' FROM generate_series(1, %s) g"
)


ROUNDS = 5


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("Set DATABASE_URL to a scratch PostgreSQL database.")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _fill(rows: int) -> int:
    from django.db import connection

    from portal import ledger

    if ledger.tree_size() >= rows:  # filled by an earlier run
        return ledger.tree_size()
    with connection.cursor() as cursor:
        cursor.execute(FILL, [rows])
    started = time.perf_counter()
    # A write transaction running anywhere in the cluster holds sealing back until it ends.
    while ledger.tree_size() < rows and time.perf_counter() - started < 600:
        if not ledger.seal():
            time.sleep(0.5)
    print(f"sealed {ledger.tree_size():,} leaves in {time.perf_counter() - started:.1f} s")
    # Statistics as autovacuum keeps them on a live database (a bulk load leaves none).
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE portal_auditevent")
        cursor.execute("ANALYZE portal_ledgerleaf")
    return ledger.tree_size()


def _pages(http: Any, cursor: int, pages: int, samples: list[float]) -> int:
    """Time ``pages`` pages from ``cursor``; returns the cursor to go on from."""
    for _ in range(pages):
        began = time.perf_counter()
        response = http.get("/fhir/R4/$changes", {"_since": cursor, "_count": 100})
        samples.append(time.perf_counter() - began)
        assert response.status_code == 200, response.content
        body = response.json()
        assert len(body.get("entry", [])) == 100, "the ledger ran out of changes: use more --rows"
        link = next(item["url"] for item in body["link"] if item["relation"] == "next")
        cursor = int(link.split("_since=")[1].split("&")[0])
    return cursor


def _tokens(count: int) -> dict[str, float]:
    from django.test import Client

    from tests.interop.smart_keys import assertion, ec_key, register, rsa_key, token_request

    results = {}
    for name, key in (("RS384", rsa_key()), ("ES384", ec_key())):
        client_id = f"bench-{name.lower()}-{time.time_ns()}"
        register(client_id, key, scopes="system/*.rs")
        samples = []
        for _ in range(count):
            signed = assertion(client_id, key, aud="http://testserver/fhir/R4/token")
            began = time.perf_counter()
            response = token_request(Client(), signed)
            samples.append(time.perf_counter() - began)
            assert response.status_code == 200, response.content
        results[name] = _median_ms(samples)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--pages", type=int, default=30)
    args = parser.parse_args()
    _setup()
    from django.conf import settings
    from django.core.cache import cache

    settings.ALLOWED_HOSTS = ["testserver"]
    settings.PORTAL_FHIR_TOKEN_RATE = "100000/m"
    cache.clear()
    size = _fill(args.rows)
    from tests.interop.smart_keys import access_token, bearer, register, rsa_key

    key = rsa_key()
    client_id = f"bench-outbox-{time.time_ns()}"
    register(client_id, key, scopes="system/*.rs")
    http = bearer(access_token(client_id, key))
    # A page of 100 changes spans about 2,000 leaves (one row in twenty is a write).
    positions = {"start": -1, "middle": size // 2, "end": size - (args.pages + 2) * 2_000}
    # The positions take turns, a few pages each, so drift on a shared machine hits them alike.
    samples: dict[str, list[float]] = {name: [] for name in positions}
    for _ in range(ROUNDS):
        for name in positions:
            positions[name] = _pages(http, positions[name], args.pages // ROUNDS, samples[name])
    timings = {name: _median_ms(values) for name, values in samples.items()}
    print(f"$changes, 100 changes a page, ledger of {size:,} leaves (median of {args.pages} pages):")
    for name, ms in timings.items():
        print(f"  {name:>6}: {ms:7.2f} ms   ({ms / timings['start']:.2f}x the start)")
    for name, ms in _tokens(20).items():
        print(f"token endpoint, {name} assertion: {ms:.2f} ms per token (median of 20)")


if __name__ == "__main__":
    main()
