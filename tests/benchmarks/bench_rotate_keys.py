"""Benchmark online key rotation: re-encrypt N children under a new key while a reader keeps reading.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_rotate .venv/bin/python tests/benchmarks/bench_rotate_keys.py
    .venv/bin/python tests/benchmarks/bench_rotate_keys.py --rows 20000          # a temporary SQLite file

It needs a database of its own: it migrates it, fills it with synthetic children encrypted under a
throw-away key it generates, and refuses a database that already holds children (or the embedded
default's ``var/portal.sqlite3``). It never reads the portal's real keys. Output: rows, seconds,
rows/second, rows lost, rows left on the old key, reader reads and reader errors.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import secrets
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SQLITE = ROOT / "var" / "portal.sqlite3"
OLD_KID = "bench-old"
NEW_KID = "bench-new"
INSERT_CHUNK = 2000


def _key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")


def _name(i: int) -> str:
    return f"Bench Child {i:07d}"


def _mrn(i: int) -> str:
    return f"BENCH-{i:08d}"


def _conditions(i: int) -> list[str]:
    return [str(100000 + i % 997), str(200000 + i % 13)]


@dataclass
class ReaderStats:
    reads: int = 0
    errors: int = 0
    kinds: Counter[str] = field(default_factory=Counter)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="children to create (default 100000)")
    parser.add_argument("--batch-size", type=int, default=1000, help="rotation batch size (default 1000)")
    parser.add_argument(
        "--sqlite-path",
        type=Path,
        help="use this SQLite file (instead of DATABASE_URL or a temporary file); it must hold no children",
    )
    args = parser.parse_args(argv)
    if args.rows < 1 or args.batch_size < 1:
        parser.error("--rows and --batch-size must be at least 1")
    return args


def database_url(args: argparse.Namespace, workdir: Path) -> str:
    url = os.environ.get("DATABASE_URL", "")
    if args.sqlite_path:
        if url:
            raise SystemExit("Give either DATABASE_URL or --sqlite-path, not both.")
        return f"sqlite:///{args.sqlite_path.resolve()}"
    if not url:
        # No database named: a temporary SQLite file, migrated below and deleted at the end.
        return f"sqlite:///{workdir / 'bench.sqlite3'}"
    if url.startswith("sqlite:///") and Path(url.removeprefix("sqlite:///")).resolve() == DEFAULT_SQLITE.resolve():
        raise SystemExit(f"Refusing the embedded default database {DEFAULT_SQLITE}: pass --sqlite-path explicitly.")
    return url


def configure(url: str, workdir: Path) -> None:
    """Settings for this process only: its own database, var directory and throw-away keys."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    os.environ["DATABASE_URL"] = url
    os.environ["PORTAL_VAR_DIR"] = str(workdir)
    os.environ["PORTAL_ENCRYPTION_KEYS"] = f"{OLD_KID}:{_key()}"
    os.environ["PORTAL_BLIND_INDEX_KEY"] = _key()
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def create_children(rows: int) -> float:
    from portal.models import Child

    started = time.perf_counter()
    for start in range(0, rows, INSERT_CHUNK):
        batch = []
        for i in range(start, min(start + INSERT_CHUNK, rows)):
            child = Child(
                name=_name(i),
                mrn=_mrn(i),
                date_of_birth=date(2008, 1, 1) + timedelta(days=i % 5000),
                time_zone="UTC",
                conditions=_conditions(i),
            )
            child.compute_age_boundaries()
            batch.append(child)
        # bulk_create runs every field's pre_save, so the encrypted columns and the MRN's blind
        # index are filled exactly as save() would (verified below rather than assumed).
        Child.objects.bulk_create(batch)
    return time.perf_counter() - started


def verify_created(rows: int) -> None:
    from portal.models import Child

    prefix = f"pe1:{OLD_KID}:"
    checks = {
        "rows": Child.objects.count(),
        "name encrypted": Child.objects.filter(name__startswith=prefix).count(),
        "mrn encrypted": Child.objects.filter(mrn__startswith=prefix).count(),
        "conditions encrypted": Child.objects.filter(conditions__startswith=prefix).count(),
        "mrn index set": Child.objects.exclude(mrn_index__isnull=True).exclude(mrn_index="").count(),
    }
    wrong = [name for name, count in checks.items() if count != rows]
    index = Child._meta.get_field("mrn_index")
    sample = Child.objects.get(mrn_index=index.index_of(_mrn(rows // 2)))
    if sample.name != _name(rows // 2) or sample.conditions != _conditions(rows // 2):
        wrong.append("sample decrypts")
    if wrong:
        raise SystemExit(f"bulk_create did not store what save() would: {', '.join(wrong)}")


def read_randomly(pks: list[Any], stop: threading.Event, stats: ReaderStats) -> None:
    """What the portal does meanwhile: load a child and read its encrypted fields."""
    from django.db import connection

    from portal.models import Child

    chooser = random.Random(7)
    try:
        while not stop.is_set():
            pk = chooser.choice(pks)
            try:
                child = Child.objects.get(pk=pk)
                i = int(child.mrn.removeprefix("BENCH-"))
                if child.name == _name(i) and child.conditions == _conditions(i):
                    stats.reads += 1
                else:
                    stats.errors += 1
                    stats.kinds["wrong value"] += 1
            except Exception as exc:
                # Counted by type only: a message could carry data, and the run must go on.
                stats.errors += 1
                stats.kinds[type(exc).__name__] += 1
    finally:
        connection.close()


def verify_all(rows: int) -> tuple[int, int]:
    """(rows that decrypt to what was written, rows that fail to decrypt or differ)."""
    from portal.models import Child

    good: set[int] = set()
    bad = 0
    for child in Child.objects.order_by().iterator(chunk_size=2000):
        try:
            i = int(child.mrn.removeprefix("BENCH-"))
            if child.name == _name(i) and child.conditions == _conditions(i) and 0 <= i < rows:
                good.add(i)
            else:
                bad += 1
        except Exception:
            bad += 1
    return len(good), bad


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-rotate-") as temp:
        workdir = Path(temp)
        configure(database_url(args, workdir), workdir)

        from django.conf import settings
        from django.core.management import call_command
        from django.db import connection, connections, models

        from portal.crypto import reset_keyring
        from portal.keys import RotationBatch, rotate, rows_on_old_keys
        from portal.models import Child

        call_command("migrate", verbosity=0, interactive=False)
        if Child.objects.exists():
            raise SystemExit("The database already holds children: give the benchmark an empty database of its own.")
        print(f"database: {connection.vendor} {connection.settings_dict['NAME']}")

        insert_seconds = create_children(args.rows)
        verify_created(args.rows)
        before = Child.objects.count()
        print(f"created {before} children in {insert_seconds:.1f} s (bulk_create, verified encrypted and indexed)")

        # Every reader holds the new key before rotation starts (it is the order a deployment must
        # follow too): new first, so it encrypts; old second, so what is not yet rotated still reads.
        settings.PORTAL_ENCRYPTION_KEYS = f"{NEW_KID}:{_key()},{settings.PORTAL_ENCRYPTION_KEYS}"
        reset_keyring()

        pks = list(Child.objects.values_list("pk", flat=True))
        stats = ReaderStats()
        stop = threading.Event()
        reader = threading.Thread(target=read_randomly, args=(pks, stop, stats), daemon=True)
        step = max(1, args.rows // 10)
        next_report = step

        def progress(batch: RotationBatch) -> None:
            nonlocal next_report
            done = batch.totals.get("portal.child.name", 0)
            if done >= next_report:
                print(f"  rotated {done} rows ({time.perf_counter() - started:.1f} s, {stats.reads} reads)", flush=True)
                next_report += step

        reader.start()
        started = time.perf_counter()
        summary = rotate(batch_size=args.batch_size, on_batch=progress)
        seconds = time.perf_counter() - started
        stop.set()
        reader.join()

        after = Child.objects.count()
        decrypted, failing = verify_all(args.rows)
        stale = models.Q()
        for column in ("name", "mrn", "conditions"):
            stale |= ~models.Q(**{f"{column}__startswith": f"pe1:{NEW_KID}:"})
        left = Child.objects.filter(stale).count()
        remaining = {label: count for label, count in rows_on_old_keys().items() if count}

        print(f"rows: {args.rows}")
        print(f"seconds: {seconds:.1f}")
        print(f"rows/second: {summary.get('portal.child.name', 0) / seconds:.0f}")
        print(
            f"rows lost: {args.rows - decrypted} (count before {before}, after {after}; failing to decrypt {failing})"
        )
        print(f"rows left on the old key: {left}" + (f" {remaining}" if remaining else ""))
        print(f"reader reads: {stats.reads}")
        print(f"reader errors: {stats.errors}" + (f" {dict(stats.kinds)}" if stats.kinds else ""))
        connections.close_all()
        failed = args.rows - decrypted or left or stats.errors
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
