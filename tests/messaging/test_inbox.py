"""The clinician inbox (filters, reply-by order), response-time statistics per pool, and the
escalation of overdue threads to the pool lead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command

from messaging.models import Notification, Thread, ThreadAssignment, UserEvent
from portal.models import AuditEvent, CareTeamMembership
from tests.canaries import CANARIES
from tests.conftest import World
from tests.messaging import data

WEDNESDAY_10 = datetime(2027, 6, 9, 14, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _hours(settings):
    settings.PORTAL_BUSINESS_HOURS = {"time_zone": "America/New_York"}


def test_inbox_lists_my_pools_threads_by_reply_by_with_filters(world: World) -> None:
    with time_machine.travel(WEDNESDAY_10, tick=False):
        routine = data.start_thread(world, topic="scheduling").json()
        urgent = data.start_thread(world, body="he had a seizure").json()
        answered = data.start_thread(world, topic="billing").json()
        data.reply(world, answered["id"])
        inbox = world.client("clinician").get("/api/v1/inbox").json()["items"]
    assert [t["id"] for t in inbox] == [urgent["id"], routine["id"], answered["id"]]
    assert inbox[0]["child_name"] == world.ada.name and inbox[0]["priority"] == "urgent"
    client = world.client("clinician")
    routine_only = client.get("/api/v1/inbox?priority=routine&status=awaiting_care_team").json()["items"]
    assert [t["id"] for t in routine_only] == [routine["id"]]
    assert [t["id"] for t in client.get("/api/v1/inbox?topic=billing").json()["items"]] == [answered["id"]]
    assert client.get(f"/api/v1/inbox?child_id={world.ben.pk}").json()["items"] == []
    assert client.get("/api/v1/inbox?priority=high").json()["code"] == "invalid_input"
    # A clinician of another team sees none of it; a guardian's inbox is empty.
    assert world.client("other_clinician").get("/api/v1/inbox").json()["items"] == []
    assert world.client("guardian").get("/api/v1/inbox").json()["items"] == []


def test_response_time_statistics_per_pool(world: World) -> None:
    waits = [10, 20, 30, 40, 50, 60, 70, 80, 90, 600]  # minutes to the first reply
    for minutes in waits:
        with time_machine.travel(WEDNESDAY_10, tick=False):
            world.clients.clear()
            thread = data.start_thread(world).json()
        with time_machine.travel(WEDNESDAY_10 + timedelta(minutes=minutes), tick=False):
            world.clients.clear()
            data.reply(world, thread["id"])
            data.reply(world, thread["id"])  # only the first reply counts
    with time_machine.travel(WEDNESDAY_10, tick=False):
        world.clients.clear()
        data.start_thread(world)  # not answered yet
        data.start_thread(world, persona="clinician")  # opened by the care team: not counted
    with time_machine.travel(WEDNESDAY_10 + timedelta(days=1), tick=False):
        world.clients.clear()
        stats = world.client("clinician").get("/api/v1/inbox/stats?days=7").json()["items"]
    [pool] = stats
    assert pool["pool_id"] == str(world.department.pk)
    assert pool["threads"] == 11 and pool["answered"] == 10
    assert pool["median_seconds"] == 55 * 60 and pool["p90_seconds"] == 90 * 60
    assert world.client("clinician").get("/api/v1/inbox/stats?days=0").json()["code"] == "invalid_days"


def test_overdue_threads_escalate_to_the_pool_lead(world: World) -> None:
    # Another clinician of the pool holds the thread; the pool lead is world.clinician.
    with time_machine.travel(WEDNESDAY_10, tick=False):
        thread = data.start_thread(world, body="Adaline Canaryfeather question").json()
    due = datetime.fromisoformat(thread["reply_by"])
    out = StringIO()
    with time_machine.travel(due - timedelta(minutes=1), tick=False):
        call_command("escalate_overdue", stdout=out)
    assert "escalated 0" in out.getvalue()
    with time_machine.travel(due + timedelta(minutes=1), tick=False):
        call_command("escalate_overdue", stdout=out)
        call_command("escalate_overdue", stdout=out)  # once only
    row = Thread.objects.get(pk=thread["id"])
    assert row.escalated_to == world.clinician and row.escalated_at is not None
    assert list(ThreadAssignment.objects.filter(thread=row).values_list("kind", flat=True)) == ["escalate"]
    note = Notification.objects.get(user=world.clinician, kind="escalation")
    assert note.status == "pending"  # sent by the task after commit (a command has no request cycle)
    assert UserEvent.objects.filter(user=world.clinician, type="notification").exists()
    assert AuditEvent.objects.filter(reason="escalate_overdue", entity_id=str(row.pk)).exists()
    assert not any(canary in note.kind for canary in CANARIES)


def test_escalation_runs_as_a_task(world: World) -> None:
    with time_machine.travel(WEDNESDAY_10, tick=False):
        data.start_thread(world)
    CareTeamMembership.objects.filter(clinician=world.clinician).update(role="primary")
    out = StringIO()
    with time_machine.travel(WEDNESDAY_10 + timedelta(days=5), tick=False):
        call_command("escalate_overdue", "--enqueue", stdout=out)
    assert "queued task" in out.getvalue()
    assert Thread.objects.filter(escalated_at__isnull=False).count() == 1
