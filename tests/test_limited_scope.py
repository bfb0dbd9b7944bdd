"""Limited scope reveals no diagnosis anywhere.

A guardian whose scope is limited (an adolescent's parent, by default from the 12th birthday) sees when
and where to bring the child, and nothing that names or implies the condition: no visit type, no
specialty department, no condition-named clinic, no preparation notes, no group "matching my child".
The scan walks every GET a limited-scope guardian can make (and the answers to what they may post, the
event stream, the calendar feed, emails and SMS) and fails on any condition name, code, medicine or
condition-named department or clinic.
"""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import time_machine
from django.core import mail
from django.test import Client, TestCase

from care.models import ScheduleException, WorkingHours
from messaging.groups.models import Group
from messaging.models import NotificationPreference
from messaging.sms import LocmemSmsBackend
from portal import services
from portal.conditions import CONDITIONS
from portal.models import CareTeamMembership, Child, Department, DepartmentMembership, GuardianLink, User
from tests.conftest import World, app_client, enrol_mfa, make_user
from tests.matrix_scenarios import scan_gets

EPILEPSY = "84757009"
DEPARTMENT = "Epilepsy & Seizure Service"
CLINIC = "Epilepsy clinic, 2nd floor"
MEDICINE = "Levetiracetam"
# A Tuesday morning in term time; Mina turned 14 in January.
NOW = datetime(2030, 6, 11, 14, 0, tzinfo=UTC)


def forbidden() -> list[str]:
    return [EPILEPSY, CONDITIONS[EPILEPSY], "epilep", "seizure", DEPARTMENT, CLINIC, MEDICINE]


def leaks(text: str) -> list[str]:
    lowered = text.lower()
    return [word for word in forbidden() if word.lower() in lowered]


def post(client: Client, url: str, body: dict[str, Any] | None = None) -> Any:
    """POST JSON and run the after-commit callbacks (event pushes, notifications) as a commit would."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        return client.post(url, data=json.dumps(body or {}), content_type="application/json")


class Scene:
    """Mina, 14, with epilepsy; Lin is her father (full-scope link, limited by the adolescent rule)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.department = Department.objects.create(code="epilepsy", name=DEPARTMENT)
        self.doctor = make_user("dr.quill@example.org", "Dr. Nadia Quill")
        enrol_mfa(self.doctor)
        DepartmentMembership.objects.create(department=self.department, clinician=self.doctor, role="doctor")
        self.child: Child = services.child_create(
            actor=None,
            name="Mina Lindqvist",
            mrn="MRN-LIMITED-0014",
            date_of_birth=date(2016, 1, 10),
            time_zone="UTC",
            conditions=[EPILEPSY],
        )
        CareTeamMembership.objects.create(
            child=self.child, clinician=self.doctor, department=self.department, role="primary"
        )
        self.parent = make_user("lin@example.org", "Lin Lindqvist", phone="+15550142")
        NotificationPreference.objects.create(user=self.parent, email=True, sms=True)
        GuardianLink.objects.create(guardian=self.parent, child=self.child, relationship="father", status="active")
        for weekday in range(7):
            WorkingHours.objects.create(
                clinician=self.doctor,
                department=self.department,
                location=CLINIC,
                weekday=weekday,
                start=time(8),
                end=time(18),
                time_zone="UTC",
                valid_from=NOW.date() - timedelta(days=10),
            )
        ScheduleException.objects.create(
            clinician=self.doctor,
            department=self.department,
            kind="on_call",
            start=NOW - timedelta(hours=1),
            end=NOW + timedelta(hours=10),
        )
        Group.objects.create(
            name="Epilepsy families",
            description="Living with seizures",
            condition_codes=[EPILEPSY],
            created_by=world.admin,
        )
        Group.objects.create(name="Sleep and bedtime", description="Bedtime routines", created_by=world.admin)
        self.doctor_client = app_client(self.doctor)
        self.parent_client = app_client(self.parent)
        self.base = f"/api/v1/children/{self.child.pk}"
        self.ids: dict[str, str] = {"child_id": str(self.child.pk)}

    def clinical_activity(self) -> None:
        """What the care team does: book, move, prescribe; the family confirms and writes."""
        start = NOW + timedelta(days=2)
        booked = post(
            self.doctor_client,
            f"{self.base}/appointments",
            {
                "clinician_id": str(self.doctor.pk),
                "start": start.isoformat(),
                "end": (start + timedelta(minutes=30)).isoformat(),
                "location": CLINIC,
                "visit_type": "Epilepsy follow-up",
                "department_id": str(self.department.pk),
                "preparation": "Bring the seizure diary.",
            },
        )
        assert booked.status_code == 201, booked.content
        self.ids["appointment_id"] = booked.json()["id"]
        moved = self.doctor_client.patch(
            f"{self.base}/appointments/{self.ids['appointment_id']}",
            data=json.dumps({"location": CLINIC + ", room 4"}),
            content_type="application/json",
        )
        assert moved.status_code == 200
        plan = post(
            self.doctor_client,
            f"{self.base}/medications",
            {
                "medication": MEDICINE,
                "dose_quantity": "2.5",
                "dose_unit": "mL",
                "schedule_kind": "every_n_hours",
                "interval_hours": 12,
                "start": (NOW - timedelta(days=3)).isoformat(),
            },
        )
        assert plan.status_code == 201, plan.content
        self.ids["plan_id"] = plan.json()["id"]

    def family_answers(self) -> list[Any]:
        """Every write a limited-scope guardian may make here, with its answer."""
        appointment = f"{self.base}/appointments/{self.ids['appointment_id']}"
        answers = [
            post(self.parent_client, f"{appointment}/confirm"),
            post(self.parent_client, f"{appointment}/change-request", {"action": "reschedule", "note": "Mornings"}),
        ]
        thread = post(
            self.parent_client,
            f"{self.base}/threads",
            {
                "subject": "Question",
                "topic": "scheduling",
                "body": "Can we come earlier?",
                "client_id": str(uuid.uuid4()),
            },
        )
        assert thread.status_code == 201, thread.content
        self.ids["thread_id"] = thread.json()["id"]
        reply = post(
            self.doctor_client,
            f"{self.base}/threads/{self.ids['thread_id']}/messages",
            {"body": "Yes, 9 o'clock works.", "client_id": str(uuid.uuid4())},
        )
        assert reply.status_code == 201, reply.content
        answers += [
            thread,
            post(
                self.parent_client,
                f"{self.base}/threads/{self.ids['thread_id']}/messages",
                {"body": "Thank you", "client_id": str(uuid.uuid4())},
            ),
            post(self.parent_client, f"{self.base}/threads/{self.ids['thread_id']}/read"),
        ]
        for answer in answers:
            assert answer.status_code < 300, answer.content
        return answers


def test_limited_scope_guardian_sees_no_diagnosis_anywhere(world: World) -> None:
    with time_machine.travel(NOW, tick=False):
        scene = Scene(world)
        scene.clinical_activity()
        mail.outbox.clear()
        LocmemSmsBackend.outbox.clear()
        answers = scene.family_answers()
        feed = post(scene.parent_client, "/api/v1/me/calendar-feed", {"include_doses": True})
        assert feed.status_code == 201
        token = feed.json()["url"].rsplit("/", 1)[1].removesuffix(".ics")
        ids = {
            **scene.ids,
            "token": token,
            "group_id": str(Group.objects.get(name="Epilepsy families").pk),
            "attachment_id": str(uuid.uuid4()),
            "result_id": str(uuid.uuid4()),
            "summary_id": str(uuid.uuid4()),
        }
        me = scene.parent_client.get("/api/v1/me").json()
        assert me["children_as_guardian"][0]["scope"] == "limited"

        stranger = world.client("stranger")
        found, walked = scan_gets(scene.parent_client, stranger, ids, leaks)
        for answer in answers:
            hit = leaks(answer.content.decode())
            if hit:
                found[answer.request["PATH_INFO"]] = hit
        # The care team's reply was notified by email and SMS (the parent is not connected).
        assert any(scene.parent.email in message.to for message in mail.outbox)
        assert any(sent.to == scene.parent.phone for sent in LocmemSmsBackend.outbox)
        for message in mail.outbox:
            hit = leaks(f"{message.subject}\n{message.body}")
            if hit:
                found["email"] = hit
        for sent in LocmemSmsBackend.outbox:
            hit = leaks(sent.body)
            if hit:
                found["sms"] = hit
        assert walked >= 30
        assert found == {}

        # What the limited view does show: when and where (a neutral address), and that it is a visit.
        upcoming = scene.parent_client.get(f"{scene.base}/appointments").json()["items"]
        assert len(upcoming) == 1
        shown = upcoming[0]
        assert shown["visit_type"] == "Appointment" and shown["department"] is None and shown["preparation"] == ""
        assert shown["start"] and shown["location"]
        assert shown["limited_view"] is True
        # The event stream told the family about the visit (ids and states only).
        events = scene.parent_client.get("/api/v1/events?after=0").json()
        assert any(event["type"] == "appointment.changed" for event in events["events"])
        # The care team still sees everything.
        full = scene.doctor_client.get(f"{scene.base}/appointments").json()["items"][0]
        assert full["visit_type"] == "Epilepsy follow-up" and full["department"] == DEPARTMENT


def test_group_discovery_ignores_children_seen_at_limited_scope(world: World) -> None:
    """The probe's finding: wei.chen's groups marked the epilepsy group as matching Mei."""
    with time_machine.travel(NOW, tick=False):
        scene = Scene(world)
        stranger = world.client("stranger")
        mine = scene.parent_client.get("/api/v1/groups").json()["items"]
        assert not any(group["matches_my_children"] for group in mine)
        assert mine == stranger.get("/api/v1/groups").json()["items"]  # nothing a stranger would not see
        epilepsy = Group.objects.get(name="Epilepsy families")
        detail = scene.parent_client.get(f"/api/v1/groups/{epilepsy.pk}").json()
        assert detail["matches_my_children"] is False
        # With an adolescent exception (full scope) the match is shown, to the parent alone.
        GuardianLink.objects.filter(guardian=scene.parent).update(adolescent_exception=True)
        assert scene.parent_client.get("/api/v1/groups").json()["items"][0]["name"] == "Epilepsy families"
        assert scene.parent_client.get(f"/api/v1/groups/{epilepsy.pk}").json()["matches_my_children"] is True


def test_calendar_feed_names_no_clinic_for_any_scope(world: World) -> None:
    """The feed ends up in shared and synced calendars: a neutral place for every family."""
    with time_machine.travel(NOW, tick=False):
        scene = Scene(world)
        GuardianLink.objects.filter(guardian=scene.parent).update(adolescent_exception=True)
        scene.clinical_activity()
        url = post(scene.parent_client, "/api/v1/me/calendar-feed", {"include_doses": True}).json()["url"]
        body = Client().get("/api/v1/calendar/" + url.rsplit("/", 1)[1]).content.decode()
        assert "BEGIN:VEVENT" in body and "Appointment for Mina" in body
        assert leaks(body) == []
        assert "LOCATION:" in body


def test_demo_limited_scope_guardian_sees_no_diagnosis(db: Any) -> None:
    """The probe's case on the demo hospital: wei.chen (limited scope, Mei is 14, epilepsy)."""
    with time_machine.travel(NOW, tick=False):
        from django.core.management import call_command

        from fixtures import demo

        call_command("load_demo", stdout=io.StringIO())
        wei = app_client(User.objects.get(email="wei.chen@demo.family"))
        john = app_client(User.objects.get(email="john.smith@demo.family"))  # sees no child
        mei = Child.objects.get(guardian_links__guardian__email="wei.chen@demo.family")
        general = Department.objects.get(code="general-paediatrics")
        words = [demo.EPILEPSY, CONDITIONS[demo.EPILEPSY], "epilep", "seizure", general.name, MEDICINE]

        def check(text: str) -> list[str]:
            return [word for word in words if word.lower() in text.lower()]

        url = post(wei, "/api/v1/me/calendar-feed", {"include_doses": True}).json()["url"]
        ids = {
            "child_id": str(mei.pk),
            "appointment_id": str(mei.appointments.get().pk),
            "plan_id": str(mei.medication_plans.get().pk),
            "thread_id": str(uuid.uuid4()),
            "attachment_id": str(uuid.uuid4()),
            "result_id": str(uuid.uuid4()),
            "summary_id": str(uuid.uuid4()),
            "group_id": str(Group.objects.order_by("name").first().pk),  # type: ignore[union-attr]
            "token": url.rsplit("/", 1)[1].removesuffix(".ics"),
        }
        found, walked = scan_gets(wei, john, ids, check)
        assert walked >= 30
        assert found == {}
        # The limited view still says when Mei's visit is.
        assert wei.get(f"/api/v1/children/{mei.pk}/appointments").json()["items"][0]["visit_type"] == "Appointment"
