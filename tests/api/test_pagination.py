"""Every list is a page: ``{"items", "next"}``, a bounded ``limit``, an opaque cursor that survives
equal sort keys, refuses tampering, and costs the same queries on every page."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from portal.apiroot import api
from tests import care_data
from tests.care import results_data
from tests.conftest import World

NOW = datetime(2030, 3, 6, 15, 0, tzinfo=UTC)


@pytest.fixture
def frozen() -> Any:
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def _walk(client: Any, url: str, limit: int, **extra: str) -> tuple[list[str], int]:
    """Every id of the list, page by page; and the number of pages."""
    ids: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": limit, **extra}
        if cursor:
            params["cursor"] = cursor
        answer = client.get(url, params)
        assert answer.status_code == 200, answer.content
        body = answer.json()
        assert set(body) == {"items", "next"}
        assert len(body["items"]) <= limit
        ids += [row["id"] for row in body["items"]]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            return ids, pages


def test_equal_sort_keys_at_a_page_boundary_are_neither_skipped_nor_repeated(world: World, frozen: Any) -> None:
    # Seven results taken and recorded at the same instant: only the id tells them apart.
    taken = NOW - timedelta(hours=3)
    made = {str(results_data.result(world.ada, effective_at=taken).pk) for _ in range(7)}
    ids, pages = _walk(world.client("guardian"), f"/api/v1/children/{world.ada.pk}/results", limit=3)
    assert len(ids) == len(set(ids)) == 7 and set(ids) == made
    assert pages == 3
    assert ids == sorted(ids)  # the id breaks the tie, ascending


def test_a_list_computed_in_full_pages_the_same_way(world: World, frozen: Any) -> None:
    # Medicines are computed per plan (next dose, adherence) and paged over the sorted whole.
    start = datetime(2029, 1, 1, tzinfo=UTC)
    made = {str(care_data.plan(world.ada, world.clinician, start=start).pk) for _ in range(5)}
    ids, pages = _walk(world.client("guardian"), f"/api/v1/children/{world.ada.pk}/medications", limit=2)
    assert len(ids) == len(set(ids)) == 5 and set(ids) == made and pages == 3


def test_descending_lists_page_newest_first(world: World, frozen: Any) -> None:
    made = [care_data.appointment(world.ada, world.clinician, hours_from_now=-hours) for hours in (30, 10, 20)]
    ids, _ = _walk(world.client("guardian"), f"/api/v1/children/{world.ada.pk}/appointments", limit=1, when="past")
    by_start = sorted(made, key=lambda row: row.start, reverse=True)
    assert ids == [str(row.pk) for row in by_start]


def test_a_tampered_or_foreign_cursor_is_400_with_a_code(world: World, frozen: Any) -> None:
    for _ in range(3):
        results_data.result(world.ada, effective_at=NOW - timedelta(hours=1))
    url = f"/api/v1/children/{world.ada.pk}/results"
    guardian = world.client("guardian")
    cursor = guardian.get(url, {"limit": 1}).json()["next"]
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[-1] ^= 1
    tampered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    refusals = [
        guardian.get(url, {"cursor": tampered}),
        guardian.get(url, {"cursor": "not-a-cursor"}),
        guardian.get(url, {"cursor": "!!!"}),
        # The same cursor on another list, or by another account (the co-guardian sees the same list).
        guardian.get(f"/api/v1/children/{world.ada.pk}/visit-summaries", {"cursor": cursor}),
        world.client("co_guardian").get(url, {"cursor": cursor}),
    ]
    for answer in refusals:
        assert answer.status_code == 400, answer.content
        assert answer.json()["code"] == "invalid_cursor" and answer.json()["message"]
    assert guardian.get(url, {"cursor": cursor}).status_code == 200


def test_the_cursor_reveals_nothing(world: World, frozen: Any) -> None:
    taken = datetime(2030, 3, 1, 9, 30, tzinfo=UTC)
    for _ in range(2):
        results_data.result(world.ada, effective_at=taken)
    cursor = world.client("guardian").get(f"/api/v1/children/{world.ada.pk}/results", {"limit": 1}).json()["next"]
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    assert b"2030" not in raw and b"09:30" not in raw
    # Deterministic: the same page carries the same cursor (so its ETag holds).
    again = world.client("guardian").get(f"/api/v1/children/{world.ada.pk}/results", {"limit": 1}).json()["next"]
    assert again == cursor


@pytest.mark.parametrize("limit", ["0", "201", "-1", "many"])
def test_the_limit_is_bounded(world: World, limit: str) -> None:
    answer = world.client("guardian").get("/api/v1/children", {"limit": limit})
    assert answer.status_code == 422 and answer.json()["code"] == "invalid_input"


def test_the_default_page_is_fifty(world: World, frozen: Any) -> None:
    for _ in range(51):
        results_data.result(world.ada, effective_at=NOW - timedelta(hours=1))
    body = world.client("guardian").get(f"/api/v1/children/{world.ada.pk}/results").json()
    assert len(body["items"]) == 50 and body["next"]


def _queries(client: Any, url: str, params: dict[str, Any]) -> tuple[int, Any]:
    with CaptureQueriesContext(connection) as captured:
        answer = client.get(url, params)
    assert answer.status_code == 200
    return len(captured.captured_queries), answer.json()


@pytest.mark.parametrize(
    ("path", "make"),
    [
        ("results", lambda world: results_data.result(world.ada, effective_at=NOW - timedelta(hours=1))),
        ("appointments", lambda world: care_data.appointment(world.ada, world.clinician)),
        ("refills", lambda world: care_data.refill(care_data.plan(world.ada, world.clinician), world.guardian)),
    ],
)
def test_every_page_costs_the_same_queries_whatever_the_list_size(
    world: World, frozen: Any, path: str, make: Any
) -> None:
    url = f"/api/v1/children/{world.ada.pk}/{path}"
    client = world.client("guardian")
    for _ in range(5):
        make(world)
    client.get(url)  # warm the session
    first, body = _queries(client, url, {"limit": 2})
    second, _ = _queries(client, url, {"limit": 2, "cursor": body["next"]})
    for _ in range(20):
        make(world)
    larger, body = _queries(client, url, {"limit": 2})
    later, _ = _queries(client, url, {"limit": 2, "cursor": body["next"]})
    assert first == second == larger == later


def test_no_operation_answers_a_bare_list() -> None:
    document = api.get_openapi_schema()
    bare = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                if schema.get("type") == "array":
                    bare.append(f"{method.upper()} {path} {status}")
                if method == "get" and schema.get("$ref", "").split("/")[-1].startswith("Page_"):
                    names = {parameter["name"] for parameter in operation.get("parameters", [])}
                    assert {"limit", "cursor"} <= names, path
    assert bare == []


def test_an_unknown_query_parameter_is_refused(world: World) -> None:
    answer = world.client("guardian").get(f"/api/v1/children/{world.ada.pk}/results", {"offset": "10"})
    assert answer.status_code == 422 and answer.json()["code"] == "invalid_input"
    assert answer.json()["errors"] == [
        {"loc": ["query", "offset"], "type": "extra_forbidden", "msg": "Unknown parameter"}
    ]
