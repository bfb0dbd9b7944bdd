"""The demo data ``make run`` loads has the shape the README promises."""

from __future__ import annotations

from typing import Any

from django.core.management import call_command

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

    assert Invitation.objects.count() == 1
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
    # Running it again changes nothing.
    call_command("load_demo")
    assert Child.objects.count() == 9
