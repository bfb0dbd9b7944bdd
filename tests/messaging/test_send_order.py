"""Sending a message: its ``message.created`` event is the transaction's last write and its push the
first thing after the commit (everything else the message sets off is written before it and delivered
after it), a failed send leaves nothing behind and pushes nothing, and the send's queries are counted."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from django.db import connection, transaction
from django.test import TestCase
from django.test.utils import CaptureQueriesContext

from messaging import notify, push, sending
from messaging.models import Message, Notification, UserEvent
from messaging.realtime import stream
from portal import audit
from portal.access import Capability, child_for, resolve_access
from portal.vocabulary import EventType, Resource
from tests.conftest import World
from tests.messaging import data


@pytest.fixture
def after_commit(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """What runs after each commit, in order: each pushed event (type, entity id, recipient) and each
    batch of notifications queued."""
    seen: list[tuple[str, Any]] = []

    def push(rows: list[UserEvent]) -> None:
        seen.extend((str(row.type), (str(row.entity_id), row.user_id)) for row in rows)

    def enqueue(ids: list[str]) -> None:
        seen.append(("notifications", tuple(ids)))

    monkeypatch.setattr(stream, "_push", push)
    monkeypatch.setattr(notify, "_enqueue_all", enqueue)
    return seen


def _emit(entity_id: uuid.UUID, world: World, *, first: bool = False) -> None:
    stream.emit(
        users=[world.guardian.pk],
        type=EventType.THREAD_CHANGED,
        child_id=world.ada.pk,
        entity_type=Resource.MESSAGE_THREAD,
        entity_id=entity_id,
        first=first,
    )


def test_a_first_push_runs_ahead_of_earlier_callbacks_and_after_earlier_first_ones(
    world: World, after_commit: list[tuple[str, Any]]
) -> None:
    ids = [uuid.uuid4() for _ in range(4)]
    ran: list[str] = []
    with TestCase.captureOnCommitCallbacks(execute=True), transaction.atomic():
        _emit(ids[0], world)
        transaction.on_commit(lambda: ran.append(f"callback after {len(after_commit)} pushes"))
        _emit(ids[1], world, first=True)
        _emit(ids[2], world)
        _emit(ids[3], world, first=True)
    pushed = [entity for _, (entity, _) in after_commit]
    assert pushed == [str(ids[1]), str(ids[3]), str(ids[0]), str(ids[2])]
    assert ran == ["callback after 3 pushes"]  # the plain callback kept its place among the others


def test_a_first_push_of_a_rolled_back_savepoint_is_not_sent(world: World, after_commit: list[tuple[str, Any]]) -> None:
    kept, undone = uuid.uuid4(), uuid.uuid4()
    with TestCase.captureOnCommitCallbacks(execute=True), transaction.atomic():
        _emit(kept, world)
        with pytest.raises(RuntimeError), transaction.atomic():
            _emit(undone, world, first=True)
            raise RuntimeError("the inner change fails")
    assert [entity for _, (entity, _) in after_commit] == [str(kept)]
    assert not UserEvent.objects.filter(entity_id=undone).exists()


def test_a_care_team_reply_is_pushed_before_everything_else_it_sets_off(
    world: World, after_commit: list[tuple[str, Any]]
) -> None:
    with time_machine.travel(data.IN_BUSINESS_HOURS):
        thread = data.start_thread(world).json()
        after_commit.clear()
        reply = data.reply(world, thread["id"]).json()
    kinds = [kind for kind, _ in after_commit]
    created = [index for index, (kind, _) in enumerate(after_commit) if kind == EventType.MESSAGE_CREATED]
    assert created == list(range(len(created))) and created  # the reply's pushes lead
    assert {entity for _, (entity, _) in after_commit[: len(created)]} == {reply["id"]}
    assert EventType.THREAD_CHANGED in kinds and "notifications" in kinds  # and the rest follows
    # In the stream the reply's event is written last: ids above the thread.changed of the same send.
    events = UserEvent.objects.filter(user=world.guardian).order_by("-id")
    assert events[0].type == EventType.MESSAGE_CREATED and str(events[0].entity_id) == reply["id"]
    assert events[1].type == EventType.THREAD_CHANGED


def test_a_guardians_message_is_pushed_before_its_automatic_reply(
    world: World, after_commit: list[tuple[str, Any]]
) -> None:
    night = datetime(2027, 6, 10, 3, 0, tzinfo=UTC)  # 23:00 in New York: the pool is closed
    with time_machine.travel(night, tick=False):
        thread = data.start_thread(world).json()
        after_commit.clear()
        sent = data.reply(world, thread["id"], persona="guardian", body="Still a question").json()
    messages = [entity for kind, (entity, _) in after_commit if kind == EventType.MESSAGE_CREATED]
    automatic = Message.objects.filter(thread_id=thread["id"], kind=Message.Kind.AUTOMATIC).order_by("-position")
    latest = automatic.first()
    # The after-hours reply came with the first message; one more is sent only once per closed period.
    assert latest is not None and str(latest.pk) != sent["id"]
    assert messages and messages[0] == sent["id"]


def test_a_failed_send_writes_and_pushes_nothing(
    world: World, after_commit: list[tuple[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    with time_machine.travel(data.IN_BUSINESS_HOURS):
        thread = data.start_thread(world).json()
    after_commit.clear()
    before = (Message.objects.count(), UserEvent.objects.count(), Notification.objects.count())

    def fail(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the audit trail is unavailable")

    monkeypatch.setattr(audit, "record_for_child", fail)
    access = child_for(world.clinician, world.ada.pk, Capability.MESSAGE)
    with TestCase.captureOnCommitCallbacks(execute=True), pytest.raises(RuntimeError):
        sending.message_send(
            actor=world.clinician, access=access, thread_id=uuid.UUID(thread["id"]), body="x", client_id=uuid.uuid4()
        )
    assert (Message.objects.count(), UserEvent.objects.count(), Notification.objects.count()) == before
    assert after_commit == []


def test_a_care_team_reply_costs_a_fixed_number_of_queries(world: World) -> None:
    """The send service (the access decision made), in a thread the clinician already claimed: the
    idempotency lock (PostgreSQL), the thread's row lock, the replay check, the message, the audience
    (2), the guardians' notifications (their accounts with their preferences, the rows; one more read
    with web push on), the thread, the read receipt (one upsert), thread.changed, audit,
    message.created; nothing per recipient."""
    with time_machine.travel(data.IN_BUSINESS_HOURS):
        thread = data.start_thread(world).json()
        data.reply(world, thread["id"])
        access = child_for(world.clinician, world.ada.pk, Capability.MESSAGE)
        expected = 12 + (1 if connection.vendor == "postgresql" else 0) + (1 if push.enabled() else 0)
        with TestCase.captureOnCommitCallbacks(), CaptureQueriesContext(connection) as queries:
            sending.message_send(
                actor=world.clinician,
                access=access,
                thread_id=uuid.UUID(thread["id"]),
                body="An answer",
                client_id=uuid.uuid4(),
            )
    statements = [query["sql"] for query in queries.captured_queries if "SAVEPOINT" not in query["sql"]]
    assert len(statements) == expected, "\n".join(statements)


def test_the_access_decision_asks_for_the_portal_permission_only_when_a_capability_needs_it(world: World) -> None:
    with CaptureQueriesContext(connection) as queries:
        access = child_for(world.clinician, world.ada.pk, Capability.MESSAGE)
    assert access.is_clinician
    assert not any("auth_permission" in query["sql"] for query in queries.captured_queries)
    admin = resolve_access(world.admin, world.ada)
    with CaptureQueriesContext(connection) as queries:
        assert admin.can(Capability.APPROVE) and admin.can(Capability.MANAGE)
    assert any("auth_permission" in query["sql"] for query in queries.captured_queries)
    assert not resolve_access(world.guardian, world.ada).can(Capability.APPROVE)
