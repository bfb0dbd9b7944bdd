"""The measured population over time: enrolment changes picked up incrementally with their real
dates, registration dates and person-time, messages under their thread's topic, the dispersion's
degrees of freedom."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from scipy.stats import chi2_contingency

from portal import audit, services
from portal.access import Capability, child_for
from portal.metrics.models import DailyPopulation, MetricsPatient, MonthlyExposure, SelfServiceEvent
from portal.metrics.refresh import metrics_refresh
from portal.metrics.rollups import rollups_refresh
from portal.metrics.stats import dispersion
from portal.models import CareTeamMembership, Child
from portal.vocabulary import Resource
from tests.conftest import World

pytestmark = pytest.mark.django_db


def test_an_incremental_refresh_after_a_revocation_ends_enrolment_on_the_revocation_day(world: World) -> None:
    revoked_at = datetime.now(tz=UTC).replace(microsecond=0) + timedelta(days=1)
    with time_machine.travel(revoked_at, tick=False):
        metrics_refresh(estimate=False)
        ben = MetricsPatient.objects.get(child_id=world.ben.pk)
        assert ben.enrolled_on is not None and ben.unenrolled_on is None
        access = child_for(world.other_clinician, world.ben.pk, Capability.MANAGE)
        services.link_revoke(actor=world.other_clinician, access=access, link_id=world.links["other_guardian"].pk)
    # The nightly job runs three days later, incrementally (not --full).
    with time_machine.travel(revoked_at + timedelta(days=3), tick=False):
        metrics_refresh(estimate=False)
    ben.refresh_from_db()
    assert ben.unenrolled_on == revoked_at.date()


def test_a_redemption_after_the_refresh_saw_the_invitation_enrols_the_child(world: World) -> None:
    with time_machine.travel(datetime(2025, 4, 1, 9, tzinfo=UTC), tick=False):
        child = services.child_create(
            actor=None, name="Cleo Example", mrn="MRN-T-0042", date_of_birth=date(2019, 1, 2), time_zone="UTC"
        )
        CareTeamMembership.objects.create(
            child=child, clinician=world.clinician, department=world.department, role="primary"
        )
        access = child_for(world.clinician, child.pk, Capability.MANAGE)
        _, code = services.invitation_create(
            actor=world.clinician, access=access, relationship="mother", recipient_email=world.stranger.email
        )
        metrics_refresh(estimate=False)  # cron runs between invitation and redemption
        patient = MetricsPatient.objects.get(child_id=child.pk)
        assert patient.enrolled_on is None
        assert patient.registered_on == date(2025, 4, 1)
    with time_machine.travel(datetime(2025, 4, 3, 18, tzinfo=UTC), tick=False):
        services.invitation_redeem(actor=world.stranger, code=code)
        metrics_refresh(estimate=False)
    patient.refresh_from_db()
    assert patient.enrolled_on == date(2025, 4, 3)
    assert patient.cohort_month == date(2025, 4, 1)


def test_person_time_counts_patients_from_registration(world: World) -> None:
    Child.objects.filter(pk=world.ben.pk).update(created_at=datetime(2025, 5, 11, 8, tzinfo=UTC))
    Child.objects.filter(pk=world.ada.pk).update(created_at=datetime(2025, 1, 1, 8, tzinfo=UTC))
    with time_machine.travel(datetime(2025, 5, 20, 13, tzinfo=UTC), tick=False):
        metrics_refresh(full=True, estimate=False)
        rollups_refresh(days=[date(2025, 5, 10), date(2025, 5, 11)])
    ben = MetricsPatient.objects.get(child_id=world.ben.pk)
    assert ben.registered_on == date(2025, 5, 11)
    days: dict[date, int] = {}
    for row in DailyPopulation.objects.filter(day__range=(date(2025, 5, 10), date(2025, 5, 11))):
        days[row.day] = days.get(row.day, 0) + row.patients
    # Ben enters the population on the day he was registered, not before.
    assert days == {date(2025, 5, 10): 1, date(2025, 5, 11): 2}
    exposure = MonthlyExposure.objects.filter(month=date(2025, 5, 1))
    assert sum(row.patient_days for row in exposure) == 31 + 21  # Ada all May, Ben 11..31 May
    assert sum(row.patients for row in exposure) == 2


def test_messages_count_under_their_threads_topic(world: World) -> None:
    from messaging.models import Message, Thread

    thread = Thread.objects.create(
        child=world.ada, subject="About the refill", topic="refill", created_by=world.guardian
    )
    message = Message.objects.create(thread=thread, author=world.guardian, kind="family", body="...", position=1)
    medical = Thread.objects.create(child=world.ada, subject="Fever", topic="medical", created_by=world.guardian)
    question = Message.objects.create(thread=medical, author=world.guardian, kind="family", body="...", position=1)
    for item in (message, question):
        audit.record(
            actor=world.guardian,
            action="create",
            entity_type=Resource.COMMUNICATION,
            entity_id=item.pk,
            child_id=world.ada.pk,
        )
    metrics_refresh(estimate=False)
    topics = sorted(SelfServiceEvent.objects.filter(kind="sent_message").values_list("topic", flat=True))
    assert topics == ["advice", "refill"]


def test_dispersion_degrees_of_freedom_account_for_months_nested_in_periods() -> None:
    # Two groups, two periods of two months each: with a common month effect the fit within each
    # period is the independence model of a 2x2 table, so df = (2-1)(2-1) per period = 2 in all.
    counts = {
        ("treated", "base", date(2024, 1, 1)): 120,
        ("treated", "base", date(2024, 2, 1)): 80,
        ("control", "base", date(2024, 1, 1)): 100,
        ("control", "base", date(2024, 2, 1)): 110,
        ("treated", "post", date(2024, 7, 1)): 60,
        ("treated", "post", date(2024, 8, 1)): 95,
        ("control", "post", date(2024, 7, 1)): 130,
        ("control", "post", date(2024, 8, 1)): 105,
    }
    cells = {key: (value, 1.0) for key, value in counts.items()}
    chi2 = 0.0
    for period, months in (
        ("base", (date(2024, 1, 1), date(2024, 2, 1))),
        ("post", (date(2024, 7, 1), date(2024, 8, 1))),
    ):
        table = [[counts[(group, period, month)] for month in months] for group in ("treated", "control")]
        chi2 += chi2_contingency(table, correction=False)[0]
    assert dispersion(cells) == pytest.approx(max(1.0, chi2 / 2), rel=1e-6)
