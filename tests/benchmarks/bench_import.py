"""Benchmark: the FHIR Bulk Data import (``manage.py fhir_import``) of a generated hospital on PostgreSQL.

For each hospital size (``--patients``, e.g. ``2000,8000``; about 27 resources per patient, so
37,500 patients make a 1,000,000-resource export) the script empties the database, writes the
export with ``fixtures/fhir_hospital.py``, and runs ``manage.py fhir_import`` in a subprocess. It
reports the import's wall time and resources per second, the subprocess's peak RSS (``wait4``: a
streaming import keeps it flat as the input grows), and the rows the import added to each table.
Then, in the same run, it copies those same rows with a bare PostgreSQL ``COPY ... FROM STDIN`` into
fresh tables of the same shape (``LIKE ... INCLUDING ALL``: the same indexes and constraints, logged
like the originals) and reports the import's time as a multiple of the COPY's.

Resume check (``--resume-patients``): an import is started in a subprocess, killed with SIGKILL once
about half the lines are committed, and run again to the end; every table's row count must then equal
that of a clean import of the same files into an emptied database (nothing duplicated, nothing lost).

Usage (a scratch database: this script empties it)::

    createdb -h 127.0.0.1 -U postgres bench_import
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_import REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python tests/benchmarks/bench_import.py --patients 2000,8000 --resume-patients 300

Invitation emails go to Django's dummy backend (``EMAIL_BACKEND``) and invitation texts to the dummy
SMS backend (``PORTAL_SMS_BACKEND``), so nothing is sent.
"""

from __future__ import annotations

import argparse
import io
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

COPY_PREFIX = "bench_copy_"


def _tables() -> list[str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename NOT LIKE %s ORDER BY 1",
            [COPY_PREFIX + "%"],
        )
        return [row[0] for row in cursor.fetchall()]


def row_counts() -> dict[str, int]:
    from django.db import connection

    counts = {}
    with connection.cursor() as cursor:
        for table in _tables():
            cursor.execute(f'SELECT count(*) FROM "{table}"')
            counts[table] = cursor.fetchone()[0]
    return counts


def empty_database() -> None:
    """Empty every table as ``flush`` does, in replica mode: the audit table refuses TRUNCATE otherwise
    (only a superuser, as here on a scratch database, may switch modes)."""
    from django.core.management.color import no_style
    from django.core.management.sql import emit_post_migrate_signal
    from django.db import connection, transaction

    statements = connection.ops.sql_flush(
        no_style(), connection.introspection.django_table_names(), reset_sequences=True
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        for statement in statements:
            cursor.execute(statement)
    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")


def run_import(folder: Path) -> tuple[float, int, int]:
    """Import the folder in a subprocess: (wall seconds, peak RSS in KiB, exit status)."""
    command = [sys.executable, str(ROOT / "manage.py"), "fhir_import", str(folder)]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode not in (0, 1):  # 1: some lines were rejected, as the generator intends
        assert process.stderr is not None
        raise SystemExit(f"fhir_import failed ({process.returncode}): {process.stderr.read().decode()[-2000:]}")
    return elapsed, usage.ru_maxrss, process.returncode


def generate(patients: int, out: Path) -> int:
    """Write the export; returns its number of resources (lines)."""
    from fixtures import fhir_hospital

    paths = fhir_hospital.write(fhir_hospital.generate(patients=patients), out)
    return sum(sum(1 for _ in path.open("rb")) for path in paths)


def bare_copy(tables: list[str]) -> float:
    """Seconds PostgreSQL takes to COPY the tables' current rows into fresh tables of the same shape."""
    from django.db import connection

    seconds = 0.0
    with connection.cursor() as outer:
        cursor = outer.cursor  # psycopg's own cursor: COPY
        for table in tables:
            data = io.BytesIO()
            with cursor.copy(f'COPY "{table}" TO STDOUT') as copy:
                for block in copy:
                    data.write(block)
            target = COPY_PREFIX + table
            cursor.execute(f'DROP TABLE IF EXISTS "{target}"')
            cursor.execute(f'CREATE TABLE "{target}" (LIKE "{table}" INCLUDING ALL)')
            started = time.perf_counter()
            with cursor.copy(f'COPY "{target}" FROM STDIN') as copy:
                copy.write(data.getvalue())
            seconds += time.perf_counter() - started
            cursor.execute(f'DROP TABLE "{target}"')
    return seconds


def measure(patients: int, scratch: Path) -> dict[str, Any]:
    empty_database()
    folder = scratch / f"hospital-{patients}"
    resources = generate(patients, folder)
    before = row_counts()
    seconds, rss_kib, _ = run_import(folder)
    after = row_counts()
    added = {table: after[table] - before.get(table, 0) for table in after if after[table] > before.get(table, 0)}
    copy_seconds = bare_copy(sorted(added))
    return {
        "patients": patients,
        "resources": resources,
        "seconds": seconds,
        "rate": resources / seconds,
        "rss_mib": rss_kib / 1024,
        "rows": sum(added.values()),
        "copy_seconds": copy_seconds,
        "ratio": seconds / copy_seconds if copy_seconds else float("inf"),
        "added": added,
    }


def resume_check(patients: int, scratch: Path) -> None:
    from interop.models import ImportRun, SourceRecord

    empty_database()
    folder = scratch / f"resume-{patients}"
    resources = generate(patients, folder)
    command = [sys.executable, str(ROOT / "manage.py"), "fhir_import", str(folder)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while SourceRecord.objects.count() < resources // 2:
        if process.poll() is not None:
            raise SystemExit("The import ended before it could be killed: use a bigger --resume-patients.")
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = SourceRecord.objects.count()
    assert ImportRun.objects.get().status == ImportRun.Status.RUNNING
    run_import(folder)
    resumed = row_counts()
    assert ImportRun.objects.count() == 1 and ImportRun.objects.get().status == ImportRun.Status.FINISHED
    empty_database()
    run_import(folder)
    clean = row_counts()
    differing = {table: (resumed[table], clean[table]) for table in clean if resumed.get(table) != clean[table]}
    print(
        f"resume after kill -9: {resources:,} resources, killed with {killed_at:,} records committed; "
        f"row counts after the resumed run equal a clean import's in all {len(clean)} tables: {not differing}"
    )
    if differing:
        raise SystemExit(f"Row counts differ (resumed, clean): {differing}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", default="9400,37500", help="hospital sizes, comma-separated")
    parser.add_argument("--resume-patients", type=int, default=300, help="0 skips the kill -9 check")
    options = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        raise SystemExit("Set DATABASE_URL to a scratch PostgreSQL database (this script empties it).")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("LOG_LEVEL", "ERROR")
    os.environ["EMAIL_BACKEND"] = "django.core.mail.backends.dummy.EmailBackend"
    os.environ["PORTAL_SMS_BACKEND"] = "messaging.sms.DummySmsBackend"
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    sizes = [int(size) for size in options.patients.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-import-") as folder:
        scratch = Path(folder)
        results = [measure(size, scratch) for size in sizes]
        print(
            f"{'patients':>9} {'resources':>10} {'import s':>9} {'res/s':>7} {'peak RSS':>9} "
            f"{'rows':>9} {'COPY s':>7} {'import/COPY':>11}"
        )
        for r in results:
            print(
                f"{r['patients']:>9,} {r['resources']:>10,} {r['seconds']:>9.1f} {r['rate']:>7.1f} "
                f"{r['rss_mib']:>6.1f} MiB {r['rows']:>9,} {r['copy_seconds']:>7.2f} {r['ratio']:>10.0f}x"
            )
        largest = results[-1]
        print("rows added by the largest import, by table:")
        for table, rows in sorted(largest["added"].items(), key=lambda item: -item[1]):
            print(f"  {table:<40} {rows:>9,}")
        if len(results) > 1:
            first, last = results[0], results[-1]
            growth = last["resources"] / first["resources"]
            rss, rate = last["rss_mib"] / first["rss_mib"], last["rate"] / first["rate"]
            print(f"input x{growth:.1f}: peak RSS x{rss:.2f}, resources/s x{rate:.2f}")
        if options.resume_patients:
            resume_check(options.resume_patients, scratch)
    empty_database()


if __name__ == "__main__":
    main()
