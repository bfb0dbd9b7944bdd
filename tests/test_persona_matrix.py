"""Every child-scoped endpoint against every persona: 0 leaks, every denial audited."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from portal.apiroot import api
from portal.models import CareTeamMembership, DepartmentMembership, GuardianLink
from tests.conftest import World, make_user
from tests.matrix import ENDPOINTS, MANAGERS, READERS, Endpoint, assert_matrix, register


def _invited_link(world: World) -> dict[str, str]:
    link = GuardianLink.objects.create(child=world.ada, relationship="other", status=GuardianLink.Status.INVITED)
    return {"link": str(link.pk)}


def _membership(world: World) -> dict[str, str]:
    locum = make_user(f"locum{uuid.uuid4().hex[:8]}@example.org", "Dr. Locum")
    row = CareTeamMembership.objects.create(
        child=world.ada, clinician=locum, role="specialist", end=timezone.now() + timedelta(days=30)
    )
    return {"membership": str(row.pk)}


register(Endpoint("GET", "/children/{child}", READERS))
register(Endpoint("GET", "/children/{child}/care-team", READERS))
register(Endpoint("GET", "/children/{child}/access-log", READERS))
register(Endpoint("GET", "/children/{child}/guardian-links", MANAGERS))
register(Endpoint("POST", "/children/{child}/invitations", MANAGERS, body=lambda w: {"relationship": "other"}))


def _new_clinician(world: World) -> dict[str, str]:
    clinician = make_user(f"locum{uuid.uuid4().hex[:8]}@example.org", "Dr. Locum")
    DepartmentMembership.objects.create(department=world.department, clinician=clinician, role="doctor")
    return {"clinician_id": str(clinician.pk), "role": "specialist"}


register(Endpoint("POST", "/children/{child}/care-team", MANAGERS, body=_new_clinician))
register(Endpoint("DELETE", "/children/{child}/care-team/{membership}", MANAGERS, params=_membership))
register(
    Endpoint(
        "PATCH",
        "/children/{child}/guardian-links/{link}",
        MANAGERS,
        body=lambda w: {"adolescent_exception": True},
        params=_invited_link,
    )
)
register(Endpoint("POST", "/children/{child}/guardian-links/{link}/revoke", MANAGERS, params=_invited_link))


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e.method} {e.path}")
def test_persona_matrix(world: World, endpoint: Endpoint) -> None:
    assert_matrix(world, endpoint)


def _child_scoped_operations() -> set[tuple[str, str]]:
    found = set()
    for bound in api._get_bound_routers():
        for path, path_view in bound.path_operations.items():
            if "{child_id}" not in path:
                continue
            for operation in path_view.operations:
                for method in operation.methods:
                    found.add((method, re.sub(r"\{(\w+)_id\}", r"{\1}", path)))
    return found


def test_matrix_covers_every_child_scoped_operation() -> None:
    registered = {(e.method, e.path) for e in ENDPOINTS}
    assert _child_scoped_operations() == registered


def test_unknown_child_id_is_404_and_audited(world: World) -> None:
    for bad in ("not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        response = world.client("guardian").get(f"/api/v1/children/{bad}")
        assert response.status_code in (404, 422)
