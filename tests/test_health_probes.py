"""``/health`` under a flood of probes: each process asks its dependencies at most once per
``PORTAL_HEALTH_PROBE_SECONDS``, answers before sessions and authentication, and still turns
degraded on the first probe after a dependency fails."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.sessions.backends.base import SessionBase
from django.test import Client

from portal import health
from tests.conftest import World


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def probed(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Counter[str], dict[str, str], Clock]]:
    """Every component replaced by one that counts its probes and answers what the test says."""
    settings.PORTAL_HEALTH_PROBE_SECONDS = 1
    clock = Clock()
    monkeypatch.setattr(health, "_clock", clock)
    calls: Counter[str] = Counter()
    states = dict.fromkeys(health.HEALTH_COMPONENTS, "ok")

    def check(name: str) -> Any:
        def run() -> str:
            calls[name] += 1
            return states[name]

        return run

    for name, component in list(health.HEALTH_COMPONENTS.items()):
        monkeypatch.setitem(health.HEALTH_COMPONENTS, name, health.HealthComponent(check(name), component.critical))
    health.forget()
    yield calls, states, clock
    health.forget()


def test_a_flood_probes_each_dependency_once_per_window(db: Any, probed: Any) -> None:
    calls, _, clock = probed
    client = Client()
    for _ in range(50):
        assert client.get("/api/v1/health").json()["status"] == "ok"
    assert calls == {"database": 1, "cache": 1, "channel_layer": 1, "worker": 1}
    clock.now += 1.0
    client.get("/api/v1/health")
    assert calls["cache"] == 2


def test_a_failure_shows_on_the_first_probe_after_the_window(db: Any, probed: Any) -> None:
    _, states, clock = probed
    client = Client()
    assert client.get("/api/v1/health").json()["status"] == "ok"
    states["cache"] = "unavailable"
    clock.now += 0.5
    assert client.get("/api/v1/health").json()["status"] == "ok"  # within the window: the last answer
    clock.now += 0.5
    answer = client.get("/api/v1/health")
    assert answer.status_code == 200
    assert answer.json()["status"] == "degraded" and answer.json()["degraded"] == ["cache"]
    states["database"] = "unavailable"
    clock.now += 1.0
    down = client.get("/api/v1/health")
    assert down.status_code == 503 and down.json()["status"] == "down"


def test_a_component_registered_later_is_probed_at_once(db: Any, probed: Any) -> None:
    client = Client()
    client.get("/api/v1/health")
    health.register_health_component("search_index", lambda: "unavailable")
    try:
        assert client.get("/api/v1/health").json()["degraded"] == ["search_index"]
    finally:
        del health.HEALTH_COMPONENTS["search_index"]


def test_health_resolves_no_session_and_keeps_its_contract(
    world: World, probed: Any, monkeypatch: pytest.MonkeyPatch, django_assert_num_queries: Any
) -> None:
    browser = Client()
    browser.force_login(world.guardian)
    token = world.client("guardian").defaults["HTTP_X_SESSION_TOKEN"]
    loads: list[str] = []
    real_load = SessionBase._get_session  # type: ignore[attr-defined]

    def counting(self: SessionBase, no_load: bool = False) -> Any:
        loads.append(str(self.session_key))
        return real_load(self, no_load)

    monkeypatch.setattr(SessionBase, "_get_session", counting)
    browser.get("/api/v1/health")  # probes once
    with django_assert_num_queries(0):
        answers = [browser.get("/api/v1/health"), browser.get("/api/v1/health", headers={"X-Session-Token": token})]
    assert loads == []
    for answer in answers:
        assert answer.status_code == 200
        assert answer["Content-Type"] == "application/json; charset=utf-8"
        assert "no-store" in answer["Cache-Control"] and answer["X-Content-Type-Options"] == "nosniff"
        assert "Set-Cookie" not in answer
        assert answer.json() == {
            "status": "ok",
            "components": {"database": "ok", "cache": "ok", "channel_layer": "ok", "worker": "ok"},
            "degraded": [],
        }


def test_other_methods_still_reach_the_api(db: Any, probed: Any) -> None:
    answer = Client().post("/api/v1/health")
    assert answer.status_code == 405 and answer.json()["code"] == "method_not_allowed"
