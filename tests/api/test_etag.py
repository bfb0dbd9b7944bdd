"""ETag / If-None-Match on the main reads: a 304 without a body when nothing changed, a new tag when
something did, never a 304 where the 200 would have been refused, and never cacheable."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine

from tests import care_data
from tests.conftest import World
from tests.messaging import data as messaging_data

NOW = datetime(2030, 3, 6, 15, 0, tzinfo=UTC)  # a Wednesday


@pytest.fixture
def frozen() -> Any:
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def _reads(world: World) -> list[str]:
    child = f"/api/v1/children/{world.ada.pk}"
    return ["/api/v1/me/today", "/api/v1/children", f"{child}/medications", f"{child}/appointments", f"{child}/threads"]


def _no_store(response: Any) -> None:
    assert "no-store" in response["Cache-Control"] and "private" in response["Cache-Control"]


def test_an_unchanged_read_is_304_without_a_body(world: World, frozen: Any) -> None:
    care_data.plan(world.ada, world.clinician)
    care_data.appointment(world.ada, world.clinician)
    messaging_data.thread(world)
    client = world.client("guardian")
    for url in _reads(world):
        first = client.get(url)
        assert first.status_code == 200, url
        tag = first["ETag"]
        assert tag.strip('W/"') and tag.endswith('"')
        _no_store(first)
        again = client.get(url, headers={"If-None-Match": tag})
        assert again.status_code == 304, url
        assert again.content == b"" and again["ETag"] == tag
        _no_store(again)
        # A list of tags, a weak form of the same tag, and "*" match too; another tag does not.
        assert client.get(url, headers={"If-None-Match": f'"other", {tag}'}).status_code == 304
        assert client.get(url, headers={"If-None-Match": "W/" + tag.removeprefix("W/")}).status_code == 304
        assert client.get(url, headers={"If-None-Match": '"something-else"'}).status_code == 200


def test_today_keeps_its_tag_as_time_passes_and_changes_it_when_the_content_does(world: World, frozen: Any) -> None:
    plan = care_data.plan(world.ada, world.clinician)
    client = world.client("guardian")
    first = client.get("/api/v1/me/today")
    tag = first["ETag"]
    assert tag.startswith("W/")  # generated_at is left out: the tag is weak
    frozen.shift(timedelta(seconds=20))
    later = client.get("/api/v1/me/today", headers={"If-None-Match": tag})
    assert later.status_code == 304
    care_data.refill(plan, world.guardian)
    changed = client.get("/api/v1/me/today", headers={"If-None-Match": tag})
    assert changed.status_code == 200 and changed["ETag"] != tag


def test_a_change_gives_a_new_tag(world: World, frozen: Any) -> None:
    client = world.client("guardian")
    url = f"/api/v1/children/{world.ada.pk}/medications"
    tag = client.get(url)["ETag"]
    care_data.plan(world.ada, world.clinician)
    changed = client.get(url, headers={"If-None-Match": tag})
    assert changed.status_code == 200 and changed["ETag"] != tag and changed.json()["items"]


def test_a_matching_tag_never_turns_a_refusal_into_a_304(world: World, frozen: Any) -> None:
    care_data.plan(world.ada, world.clinician)
    url = f"/api/v1/children/{world.ada.pk}/medications"
    tag = world.client("guardian").get(url)["ETag"]
    for persona in ("other_guardian", "revoked_guardian", "other_clinician", "stranger"):
        refused = world.client(persona).get(url, headers={"If-None-Match": tag})
        assert refused.status_code == 404, persona
        assert "ETag" not in refused


def test_writes_carry_no_tag(world: World, frozen: Any) -> None:
    client = world.client("guardian")
    created = client.post(
        f"/api/v1/children/{world.ada.pk}/coverage",
        data={"payer": "P", "member_id": "M"},
        content_type="application/json",
    )
    assert created.status_code == 201 and "ETag" not in created
