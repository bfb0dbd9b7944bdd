"""An urgent alert's steps reach the care team's sockets (``alert.changed``, and a ``notification`` for
the paged clinician); the family's sockets get none of them."""

from __future__ import annotations

from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.db.models import Max

from messaging.models import UrgentAlert, UserEvent
from tests.conftest import World, build_world
from tests.messaging import data
from tests.messaging.realtime.test_consumer import _close_worker_connections, _drain, _events_until, _socket, _token

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]
__all__ = ["_close_worker_connections"]  # the module's autouse clean-up applies here too


def _last_id(user: Any) -> int:
    return int(UserEvent.objects.filter(user=user).aggregate(m=Max("id"))["m"] or 0)


async def test_alert_steps_reach_the_care_team_sockets_only() -> None:
    world: World = await database_sync_to_async(build_world)()
    clinician = await _socket(await database_sync_to_async(_token)(world.clinician))
    guardian = await _socket(await database_sync_to_async(_token)(world.guardian))
    try:
        await database_sync_to_async(data.start_thread)(world, body="he is unconscious")
        alert = await database_sync_to_async(UrgentAlert.objects.get)()
        got = await _events_until(clinician, await database_sync_to_async(_last_id)(world.clinician))
        kinds = {(event["type"], event["entity_id"]) for event in got}
        assert ("alert.changed", str(alert.pk)) in kinds  # the lead: nobody else is on call
        [page] = [event for event in got if event["type"] == "notification"]
        assert page["data"]["alert_id"] == str(alert.pk) and page["data"]["kind"] == "urgent_message"
        seen = await _drain(guardian)
        assert seen and not any(event["type"] in ("alert.changed", "notification") for event in seen)
    finally:
        await clinician.disconnect()
        await guardian.disconnect()
