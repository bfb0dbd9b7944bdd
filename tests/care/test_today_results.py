"""``/me/today`` shows each child's results and visit summaries released since the guardian last
listed or opened them, and never what the guardian may not read."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.test import Client

from care.models import ResultsSeen
from care.services import results
from portal.models import AuditEvent
from tests.care import results_data
from tests.conftest import World, app_client

NOW = datetime(2027, 3, 3, 15, 0, tzinfo=UTC)  # Ada is 8, Ben 11: both in full scope
HOLD = {"genetic": 72.0}


@pytest.fixture
def clock() -> Any:
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def new_of(client: Client) -> Any:
    """The first child's ``new_results`` (the personas see Ada alone)."""
    children = client.get("/api/v1/me/today").json()["children"]
    return children[0]["new_results"] if children else None


def names(client: Client) -> list[str]:
    found = new_of(client)
    return [item["name"] for item in found["items"]] if found else []


def test_a_new_result_shows_until_the_guardian_lists_results(world: World, clock: Any) -> None:
    row = results_data.result(world.ada, world.clinician, name="Glucose", interpretation="high")
    guardian = world.client("guardian")
    found = new_of(guardian)
    assert found["results"] == 1 and found["visit_summaries"] == 0
    assert found["items"] == [
        {
            "kind": "result",
            "id": str(row.pk),
            "name": "Glucose",
            "date": row.effective_at.isoformat().replace("+00:00", "Z"),
            "released_at": NOW.isoformat().replace("+00:00", "Z"),
            "interpretation": "high",
        }
    ]
    # Reading today audits the result read by name, in the same append.
    assert AuditEvent.objects.filter(actor_id=world.guardian.pk, entity_type="Observation", action="read").exists()
    clock.shift(timedelta(minutes=5))
    assert guardian.get(f"/api/v1/children/{world.ada.pk}/results").status_code == 200
    assert new_of(guardian)["results"] == 0 and names(guardian) == []
    # The co-guardian has not looked yet: it is still new to them.
    assert names(world.client("co_guardian")) == ["Glucose"]
    # A later result is new again, and only it.
    clock.shift(timedelta(hours=1))
    results_data.result(world.ada, name="Ketones")
    assert names(guardian) == ["Ketones"]


def test_opening_one_result_sees_it_and_what_came_before(world: World, clock: Any) -> None:
    first = results_data.result(world.ada, name="First")
    clock.shift(timedelta(minutes=10))
    second = results_data.result(world.ada, name="Second")
    clock.shift(timedelta(minutes=10))
    guardian = world.client("guardian")
    assert names(guardian) == ["Second", "First"]
    assert guardian.get(f"/api/v1/children/{world.ada.pk}/results/{first.pk}").status_code == 200
    assert names(guardian) == ["Second"]
    # Opening an older one never moves the marker back.
    assert guardian.get(f"/api/v1/children/{world.ada.pk}/results/{second.pk}").status_code == 200
    assert guardian.get(f"/api/v1/children/{world.ada.pk}/results/{first.pk}").status_code == 200
    assert names(guardian) == []
    assert ResultsSeen.objects.get(guardian=world.guardian).results_seen_at == second.released_at


def test_visit_summaries_are_seen_on_their_own(world: World, clock: Any) -> None:
    summary = results_data.summary(world.ada, title="Diabetes review")
    results_data.result(world.ada, name="HbA1c")
    guardian = world.client("guardian")
    found = new_of(guardian)
    assert (found["results"], found["visit_summaries"]) == (1, 1)
    assert {item["kind"] for item in found["items"]} == {"result", "visit_summary"}
    assert next(i for i in found["items"] if i["kind"] == "visit_summary")["interpretation"] is None
    clock.shift(timedelta(minutes=1))
    assert guardian.get(f"/api/v1/children/{world.ada.pk}/visit-summaries/{summary.pk}").status_code == 200
    assert names(guardian) == ["HbA1c"]
    assert guardian.get(f"/api/v1/children/{world.ada.pk}/results").status_code == 200
    assert names(guardian) == []


def test_held_results_show_once_their_hold_ends(world: World, clock: Any, settings: Any) -> None:
    settings.PORTAL_RESULT_HOLD = HOLD
    results_data.result(world.ada, name="Genome panel", category="genetic")
    guardian = world.client("guardian")
    assert names(guardian) == []
    guardian.get(f"/api/v1/children/{world.ada.pk}/results")  # seen up to now: the held one is not out
    clock.shift(timedelta(hours=73))  # the hold is over before the sweep records it
    assert names(app_client(world.guardian)) == ["Genome panel"]  # a new sign-in: the old session expired


def test_confidential_limited_scope_and_statuses_families_do_not_read_stay_out(world: World, clock: Any) -> None:
    results_data.result(world.ada, name="Confidential CANARYLAB", confidential=True)
    results_data.summary(world.ada, title="Confidential CANARYDOC", confidential=True)
    results_data.result(world.ada, name="Pending CANARYLAB", status="registered")
    assert new_of(world.client("guardian")) == {"results": 0, "visit_summaries": 0, "items": []}
    results_data.result(world.ada, name="Shown")
    link = world.links["co_guardian"]
    link.scope = "limited"
    link.save(update_fields=["scope"])
    co = world.client("co_guardian").get("/api/v1/me/today").json()
    assert co["children"][0]["new_results"] is None and "Shown" not in json.dumps(co)
    assert names(world.client("guardian")) == ["Shown"]


def test_another_familys_results_never_show(world: World, clock: Any) -> None:
    results_data.result(world.ben, name="Ben CANARYLAB")
    results_data.summary(world.ben, title="Ben CANARYDOC")
    for persona in ("guardian", "co_guardian", "revoked_guardian", "stranger", "clinician"):
        body = json.dumps(world.client(persona).get("/api/v1/me/today").json())
        assert "CANARY" not in body, persona
    # Released at the same moment: the later-taken first (the result, two hours ago; the visit, yesterday).
    assert names(world.client("other_guardian")) == ["Ben CANARYLAB", "Ben CANARYDOC"]
    # Another family's guardian opening Ada's result is refused and leaves no marker behind.
    row = results_data.result(world.ada, name="Ada only")
    refused = world.client("other_guardian").get(f"/api/v1/children/{world.ada.pk}/results/{row.pk}")
    assert refused.status_code == 404
    assert not ResultsSeen.objects.filter(child=world.ada).exists()


def test_the_care_team_reading_results_marks_nothing(world: World, clock: Any) -> None:
    results_data.result(world.ada, name="Glucose")
    assert world.client("clinician").get(f"/api/v1/children/{world.ada.pk}/results").status_code == 200
    assert not ResultsSeen.objects.exists()
    assert names(world.client("guardian")) == ["Glucose"]


def test_only_the_last_thirty_days_count(world: World, clock: Any) -> None:
    results.result_record(
        actor=None,
        child=world.ada,
        source_id="old-1",
        name="Old",
        effective_at=NOW - timedelta(days=40),
        now=NOW - timedelta(days=31),
    )
    results_data.result(world.ada, name="Recent")
    assert names(world.client("guardian")) == ["Recent"]
