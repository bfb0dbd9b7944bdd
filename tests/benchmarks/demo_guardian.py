"""Demo-like data shared by the request benchmarks: a guardian of 3 children, each with a care team
clinician, three upcoming visits, a fixed-times and an as-needed medicine, a few recorded doses and an
open refill. Call after ``django.setup()`` and ``migrate``."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from portal.models import User


@dataclass(frozen=True)
class Guardian:
    user_id: str
    session_token: str


def guardian_of_three() -> Guardian:
    """Create the data and an app session (its key is the ``X-Session-Token``)."""
    from django.utils import timezone

    from care.models import Appointment, DoseLog, MedicationPlan, RefillRequest
    from portal import services
    from portal.models import CareTeamMembership, Department, DepartmentMembership, GuardianLink, User

    suffix = os.urandom(4).hex()
    doctor = User.objects.create_user(f"doctor-{suffix}@bench.invalid", "bench-password-1", display_name="Dr. Bench")
    dept = Department.objects.create(code=f"bench-{suffix}", name="Bench")
    DepartmentMembership.objects.create(department=dept, clinician=doctor, role="doctor")
    parent = User.objects.create_user(f"parent-{suffix}@bench.invalid", "bench-password-1", display_name="Parent")
    now = timezone.now()
    for index in range(3):
        child = services.child_create(
            actor=None,
            name=f"Bench Child {index}",
            mrn=f"BENCH-{suffix}-{index}",
            date_of_birth=date(2018, 1, 1),
            time_zone="America/New_York",
            conditions=["46635009"],
        )
        GuardianLink.objects.create(guardian=parent, child=child, relationship="mother", status="active")
        CareTeamMembership.objects.create(
            child=child, clinician=doctor, department=dept, role="doctor", start=now - timedelta(days=60)
        )
        for day in range(3):
            start = now + timedelta(days=day + 1, hours=index)
            Appointment.objects.create(
                child=child,
                clinician=doctor,
                department=dept,
                location="Clinic",
                visit_type="Review",
                start=start,
                end=start + timedelta(minutes=30),
            )
        plan = MedicationPlan.objects.create(
            child=child,
            prescriber=doctor,
            medication="Insulin",
            dose_quantity=6,
            dose_unit="units",
            schedule_kind="fixed_times",
            times_of_day=["07:30", "19:30"],
            start=now - timedelta(days=30),
            refills_allowed=3,
            refills_remaining=3,
        )
        as_needed = MedicationPlan.objects.create(
            child=child,
            prescriber=doctor,
            medication="Salbutamol",
            dose_quantity=2,
            dose_unit="puffs",
            schedule_kind="as_needed",
            min_interval_minutes=240,
            max_per_day=4,
            start=now - timedelta(days=30),
        )
        DoseLog.objects.create(
            plan=as_needed,
            client_id=uuid.uuid4(),
            status="given",
            occurred_at=now - timedelta(hours=5),
            recorded_by=parent,
        )
        RefillRequest.objects.create(plan=plan, child=child, pharmacy="Bench Pharmacy", requested_by=parent)
    return Guardian(user_id=str(parent.pk), session_token=app_session(parent))


def app_session(user: User) -> str:
    """A signed-in app session for ``user``; its key is the ``X-Session-Token``."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.cached_db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "allauth.account.auth_backends.AuthenticationBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return str(session.session_key)
