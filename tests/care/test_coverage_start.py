"""Coverage verified before its period starts waits (``pending_start``); the current plan stays active,
for the family too, until the first day of the new period in the child's time zone."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import time_machine

from care.models import Coverage
from tests import care_data
from tests.conftest import World, app_client

JUNE_10 = datetime(2027, 6, 10, 16, 0, tzinfo=UTC)
JUNE_30_LATE_NEW_YORK = datetime(2027, 7, 1, 3, 30, tzinfo=UTC)  # 23:30 on 30 June in New York
JULY_1_NEW_YORK = datetime(2027, 7, 1, 4, 30, tzinfo=UTC)  # 00:30 on 1 July in New York


def _statuses(world: World, persona: str) -> list[tuple[str, str]]:
    rows = app_client(world.users[persona]).get(f"/api/v1/children/{world.ada.pk}/coverage").json()
    return sorted((row["payer"], row["status"]) for row in rows)


def test_future_coverage_waits_for_its_start_and_the_current_plan_stays_active(world: World) -> None:
    care_data.coverage(world.ada, world.guardian)
    base = f"/api/v1/children/{world.ada.pk}/coverage"
    with time_machine.travel(JUNE_10, tick=False):
        submitted = app_client(world.guardian).post(
            base,
            data=json.dumps({"payer": "Next Payer", "member_id": "NP-1", "period_start": "2027-07-01"}),
            content_type="application/json",
        )
        assert submitted.status_code == 201
        verified = app_client(world.admin).post(
            f"{base}/{submitted.json()['id']}/verify", data='{"accept": true}', content_type="application/json"
        )
        assert verified.status_code == 200 and verified.json()["status"] == "pending_start"
        family = [("Acme Health", "active"), ("Next Payer", "pending_start")]
        assert _statuses(world, "guardian") == family
    with time_machine.travel(JUNE_30_LATE_NEW_YORK, tick=False):
        assert _statuses(world, "co_guardian") == family
    with time_machine.travel(JULY_1_NEW_YORK, tick=False):
        assert _statuses(world, "guardian") == [("Next Payer", "active")]
        assert _statuses(world, "clinician") == [("Acme Health", "superseded"), ("Next Payer", "active")]
    # Nothing was written by reading: the next verification settles the stored statuses.
    assert Coverage.objects.get(payer="Acme Health").status == "active"


def test_verification_after_the_start_settles_the_stored_statuses(world: World) -> None:
    care_data.coverage(world.ada, world.guardian)
    scheduled = care_data.coverage(
        world.ada, world.guardian, payer="Next Payer", status="pending_start", period_start=datetime(2027, 7, 1).date()
    )
    third = care_data.coverage(world.ada, world.guardian, payer="Third Payer", status="pending")
    with time_machine.travel(JULY_1_NEW_YORK, tick=False):
        rejected = app_client(world.admin).post(
            f"/api/v1/children/{world.ada.pk}/coverage/{third.pk}/verify",
            data='{"accept": false, "reason": "unreadable"}',
            content_type="application/json",
        )
        assert rejected.status_code == 200
    assert Coverage.objects.get(payer="Acme Health").status == "superseded"
    scheduled.refresh_from_db()
    assert scheduled.status == "active"


def test_coverage_that_has_already_started_is_active_at_once(world: World) -> None:
    care_data.coverage(world.ada, world.guardian)
    base = f"/api/v1/children/{world.ada.pk}/coverage"
    with time_machine.travel(JULY_1_NEW_YORK, tick=False):
        submitted = app_client(world.guardian).post(
            base,
            data=json.dumps({"payer": "Next Payer", "member_id": "NP-1", "period_start": "2027-07-01"}),
            content_type="application/json",
        )
        verified = app_client(world.admin).post(
            f"{base}/{submitted.json()['id']}/verify", data='{"accept": true}', content_type="application/json"
        )
        assert verified.json()["status"] == "active"
        assert _statuses(world, "guardian") == [("Next Payer", "active")]
