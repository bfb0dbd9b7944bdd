"""Profile of the FHIR Bulk Data import on PostgreSQL: where a resource's time goes.

Writes a generated hospital (``--patients``; about 27 resources each), empties the scratch database
and imports the export in this process under ``cProfile``, then prints the functions with the most
cumulative and own time, and the SQL statements the import ran, by kind and by resource type.

Usage (a scratch database: this script empties it)::

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_import REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python tests/benchmarks/profile_import.py --patients 100 [--out profile.pstats]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--top", type=int, default=35)
    parser.add_argument("--out", help="also write the raw profile (pstats) here")
    options = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        raise SystemExit("Set DATABASE_URL to a scratch PostgreSQL database (this script empties it).")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ.setdefault("LOG_LEVEL", "ERROR")
    os.environ["EMAIL_BACKEND"] = "django.core.mail.backends.dummy.EmailBackend"
    import django

    django.setup()
    from bench_import import empty_database, generate
    from django.core.management import call_command
    from django.db import connection

    from interop import fhir
    from interop.importer import import_files

    call_command("migrate", verbosity=0)
    empty_database()
    statements: Counter[str] = Counter()

    def count(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        words = sql.split(None, 3)
        kind = words[0].upper()
        if kind in {"SELECT", "UPDATE", "DELETE"} or kind == "INSERT":
            table = next((w for w in sql.split() if w.startswith('"') and w != '"id"'), "?")
            kind = f"{kind} {table.split('.')[0]}"
        statements[kind] += 1
        return execute(sql, params, many, context)

    with tempfile.TemporaryDirectory(prefix="profile-import-") as folder:
        resources = generate(options.patients, Path(folder))
        fhir.validate({"resourceType": "Patient"})  # load the FHIR models before timing
        profiler = cProfile.Profile()
        started = time.perf_counter()
        with connection.execute_wrapper(count):
            profiler.enable()
            import_files(sorted(Path(folder).glob("*.ndjson")))
            profiler.disable()
        elapsed = time.perf_counter() - started
    print(f"{resources:,} resources in {elapsed:.1f} s ({resources / elapsed:.1f} resources/s, under the profiler)")
    print(f"{sum(statements.values()):,} SQL statements ({sum(statements.values()) / resources:.1f} per resource):")
    for kind, number in statements.most_common(25):
        print(f"  {number:>8,}  {kind}")
    stats = pstats.Stats(profiler)
    if options.out:
        stats.dump_stats(options.out)
    stats.sort_stats("cumulative").print_stats(options.top)
    stats.sort_stats("tottime").print_stats(options.top)
    empty_database()


if __name__ == "__main__":
    main()
