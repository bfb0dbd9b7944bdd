"""Every child-scoped endpoint against every persona: 0 leaks, every denial audited."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from portal.apiroot import api
from tests.conftest import World
from tests.matrix import ENDPOINTS, Endpoint, assert_matrix
from tests.matrix_scenarios import SCENARIOS


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: f"{e.method} {e.path}")
def test_persona_matrix(world: World, endpoint: Endpoint) -> None:
    assert_matrix(world, endpoint)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
def test_persona_scenario(world: World, scenario: Callable[[World], None]) -> None:
    """Staff self-invitation, creator redemption, clinician after removal, the limited-scope diagnosis
    scan and guardian-only actions as clinicians."""
    scenario(world)


def _child_scoped_operations() -> set[tuple[str, str]]:
    found = set()
    for bound in api._get_bound_routers():
        for path, path_view in bound.path_operations.items():
            if "{child_id}" not in path:
                continue
            for operation in path_view.operations:
                for method in operation.methods:
                    found.add((method, re.sub(r"\{(\w+)_id\}", r"{\1}", path)))
    return found


def test_matrix_covers_every_child_scoped_operation() -> None:
    registered = {(e.method, e.path) for e in ENDPOINTS}
    assert _child_scoped_operations() == registered


def test_unknown_child_id_is_404_and_audited(world: World) -> None:
    for bad in ("not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        response = world.client("guardian").get(f"/api/v1/children/{bad}")
        assert response.status_code in (404, 422)
