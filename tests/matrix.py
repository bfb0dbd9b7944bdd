"""The persona matrix: every child-scoped endpoint, called by every persona.

Those without access get 404 with the standard error body, no PHI of either child, and a ``deny``
audit row. ``ENDPOINTS`` must list every operation whose path names a child; a test checks it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from portal.models import AuditEvent
from tests.conftest import ADA_MRN, ADA_NAME, BEN_MRN, BEN_NAME, PERSONAS, World

READERS = frozenset({"guardian", "co_guardian", "clinician"})
MANAGERS = frozenset({"clinician", "admin"})


@dataclass
class Endpoint:
    method: str
    path: str  # with {child} and other placeholders filled by ``params``
    allowed: frozenset[str]
    body: Callable[[World], dict[str, Any]] | None = None
    params: Callable[[World], dict[str, str]] = field(default=lambda world: {})

    @property
    def route(self) -> str:
        return self.path


ENDPOINTS: list[Endpoint] = []


def register(endpoint: Endpoint) -> Endpoint:
    ENDPOINTS.append(endpoint)
    return endpoint


def phi_strings(world: World) -> list[str]:
    return [
        ADA_NAME,
        ADA_MRN,
        BEN_NAME,
        BEN_MRN,
        "Adaline",
        "Canaryfeather",
        "46635009",
        "84757009",
        world.ada.date_of_birth.isoformat(),
    ]


def call(world: World, persona: str, endpoint: Endpoint) -> Any:
    client = world.client(persona)
    values = {"child": str(world.ada.pk), **endpoint.params(world)}
    url = "/api/v1" + endpoint.path.format(**values)
    body = endpoint.body(world) if endpoint.body else None
    kwargs: dict[str, Any] = {}
    if body is not None:
        kwargs = {"data": json.dumps(body), "content_type": "application/json"}
    return getattr(client, endpoint.method.lower())(url, **kwargs)


def assert_matrix(world: World, endpoint: Endpoint) -> None:
    """Run ``endpoint`` against every persona and assert the policy held, leaking nothing."""
    leaks = []
    for persona in PERSONAS:
        denials_before = AuditEvent.objects.filter(action="deny").count()
        response = call(world, persona, endpoint)
        text = response.content.decode()
        if persona in endpoint.allowed:
            assert response.status_code < 500, (persona, response.status_code, text)
            assert response.status_code != 404, (persona, endpoint.path, text)
            continue
        assert response.status_code == 404, (persona, endpoint.method, endpoint.path, response.status_code, text)
        assert json.loads(text)["code"] == "not_found"
        for secret in phi_strings(world):
            if secret in text:
                leaks.append((persona, endpoint.path, secret))
        assert AuditEvent.objects.filter(action="deny").count() == denials_before + 1, (persona, endpoint.path)
    assert leaks == []
