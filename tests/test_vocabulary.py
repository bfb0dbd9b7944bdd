"""The typed vocabulary is what is actually written: every audit row and every stream event the API
produces names its entity and change with a member of ``portal.vocabulary``, and the metrics tables
that read the audit trail only name entity types the services write."""

from __future__ import annotations

import pytest

from messaging.models import UserEvent
from portal.metrics.topics import MESSAGE_ENTITY_TYPE, POPULATION_ENTITY_TYPES, SELF_SERVICE_ACTIONS
from portal.models import AuditEvent
from portal.vocabulary import EventType, Resource
from tests.conftest import World
from tests.matrix import ENDPOINTS, Endpoint, assert_matrix

pytestmark = pytest.mark.django_db

# Endpoints that write (and so audit and publish) as well as read, walked by every persona.
WRITES = [e for e in ENDPOINTS if e.method in {"POST", "PATCH", "PUT", "DELETE"}]


@pytest.mark.parametrize("endpoint", WRITES, ids=lambda e: f"{e.method} {e.path}")
def test_every_audited_entity_and_stream_event_is_in_the_vocabulary(world: World, endpoint: Endpoint) -> None:
    assert_matrix(world, endpoint)
    audited = set(AuditEvent.objects.values_list("entity_type", flat=True))
    assert audited <= {str(member) for member in Resource}, audited - set(Resource)
    events = set(UserEvent.objects.values_list("type", "entity_type"))
    assert {kind for kind, _ in events} <= {str(member) for member in EventType}
    assert {entity for _, entity in events} <= {str(member) for member in Resource}


def test_metrics_tables_name_members_of_the_vocabulary() -> None:
    assert all(isinstance(entity, Resource) for entity, _ in SELF_SERVICE_ACTIONS)
    assert all(isinstance(entity, Resource) for entity in POPULATION_ENTITY_TYPES)
    assert isinstance(MESSAGE_ENTITY_TYPE, Resource)
    # Guardian links are audited as RelatedPerson: the population picks their changes up.
    assert Resource.RELATED_PERSON in POPULATION_ENTITY_TYPES
