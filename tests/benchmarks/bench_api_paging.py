"""Benchmark: a family app pages through a child's results in constant time per page (keyset cursor).

One child with ``--results`` test results (every ten share one ``effective_at``, so ties are broken by
id), read by its guardian through ``GET /api/v1/children/{id}/results?limit=200`` page after page,
following ``next`` to the end, through Django's test client (the whole request: the app token, the
access policy, the audit append, rendering). Pages 1, 25, 50 and 100 are reported: the median over the
rounds. Beside each, as the control, the same page read with ``OFFSET`` (``results_list(offset=...)``,
what the cursor replaced), at the same position in the same run. Flat cursor times and growing
OFFSET times mean the cursor works.

Usage (a new PostgreSQL database, migrated by this script)::

    psql -h 127.0.0.1 -U postgres -c 'create database bench_paging'
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_paging .venv/bin/python tests/benchmarks/bench_api_paging.py

Options: ``--results`` (20,000), ``--rounds`` (3).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

LIMIT = 200
REPORTED = (1, 25, 50, 100)
TAKEN = datetime(2026, 1, 1, tzinfo=UTC)


def _setup() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    django.setup()
    from django.core.management import call_command
    from django.db import connection

    if connection.vendor != "postgresql":
        raise SystemExit("Run against PostgreSQL: set DATABASE_URL.")
    call_command("migrate", verbosity=0)
    from portal.models import Child

    if Child.objects.exists():  # the audit trail is append-only: no flushing, start from a new database
        raise SystemExit("Run against a new, empty database.")


def _world(count: int) -> tuple[Any, Any]:
    from care.models import TestResult
    from care.services import results
    from portal import services
    from portal.models import GuardianLink, User

    guardian = User.objects.create_user(email="bench.guardian@example.org", password=None)
    child = services.child_create(
        actor=None, name="Bench Child", mrn="BENCH-1", date_of_birth=TAKEN.date() - timedelta(days=3000), sex="female"
    )
    GuardianLink.objects.create(guardian=guardian, child=child, relationship="mother", status="active")
    template, _ = results.result_record(
        actor=None,
        child=child,
        source_id="Observation/bench-0",
        name="Glucose",
        code="2345-7",
        code_system="http://loinc.org",
        effective_at=TAKEN,
        issued_at=TAKEN,
    )
    # Copies built from the template's plaintext, so each row is encrypted for its own id.
    fields = {
        field.attname: getattr(template, field.attname)
        for field in TestResult._meta.concrete_fields
        if not field.primary_key
    }
    rows = [
        TestResult(
            **{
                **fields,
                "id": uuid.uuid4(),
                "source_id": f"Observation/bench-{index}",
                "effective_at": TAKEN - timedelta(minutes=index // 10),
            }
        )
        for index in range(1, count)
    ]
    for start in range(0, len(rows), 2_000):
        TestResult.objects.bulk_create(rows[start : start + 2_000])
    return guardian, child


def _timed(call: Any) -> tuple[float, Any]:
    began = time.perf_counter()
    answer = call()
    return time.perf_counter() - began, answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    _setup()
    from django.test import Client

    from care import result_selectors
    from portal.access import Capability, child_for

    guardian, child = _world(options.results)
    browser = Client()
    browser.force_login(guardian)
    client = Client(headers={"X-Session-Token": browser.session.session_key})
    url = f"/api/v1/children/{child.pk}/results"
    access = child_for(guardian, uuid.UUID(str(child.pk)), Capability.CLINICAL)
    cursor_times: dict[int, list[float]] = {page: [] for page in REPORTED}
    offset_times: dict[int, list[float]] = {page: [] for page in REPORTED}
    pages = 0
    for _ in range(options.rounds + 1):  # the first walk warms the caches and is not counted
        cursor, page, seen = None, 0, 0
        while True:
            page += 1
            params: dict[str, Any] = {"limit": LIMIT, **({"cursor": cursor} if cursor else {})}
            spent, answer = _timed(lambda params=params: client.get(url, params))
            assert answer.status_code == 200, answer.content[:200]
            body = answer.json()
            seen += len(body["items"])
            if page in cursor_times:
                cursor_times[page].append(spent)
                offset = (page - 1) * LIMIT
                control, _ = _timed(
                    lambda offset=offset: result_selectors.results_list(
                        user=guardian, access=access, limit=LIMIT, offset=offset
                    )
                )
                offset_times[page].append(control)
            cursor = body["next"]
            if cursor is None:
                break
        assert seen == options.results, (seen, options.results)
        pages = page
    print(f"{options.results:,} results, {pages} pages of {LIMIT}, median of {options.rounds} rounds (ms)")
    print("page  cursor (whole request)  OFFSET (rows alone)")
    for page in REPORTED:
        if len(cursor_times[page]) > 1:
            cursor_ms = statistics.median(cursor_times[page][1:]) * 1000
            offset_ms = statistics.median(offset_times[page][1:]) * 1000
            print(f"{page:>4}  {cursor_ms:>22.1f}  {offset_ms:>19.1f}")


if __name__ == "__main__":
    main()
