"""Several workers, several sequencers: each worker runs the ledger's sequencer thread, and on
PostgreSQL only one of them seals at a time (an advisory try-lock); the others skip their turn.
Whatever the interleaving, every audit row becomes exactly one leaf and the checkpoints never fork."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, connections, transaction

from portal import audit, ledger
from portal.ledger.sequencer import _PG_SEAL_LOCK_KEY
from portal.models import AuditEvent, LedgerCheckpoint, LedgerLeaf
from tests.test_ledger import seal_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def _append(writer: int) -> int:
    try:
        for i in range(20):
            audit.record_many(
                [
                    audit.Entry(action="read", entity_type=audit.Resource.PATIENT, entity_id=f"w{writer}-{i}-{j}")
                    for j in range(2)
                ],
                actor=None,
            )
        return 40
    finally:
        connections.close_all()


def test_two_workers_sequencers_seal_every_row_once(needs_postgres: None) -> None:
    stop = threading.Event()
    sequencers = [
        threading.Thread(target=ledger.run_sequencer, args=(stop,), kwargs={"interval": 0.005}) for _ in range(2)
    ]
    for sequencer in sequencers:
        sequencer.start()
    try:
        with ThreadPoolExecutor(max_workers=6) as pool:
            assert sum(pool.map(_append, range(6))) == 240
    finally:
        stop.set()
        for sequencer in sequencers:
            sequencer.join()
    seal_until(240)
    leaves = list(LedgerLeaf.objects.order_by("index").values_list("index", "event_id"))
    assert [index for index, _ in leaves] == list(range(240))
    assert sorted(seq for _, seq in leaves) == sorted(AuditEvent.objects.values_list("seq", flat=True))
    # One chain of checkpoints: each states a larger tree than the one before, none is repeated.
    sizes = list(LedgerCheckpoint.objects.order_by("timestamp", "tree_size").values_list("tree_size", flat=True))
    assert sizes == sorted(set(sizes)) and sizes[-1] == 240
    assert [item.problem for item in audit.verify()] == []


def test_a_sequencer_skips_its_turn_while_another_one_seals(needs_postgres: None) -> None:
    held = threading.Event()
    release = threading.Event()

    def other_sequencer() -> None:
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_PG_SEAL_LOCK_KEY])
                held.set()
                release.wait(timeout=30)
        finally:
            connections.close_all()

    for i in range(3):
        audit.record(actor=None, action=audit.Action.READ, entity_type=audit.Resource.PATIENT, entity_id=f"s{i}")
    holder = threading.Thread(target=other_sequencer)
    holder.start()
    try:
        assert held.wait(timeout=10)
        # The background loop's call returns at once, sealing nothing: the lock's holder seals.
        assert ledger.seal(wait=False) == 0
        assert ledger.tree_size() == 0
    finally:
        release.set()
        holder.join(timeout=30)
    assert ledger.seal(wait=False) == 3
    assert ledger.tree_size() == 3
