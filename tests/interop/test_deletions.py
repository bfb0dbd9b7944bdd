"""--full-export: what the export no longer holds ends links and hides items; history stays."""

from __future__ import annotations

import pytest

from care.models import Appointment, Coverage, MedicationPlan
from fixtures import fhir_hospital
from interop.models import SourceRecord
from portal.models import AuditEvent, CareTeamMembership, Child, GuardianLink
from tests.interop.conftest import record_of, run_import, write_export

pytestmark = pytest.mark.django_db


def _without(hospital, resource_type, keep):
    trimmed = fhir_hospital.Hospital()
    for kind, resources in hospital.resources.items():
        trimmed.resources[kind] = [r for r in resources if kind != resource_type or keep(r)]
    return trimmed


def test_full_export_ends_links_and_hides_what_left_the_export(small_hospital, tmp_path, frozen):
    run_import(write_export(small_hospital, tmp_path / "export"))
    person = next(r for r in small_hospital.resources["RelatedPerson"] if record_of(r).targets)
    team = small_hospital.resources["CareTeam"][0]
    visit = small_hospital.resources["Appointment"][1]
    cover = small_hospital.resources["Coverage"][0]
    plan_request = next(r for r in small_hospital.resources["MedicationRequest"] if _imported(r))
    gone = {person["id"], team["id"], visit["id"], cover["id"], plan_request["id"]}
    trimmed = small_hospital
    for kind in ("RelatedPerson", "CareTeam", "Appointment", "Coverage", "MedicationRequest"):
        trimmed = _without(trimmed, kind, lambda r: r["id"] not in gone)
    audits = set(AuditEvent.objects.values_list("seq", flat=True))

    # Without --full-export nothing is removed.
    run_import(write_export(trimmed, tmp_path / "partial"))
    assert GuardianLink.objects.get(pk=record_of(person).target).status == GuardianLink.Status.INVITED

    output, _ = run_import(write_export(trimmed, tmp_path / "full"), full_export=True)

    link = GuardianLink.objects.get(pk=record_of(person).target)
    assert link.status == GuardianLink.Status.REVOKED
    memberships = CareTeamMembership.objects.filter(pk__in=record_of(team).targets)
    assert memberships.count() == 2 and all(m.end is not None for m in memberships)
    assert Appointment.objects.get(pk=record_of(visit).target).status == Appointment.Status.CANCELLED
    assert Coverage.objects.get(pk=record_of(cover).target).status == Coverage.Status.SUPERSEDED
    assert MedicationPlan.objects.get(pk=record_of(plan_request).target).status == MedicationPlan.Status.STOPPED
    assert all(record_of(r).deleted for r in (person, team, visit, cover, plan_request))
    # Earlier audit rows are all still there, and each removal added its own.
    assert audits <= set(AuditEvent.objects.values_list("seq", flat=True))
    assert AuditEvent.objects.filter(reason="ehr_related_person_removed", entity_id=str(link.pk)).count() == 1
    assert AuditEvent.objects.filter(reason="ehr_care_team_removed").count() == 2
    rows = {line.split()[0]: line.split() for line in output.splitlines()[2:] if line and not line[0].isspace()}
    assert rows["RelatedPerson"][5] == rows["CareTeam"][5] == rows["Appointment"][5] == "1"
    # Everything else stayed as it was.
    assert Child.objects.count() == len(small_hospital.resources["Patient"])


def _imported(resource):
    """Whether the resource was imported (some medication timings are rejected)."""
    try:
        return bool(record_of(resource).targets)
    except SourceRecord.DoesNotExist:
        return False


def test_a_removed_patient_loses_every_link_but_keeps_its_row(small_hospital, tmp_path, frozen):
    run_import(write_export(small_hospital, tmp_path / "export"))
    patient = small_hospital.resources["Patient"][0]
    child = Child.objects.get(pk=record_of(patient).target)
    reference = f"Patient/{patient['id']}"
    trimmed = fhir_hospital.Hospital()
    for kind, resources in small_hospital.resources.items():
        trimmed.resources[kind] = [r for r in resources if r.get("id") != patient["id"] and reference not in str(r)]

    run_import(write_export(trimmed, tmp_path / "full"), full_export=True)

    assert Child.objects.filter(pk=child.pk).exists()
    assert not GuardianLink.objects.filter(child=child, status__in=["invited", "active"]).exists()
    assert not CareTeamMembership.objects.filter(child=child, end__isnull=True).exists()
    assert (
        AuditEvent.objects.filter(child_id=child.pk, reason="ehr_patient_removed", entity_type="Patient").count() == 1
    )
