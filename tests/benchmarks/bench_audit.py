"""Benchmark: audit appends through ``portal.audit`` (plain inserts, sealed by the ledger's sequencer)
beside a plain INSERT of the same row, 8 concurrent writers, on PostgreSQL; the sealing delay under
that load; the time to verify the whole ledger.

Usage (a scratch PostgreSQL database; ``migrate`` creates the tables, this script fills them)::

    psql -h 127.0.0.1 -U postgres -c 'create database bench_audit'
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_audit \\
        .venv/bin/python -m tests.benchmarks.bench_audit

Options: ``--writers`` (8), ``--seconds`` per phase (4), ``--rounds`` (6: the phases alternate, plain
then audit, so drift on a shared machine hits both; the median of the per-round ratios is reported),
``--verify-rows`` (1,000,000 rows in the ledger before verification is timed; rows are added with one
INSERT ... SELECT and sealed first).

Phases: ``plain`` is a raw ``INSERT`` of the row ``audit.record`` writes, into the same table;
``audit`` is ``audit.record``; ``chained`` emulates the previous design (advisory lock, read of the
last row, SHA-256, insert) for reference. The sequencer runs every ``PORTAL_AUDIT_SEAL_SECONDS``
throughout, as in the worker. The sealing delay is, for each row appended in the audit phases, the
time from its ``recorded_at`` to the first signed checkpoint that covers it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

INSERT = (
    "INSERT INTO portal_auditevent (id, recorded_at, actor_id, on_behalf_of_id, action, entity_type, entity_id, "
    "child_id, outcome, reason, client_address, user_agent, count, prev_hash, hash) "
    "VALUES (%s, %s, NULL, NULL, 'read', 'Patient', %s, %s, 'success', '', '127.0.0.1', 'bench', 1, '', '')"
)


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        sys.exit("Set DATABASE_URL to a scratch PostgreSQL database.")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def _append_plain(index: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(INSERT, [str(uuid.uuid4()), datetime.now(UTC), f"bench-{index}", str(uuid.uuid4())])


def _append_audit(index: int) -> None:
    from portal import audit

    audit.record(
        actor=None,
        action=audit.Action.READ,
        entity_type=audit.Resource.PATIENT,
        entity_id=f"bench-{index}",
        child_id=uuid.uuid4(),
        client=audit.ClientInfo("127.0.0.1", "bench"),
    )


def _append_chained(index: int) -> None:
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [0x5041_5544_4954])
        cursor.execute("SELECT hash FROM portal_auditevent ORDER BY seq DESC LIMIT 1")
        row = cursor.fetchone()
        previous = row[0] if row else "0" * 64
        values: list[Any] = [str(uuid.uuid4()), datetime.now(UTC), f"bench-{index}", str(uuid.uuid4())]
        digest = hashlib.sha256((previous + repr(values)).encode()).hexdigest()
        cursor.execute(INSERT.replace("1, '', '')", "1, %s, %s)"), [*values, previous, digest])


def _phase(append: Callable[[int], None], writers: int, seconds: float) -> tuple[int, float, int, int]:
    """Run ``writers`` threads appending for ``seconds``; (rows, elapsed, first seq, last seq)."""
    from django.db import connection, connections

    with connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(MAX(seq), 0) FROM portal_auditevent")
        first = int(cursor.fetchone()[0]) + 1
    counts = [0] * writers
    start_line = threading.Barrier(writers + 1)
    deadline = [0.0]

    def run(slot: int) -> None:
        try:
            start_line.wait()
            while time.monotonic() < deadline[0]:
                append(slot * 10_000_000 + counts[slot])
                counts[slot] += 1
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(slot,)) for slot in range(writers)]
    for thread in threads:
        thread.start()
    began = time.monotonic()
    deadline[0] = began + seconds
    start_line.wait()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    with connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(MAX(seq), 0) FROM portal_auditevent")
        last = int(cursor.fetchone()[0])
    return sum(counts), elapsed, first, last


def _sealing_delays(first: int, last: int) -> list[float]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXTRACT(EPOCH FROM (SELECT c.timestamp FROM portal_ledgercheckpoint c "
            "WHERE c.tree_size > l.index ORDER BY c.tree_size LIMIT 1) - e.recorded_at) "
            "FROM portal_auditevent e JOIN portal_ledgerleaf l ON l.event_seq = e.seq "
            "WHERE e.seq BETWEEN %s AND %s AND e.user_agent = 'bench'",
            [first, last],
        )
        return [float(row[0]) for row in cursor.fetchall()]


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _fill(rows: int) -> None:
    """Add rows with one INSERT ... SELECT, until the table holds ``rows`` bench-fill rows."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM portal_auditevent WHERE user_agent = 'bench-fill'")
        missing = rows - int(cursor.fetchone()[0])
        if missing > 0:
            cursor.execute(
                "INSERT INTO portal_auditevent (id, recorded_at, actor_id, on_behalf_of_id, action, entity_type, "
                "entity_id, child_id, outcome, reason, client_address, user_agent, count, prev_hash, hash) "
                "SELECT gen_random_uuid(), now() - make_interval(secs => g), gen_random_uuid(), NULL, 'read', "
                "'Patient', 'fill-' || g, gen_random_uuid(), 'success', '', '10.0.0.1', 'bench-fill', 1, '', '' "
                "FROM generate_series(1, %s) AS g",
                [missing],
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--verify-rows", type=int, default=1_000_000)
    parser.add_argument("--skip-chained", action="store_true")
    args = parser.parse_args()
    _setup()
    from portal import ledger

    ledger.seal()
    if args.rounds:
        _appends(args.writers, args.seconds, args.rounds, not args.skip_chained)
    if args.verify_rows:
        _verify(args.verify_rows)


def _appends(writers: int, seconds: float, rounds: int, chained: bool) -> None:
    from django.conf import settings

    from portal import ledger

    stop = threading.Event()
    sequencer = threading.Thread(target=ledger.run_sequencer, args=(stop,))
    sequencer.start()
    results: dict[str, list[float]] = {"plain": [], "audit": [], "chained": []}
    audit_ranges: list[tuple[int, int]] = []
    phases: list[tuple[str, Callable[[int], None]]] = [("plain", _append_plain), ("audit", _append_audit)]
    if chained:
        phases.append(("chained", _append_chained))
    try:
        for round_ in range(rounds):
            for name, append in phases:
                rows, elapsed, first, last = _phase(append, writers, seconds)
                results[name].append(rows / elapsed)
                if name == "audit":
                    audit_ranges.append((first, last))
                print(f"round {round_ + 1} {name:8s} {rows:7d} rows in {elapsed:5.1f} s: {rows / elapsed:8.1f} rows/s")
        time.sleep(settings.PORTAL_AUDIT_SEAL_SECONDS * 4)  # let the last rows be sealed under the same loop
    finally:
        stop.set()
        sequencer.join()
    _report(writers, results, audit_ranges, settings.PORTAL_AUDIT_SEAL_SECONDS)


def _report(
    writers: int, results: dict[str, list[float]], audit_ranges: list[tuple[int, int]], interval: float
) -> None:
    plain, audited = statistics.mean(results["plain"]), statistics.mean(results["audit"])
    # Each round's audit phase against the plain phase just before it: the machine's load drifts
    # between rounds, less within one.
    ratios = [a / p for a, p in zip(results["audit"], results["plain"], strict=True)]
    print(f"\nappends, {writers} writers: audit.record {audited:.1f}/s vs plain INSERT {plain:.1f}/s (means)")
    print(
        f"  ratio {audited / plain:.2f}x of the means; per round {', '.join(f'{r:.2f}' for r in ratios)}, "
        f"median {statistics.median(ratios):.2f}x (goal >= 0.8x)"
    )
    if results["chained"]:
        chained = statistics.mean(results["chained"])
        print(f"  previous design (lock, read of the last row, insert), emulated: {chained:.1f}/s", end="")
        print(f" = {chained / plain:.2f}x")
    delays = [delay for first, last in audit_ranges for delay in _sealing_delays(first, last)]
    print(
        f"sealing delay over {len(delays)} rows (seal interval {interval} s): "
        f"p50 {_percentile(delays, 0.5):.3f} s, p99 {_percentile(delays, 0.99):.3f} s, "
        f"max {max(delays):.3f} s (goal p99 <= 2 s)"
    )


def _verify(rows: int) -> None:
    from portal import ledger
    from portal.models import LedgerCheckpoint

    began = time.monotonic()
    _fill(rows)
    filled = time.monotonic() - began
    began = time.monotonic()
    sealed = ledger.seal()
    sealing = time.monotonic() - began
    rate = sealed / max(sealing, 1e-9)
    print(f"\nfilled in {filled:.1f} s; sealed {sealed} rows in {sealing:.1f} s ({rate:.0f} rows/s)")
    size = ledger.tree_size()
    for everyone in (False, True):
        began = time.monotonic()
        problems = list(ledger.verify(all_checkpoints=everyone))
        verifying = time.monotonic() - began
        per_row = verifying / size
        what = f"every checkpoint ({LedgerCheckpoint.objects.count()})" if everyone else "the latest checkpoint"
        print(
            f"verify, {what}: {size} leaves in {verifying:.1f} s ({per_row * 1e6:.1f} us/row, "
            f"{len(problems)} problems); 10 M rows extrapolate to {per_row * 10_000_000:.0f} s (goal <= 60 s)"
        )


if __name__ == "__main__":
    main()
