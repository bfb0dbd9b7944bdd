"""The hot reads besides ``/me/today``: the children list and a child's medication list make a fixed
number of queries whatever their size, and read only the columns they show."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from care.models import DoseLog
from portal import services as portal_services
from portal.models import CareTeamMembership, Child, GuardianLink
from tests import care_data
from tests.conftest import World, app_client, make_user

NOW = datetime(2027, 6, 10, 16, 0, tzinfo=UTC)


def _guardian_of(world: World, count: int) -> tuple[Client, list[Child]]:
    parent = make_user(f"hot{count}@example.org", "Hot Reads Parent")
    children = []
    for index in range(count):
        child = portal_services.child_create(
            actor=None,
            name=f"Kid {index}",
            mrn=f"MRN-HOT-{count}-{index}",
            date_of_birth=date(2019, 1, 1),
            time_zone="America/New_York",
        )
        GuardianLink.objects.create(guardian=parent, child=child, relationship="mother", status="active")
        CareTeamMembership.objects.create(
            child=child, clinician=world.clinician, department=world.department, role="primary"
        )
        children.append(child)
    return app_client(parent), children


def _warm(client: Client, url: str) -> None:
    # The session's first touch stores its timestamp and the MFA answer: not part of the steady state.
    assert client.get(url).status_code == 200


@pytest.mark.parametrize("count", [1, 10])
def test_children_list_uses_a_fixed_number_of_queries(world: World, count: int, django_assert_num_queries: Any) -> None:
    client, _ = _guardian_of(world, count)
    _warm(client, "/api/v1/children")
    # the user = 1; the visible children, the guardian links, the care-team roles = 3; the audit append = 1
    with django_assert_num_queries(5):
        response = client.get("/api/v1/children")
    assert response.status_code == 200
    assert len(response.json()["items"]) == count


@pytest.mark.parametrize("count", [1, 10])
def test_clinician_children_list_uses_the_same_queries(
    world: World, count: int, django_assert_num_queries: Any
) -> None:
    _guardian_of(world, count)  # the clinician is on the care team of every one of these children
    client = world.client("clinician")
    _warm(client, "/api/v1/children")
    with django_assert_num_queries(5):
        response = client.get("/api/v1/children")
    assert len(response.json()["items"]) == count + 1  # and Ada, from the world
    assert all(row["mrn"] for row in response.json()["items"])


def _plans(world: World, child: Child, count: int) -> None:
    for index in range(count):
        plan = care_data.plan(child, world.clinician, pharmacy=f"Pharmacy {index}")
        DoseLog.objects.create(
            plan=plan,
            client_id=plan.pk,
            scheduled_for=NOW.replace(hour=12) - timedelta(days=1),
            occurred_at=NOW - timedelta(days=1),
            status="given",
            note="Sleepy after the dose",
            recorded_by=world.guardian,
        )


@pytest.mark.parametrize("count", [1, 10])
def test_medications_use_a_fixed_number_of_queries(world: World, count: int, django_assert_num_queries: Any) -> None:
    url = f"/api/v1/children/{world.ada.pk}/medications"
    with time_machine.travel(NOW, tick=False):
        _plans(world, world.ada, count)
        client = world.client("guardian")
        _warm(client, url)
        # the user = 1; the access decision (the child, the link, care-team roles) = 3 (the portal
        # permissions are asked only for what needs them, not for reading); plans with their
        # prescriber, the last 31 days of doses = 2; the audit append = 1
        with django_assert_num_queries(7):
            response = client.get(url)
    assert response.status_code == 200
    body = response.json()["items"]
    assert len(body) == count
    assert {row["prescriber_name"] for row in body} == {"Dr. Cleo Clinician"}
    assert all(row["adherence"][0]["given"] == 1 for row in body)


def test_medications_read_only_the_columns_shown(world: World) -> None:
    url = f"/api/v1/children/{world.ada.pk}/medications"
    with time_machine.travel(NOW, tick=False):
        _plans(world, world.ada, 2)
        client = world.client("guardian")
        _warm(client, url)
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
    statements = [query["sql"] for query in captured.captured_queries]
    doses = [sql for sql in statements if sql.lstrip().startswith("SELECT") and "care_doselog" in sql]
    plans = [sql for sql in statements if sql.lstrip().startswith("SELECT") and "care_medicationplan" in sql]
    assert len(doses) == 1 and len(plans) == 1
    # The dose notes (encrypted PHI) and who recorded each dose are not read for this list; nor the
    # prescriber's password hash.
    assert '"note"' not in doses[0] and '"recorded_by_id"' not in doses[0]
    assert '"password"' not in plans[0] and '"confidential"' not in plans[0].split("FROM")[0]
