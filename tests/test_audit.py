"""The audit trail: a sealed ledger that exposes tampering, the family's access log, the export."""

from __future__ import annotations

import csv
import io
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, connections, transaction
from django.test import Client
from django.utils import timezone

from portal import audit, ledger, merkle
from portal.models import AuditEvent, LedgerLeaf
from portal.vocabulary import Resource
from tests.conftest import ADA_MRN, ADA_NAME, World, app_client, build_world
from tests.test_ledger import seal_until


def _seed(count: int = 6) -> list[AuditEvent]:
    return [
        audit.record(actor=None, action=audit.Action.READ, entity_type=Resource.PATIENT, entity_id=f"e{i}")
        for i in range(count)
    ]


def _problems() -> list[tuple[int | None, str]]:
    return [(item.seq, item.problem) for item in audit.verify()]


def _tamper(sql: str, params: list[Any]) -> None:
    """Change the table behind the application's back (the PostgreSQL trigger is bypassed as an
    attacker with superuser rights would)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(sql, params)


@pytest.fixture
def chain(db: Any) -> list[AuditEvent]:
    events = _seed()
    ledger.seal()
    assert _problems() == []
    return events


def test_intact_chain_verifies(chain: list[AuditEvent], capsys: Any) -> None:
    call_command("audit_verify")
    assert "intact" in capsys.readouterr().out


def test_edited_field_is_detected(chain: list[AuditEvent]) -> None:
    _tamper("UPDATE portal_auditevent SET outcome = 'denied' WHERE seq = %s", [chain[2].seq])
    assert _problems() == [(chain[2].seq, "the row no longer matches its sealed leaf (it was edited)")]
    with pytest.raises(CommandError, match="broken in 1 place"):
        call_command("audit_verify")


def test_deleted_row_is_detected(chain: list[AuditEvent]) -> None:
    _tamper("DELETE FROM portal_ledgerleaf WHERE event_seq = %s", [chain[3].seq])
    _tamper("DELETE FROM portal_auditevent WHERE seq = %s", [chain[3].seq])
    problems = [(item.index, item.problem) for item in audit.verify()]
    assert problems[0] == (3, "leaves 3..3 are missing (deleted)")


def test_inserted_row_is_detected(chain: list[AuditEvent]) -> None:
    # A forger makes room after leaf 2 by renumbering the tail, then inserts a row with a leaf
    # consistent with it. Every leaf matches its row, but the tree no longer gives the signed root.
    for index in reversed(range(3, len(chain))):
        _tamper('UPDATE portal_ledgerleaf SET "index" = "index" + 1 WHERE "index" = %s', [index])
    forged = audit.record(actor=None, action="read", entity_type=Resource.PATIENT, entity_id="forged")
    leaf = ledger.entry_leaf_hash(forged.entry()).hex()
    _tamper('INSERT INTO portal_ledgerleaf ("index", event_seq, hash) VALUES (3, %s, %s)', [forged.seq, leaf])
    problems = {problem for _, problem in _problems()}
    assert f"checkpoint {len(chain)}'s root does not match the rows under it" in problems
    assert "the stored tree nodes do not match the leaves" in problems


def test_swapped_rows_are_detected(chain: list[AuditEvent]) -> None:
    a, b = chain[1], chain[2]
    _tamper("UPDATE portal_ledgerleaf SET event_seq = -1 WHERE event_seq = %s", [a.seq])
    _tamper("UPDATE portal_ledgerleaf SET event_seq = %s WHERE event_seq = %s", [a.seq, b.seq])
    _tamper("UPDATE portal_ledgerleaf SET event_seq = %s WHERE event_seq = -1", [b.seq])
    problems = dict(_problems())
    assert a.seq in problems and b.seq in problems


def test_rows_written_before_the_ledger_keep_their_chain(db: Any) -> None:
    """Rows from before the ledger carry a hash chain, still walked; they are sealed like any row."""
    previous = audit.GENESIS
    legacy = []
    for i in range(3):
        event = AuditEvent(recorded_at=timezone.now(), action="read", entity_type="Patient", entity_id=f"old{i}")
        event.save()
        event.prev_hash = previous
        event.hash = previous = audit.chain_hash(previous, event.entry())
        _tamper(
            "UPDATE portal_auditevent SET prev_hash = %s, hash = %s WHERE seq = %s",
            [event.prev_hash, event.hash, event.seq],
        )
        legacy.append(event)
    ledger.seal()
    assert _problems() == []
    _tamper("UPDATE portal_auditevent SET prev_hash = %s WHERE seq = %s", ["f" * 64, legacy[1].seq])
    assert _problems() == [
        (legacy[1].seq, "does not follow the row before it (a row was deleted, inserted or reordered)"),
        (legacy[1].seq, "its content no longer matches its hash (the row was edited or inserted)"),
    ]


def test_rows_name_entities_never_values(world: World) -> None:
    world.client("clinician").get(f"/api/v1/children/{world.ada.pk}")
    dumped = json.dumps([row.entry() for row in AuditEvent.objects.all()])
    for secret in (ADA_NAME, ADA_MRN, "Adaline", "46635009"):
        assert secret not in dumped


def test_every_api_read_of_a_child_is_audited(world: World) -> None:
    before = AuditEvent.objects.filter(child_id=world.ada.pk, action="read").count()
    world.client("guardian").get(f"/api/v1/children/{world.ada.pk}")
    world.client("clinician").get("/api/v1/children")
    world.client("co_guardian").get(f"/api/v1/children/{world.ada.pk}/care-team")
    reads = AuditEvent.objects.filter(child_id=world.ada.pk, action="read").order_by("seq")
    assert reads.count() == before + 3
    actors = list(reads.values_list("actor_id", flat=True))[-3:]
    assert actors == [world.guardian.pk, world.clinician.pk, world.co_guardian.pk]


def test_access_log_names_clinicians_by_role_and_name(world: World) -> None:
    world.client("clinician").get(f"/api/v1/children/{world.ada.pk}")
    world.client("co_guardian").get(f"/api/v1/children/{world.ada.pk}")
    world.client("other_guardian").get(f"/api/v1/children/{world.ada.pk}")  # a denied attempt
    log = world.client("guardian").get(f"/api/v1/children/{world.ada.pk}/access-log").json()
    seen = {(entry["actor_name"], entry["actor_role"], entry["action"]) for entry in log["entries"]}
    assert ("Dr. Cleo Clinician", "care team (primary clinician)", "read") in seen
    assert ("Carl Coguardian", "guardian (father)", "read") in seen
    # Denials name no child (the id was possibly guessed), so they never reach a family's log.
    assert not any(entry["actor_name"] == "Olga Otherfamily" for entry in log["entries"])


def test_access_log_pages(world: World) -> None:
    for _ in range(5):
        world.client("clinician").get(f"/api/v1/children/{world.ada.pk}")
    first = world.client("guardian").get(f"/api/v1/children/{world.ada.pk}/access-log?limit=3").json()
    assert len(first["entries"]) == 3 and first["next_before"] is not None
    second = (
        world.client("guardian")
        .get(f"/api/v1/children/{world.ada.pk}/access-log?limit=3&before={first['next_before']}")
        .json()
    )
    assert max(e["seq"] for e in second["entries"]) < min(e["seq"] for e in first["entries"])
    bad = world.client("guardian").get(f"/api/v1/children/{world.ada.pk}/access-log?limit=0")
    assert bad.status_code == 422


def test_limited_scope_guardian_cannot_read_the_access_log(world: World) -> None:
    link = world.links["co_guardian"]
    link.scope = "limited"
    link.save(update_fields=["scope"])
    assert world.client("co_guardian").get(f"/api/v1/children/{world.ada.pk}/access-log").status_code == 404


def _export(client: Client, fmt: str, **extra: str) -> Any:
    start = (timezone.now() - timedelta(days=1)).isoformat()
    end = (timezone.now() + timedelta(days=1)).isoformat()
    return client.get("/api/v1/audit/export", {"start": start, "end": end, "format": fmt, **extra})


def test_administrator_exports_a_period_as_csv_and_json(world: World) -> None:
    world.client("guardian").get(f"/api/v1/children/{world.ada.pk}")
    response = _export(world.client("admin"), "csv")
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows and {"seq", "actor", "action", "child", "leaf_index", "leaf_hash"} <= set(rows[0])
    assert ADA_NAME not in text and ADA_MRN not in text
    lines = b"".join(_export(world.client("admin"), "json").streaming_content).decode().splitlines()
    entries = [json.loads(line) for line in lines]
    # An export verifies on its own: each entry hashes to its leaf, and each leaf is proven to be in
    # the signed ledger (audit_checkpoint --inclusion).
    checkpoint = ledger.latest_checkpoint()
    assert checkpoint is not None and entries
    for item in entries:
        leaf = item.pop("leaf_hash")
        index = item.pop("leaf_index")
        item.pop("prev_hash"), item.pop("hash")
        assert ledger.entry_leaf_hash(item).hex() == leaf
        proof = ledger.inclusion_proof(index, checkpoint.tree_size)
        merkle.verify_inclusion(bytes.fromhex(leaf), index, checkpoint.tree_size, proof, checkpoint.root())
    assert AuditEvent.objects.filter(action="export", actor_id=world.admin.pk).count() == 2


@pytest.mark.parametrize("persona", ["guardian", "clinician", "other_clinician", "stranger", "revoked_guardian"])
def test_export_is_for_administrators_only(world: World, persona: str) -> None:
    denials = AuditEvent.objects.filter(action="deny").count()
    response = _export(world.client(persona), "csv")
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert AuditEvent.objects.filter(action="deny").count() == denials + 1
    assert Client().get("/api/v1/audit/export").status_code == 401


def test_export_rejects_a_bad_period(world: World) -> None:
    now = timezone.now()
    response = world.client("admin").get(
        "/api/v1/audit/export", {"start": now.isoformat(), "end": (now - timedelta(days=1)).isoformat()}
    )
    assert response.status_code == 422 and response.json()["code"] == "invalid_period"


@pytest.mark.django_db(transaction=True)
def test_postgres_trigger_rejects_update_and_delete(needs_postgres: None) -> None:
    event = _seed(1)[0]
    for sql in (
        "UPDATE portal_auditevent SET reason = 'x' WHERE seq = %s",
        "DELETE FROM portal_auditevent WHERE seq = %s",
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [event.seq])


@pytest.mark.django_db(transaction=True)
def test_two_hundred_concurrent_audited_requests_keep_one_chain(needs_postgres: None) -> None:
    world = build_world()
    clients = [app_client(world.guardian) for _ in range(8)] + [app_client(world.clinician) for _ in range(8)]
    before = AuditEvent.objects.count()

    def hit(index: int) -> int:
        try:
            return clients[index % len(clients)].get(f"/api/v1/children/{world.ada.pk}").status_code
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(hit, range(200)))
    assert statuses == [200] * 200
    assert AuditEvent.objects.count() == before + 200
    # Every row is sealed once, in one unbroken order.
    seal_until(AuditEvent.objects.count())
    leaves = list(LedgerLeaf.objects.order_by("index").values_list("index", "event_id"))
    assert [index for index, _ in leaves] == list(range(len(leaves)))
    assert sorted(seq for _, seq in leaves) == sorted(AuditEvent.objects.values_list("seq", flat=True))
    assert _problems() == []


@pytest.mark.django_db
def test_held_appends_are_written_together_and_a_discarded_part_leaves_nothing(monkeypatch) -> None:
    monkeypatch.setattr(audit, "HELD_ROWS_PER_INSERT", 2)
    with transaction.atomic(), audit.held() as rows:
        audit.record(actor=None, action=audit.Action.CREATE, entity_type=Resource.OBSERVATION, entity_id="kept-1")
        mark = rows.mark()
        audit.record(actor=None, action=audit.Action.CREATE, entity_type=Resource.OBSERVATION, entity_id="dropped")
        rows.discard(mark)
        audit.record_many(
            [
                audit.Entry(action=audit.Action.UPDATE, entity_type=Resource.OBSERVATION, entity_id=f"kept-{i}")
                for i in (2, 3)
            ],
            actor=None,
        )
        assert not AuditEvent.objects.exists()  # held until flushed
        rows.flush()
    assert list(AuditEvent.objects.order_by("seq").values_list("entity_id", "action")) == [
        ("kept-1", "create"),
        ("kept-2", "update"),
        ("kept-3", "update"),
    ]
    # The block's end writes what is still held; a block that fails drops it (its transaction rolls
    # back); outside a block, appends are written at once again.
    with transaction.atomic(), audit.held():
        audit.record(actor=None, action=audit.Action.READ, entity_type=Resource.PATIENT, entity_id="at-end")
    with pytest.raises(ZeroDivisionError), transaction.atomic(), audit.held():
        audit.record(actor=None, action=audit.Action.READ, entity_type=Resource.PATIENT, entity_id="failed")
        _ = 1 / 0
    audit.record(actor=None, action=audit.Action.READ, entity_type=Resource.PATIENT, entity_id="now")
    expected = {"kept-1", "kept-2", "kept-3", "at-end", "now"}
    assert set(AuditEvent.objects.values_list("entity_id", flat=True)) == expected
