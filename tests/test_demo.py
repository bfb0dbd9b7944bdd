"""The demo data ``make run`` loads has the shape the README promises."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from django.core.management import call_command
from django.db.models import Count

from fixtures import demo
from portal.access import effective_scope, visible_children
from portal.models import Child, Department, DepartmentMembership, GuardianLink, User


def test_demo_hospital(db: Any, capsys: Any) -> None:
    call_command("load_demo")
    out = capsys.readouterr().out
    assert "maria.garcia@demo.family" in out and demo.DEMO_PASSWORD in out
    assert Department.objects.count() == 2
    assert DepartmentMembership.objects.values("clinician").distinct().count() == 4
    assert User.objects.filter(user_permissions__codename="view_metrics").count() == 1
    assert Child.objects.count() == 9
    guardians = User.objects.filter(guardian_links__status="active").distinct()
    assert guardians.count() == 7  # and John Smith, whose link was revoked
    # Six families: guardians who share a child are one family (the Novaks live in two households).
    assert (
        len(
            {
                frozenset(GuardianLink.objects.filter(guardian=g, status="active").values_list("child", flat=True))
                for g in guardians
            }
        )
        == 6
    )
    eva_links = GuardianLink.objects.filter(
        child__in=Child.objects.filter(guardian_links__guardian__email__in=["anna.novak@demo.family"]), status="active"
    )
    assert eva_links.count() == 2
    assert GuardianLink.objects.filter(status="revoked").count() == 1
    assert GuardianLink.objects.filter(status="invited").count() == 1
    # Demo invitations are bound to their recipients, and no demo link breaks the access rules.
    from portal.models import Invitation
    from portal.services import link_breaches

    # Every family was invited by the import; all but Arjun's father have redeemed theirs.
    assert Invitation.objects.count() == 12 and Invitation.objects.filter(redeemed_at__isnull=True).count() == 1
    assert not Invitation.objects.filter(recipient_email="").exists()
    assert link_breaches() == []
    wei_link = GuardianLink.objects.get(guardian__email="wei.chen@demo.family")
    assert effective_scope(wei_link) == "limited"  # Mei is 14
    john = User.objects.get(email="john.smith@demo.family")
    assert not visible_children(john).exists()
    # Care: every child has a plan, an upcoming visit and active insurance; Lucas has a pending refill.
    from care.models import Appointment, Coverage, MedicationPlan, RefillRequest
    from care.selectors import today

    for child in Child.objects.all():
        assert MedicationPlan.objects.filter(child=child).exists()
        assert Appointment.objects.filter(child=child, status="booked").exists()
        assert Coverage.objects.filter(child=child, status="active").exists()
    assert RefillRequest.objects.filter(status="requested").count() == 1
    maria = User.objects.get(email="maria.garcia@demo.family")
    glance = today(user=maria)
    assert len(glance["children"]) == 2
    assert any(entry["open_refills"] for entry in glance["children"])
    assert all(entry["doses"] for entry in glance["children"])
    from messaging.groups.models import Group, Post

    assert Group.objects.count() == 2 and Post.objects.filter(status="pending").count() == 1
    # The imported results and visit summary are new to Maria (released when they were imported).
    new = {entry["child"]["name"]: entry["new_results"] for entry in glance["children"]}
    assert {item["name"] for item in new["Sofia Garcia"]["items"]} == {"Peak flow", "Asthma check: after-visit summary"}
    assert (new["Lucas Garcia"]["results"], new["Lucas Garcia"]["visit_summaries"]) == (2, 0)
    # Running it again changes nothing.
    counts = _counts()
    call_command("load_demo")
    assert _counts() == counts


def _counts() -> dict[str, int]:
    from care.models import Appointment, Coverage, MedicationPlan, TestResult, VisitSummary
    from interop.models import ImportRun, SourceRecord
    from portal.models import AuditEvent, CareTeamMembership, Invitation

    models = (Child, User, GuardianLink, Invitation, CareTeamMembership, Appointment, MedicationPlan, Coverage)
    rows = {model.__name__: model.objects.count() for model in models}
    more = (TestResult, VisitSummary, ImportRun, SourceRecord, AuditEvent)
    return rows | {model.__name__: model.objects.count() for model in more}


def test_the_demo_hospital_comes_in_through_the_fhir_importer(db: Any) -> None:
    """Its record is the EHR's export (``fixtures.demo_fhir``) imported whole, with nothing rejected."""
    from care.models import Appointment, Coverage, MedicationPlan, TestResult, VisitSummary
    from fixtures import demo_fhir
    from interop.models import ImportIssue, ImportRun, SourceRecord
    from portal.models import CareTeamMembership

    call_command("load_demo", stdout=io.StringIO())
    run = ImportRun.objects.get()
    assert run.status == ImportRun.Status.FINISHED and not ImportIssue.objects.exists()
    exported = demo_fhir.export(anchor=run.started_at, time_zone="UTC").resources
    by_type = dict(SourceRecord.objects.values_list("resource_type").annotate(n=Count("id")))
    assert by_type == {kind: len(rows) for kind, rows in exported.items() if rows}
    assert by_type["Patient"] == Child.objects.count() == 9
    assert TestResult.objects.count() == by_type["Observation"] == 3 and VisitSummary.objects.count() == 1
    hba1c = next(row for row in TestResult.objects.select_related("report") if row.name.startswith("HbA1c"))
    assert (hba1c.value, hba1c.unit, hba1c.interpretation, hba1c.report.name) == (  # type: ignore[union-attr]
        "7.4",
        "%",
        "high",
        "Diabetes review bloods",
    )
    # Every row the record became names the import as its source: the import actor made them.
    actor = User.objects.get(email="ehr-import@system.invalid")
    assert Appointment.objects.filter(created_by=actor).count() == by_type["Appointment"]
    assert MedicationPlan.objects.count() == by_type["MedicationRequest"]
    assert Coverage.objects.filter(verified_by=actor).count() == by_type["Coverage"]
    assert CareTeamMembership.objects.filter(added_by=actor).count() == 18
    # The demo's clinicians were adopted by email, not duplicated, and keep their passwords.
    ortiz = User.objects.get(email="dr.ortiz@demo.care")
    assert ortiz.check_password(demo.DEMO_PASSWORD) and ortiz.display_name == "Dr. Helen Ortiz"
    assert User.objects.filter(email__endswith="@demo.care").count() == 5
    conditions = {child.name: child.conditions for child in Child.objects.all()}
    assert conditions["Lucas Garcia"] == [demo.T1D] and conditions["Mei Chen"] == [demo.EPILEPSY]


def test_the_demo_export_is_deterministic_and_valid(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from fixtures import demo_fhir
    from interop import fhir

    anchor = datetime(2026, 11, 22, 5, 30, tzinfo=UTC)
    first = demo_fhir.write_export(anchor=anchor, time_zone="America/Chicago", out=tmp_path / "a")
    second = demo_fhir.write_export(anchor=anchor, time_zone="America/Chicago", out=tmp_path / "b")
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    for path in first:
        for line in path.read_text().splitlines():
            fhir.validate(json.loads(line))
