"""The audit trail: a hash chain that exposes tampering, the family's access log, the export."""

from __future__ import annotations

import csv
import io
import itertools
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

from portal import audit
from portal.models import AuditEvent
from portal.vocabulary import Resource
from tests.conftest import ADA_MRN, ADA_NAME, World, app_client, build_world


def _seed(count: int = 6) -> list[AuditEvent]:
    return [
        audit.record(actor=None, action=audit.Action.READ, entity_type=Resource.PATIENT, entity_id=f"e{i}")
        for i in range(count)
    ]


def _problems() -> list[tuple[int, str]]:
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
    assert _problems() == []
    return events


def test_intact_chain_verifies(chain: list[AuditEvent], capsys: Any) -> None:
    call_command("audit_verify")
    assert "intact" in capsys.readouterr().out


def test_edited_field_is_detected(chain: list[AuditEvent]) -> None:
    _tamper("UPDATE portal_auditevent SET outcome = 'denied' WHERE seq = %s", [chain[2].seq])
    assert _problems() == [(chain[2].seq, "its content no longer matches its hash (the row was edited or inserted)")]
    with pytest.raises(CommandError, match="broken in 1 place"):
        call_command("audit_verify")


def test_deleted_row_is_detected(chain: list[AuditEvent]) -> None:
    _tamper("DELETE FROM portal_auditevent WHERE seq = %s", [chain[3].seq])
    problems = _problems()
    assert [seq for seq, _ in problems] == [chain[4].seq, chain[4].seq]
    assert "missing (deleted)" in problems[0][1]


def test_inserted_row_is_detected(chain: list[AuditEvent]) -> None:
    # A forger makes room after row 3 by renumbering the tail, then inserts a row whose own hash is
    # consistent with row 3. The old row 4 (now 5) no longer follows it, and its content changed.
    third = chain[2]
    for event in reversed(chain[3:]):
        _tamper("UPDATE portal_auditevent SET seq = seq + 1 WHERE seq = %s", [event.seq])
    forged = AuditEvent(
        seq=third.seq + 1,
        recorded_at=timezone.now(),
        action="read",
        entity_type="Patient",
        entity_id="forged",
        outcome="success",
        prev_hash=third.hash,
    )
    forged.hash = audit.chain_hash(forged.prev_hash, forged.entry())
    _tamper(
        "INSERT INTO portal_auditevent (seq, id, recorded_at, action, entity_type, entity_id, outcome, reason, "
        "client_address, user_agent, prev_hash, hash) VALUES (%s, %s, %s, 'read', 'Patient', 'forged', "
        "'success', '', '', '', %s, %s)",
        [forged.seq, str(forged.id), forged.recorded_at, forged.prev_hash, forged.hash],
    )
    problems = _problems()
    assert problems and problems[0][0] == third.seq + 2
    assert {problem for _, problem in problems} >= {
        "does not follow the row before it (a row was deleted, inserted or reordered)"
    }


def test_swapped_rows_are_detected(chain: list[AuditEvent]) -> None:
    a, b = chain[1], chain[2]
    _tamper("UPDATE portal_auditevent SET seq = -1 WHERE seq = %s", [a.seq])
    _tamper("UPDATE portal_auditevent SET seq = %s WHERE seq = %s", [a.seq, b.seq])
    _tamper("UPDATE portal_auditevent SET seq = %s WHERE seq = -1", [b.seq])
    problems = dict(_problems())
    assert a.seq in problems and b.seq in problems


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
    assert rows and {"seq", "actor", "action", "child", "hash"} <= set(rows[0])
    assert ADA_NAME not in text and ADA_MRN not in text
    lines = b"".join(_export(world.client("admin"), "json").streaming_content).decode().splitlines()
    entries = [json.loads(line) for line in lines]
    # An export verifies on its own: each row's hash chains from the one before.
    for previous, current in itertools.pairwise(entries):
        assert current["prev_hash"] == previous["hash"]
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
    assert _problems() == []
    seqs = list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
