"""One idempotency mechanism for ``Idempotency-Key`` (refills) and ``client_id`` (threads, messages):
concurrent duplicates are serialised on a lock on the key, a retry gets the first answer (or
``409 in_progress`` with ``Retry-After`` while the first is still running), never a 500, and replays
do not count against rate limits."""

from __future__ import annotations

import json
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import time_machine
from django.db import connections, transaction
from django.test import Client, override_settings
from django.utils import timezone

from care.models import RefillRequest
from messaging.models import Message, Thread
from portal import idempotency
from portal.models import IdempotencyRecord
from tests import care_data
from tests.conftest import app_client, build_world

CONCURRENT = 50
# Threads in flight at once: each holds a database connection, and PostgreSQL is shared.
WORKERS = 25


def post(client: Client, url: str, body: dict[str, Any], **headers: str) -> Any:
    return client.post(url, data=json.dumps(body), content_type="application/json", headers=headers)


def _concurrently(call: Any) -> list[Any]:
    start = threading.Barrier(WORKERS)

    def run(index: int) -> Any:
        try:
            if index < WORKERS:
                start.wait(timeout=30)
            return call(index)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return list(pool.map(run, range(CONCURRENT)))


@pytest.mark.django_db(transaction=True)
def test_concurrent_keyed_refill_requests_get_the_first_answer(needs_postgres: None) -> None:
    world = build_world()
    plan = care_data.plan(world.ada, world.clinician)
    clients = [app_client(world.guardian) for _ in range(WORKERS)]
    url = f"/api/v1/children/{world.ada.pk}/medications/{plan.pk}/refills"
    key = str(uuid.uuid4())

    def request(index: int) -> tuple[int, Any]:
        answer = post(clients[index % WORKERS], url, {"note": "x"}, **{"Idempotency-Key": key})
        return answer.status_code, answer.json()

    results = _concurrently(request)
    assert [status for status, _ in results] == [201] * CONCURRENT
    assert len({json.dumps(body, sort_keys=True) for _, body in results}) == 1
    assert RefillRequest.objects.count() == 1
    assert IdempotencyRecord.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_thread_creations_with_one_client_id_make_one_and_spare_the_quota(needs_postgres: None) -> None:
    world = build_world()
    clients = [app_client(world.guardian) for _ in range(WORKERS)]
    url = f"/api/v1/children/{world.ada.pk}/threads"
    body = {"subject": "Sleep", "topic": "medical", "body": "Is this normal?", "client_id": str(uuid.uuid4())}
    # One instant (every thread sees the frozen clock), so one fixed rate-limit window throughout.
    with override_settings(PORTAL_MESSAGE_RATE="5/m"), time_machine.travel(timezone.now(), tick=False):
        results = _concurrently(lambda index: post(clients[index % WORKERS], url, body))
        statuses = [answer.status_code for answer in results]
        assert sorted(statuses) == [200] * (CONCURRENT - 1) + [201], statuses
        assert len({answer.json()["id"] for answer in results}) == 1
        assert Thread.objects.count() == 1 and Message.objects.filter(author=world.guardian).count() == 1
        # The duplicates used none of the 5 sends a minute: four more distinct ones pass, the sixth is 429.
        thread_id = results[0].json()["id"]
        more = [
            post(clients[0], f"{url}/{thread_id}/messages", {"body": f"More {n}", "client_id": str(uuid.uuid4())})
            for n in range(5)
        ]
        assert [answer.status_code for answer in more] == [201, 201, 201, 201, 429]


@pytest.mark.django_db(transaction=True)
def test_concurrent_message_retries_with_one_client_id_store_one(needs_postgres: None) -> None:
    world = build_world()
    clients = [app_client(world.clinician) for _ in range(WORKERS)]
    opened = post(
        clients[0],
        f"/api/v1/children/{world.ada.pk}/threads",
        {"subject": "Plan", "topic": "medical", "body": "Hello", "client_id": str(uuid.uuid4())},
    )
    url = f"/api/v1/children/{world.ada.pk}/threads/{opened.json()['id']}/messages"
    body = {"body": "The new plan starts Monday.", "client_id": str(uuid.uuid4())}
    results = _concurrently(lambda index: post(clients[index % WORKERS], url, body))
    assert sorted(answer.status_code for answer in results) == [200] * (CONCURRENT - 1) + [201]
    assert len({answer.json()["id"] for answer in results}) == 1
    assert Message.objects.filter(client_id=body["client_id"]).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_retry_while_the_first_still_runs_is_409_in_progress(needs_postgres: None) -> None:
    world = build_world()
    plan = care_data.plan(world.ada, world.clinician)
    url = f"/api/v1/children/{world.ada.pk}/medications/{plan.pk}/refills"
    key = "slow-first"
    holding, release = threading.Event(), threading.Event()

    def first_request_still_running() -> None:
        try:
            with transaction.atomic():
                idempotency.lock_key(user=world.guardian, scope="refill.request", key=key)
                holding.set()
                release.wait(timeout=30)
        finally:
            connections.close_all()

    holder = threading.Thread(target=first_request_still_running)
    holder.start()
    try:
        assert holding.wait(timeout=10)
        with override_settings(PORTAL_IDEMPOTENCY_WAIT_SECONDS=0.3):
            answer = post(app_client(world.guardian), url, {"note": "x"}, **{"Idempotency-Key": key})
        assert answer.status_code == 409
        assert answer.json()["code"] == "in_progress"
        assert int(answer["Retry-After"]) >= 1
    finally:
        release.set()
        holder.join(timeout=30)
    assert RefillRequest.objects.count() == 0
    retry = post(app_client(world.guardian), url, {"note": "x"}, **{"Idempotency-Key": key})
    assert retry.status_code == 201
