"""Benchmark: FHIR search pages through 100,000 patients in constant time per page (keyset paging).

``interop.fhir_read.search("Patient", {"_lastUpdated": ["gt..."], "_count": ["500"]})`` is followed
page by page through its ``next`` links over 100,000 patients, each one imported (a ``SourceRecord``
carries its EHR identifier, which every page looks up). Every page is timed; pages 1, 50, 100 and 200
are reported side by side: the median over the rounds of the five pages up to each, after one walk
that warms the caches. Beside each page: its rows alone, fetched by the cursor's condition (the page
without rendering), and as the control the same rows fetched with ``OFFSET`` (what keyset paging
replaces), like for like, at the same page numbers in the same run. Flat keyset times and growing
OFFSET times mean the cursor works. The plans of the last page's queries are printed (index scans
expected).

Patients are bulk-inserted (their names and MRNs encrypted per row, as the portal stores them);
``updated_at`` (the Patient's ``meta.lastUpdated``, the change time) and ``created_at`` are spread so
that every three patients share one instant, so ties are broken by id.

Usage (a scratch PostgreSQL database, emptied and migrated by this script)::

    psql -h 127.0.0.1 -U postgres -c 'create database bench_fhir'
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_fhir .venv/bin/python tests/benchmarks/bench_fhir_paging.py

Options: ``--patients`` (100,000), ``--count`` per page (500), ``--rounds`` (3), ``--keep`` (use the
patients a previous run made, when there are as many).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

BASE = "https://portal.example.org/fhir/R4"
START = datetime(2026, 1, 1, tzinfo=UTC)
BATCH = 5_000
REPORTED = (1, 50, 100, 200)


def _setup() -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    django.setup()
    from django.core.management import call_command
    from django.db import connection

    if connection.vendor != "postgresql":
        raise SystemExit("Run against PostgreSQL: set DATABASE_URL.")
    call_command("migrate", verbosity=0)


def _fill(patients: int) -> None:
    """``patients`` children and their import records, in place of any there were."""
    from django.db import connection, transaction

    from interop.models import SourceRecord
    from portal.models import Child

    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE interop_sourcerecord, portal_child CASCADE")
    began = time.perf_counter()
    for first in range(0, patients, BATCH):
        children, records = [], []
        for n in range(first, min(first + BATCH, patients)):
            child = Child(
                id=uuid.UUID(int=n + 1),
                name=f"Patient{n} Family{n % 977}",
                mrn=f"MRN{n:08d}",
                date_of_birth=date(2012 + n % 12, 1 + n % 12, 1 + n % 28),
                sex=("female", "male")[n % 2],
                time_zone="America/Chicago",
            )
            child.compute_age_boundaries()
            children.append(child)
            records.append(
                SourceRecord(
                    resource_type="Patient",
                    resource_id=f"pat-{n}",
                    identifier=f"Patient|urn:oid:2.16.840.1.113883.19.5|MRN{n:08d}",
                    content_hash="0" * 64,
                    target_type="portal.Child",
                    targets=[str(child.pk)],
                    child_id=child.pk,
                )
            )
        with transaction.atomic():
            Child.objects.bulk_create(children)
            SourceRecord.objects.bulk_create(records)
    with connection.cursor() as cursor:
        # auto_now(_add) stamped them all alike: spread them, three to an instant.
        cursor.execute(
            "UPDATE portal_child SET updated_at = %s + ((('x' || right(replace(id::text, '-', ''), 12))::bit(48)"
            "::bigint - 1) / 3) * interval '1 second'",
            [START],
        )
        cursor.execute("UPDATE portal_child SET created_at = updated_at")
        cursor.execute("VACUUM ANALYZE portal_child")
        cursor.execute("VACUUM ANALYZE interop_sourcerecord")
    print(f"filled {patients:,} patients and records in {time.perf_counter() - began:.1f} s")


def _walk(count: int) -> tuple[list[float], list[tuple[datetime, str]]]:
    """Seconds per page of one walk through every page, and where each page ended."""
    from interop import fhir_read

    since = (START - timedelta(days=1)).date()
    params: dict[str, list[str]] | None = {"_lastUpdated": [f"gt{since}"], "_count": [str(count)]}
    times, ends = [], []
    while params is not None:
        began = time.perf_counter()
        bundle = fhir_read.search("Patient", params, base_url=BASE)
        times.append(time.perf_counter() - began)
        last = bundle["entry"][-1]["resource"]
        ends.append((datetime.fromisoformat(last["meta"]["lastUpdated"]), last["id"]))
        following = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
        params = parse_qs(urlsplit(following).query) if following else None
    return times, ends


def _keyset_rows(count: int, after: tuple[datetime, str] | None) -> float:
    """The rows of a page by the cursor's condition alone (no rendering): the like-for-like of OFFSET."""
    from django.db.models import Q

    from portal.models import Child

    rows = Child.objects.order_by("updated_at", "id")
    if after is not None:
        moment, last = after
        rows = rows.filter(Q(updated_at__gte=moment) & (Q(updated_at__gt=moment) | Q(id__gt=last)))
    began = time.perf_counter()
    found = list(rows[:count].values_list("id", flat=True))
    assert len(found) == count
    return time.perf_counter() - began


def _offset_page(count: int, page: int) -> float:
    """The control: the same page's rows by OFFSET (rows only, no rendering)."""
    from portal.models import Child

    began = time.perf_counter()
    rows = list(
        Child.objects.order_by("updated_at", "id")[(page - 1) * count : page * count].values_list("id", flat=True)
    )
    assert len(rows) == count
    return time.perf_counter() - began


def _plans(count: int, pages: int) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from interop import fhir_read

    params: dict[str, list[str]] | None = {"_count": [str(count)]}
    for _ in range(pages - 1):
        assert params is not None
        bundle = fhir_read.search("Patient", params, base_url=BASE)
        params = parse_qs(urlsplit(bundle["link"][-1]["url"]).query)
    assert params is not None
    with CaptureQueriesContext(connection) as queries:
        fhir_read.search("Patient", params, base_url=BASE)
    with connection.cursor() as cursor:
        for query in queries.captured_queries:
            cursor.execute("EXPLAIN " + query["sql"])
            plan = [row[0] for row in cursor.fetchall()]
            print("  " + query["sql"][:110] + " ...")
            print("    " + "\n    ".join(line.strip()[:160] for line in plan[:6]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true")
    options = parser.parse_args()
    _setup()
    from portal.models import Child

    if not (options.keep and Child.objects.count() == options.patients):
        _fill(options.patients)
    pages = options.patients // options.count
    reported = [p for p in REPORTED if p <= pages]
    keyset: dict[int, list[float]] = {p: [] for p in reported}
    keyset_rows: dict[int, list[float]] = {p: [] for p in reported}
    offset: dict[int, list[float]] = {p: [] for p in reported}
    _walk(options.count)  # warm-up
    for round_ in range(options.rounds):
        times, ends = _walk(options.count)
        assert len(times) == pages, (len(times), pages)
        for page in reported:
            # The five pages up to and including it (the machine is shared: one page is noisy).
            window = range(max(page - 5, 0), page)
            keyset[page] += [times[p] for p in window]
            keyset_rows[page] += [_keyset_rows(options.count, ends[p - 1] if p else None) for p in window]
            offset[page] += [_offset_page(options.count, p + 1) for p in window]
        print(f"round {round_ + 1}: {len(times)} pages, {sum(times):.1f} s in all")
    columns = {"keyset page": keyset, "keyset rows": keyset_rows, "OFFSET rows": offset}
    print(f"\n{options.patients:,} patients, _count={options.count}; median of {options.rounds} rounds x 5 pages (ms)")
    print(f"{'page':>6}" + "".join(f" {name:>12} {'x page 1':>9}" for name in columns))
    for page in reported:
        line = f"{page:>6}"
        for series in columns.values():
            median = statistics.median(series[page])
            line += f" {median * 1000:>12.1f} {median / statistics.median(series[1]):>9.2f}"
        print(line)
    print("\nqueries of the last page and their plans:")
    _plans(options.count, pages)


if __name__ == "__main__":
    main()
