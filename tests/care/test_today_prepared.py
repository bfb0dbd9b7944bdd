"""/me/today runs prepared queries (compiled once per process): access still follows the links of
the moment, and a prepared query answers like the queryset it was written as."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.utils import timezone

from care.models import Appointment
from portal.models import Child, GuardianLink
from portal.prepared import MAX_LIST_LENGTH, Prepared
from tests import care_data
from tests.canaries import ADA_NAME
from tests.conftest import World


def test_a_revoked_guardian_loses_the_child_on_the_next_call(world: World) -> None:
    care_data.appointment(world.ada, world.clinician)
    client = world.client("co_guardian")
    first = client.get("/api/v1/me/today").json()["children"]
    assert [entry["child"]["name"] for entry in first] == [ADA_NAME]
    GuardianLink.objects.filter(pk=world.links["co_guardian"].pk).update(status=GuardianLink.Status.REVOKED)
    answer = client.get("/api/v1/me/today")
    assert answer.json()["children"] == [] and ADA_NAME not in answer.content.decode()


def test_limited_scope_after_a_change_hides_medicines_at_once(world: World) -> None:
    care_data.plan(world.ada, world.clinician)
    client = world.client("co_guardian")
    assert client.get("/api/v1/me/today").json()["children"][0]["doses"]
    GuardianLink.objects.filter(pk=world.links["co_guardian"].pk).update(scope=GuardianLink.Scope.LIMITED)
    entry = client.get("/api/v1/me/today").json()["children"][0]
    assert entry["doses"] is None and entry["open_refills"] is None


UPCOMING = Prepared(
    lambda child_ids, now: (
        Appointment.objects.filter(child_id__in=child_ids, end__gt=now)
        .order_by("start", "id")
        .values_list("id", "child_id", "preparation")
    )
)


def test_a_prepared_query_answers_like_its_queryset(world: World) -> None:
    for _ in range(2):
        care_data.appointment(world.ada, world.clinician)
    care_data.appointment(world.ben, world.clinician)
    now = timezone.now()
    for child_ids in ([world.ada.pk], [world.ada.pk, world.ben.pk], [uuid.uuid4()]):
        expected = list(
            Appointment.objects.filter(child_id__in=child_ids, end__gt=now)
            .order_by("start", "id")
            .values_list("id", "child_id", "preparation")
        )
        assert UPCOMING.rows(child_ids=child_ids, now=now) == expected
        assert UPCOMING.rows(child_ids=child_ids, now=now) == expected  # compiled this time
    assert UPCOMING.rows(child_ids=[world.ada.pk], now=now + timedelta(days=3650)) == []


def test_a_long_list_builds_the_queryset_afresh(world: World, django_assert_num_queries: Any) -> None:
    care_data.appointment(world.ben, world.clinician)
    ids = [uuid.uuid4() for _ in range(MAX_LIST_LENGTH)] + [world.ben.pk]
    with django_assert_num_queries(1):
        rows = UPCOMING.rows(child_ids=ids, now=timezone.now())
    assert [row[1] for row in rows] == [world.ben.pk]


def test_encrypted_columns_decrypt_through_the_model(world: World) -> None:
    appointment = care_data.appointment(world.ada, world.clinician)
    row = UPCOMING.rows(child_ids=[world.ada.pk], now=timezone.now())[0]
    loaded = Appointment.from_db("default", ["id", "child_id", "preparation"], row)
    assert loaded.preparation == Appointment.objects.get(pk=appointment.pk).preparation
    assert Child.objects.filter(pk=loaded.child_id).exists()
