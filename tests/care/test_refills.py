"""Refill requests: the state machine, one open request per plan, Idempotency-Key, exactly-once approval."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connections
from django.test import Client

from care.models import MedicationPlan, RefillRequest, RefillTransition
from portal.models import AuditEvent, IdempotencyRecord
from tests import care_data
from tests.conftest import World, app_client, build_world


def post(client: Client, url: str, body: dict[str, Any], **headers: str) -> Any:
    return client.post(url, data=json.dumps(body), content_type="application/json", headers=headers)


def _request_url(world: World, plan: MedicationPlan) -> str:
    return f"/api/v1/children/{world.ada.pk}/medications/{plan.pk}/refills"


def _transition(world: World, persona: str, refill_id: str, to: str, reason: str = "") -> Any:
    return post(
        world.client(persona),
        f"/api/v1/children/{world.ada.pk}/refills/{refill_id}/transition",
        {"to": to, "reason": reason},
    )


def test_full_lifecycle_to_pick_up(world: World) -> None:
    plan = care_data.plan(world.ada, world.clinician)
    created = post(
        world.client("guardian"), _request_url(world, plan), {"pharmacy": "Corner Pharmacy", "note": "two pens left"}
    )
    assert created.status_code == 201, created.content
    refill_id = created.json()["id"]
    assert created.json()["status"] == "requested" and created.json()["pharmacy"] == "Corner Pharmacy"
    for step in ("approved", "sent_to_pharmacy", "ready", "picked_up"):
        response = _transition(world, "clinician", refill_id, step)
        assert response.status_code == 200, (step, response.content)
        assert response.json()["status"] == step
    plan.refresh_from_db()
    assert plan.refills_remaining == 2
    history = list(
        RefillTransition.objects.filter(refill_id=refill_id).order_by("id").values_list("to_status", flat=True)
    )
    assert history == ["requested", "approved", "sent_to_pharmacy", "ready", "picked_up"]
    assert AuditEvent.objects.filter(entity_type="Task", entity_id=refill_id).count() == 5
    # A finished request frees the plan for the next one.
    assert post(world.client("guardian"), _request_url(world, plan), {}).status_code == 201


def test_invalid_transitions_and_denial_reason(world: World) -> None:
    plan = care_data.plan(world.ada, world.clinician)
    refill_id = post(world.client("guardian"), _request_url(world, plan), {}).json()["id"]
    assert _transition(world, "clinician", refill_id, "ready").status_code == 409
    assert _transition(world, "guardian", refill_id, "approved").status_code == 404  # not the care team
    no_reason = _transition(world, "clinician", refill_id, "denied")
    assert no_reason.status_code == 422 and no_reason.json()["code"] == "reason_required"
    denied = _transition(world, "clinician", refill_id, "denied", "Please book a review first")
    assert denied.json()["status"] == "denied"
    seen = world.client("guardian").get(f"/api/v1/children/{world.ada.pk}/refills").json()["items"]
    assert seen[0]["denial_reason"] == "Please book a review first"
    plan.refresh_from_db()
    assert plan.refills_remaining == 3  # a denial uses no refill


def test_guardian_may_cancel_only_early(world: World) -> None:
    plan = care_data.plan(world.ada, world.clinician)
    refill_id = post(world.client("guardian"), _request_url(world, plan), {}).json()["id"]
    assert _transition(world, "clinician", refill_id, "approved").status_code == 200
    assert _transition(world, "clinician", refill_id, "sent_to_pharmacy").status_code == 200
    assert _transition(world, "guardian", refill_id, "cancelled").status_code == 409
    other = care_data.plan(world.ada, world.clinician)
    second = post(world.client("co_guardian"), _request_url(world, other), {}).json()["id"]
    assert _transition(world, "guardian", second, "cancelled").json()["status"] == "cancelled"


def test_one_open_request_per_plan(world: World) -> None:
    plan = care_data.plan(world.ada, world.clinician)
    assert post(world.client("guardian"), _request_url(world, plan), {}).status_code == 201
    again = post(world.client("co_guardian"), _request_url(world, plan), {})
    assert again.status_code == 409 and again.json()["code"] == "refill_already_open"


def test_only_active_plans_with_refills_remaining(world: World) -> None:
    empty = care_data.plan(world.ada, world.clinician, refills_allowed=0, refills_remaining=0)
    response = post(world.client("guardian"), _request_url(world, empty), {})
    assert response.status_code == 409 and response.json()["code"] == "no_refills_remaining"
    stopped = care_data.plan(world.ada, world.clinician, status="stopped")
    response = post(world.client("guardian"), _request_url(world, stopped), {})
    assert response.status_code == 409 and response.json()["code"] == "plan_not_active"
    assert RefillRequest.objects.count() == 0


def test_idempotency_key_replays_and_refuses_a_different_body(world: World) -> None:
    plan = care_data.plan(world.ada, world.clinician)
    first = post(world.client("guardian"), _request_url(world, plan), {"note": "a"}, **{"Idempotency-Key": "k-1"})
    retry = post(world.client("guardian"), _request_url(world, plan), {"note": "a"}, **{"Idempotency-Key": "k-1"})
    assert first.status_code == retry.status_code == 201
    assert first.json() == retry.json()
    assert RefillRequest.objects.count() == 1
    # The stored answer is the refill's id only; the replay is shaped from the refill itself.
    assert IdempotencyRecord.objects.get().response == {"refill_id": first.json()["id"]}
    changed = post(world.client("guardian"), _request_url(world, plan), {"note": "b"}, **{"Idempotency-Key": "k-1"})
    assert changed.status_code == 422 and changed.json()["code"] == "idempotency_key_reused"
    too_long = post(world.client("guardian"), _request_url(world, plan), {}, **{"Idempotency-Key": "x" * 101})
    assert too_long.status_code == 422


def test_queue_shows_my_patients_only(world: World) -> None:
    ada_plan = care_data.plan(world.ada, world.clinician)
    ben_plan = care_data.plan(world.ben, world.other_clinician)
    care_data.refill(ada_plan, world.guardian)
    care_data.refill(ben_plan, world.other_guardian)
    mine = world.client("clinician").get("/api/v1/refills/queue").json()["items"]
    assert [row["child_id"] for row in mine] == [str(world.ada.pk)]
    assert mine[0]["medication"] == care_data.INSULIN
    assert world.client("guardian").get("/api/v1/refills/queue").json()["items"] == []
    assert world.client("stranger").get("/api/v1/refills/queue").json()["items"] == []


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_approvals_use_exactly_one_refill(needs_postgres: None) -> None:
    world = build_world()
    plan = care_data.plan(world.ada, world.clinician)
    refill = care_data.refill(plan, world.guardian)
    clients = [app_client(world.clinician) for _ in range(10)]
    url = f"/api/v1/children/{world.ada.pk}/refills/{refill.pk}/transition"

    def approve(index: int) -> int:
        try:
            return post(clients[index % 10], url, {"to": "approved"}).status_code
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(approve, range(50)))
    assert statuses.count(200) == 1 and statuses.count(409) == 49
    plan.refresh_from_db()
    assert plan.refills_remaining == 2


@pytest.mark.django_db(transaction=True)
def test_fifty_concurrent_identical_requests_with_one_key_create_one(needs_postgres: None) -> None:
    world = build_world()
    plan = care_data.plan(world.ada, world.clinician)
    clients = [app_client(world.guardian) for _ in range(10)]
    key = str(uuid.uuid4())

    def request(index: int) -> tuple[int, str]:
        try:
            response = post(clients[index % 10], _request_url(world, plan), {"note": "x"}, **{"Idempotency-Key": key})
            return response.status_code, response.json().get("id", "")
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(request, range(50)))
    assert {status for status, _ in results} == {201}
    assert len({refill_id for _, refill_id in results}) == 1
    assert RefillRequest.objects.count() == 1
