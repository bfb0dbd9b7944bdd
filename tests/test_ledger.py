"""The audit ledger: the sequencer (concurrency, commit-order gaps), signed checkpoints kept elsewhere,
and the tampering each of them exposes (the hashing and proofs alone: test_merkle.py)."""

from __future__ import annotations

import base64
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, connections, transaction

from portal import audit, ledger, merkle
from portal.metrics.derive import AUDIT_WATERMARK, events_derive
from portal.metrics.models import Watermark
from portal.models import AuditEvent, LedgerCheckpoint, LedgerLeaf, LedgerNode

OTHER_KEY = base64.b64encode(b"\x07" * 32).decode()


def _flip(value: bytes) -> bytes:
    return bytes([value[0] ^ 1]) + value[1:]


def _seed(count: int, prefix: str = "e") -> list[AuditEvent]:
    return [
        audit.record(actor=None, action=audit.Action.READ, entity_type=audit.Resource.PATIENT, entity_id=f"{prefix}{i}")
        for i in range(count)
    ]


def _tamper(sql: str, params: list[Any] | None = None) -> None:
    """Change the tables behind the application's back (the PostgreSQL triggers are bypassed as an
    attacker with superuser rights would)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(sql, params)


def seal_until(size: int) -> None:
    """Seal until the ledger holds ``size`` leaves. On PostgreSQL a write transaction running
    anywhere in the cluster (another database's too) holds sealing back until it ends."""
    deadline = time.monotonic() + 30
    while ledger.seal() is not None and ledger.tree_size() < size and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ledger.tree_size() == size


def _problems() -> list[str]:
    return [item.problem for item in audit.verify()]


@pytest.fixture
def other_signing_key(settings: Any) -> Any:
    yield settings
    ledger.reset_keys()


# --- The sequencer ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_appends_are_sealed_in_batches_with_a_signed_checkpoint() -> None:
    events = _seed(5)
    assert not LedgerLeaf.objects.exists()  # an append does not touch the ledger
    assert ledger.seal() == 5
    assert ledger.seal() == 0  # nothing twice
    assert list(LedgerLeaf.objects.order_by("index").values_list("event_id", flat=True)) == [e.seq for e in events]
    _seed(3, "f")
    call_command("audit_seal", stdout=open("/dev/null", "w"))  # noqa: SIM115
    checkpoints = list(LedgerCheckpoint.objects.order_by("tree_size").values_list("tree_size", flat=True))
    assert checkpoints == [5, 8]
    latest = ledger.latest_checkpoint()
    assert latest is not None
    latest.verify_signature()
    leaves = [bytes.fromhex(h) for h in LedgerLeaf.objects.order_by("index").values_list("hash", flat=True)]
    assert latest.root() == merkle.root_from_leaves(leaves) == ledger.root_hash()
    # The complete subtrees of 8 leaves: 4 at level 1, 2 at level 2, 1 at level 3.
    assert LedgerNode.objects.count() == 7
    assert _problems() == []


@pytest.mark.django_db
def test_small_batches_seal_everything_in_order() -> None:
    events = _seed(7)
    assert ledger.seal(batch_size=3) == 7
    assert list(LedgerCheckpoint.objects.order_by("tree_size").values_list("tree_size", flat=True)) == [3, 6, 7]
    assert list(LedgerLeaf.objects.order_by("index").values_list("event_id", flat=True)) == [e.seq for e in events]
    assert _problems() == []


@pytest.mark.django_db
def test_inclusion_and_consistency_proofs_from_the_database() -> None:
    events = _seed(6)
    ledger.seal()
    old = ledger.latest_checkpoint()
    _seed(5, "f")
    ledger.seal()
    latest = ledger.latest_checkpoint()
    assert old is not None and latest is not None
    for event in events:
        inclusion = ledger.prove_inclusion(event.seq)
        assert inclusion is not None
        inclusion.verify(event)
        against_old = ledger.prove_inclusion(event.seq, old)
        assert against_old is not None
        against_old.verify(event)
    proof = ledger.consistency_proof(old.tree_size, latest.tree_size)
    merkle.verify_consistency(old.tree_size, latest.tree_size, old.root(), latest.root(), proof)
    # A proof is bound to the row as it reads now, and to the checkpoint's root.
    inclusion = ledger.prove_inclusion(events[2].seq)
    assert inclusion is not None
    edited = AuditEvent.objects.get(seq=events[2].seq)
    edited.reason = "edited"
    with pytest.raises(merkle.ProofError, match="no longer matches"):
        inclusion.verify(edited)
    with pytest.raises(merkle.ProofError):
        ledger.Inclusion(
            inclusion.event_seq, inclusion.index, inclusion.leaf_hash, inclusion.checkpoint, inclusion.proof[:-1]
        ).verify(events[2])
    with pytest.raises(merkle.ProofError):
        merkle.verify_consistency(old.tree_size, latest.tree_size, old.root(), latest.root(), [_flip(proof[0])])
    assert ledger.prove_inclusion(_seed(1, "g")[0].seq) is None  # not sealed yet


# --- Tampering --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_edited_sealed_row_is_detected() -> None:
    events = _seed(4)
    ledger.seal()
    _tamper("UPDATE portal_auditevent SET outcome = 'denied' WHERE seq = %s", [events[1].seq])
    broken = list(audit.verify())
    assert [(item.seq, item.index, item.problem) for item in broken] == [
        (events[1].seq, 1, "the row no longer matches its sealed leaf (it was edited)")
    ]
    with pytest.raises(CommandError, match="broken in 1 place"):
        call_command("audit_verify", stdout=open("/dev/null", "w"))  # noqa: SIM115


@pytest.mark.django_db
def test_a_deleted_sealed_row_is_detected() -> None:
    events = _seed(4)
    ledger.seal()
    _tamper("DELETE FROM portal_auditevent WHERE seq = %s", [events[2].seq])
    assert [(item.index, item.problem) for item in audit.verify()] == [
        (2, "the audit row of this leaf is missing (deleted)")
    ]
    # Removing its leaf as well leaves a hole in the ledger.
    _tamper('DELETE FROM portal_ledgerleaf WHERE "index" = 2')
    assert [(item.index, item.problem) for item in audit.verify()] == [(2, "leaves 2..2 are missing (deleted)")]


@pytest.mark.django_db
def test_a_rewritten_leaf_and_a_reordered_ledger_are_detected() -> None:
    events = _seed(4)
    ledger.seal()
    # Swap two leaves, hashes and all: each leaf still matches its row, but no root does.
    _tamper('UPDATE portal_ledgerleaf SET "index" = -1 WHERE "index" = 1')
    _tamper('UPDATE portal_ledgerleaf SET "index" = 1 WHERE "index" = 2')
    _tamper('UPDATE portal_ledgerleaf SET "index" = 2 WHERE "index" = -1')
    problems = _problems()
    assert "checkpoint 4's root does not match the rows under it" in problems
    assert "the stored tree nodes do not match the leaves" in problems
    assert events  # the rows themselves are untouched


@pytest.mark.django_db
def test_a_forged_checkpoint_and_an_untrusted_key_are_detected(other_signing_key: Any) -> None:
    _seed(3)
    ledger.seal()
    _tamper("UPDATE portal_ledgercheckpoint SET root_hash = %s", ["00" * 32])
    problems = _problems()
    assert "the signature of checkpoint 3 does not verify" in problems
    assert "checkpoint 3's root does not match the rows under it" in problems
    # A checkpoint re-signed with another key is refused: trust comes from the configured keys.
    other_signing_key.PORTAL_AUDIT_SIGNING_KEY = OTHER_KEY
    ledger.reset_keys()
    forged = ledger.sign_checkpoint(3, ledger.root_hash(3), ledger.latest_checkpoint().timestamp)  # type: ignore[union-attr]
    other_signing_key.PORTAL_AUDIT_SIGNING_KEY = "C" * 43 + "="
    ledger.reset_keys()
    with pytest.raises(ledger.CheckpointError, match="untrusted key"):
        forged.verify_signature()
    # ... unless that key is trusted (a retired signing key).
    other_public = ledger.public_key_bytes(Ed25519PrivateKey.from_private_bytes(b"\x07" * 32).public_key())
    other_signing_key.PORTAL_AUDIT_TRUSTED_KEYS = [base64.b64encode(other_public).decode()]
    forged.verify_signature()
    # A signature copied onto another tree size fails.
    moved = ledger.Checkpoint(4, forged.root_hash, forged.timestamp, forged.key_id, forged.signature)
    with pytest.raises(ledger.CheckpointError, match="does not verify"):
        moved.verify_signature()


@pytest.mark.django_db
def test_every_stored_checkpoint_is_checked_on_request() -> None:
    _seed(3)
    ledger.seal()
    _seed(2, "f")
    ledger.seal()
    _tamper("UPDATE portal_ledgercheckpoint SET root_hash = %s WHERE tree_size = 3", ["00" * 32])
    # The latest signed root covers every leaf; an older checkpoint only matters if it was kept.
    assert _problems() == []
    problems = [item.problem for item in audit.verify(all_checkpoints=True)]
    assert problems == [
        "the signature of checkpoint 3 does not verify",
        "checkpoint 3's root does not match the rows under it",
    ]
    with pytest.raises(CommandError, match="broken in 2 place"):
        call_command("audit_verify", "--all-checkpoints", stdout=open("/dev/null", "w"))  # noqa: SIM115


@pytest.mark.django_db
def test_a_truncated_tail_is_detected_against_an_exported_checkpoint(tmp_path: Path) -> None:
    events = _seed(6)
    exported = tmp_path / "checkpoint.json"
    call_command("audit_checkpoint", "--seal", "--export", str(exported), stdout=open("/dev/null", "w"))  # noqa: SIM115
    data = json.loads(exported.read_text())
    assert data["tree_size"] == 6 and data["key_id"] and data["signature"] and data["public_key"]
    call_command("audit_verify", "--checkpoint", str(exported), stdout=open("/dev/null", "w"))  # noqa: SIM115
    # Someone with the database drops the last two rows with their leaves, nodes and checkpoints,
    # and the ledger left behind is perfectly consistent with itself...
    for event in events[4:]:
        _tamper("DELETE FROM portal_ledgerleaf WHERE event_seq = %s", [event.seq])
        _tamper("DELETE FROM portal_auditevent WHERE seq = %s", [event.seq])
    _tamper('DELETE FROM portal_ledgernode WHERE (("index" + 1) << level) > 4')
    _tamper("DELETE FROM portal_ledgercheckpoint")
    ledger.seal()
    _seed(1, "later")
    ledger.seal()
    assert _problems() == []
    # ... but not with the checkpoint kept elsewhere.
    problems = ledger.verify_against(ledger.Checkpoint.from_json(data))
    assert problems == ["the ledger has 5 leaves, fewer than the 6 of the checkpoint (truncated)"]
    with pytest.raises(CommandError, match="broken in 1 place"):
        call_command("audit_verify", "--checkpoint", str(exported), stdout=open("/dev/null", "w"))  # noqa: SIM115


@pytest.mark.django_db
def test_rewritten_history_is_detected_against_an_exported_checkpoint(tmp_path: Path) -> None:
    events = _seed(4)
    ledger.seal()
    kept = ledger.latest_checkpoint()
    assert kept is not None
    _seed(3, "f")
    ledger.seal()
    assert ledger.verify_against(kept) == []
    # The whole ledger is rebuilt around an edited row, and re-signed with the portal's own key:
    # self-consistent, but no longer an extension of the kept checkpoint.
    _tamper("UPDATE portal_auditevent SET reason = 'rewritten' WHERE seq = %s", [events[0].seq])
    for table in ("portal_ledgercheckpoint", "portal_ledgernode", "portal_ledgerleaf"):
        _tamper(f"DELETE FROM {table}")
    ledger.seal()
    assert _problems() == []
    problems = ledger.verify_against(kept)
    assert "the rows under the checkpoint's 4 leaves no longer hash to its root" in problems
    assert any(problem.startswith("the latest checkpoint is not consistent with this one") for problem in problems)


@pytest.mark.django_db
def test_exported_proofs_verify_and_fail_when_tampered(tmp_path: Path) -> None:
    events = _seed(5)
    old = tmp_path / "old.json"
    call_command("audit_checkpoint", "--seal", "--export", str(old), stdout=open("/dev/null", "w"))  # noqa: SIM115
    _seed(4, "f")
    inclusion, consistency = tmp_path / "inclusion.json", tmp_path / "consistency.json"
    call_command(
        "audit_checkpoint",
        "--seal",
        "--inclusion",
        str(events[3].seq),
        "--export",
        str(inclusion),
        stdout=open("/dev/null", "w"),  # noqa: SIM115
    )
    call_command(
        "audit_checkpoint",
        "--consistency-from",
        str(old),
        "--export",
        str(consistency),
        stdout=open("/dev/null", "w"),  # noqa: SIM115
    )
    call_command(
        "audit_verify",
        "--skip-ledger",
        "--proof",
        str(inclusion),
        "--proof",
        str(consistency),
        stdout=open("/dev/null", "w"),  # noqa: SIM115
    )
    for path in (inclusion, consistency):
        data = json.loads(path.read_text())
        data["proof"][0] = _flip(bytes.fromhex(data["proof"][0])).hex()
        path.write_text(json.dumps(data))
        with pytest.raises(CommandError, match="broken in 1 place"):
            call_command("audit_verify", "--skip-ledger", "--proof", str(path), stdout=open("/dev/null", "w"))  # noqa: SIM115


@pytest.mark.django_db
def test_derive_reads_only_sealed_rows_in_ledger_order() -> None:
    _seed(3)
    assert events_derive() == 3  # it seals first
    assert Watermark.objects.get(name=AUDIT_WATERMARK).value == 3 == ledger.tree_size()
    _seed(2, "f")
    assert events_derive() == 2
    assert events_derive() == 0
    assert Watermark.objects.get(name=AUDIT_WATERMARK).value == 5


# --- PostgreSQL: concurrency and commit-order gaps -----------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_and_sealing_neither_lose_nor_fork(needs_postgres: None) -> None:
    stop = threading.Event()
    sequencer = threading.Thread(target=ledger.run_sequencer, args=(stop,), kwargs={"interval": 0.01})
    sequencer.start()

    def append(worker: int) -> int:
        try:
            for i in range(25):
                audit.record_many(
                    [
                        audit.Entry(action="read", entity_type=audit.Resource.PATIENT, entity_id=f"w{worker}-{i}-{j}")
                        for j in range(2)
                    ],
                    actor=None,
                )
            return 50
        finally:
            connections.close_all()

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            assert sum(pool.map(append, range(8))) == 400
    finally:
        stop.set()
        sequencer.join()
    seal_until(400)
    assert AuditEvent.objects.count() == 400
    leaves = list(LedgerLeaf.objects.order_by("index").values_list("index", "event_id"))
    assert [index for index, _ in leaves] == list(range(400))
    assert sorted(seq for _, seq in leaves) == sorted(AuditEvent.objects.values_list("seq", flat=True))
    sizes = list(LedgerCheckpoint.objects.order_by("timestamp").values_list("tree_size", flat=True))
    assert sizes == sorted(sizes) and sizes[-1] == 400
    assert _problems() == []


@pytest.mark.django_db(transaction=True)
def test_a_row_committed_after_a_higher_one_was_sealed_is_sealed_too(needs_postgres: None) -> None:
    """B takes its transaction id first; A then inserts the lower seq; B inserts a higher seq and
    commits; the sequencer seals B while A is still open; A commits; nothing is skipped."""
    b_has_xid, a_inserted, b_committed, sealed = (threading.Event() for _ in range(4))
    seqs: dict[str, int] = {}

    def writer_a() -> None:
        try:
            b_has_xid.wait(5)
            with transaction.atomic():
                seqs["a"] = _seed(1, "a")[0].seq
                a_inserted.set()
                assert sealed.wait(10)
        finally:
            connections.close_all()

    def writer_b() -> None:
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_current_xact_id()")
                b_has_xid.set()
                assert a_inserted.wait(10)
                seqs["b"] = _seed(1, "b")[0].seq
            b_committed.set()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer_a), threading.Thread(target=writer_b)]
    for thread in threads:
        thread.start()
    try:
        assert b_committed.wait(10)
        assert seqs["a"] < seqs["b"]
        seal_until(1)
        # The incremental reader reads B only.
        assert events_derive() == 1
        assert list(LedgerLeaf.objects.values_list("event_id", flat=True)) == [seqs["b"]]
    finally:
        sealed.set()
        for thread in threads:
            thread.join()
    seal_until(2)
    assert events_derive() == 1  # A, sealed after B, is not passed over by the cursor
    assert list(LedgerLeaf.objects.order_by("index").values_list("event_id", flat=True)) == [seqs["b"], seqs["a"]]
    assert Watermark.objects.get(name=AUDIT_WATERMARK).value == 2
    assert _problems() == []


@pytest.mark.django_db(transaction=True)
def test_postgres_ledger_tables_are_append_only(needs_postgres: None) -> None:
    _seed(2)
    ledger.seal()
    for table in ("portal_ledgerleaf", "portal_ledgernode", "portal_ledgercheckpoint"):
        for sql in (
            f"UPDATE {table} SET hash = hash"
            if table != "portal_ledgercheckpoint"
            else f"UPDATE {table} SET root_hash = root_hash",
            f"DELETE FROM {table}",
            f"TRUNCATE {table}",
        ):
            with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(sql)


@pytest.mark.django_db(transaction=True)
def test_parallel_verification_finds_what_the_sequential_one_does(needs_postgres: None) -> None:
    events = _seed(21)
    # Values PostgreSQL escapes differently from Python (checked again in Python, and intact).
    audit.record(actor=None, action="read", entity_type=audit.Resource.PATIENT, entity_id="é\u2028\x7f", reason='"q"\\')
    seal_until(22)
    assert list(audit.verify()) == []
    assert list(ledger.verify(workers=2, chunk=4)) == []
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("UPDATE portal_auditevent SET reason = 'edited' WHERE seq = %s", [events[9].seq])
        cursor.execute("SET session_replication_role = DEFAULT")
    expected = [(events[9].seq, 9, "the row no longer matches its sealed leaf (it was edited)")]
    assert [(p.seq, p.index, p.problem) for p in ledger.verify(workers=2, chunk=4)] == expected
    assert [(p.seq, p.index, p.problem) for p in ledger.verify(workers=1)] == expected
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        cursor.execute('UPDATE portal_ledgerleaf SET "index" = 99 WHERE "index" = 13')
        cursor.execute("SET session_replication_role = DEFAULT")
    problems = [p.problem for p in ledger.verify(workers=2, chunk=4)]
    assert "leaves 13..13 are missing (deleted)" in problems


@pytest.mark.django_db(transaction=True)
def test_the_worker_seals_audit_rows_on_its_sequencer_thread(
    needs_postgres: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from messaging.worker import PortalWorker

    _seed(3)
    worker = PortalWorker(
        queue_names=["default"],
        interval=1,
        batch=False,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id="w-ledger",
    )

    def serve() -> None:  # instead of waiting for tasks: wait for the sequencer thread
        deadline = time.monotonic() + 30
        while ledger.tree_size() < 3 and time.monotonic() < deadline:
            time.sleep(0.05)

    monkeypatch.setattr(worker, "serve", serve)
    worker.run()
    assert ledger.tree_size() == 3
    assert not any(thread.name == "audit-sequencer" for thread in threading.enumerate())
