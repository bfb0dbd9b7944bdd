"""Newer versions of resources whose mapping must undo part of what it did before."""

from __future__ import annotations

import copy

import pytest
from django.core import mail

from portal.models import AuditEvent, CareTeamMembership, Child, GuardianLink
from tests.interop.conftest import record_of, run_import, write_export, write_lines

pytestmark = pytest.mark.django_db


def _newer(resource, **changes):
    newer = copy.deepcopy(resource)
    newer["meta"] = {"versionId": "2", "lastUpdated": "2026-11-30T12:00:00Z"}
    newer.update(changes)
    return newer


@pytest.fixture
def imported(small_hospital, tmp_path, frozen, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        run_import(write_export(small_hospital, tmp_path / "export"))
    return small_hospital.resources


def test_a_resolved_condition_takes_its_code_off(imported, tmp_path):
    condition = imported["Condition"][0]
    child = Child.objects.get(pk=record_of(condition).target)
    code = condition["code"]["coding"][0]["code"]
    assert code in child.conditions
    resolved = _newer(
        condition,
        clinicalStatus={"coding": [{"system": condition["clinicalStatus"]["coding"][0]["system"], "code": "resolved"}]},
    )
    run_import(write_lines(tmp_path / "v2" / "Condition.ndjson", [resolved]))
    child.refresh_from_db()
    assert code not in child.conditions
    assert AuditEvent.objects.filter(entity_type="Condition", child_id=child.pk).count() == 2


def test_a_participant_dropped_from_the_care_team_loses_membership(imported, tmp_path):
    team = imported["CareTeam"][0]
    nurse = CareTeamMembership.objects.get(pk__in=record_of(team).targets, role="nurse")
    run_import(write_lines(tmp_path / "v2" / "CareTeam.ndjson", [_newer(team, participant=team["participant"][:1])]))
    nurse.refresh_from_db()
    assert nurse.end is not None
    assert record_of(team).targets == [
        str(m.pk) for m in CareTeamMembership.objects.filter(pk__in=record_of(team).targets, role="primary")
    ]


def test_a_new_address_withdraws_the_unredeemed_invitation_and_invites_it(
    imported, tmp_path, django_capture_on_commit_callbacks
):
    person = next(p for p in imported["RelatedPerson"] if any(t["system"] == "email" for t in p["telecom"]))
    old = GuardianLink.objects.get(pk=record_of(person).target)
    moved = _newer(person, telecom=[{"system": "email", "value": "new.address@families.example"}])
    sent = len(mail.outbox)
    with django_capture_on_commit_callbacks(execute=True):
        run_import(write_lines(tmp_path / "v2" / "RelatedPerson.ndjson", [moved]))
    old.refresh_from_db()
    new = GuardianLink.objects.select_related("invitation").get(pk=record_of(person).target)
    assert old.status == GuardianLink.Status.REVOKED
    assert new.pk != old.pk and new.invitation.recipient_email == "new.address@families.example"
    assert [m.to for m in mail.outbox[sent:]] == [["new.address@families.example"]]


def test_a_redeemed_link_is_not_touched_by_a_new_address(imported, tmp_path):
    person = next(p for p in imported["RelatedPerson"] if any(t["system"] == "email" for t in p["telecom"]))
    link = GuardianLink.objects.get(pk=record_of(person).target)
    GuardianLink.objects.filter(pk=link.pk).update(status=GuardianLink.Status.ACTIVE)
    moved = _newer(person, telecom=[{"system": "email", "value": "another@families.example"}])
    run_import(write_lines(tmp_path / "v2" / "RelatedPerson.ndjson", [moved]))
    link.refresh_from_db()
    assert link.status == GuardianLink.Status.ACTIVE and record_of(person).target == str(link.pk)
