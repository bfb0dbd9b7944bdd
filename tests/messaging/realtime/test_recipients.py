"""Who receives an event is decided when it is written, for all recipients at once: the same answer
as asking the delivery rule user by user, for every persona, capability and confidentiality, in a
fixed number of queries; a user named by mistake gets no row."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from messaging.groups.models import Group, Membership
from messaging.models import UserEvent
from messaging.realtime import delivery, stream
from portal.access import Capability
from portal.models import User
from portal.vocabulary import EventType, Resource
from tests.conftest import PERSONAS, World

pytestmark = pytest.mark.django_db

CAPABILITIES = (
    Capability.MESSAGE,
    Capability.SCHEDULE,
    Capability.CLINICAL,
    Capability.TREAT,
    Capability.MANAGE,
    Capability.FAMILY_SCHEDULE,
)


@pytest.mark.parametrize("entity_type", [Resource.MESSAGE_THREAD, Resource.APPOINTMENT])
@pytest.mark.parametrize("confidential", [False, True])
@pytest.mark.parametrize("capability", CAPABILITIES)
def test_recipients_match_the_rule_asked_user_by_user(
    world: World, entity_type: Resource, confidential: bool, capability: Capability
) -> None:
    everyone = {world.users[persona].pk for persona in PERSONAS}
    event = delivery.Delivery(
        entity_type=str(entity_type), child_id=world.ada.pk, capability=str(capability), confidential=confidential
    )
    expected = {user.pk for user in User.objects.filter(pk__in=everyone) if delivery.may_receive(user, event)}
    assert delivery.recipients(everyone, event) == expected
    # A guardian of another family, a revoked guardian, a clinician of another team, a stranger:
    # never, whatever the event.
    for persona in ("other_guardian", "revoked_guardian", "other_clinician", "stranger"):
        assert world.users[persona].pk not in expected


def test_a_child_event_costs_two_queries_whatever_the_number_of_recipients(world: World) -> None:
    everyone = {world.users[persona].pk for persona in PERSONAS}
    event = delivery.Delivery(
        entity_type=str(Resource.COMMUNICATION), child_id=world.ada.pk, capability="message", confidential=False
    )
    with CaptureQueriesContext(connection) as queries:
        allowed = delivery.recipients(everyone, event)
    assert allowed == {world.guardian.pk, world.co_guardian.pk, world.clinician.pk}
    assert len(queries) == 2


def test_rows_are_written_only_for_users_who_may_receive_them(world: World) -> None:
    with transaction.atomic():
        rows = stream.emit(
            users={world.users[persona].pk for persona in PERSONAS},
            type=EventType.MESSAGE_CREATED,
            child_id=world.ada.pk,
            entity_type=Resource.COMMUNICATION,
            entity_id=uuid.uuid4(),
        )
    assert {row.user_id for row in rows} == {world.guardian.pk, world.co_guardian.pk, world.clinician.pk}
    assert UserEvent.objects.count() == 3


def test_a_group_post_reaches_live_members_only(world: World) -> None:
    group = Group.objects.create(
        name="Parents", description="Parents of children with diabetes", created_by=world.guardian
    )
    Membership.objects.create(group=group, user=world.guardian, pseudonym="Robin", status=Membership.Status.ACTIVE)
    Membership.objects.create(group=group, user=world.co_guardian, pseudonym="Kim", status=Membership.Status.BANNED)
    event = delivery.Delivery(
        entity_type=str(Resource.GROUP_POST),
        child_id=None,
        capability="message",
        confidential=False,
        data={"group_id": str(group.pk)},
    )
    named = {world.guardian.pk, world.co_guardian.pk, world.stranger.pk}
    assert delivery.recipients(named, event) == {world.guardian.pk}


def test_the_audience_worked_out_in_the_transaction_decides_without_asking_again(
    world: World, django_capture_on_commit_callbacks: Any
) -> None:
    everyone = {world.users[persona].pk for persona in PERSONAS}
    event = delivery.Delivery(
        entity_type=str(Resource.COMMUNICATION), child_id=world.ada.pk, capability="message", confidential=False
    )
    allowed = {world.guardian.pk, world.co_guardian.pk, world.clinician.pk}
    # (The test runs inside a transaction of its own: its commit is what the capture stands for.)
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        crowd = stream.audience(world.ada.pk, Capability.MESSAGE, False)
        assert crowd.everyone == allowed
        with CaptureQueriesContext(connection) as queries:
            assert delivery.recipients(everyone, event) == allowed
        assert len(queries) == 0
        # What was worked out in a savepoint that rolled back is forgotten with it.
        try:
            with transaction.atomic():
                stream.audience(world.ben.pk, Capability.MESSAGE, False)
                raise RuntimeError
        except RuntimeError:
            pass
        about_ben = delivery.Delivery(
            entity_type=str(Resource.COMMUNICATION), child_id=world.ben.pk, capability="message", confidential=False
        )
        with CaptureQueriesContext(connection) as queries:
            assert delivery.recipients(everyone, about_ben) == {world.other_guardian.pk, world.other_clinician.pk}
        assert len(queries) == 2
    # A new transaction starts with nothing known.
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        assert delivery.recipients(everyone, event) == allowed
    assert len(queries) == 2
