"""A generated hospital of 20 patients imported end to end: every value and identifier checked
against what the generator wrote."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core import mail

from care.models import Appointment, Coverage, MedicationPlan
from fixtures import fhir_hospital
from interop.context import IMPORT_ACTOR_EMAIL
from interop.fhir import parse_instant
from interop.mapping.timing import schedule
from interop.models import ImportIssue, SourceRecord
from messaging.sms import LocmemSmsBackend
from portal.models import AuditEvent, CareTeamMembership, Child, DepartmentMembership, GuardianLink, User
from portal.vocabulary import Resource
from tests.interop.conftest import PATIENTS, record_of, run_import

pytestmark = pytest.mark.django_db


def _email(resource):
    return next((t["value"] for t in resource.get("telecom", []) if t["system"] == "email"), None)


def _phone(resource):
    number = next(t["value"] for t in resource.get("telecom", []) if t["system"] == "phone")
    return "+" + "".join(c for c in number if c.isdigit())


def test_a_generated_hospital_round_trips(export, hospital, frozen, django_capture_on_commit_callbacks, settings):
    """One import of 20 patients (imports are the slow part), checked resource type by resource type."""
    LocmemSmsBackend.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        output, failed = run_import(export)
    imported = (hospital.resources, output, failed)
    check_patients(imported, settings)
    check_invitations(imported)
    check_practitioners_roles_and_care_teams(imported)
    check_appointments_coverage_and_conditions(imported)
    check_medication_timings(imported)
    check_audit(imported)
    check_no_phi_in_output(imported)


def check_patients(imported, settings):
    resources = imported[0]
    assert Child.objects.count() == PATIENTS
    for patient in resources["Patient"]:
        record = record_of(patient)
        child = Child.objects.get(pk=record.target)
        name = patient["name"][0]
        assert child.name == f"{name['given'][0]} {name['family']}"
        assert child.mrn == patient["identifier"][0]["value"]
        assert child.date_of_birth.isoformat() == patient["birthDate"]
        assert child.sex == patient["gender"]
        assert child.time_zone == settings.PORTAL_HOSPITAL_TIME_ZONE
        assert record.resource_id == patient["id"]
        assert record.identifier == f"Patient|{fhir_hospital.MRN_SYSTEM}|{child.mrn}"
        assert record.version_id == "1"
        assert record.last_updated == parse_instant(patient["meta"]["lastUpdated"])
    # Encrypted at rest, as the portal's own writes keep them.
    raw = Child.objects.values_list("name", "mrn").first()
    assert raw is not None and all(value.startswith("pe1:") for value in raw)


def check_invitations(imported):
    resources, _, _ = imported
    with_email = [r for r in resources["RelatedPerson"] if _email(r)]
    without = [r for r in resources["RelatedPerson"] if not _email(r)]
    assert without, "the generator writes some phone-only families"
    for person in with_email:
        link = GuardianLink.objects.select_related("invitation").get(pk=record_of(person).target)
        assert link.status == GuardianLink.Status.INVITED
        assert link.guardian is None
        assert link.invitation.recipient_email == _email(person)
        assert link.invitation.created_by.email == IMPORT_ACTOR_EMAIL
        assert link.relationship == {"MTH": "mother", "FTH": "father"}[person["relationship"][0]["coding"][0]["code"]]
        assert link.child_id == Child.objects.get(pk=record_of(_patient(resources, person["patient"])).target).pk
    for person in without:  # phone-only families are texted their invitation
        link = GuardianLink.objects.select_related("invitation").get(pk=record_of(person).target)
        assert link.status == GuardianLink.Status.INVITED
        assert link.invitation.recipient_email == ""
        assert link.invitation.recipient_phone == _phone(person)
    assert sorted(m.to[0] for m in mail.outbox) == sorted(_email(p) for p in with_email)
    texts = [t for t in LocmemSmsBackend.outbox if "invitation code" in t.body]
    assert sorted(t.to for t in texts) == sorted(_phone(p) for p in without)
    names = {n["family"] for p in resources["Patient"] for n in p["name"]}
    names |= {n["given"][0] for p in resources["Patient"] for n in p["name"]}
    bodies = [message.body for message in mail.outbox] + [t.body for t in texts]
    assert not any(name in body for body in bodies for name in names)
    assert not ImportIssue.objects.filter(resource_type="RelatedPerson").exists()


def _patient(resources, reference):
    return next(p for p in resources["Patient"] if f"Patient/{p['id']}" == reference["reference"])


def check_practitioners_roles_and_care_teams(imported):
    resources, _, _ = imported
    for practitioner in resources["Practitioner"]:
        user = User.objects.get(pk=record_of(practitioner).target)
        assert user.email == _email(practitioner)
        assert not user.has_usable_password()
    for role in resources["PractitionerRole"]:
        membership = DepartmentMembership.objects.select_related("department").get(pk=record_of(role).target)
        assert membership.role == role["code"][0]["coding"][0]["code"]
        assert membership.department.name == role["specialty"][0]["text"]
    for team in resources["CareTeam"]:
        record = record_of(team)
        memberships = CareTeamMembership.objects.filter(pk__in=record.targets)
        assert sorted(memberships.values_list("role", flat=True)) == ["nurse", "primary"]
        assert {m.child_id for m in memberships} == {
            Child.objects.get(pk=record_of(_patient(resources, team["subject"])).target).pk
        }
        primary = memberships.get(role="primary")
        assert primary.start == parse_instant(team["participant"][0]["period"]["start"])
        assert primary.department is not None and primary.end is None


def check_appointments_coverage_and_conditions(imported):
    resources, _, _ = imported
    assert Appointment.objects.count() == len(resources["Appointment"])
    for visit in resources["Appointment"]:
        appointment = Appointment.objects.get(pk=record_of(visit).target)
        assert appointment.start == parse_instant(visit["start"])
        assert appointment.end == parse_instant(visit["end"])
        assert appointment.status == visit["status"]
        assert appointment.visit_type == "Follow-up visit"
        assert appointment.location == "Clinic B, 2nd floor"
        assert appointment.preparation == visit.get("patientInstruction", "")
    for cover in resources["Coverage"]:
        coverage = Coverage.objects.get(pk=record_of(cover).target)
        assert coverage.member_id == cover["subscriberId"]
        assert coverage.payer == cover["payor"][0]["display"]
        assert (coverage.plan_name, coverage.group_number) == ("Kids PPO", "G-100")
        assert coverage.copays == {"primary_care": "20.00", "specialist": "40.00"}
        assert coverage.status == Coverage.Status.ACTIVE
    for condition in resources["Condition"]:
        child = Child.objects.get(pk=record_of(_patient(resources, condition["subject"])).target)
        assert condition["code"]["coding"][0]["code"] in child.conditions


def check_medication_timings(imported):
    resources, output, _ = imported
    kinds = set()
    for line, request in enumerate(resources["MedicationRequest"], start=1):
        repeat = request["dosageInstruction"][0]["timing"]["repeat"]
        follows = not (
            repeat.get("when")
            or repeat.get("periodUnit") == "wk"
            or (repeat["periodUnit"] == "d" and "timeOfDay" not in repeat)
        )
        if not follows:
            issue = ImportIssue.objects.get(file_name="MedicationRequest.ndjson", line=line)
            assert issue.reason.startswith("timing_")
            assert not SourceRecord.objects.filter(
                resource_type="MedicationRequest", resource_id=request["id"]
            ).exists()
            continue
        plan = MedicationPlan.objects.get(pk=record_of(request).target)
        kinds.add(plan.schedule_kind)
        dose = request["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]
        assert plan.dose_quantity == Decimal(str(dose["value"])).quantize(Decimal("0.001"))
        assert plan.medication == request["medicationCodeableConcept"]["text"]
        assert plan.refills_allowed == plan.refills_remaining == request["dispenseRequest"]["numberOfRepeatsAllowed"]
        expected = schedule(request["dosageInstruction"])
        assert (plan.times_of_day, plan.weekdays, plan.interval_hours) == (
            expected.times_of_day,
            expected.weekdays,
            expected.interval_hours,
        )
        if plan.schedule_kind == "as_needed":
            assert (plan.min_interval_minutes, plan.max_per_day) == (240, 4)
    assert kinds == {"fixed_times", "every_n_hours", "weekdays", "as_needed"}
    unmappable = ImportIssue.objects.filter(resource_type="MedicationRequest").count()
    assert unmappable and MedicationPlan.objects.count() == len(resources["MedicationRequest"]) - unmappable
    assert "MedicationRequest.ndjson" in output and "timing_" in output


def check_audit(imported):
    actor = User.objects.get(email=IMPORT_ACTOR_EMAIL)
    assert not actor.is_active and not actor.has_usable_password()
    rows = AuditEvent.objects.filter(actor_id=actor.pk)
    assert set(rows.values_list("entity_type", flat=True)) <= {str(r) for r in Resource}
    assert rows.filter(entity_type=Resource.PATIENT, action="create").count() == PATIENTS
    assert rows.filter(entity_type=Resource.APPOINTMENT, action="create").count() == Appointment.objects.count()


def check_no_phi_in_output(imported):
    """The summary and the rejected lines name files, lines, types and codes: no name, MRN or member id."""
    resources, output, _ = imported
    values = [p["identifier"][0]["value"] for p in resources["Patient"]]
    values += [
        f"{n['given'][0]} {n['family']}"
        for kind in ("Patient", "RelatedPerson")
        for r in resources[kind]
        for n in r["name"]
    ]
    values += [c["subscriberId"] for c in resources["Coverage"]]
    values += [t["value"] for r in resources["RelatedPerson"] for t in r["telecom"]]
    assert [value for value in values if value in output] == []
