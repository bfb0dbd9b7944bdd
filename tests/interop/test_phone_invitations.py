"""RelatedPerson with a phone number and no email address: a phone-bound invitation texted to it (in
the recipient's language, with no PHI), idempotent on re-import; with neither, a reported issue."""

from __future__ import annotations

import copy

import pytest
from django.core import mail

from interop.models import ImportIssue
from messaging.sms import LocmemSmsBackend
from portal.models import AuditEvent, GuardianLink, Invitation
from tests.interop.conftest import record_of, row_counts, run_import, write_export, write_lines

pytestmark = pytest.mark.django_db

SPANISH = {"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "es-MX"}]}, "preferred": True}


def _newer(resource, **changes):
    newer = copy.deepcopy(resource)
    newer["meta"] = {"versionId": "2", "lastUpdated": "2026-11-30T12:00:00Z"}
    newer.update(changes)
    return newer


@pytest.fixture
def imported(small_hospital, tmp_path, frozen, django_capture_on_commit_callbacks):
    LocmemSmsBackend.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        run_import(write_export(small_hospital, tmp_path / "export"))
    return small_hospital.resources


def _phone_only(resources):
    return next(p for p in resources["RelatedPerson"] if not any(t["system"] == "email" for t in p["telecom"]))


def _with_email(resources):
    return next(p for p in resources["RelatedPerson"] if any(t["system"] == "email" for t in p["telecom"]))


def _names(resources):
    return {part for p in resources["Patient"] for n in p["name"] for part in [n["family"], *n["given"]]}


def test_a_phone_only_guardian_is_texted_a_phone_bound_invitation(imported):
    person = _phone_only(imported)
    link = GuardianLink.objects.select_related("invitation").get(pk=record_of(person).target)
    assert link.status == GuardianLink.Status.INVITED and link.guardian is None
    number = link.invitation.recipient_phone
    assert number.startswith("+1") and len(number) == 12 and link.invitation.recipient_email == ""
    [text] = [t for t in LocmemSmsBackend.outbox if t.to == number]
    assert "invitation code" in text.body  # the hospital's default language: English
    assert not any(name in text.body for name in _names(imported))
    assert AuditEvent.objects.filter(entity_type="Invitation", entity_id=str(link.invitation.pk), reason="ehr_import")
    assert not ImportIssue.objects.filter(resource_type="RelatedPerson").exists()


def test_reimport_sends_nothing_again_and_duplicates_nothing(
    imported, small_hospital, tmp_path, django_capture_on_commit_callbacks
):
    texts, emails, before = len(LocmemSmsBackend.outbox), len(mail.outbox), row_counts()
    with django_capture_on_commit_callbacks(execute=True):
        run_import(write_export(small_hospital, tmp_path / "again"))
    assert (len(LocmemSmsBackend.outbox), len(mail.outbox), row_counts()) == (texts, emails, before)


def test_the_text_is_in_the_language_the_resource_gives(imported, tmp_path, django_capture_on_commit_callbacks):
    person = _phone_only(imported)
    old = GuardianLink.objects.get(pk=record_of(person).target)
    renumbered = _newer(
        person, telecom=[{"system": "phone", "value": "(617) 555-0142", "use": "mobile"}], communication=[SPANISH]
    )
    with django_capture_on_commit_callbacks(execute=True):
        run_import(write_lines(tmp_path / "v2" / "RelatedPerson.ndjson", [renumbered]))
    old.refresh_from_db()
    new = GuardianLink.objects.select_related("invitation").get(pk=record_of(person).target)
    assert old.status == GuardianLink.Status.REVOKED  # the number changed: the old invitation is withdrawn
    assert new.invitation.recipient_phone == "+16175550142"
    [text] = [t for t in LocmemSmsBackend.outbox if t.to == "+16175550142"]
    assert "código de invitación" in text.body and "invitation code" not in text.body


def test_an_email_address_wins_over_a_phone_number(imported, tmp_path, django_capture_on_commit_callbacks):
    person = _with_email(imported)
    link = GuardianLink.objects.select_related("invitation").get(pk=record_of(person).target)
    assert link.invitation.recipient_email and link.invitation.recipient_phone == ""
    email = next(t["value"] for t in person["telecom"] if t["system"] == "email").lower()
    assert [m.to for m in mail.outbox].count([email]) == 1
    assert not [t for t in LocmemSmsBackend.outbox if t.to == link.invitation.recipient_phone]


def test_an_unusable_phone_and_no_email_is_reported(imported, tmp_path, django_capture_on_commit_callbacks):
    person = _phone_only(imported)
    invitations = Invitation.objects.count()
    nothing = _newer(person, telecom=[{"system": "phone", "value": "12"}, {"system": "fax", "value": "+13125550100"}])
    nothing["id"] = "rp-new-1"
    nothing["identifier"] = [{"system": person["identifier"][0]["system"], "value": "rp-no-contact"}]
    texts = len(LocmemSmsBackend.outbox)
    with django_capture_on_commit_callbacks(execute=True):
        run_import(write_lines(tmp_path / "v2" / "RelatedPerson.ndjson", [nothing]))
    reasons = list(ImportIssue.objects.filter(resource_type="RelatedPerson").values_list("reason", flat=True))
    assert reasons == ["no_contact_for_invitation"]
    assert Invitation.objects.count() == invitations and len(LocmemSmsBackend.outbox) == texts
