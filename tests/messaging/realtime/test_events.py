"""The event shapes the stream subscribes to: an addressed event reaches exactly the users it names
(and each is re-checked by its owner's delivery rule), and control events are never stored: they reach
the user's sockets after commit."""

from __future__ import annotations

import uuid
from typing import Any
from unittest import mock

import pytest
from django.db import transaction
from django.test import TestCase

from messaging.models import UserEvent
from messaging.realtime import control, delivery, stream
from portal import events
from portal.access import Capability
from portal.vocabulary import EventType, Resource
from tests.conftest import World

pytestmark = pytest.mark.django_db


def test_an_addressed_event_reaches_the_named_users_only(world: World) -> None:
    with transaction.atomic():
        events.publish(
            events.AddressedEvent.to(
                [world.guardian.pk, world.clinician.pk],
                type=EventType.THREAD_CHANGED,
                child_id=world.ada.pk,
                entity_type=Resource.MESSAGE_THREAD,
                entity_id=uuid.uuid4(),
                data={"status": "closed"},
            )
        )
    assert set(UserEvent.objects.values_list("user_id", flat=True)) == {world.guardian.pk, world.clinician.pk}


def test_a_confidential_thread_event_is_delivered_to_the_care_team_only(world: World) -> None:
    confidential = delivery.Delivery(
        entity_type=Resource.MESSAGE_THREAD,
        child_id=world.ada.pk,
        capability=str(Capability.MESSAGE),
        confidential=True,
    )
    assert delivery.may_receive(world.clinician, confidential)
    assert not delivery.may_receive(world.guardian, confidential)
    assert not delivery.may_receive(world.stranger, confidential)


def test_control_events_are_sent_after_commit_and_never_stored(world: World) -> None:
    sent: list[tuple[str, dict[str, Any]]] = []
    with (
        mock.patch.object(control, "_send", lambda group, message: sent.append((group, message))),
        TestCase.captureOnCommitCallbacks(execute=True),
        transaction.atomic(),
    ):
        events.end_sessions(user_id=world.guardian.pk, session_key="abc")
        events.access_revoked(user_id=world.guardian.pk)
        events.access_changed(user_id=world.guardian.pk)
        assert sent == []  # nothing before the commit
    group = control.user_group(world.guardian.pk)
    assert sent == [
        (group, {"type": "session.ended", "session_key": "abc"}),
        (group, {"type": "access.revoked"}),
        (group, {"type": "access.changed"}),
    ]
    assert not UserEvent.objects.exists()


def test_a_control_event_names_a_control_type() -> None:
    with pytest.raises(ValueError, match="not a control event"):
        events.ControlEvent(EventType.MESSAGE_CREATED, uuid.uuid4())


def test_the_stream_ignores_what_is_not_a_stream_event(world: World) -> None:
    stream.on_event(events.ControlEvent(EventType.ACCESS_CHANGED, world.guardian.pk))
    assert not UserEvent.objects.exists()
