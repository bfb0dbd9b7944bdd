"""Coverage verified before its period starts waits (``pending_start``); the current plan stays active,
for the family too, until the first day of the new period in the child's time zone."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import time_machine

from care.models import Coverage
from portal.models import AuditEvent
from tests import care_data
from tests.conftest import World, app_client

NEW_YORK = ZoneInfo("America/New_York")  # Ada's time zone
# The new coverage starts on the first of a month at least a month ahead of the real clock (the
# personas' links start at the real now, so the tests only travel forward).
START = (datetime.now(UTC) + timedelta(days=60)).date().replace(day=1)
BEFORE = datetime.combine(START - timedelta(days=20), time(12, 0), tzinfo=NEW_YORK)
EVE_LATE = datetime.combine(START - timedelta(days=1), time(23, 30), tzinfo=NEW_YORK)  # still the day before
FIRST_DAY = datetime.combine(START, time(0, 30), tzinfo=NEW_YORK)


def _statuses(world: World, persona: str) -> list[tuple[str, str]]:
    rows = app_client(world.users[persona]).get(f"/api/v1/children/{world.ada.pk}/coverage").json()["items"]
    return sorted((row["payer"], row["status"]) for row in rows)


def test_future_coverage_waits_for_its_start_and_the_current_plan_stays_active(world: World) -> None:
    care_data.coverage(world.ada, world.guardian)
    base = f"/api/v1/children/{world.ada.pk}/coverage"
    with time_machine.travel(BEFORE, tick=False):
        submitted = app_client(world.guardian).post(
            base,
            data=json.dumps({"payer": "Next Payer", "member_id": "NP-1", "period_start": START.isoformat()}),
            content_type="application/json",
        )
        assert submitted.status_code == 201
        verified = app_client(world.admin).post(
            f"{base}/{submitted.json()['id']}/verify", data='{"accept": true}', content_type="application/json"
        )
        assert verified.status_code == 200 and verified.json()["status"] == "pending_start"
        family = [("Acme Health", "active"), ("Next Payer", "pending_start")]
        assert _statuses(world, "guardian") == family
    with time_machine.travel(EVE_LATE, tick=False):
        assert _statuses(world, "co_guardian") == family
    with time_machine.travel(FIRST_DAY, tick=False):
        assert _statuses(world, "guardian") == [("Next Payer", "active")]
        assert _statuses(world, "clinician") == [("Acme Health", "superseded"), ("Next Payer", "active")]
    # Nothing was written by reading: the next verification settles the stored statuses.
    assert Coverage.objects.get(payer="Acme Health").status == "active"


def test_verification_after_the_start_settles_the_stored_statuses(world: World) -> None:
    care_data.coverage(world.ada, world.guardian)
    scheduled = care_data.coverage(
        world.ada, world.guardian, payer="Next Payer", status="pending_start", period_start=START
    )
    third = care_data.coverage(world.ada, world.guardian, payer="Third Payer", status="pending")
    with time_machine.travel(FIRST_DAY, tick=False):
        rejected = app_client(world.admin).post(
            f"/api/v1/children/{world.ada.pk}/coverage/{third.pk}/verify",
            data='{"accept": false, "reason": "unreadable"}',
            content_type="application/json",
        )
        assert rejected.status_code == 200
    acme = Coverage.objects.get(payer="Acme Health")
    assert acme.status == "superseded"
    scheduled.refresh_from_db()
    assert scheduled.status == "active"
    # Every status written down is an audited write, by the staff member whose action settled it.
    assert _audit_reasons(acme) == ["superseded"]
    assert _audit_reasons(scheduled) == ["started"]


def _audit_reasons(coverage: Coverage) -> list[str]:
    rows = AuditEvent.objects.filter(entity_type="Coverage", entity_id=str(coverage.pk), action="update")
    return [row.reason for row in rows.order_by("seq")]


def test_a_new_submission_supersedes_the_pending_one_with_an_audit_row(world: World) -> None:
    first = care_data.coverage(world.ada, world.guardian, payer="First Payer", status="pending")
    answer = app_client(world.guardian).post(
        f"/api/v1/children/{world.ada.pk}/coverage",
        data=json.dumps({"payer": "Second Payer", "member_id": "SP-1"}),
        content_type="application/json",
    )
    assert answer.status_code == 201
    first.refresh_from_db()
    assert first.status == "superseded"
    row = AuditEvent.objects.get(entity_type="Coverage", entity_id=str(first.pk), action="update")
    assert (row.reason, row.actor_id, row.child_id) == ("superseded", world.guardian.pk, world.ada.pk)


def test_coverage_that_has_already_started_is_active_at_once(world: World) -> None:
    care_data.coverage(world.ada, world.guardian)
    base = f"/api/v1/children/{world.ada.pk}/coverage"
    with time_machine.travel(FIRST_DAY, tick=False):
        submitted = app_client(world.guardian).post(
            base,
            data=json.dumps({"payer": "Next Payer", "member_id": "NP-1", "period_start": START.isoformat()}),
            content_type="application/json",
        )
        verified = app_client(world.admin).post(
            f"{base}/{submitted.json()['id']}/verify", data='{"accept": true}', content_type="application/json"
        )
        assert verified.json()["status"] == "active"
        assert _statuses(world, "guardian") == [("Next Payer", "active")]
