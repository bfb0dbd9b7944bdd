"""Apps add their /health components from ``AppConfig.ready``; the portal core imports no app for it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from portal import api


@pytest.fixture
def components() -> Iterator[dict[str, api.HealthComponent]]:
    saved = dict(api.HEALTH_COMPONENTS)
    yield api.HEALTH_COMPONENTS
    api.HEALTH_COMPONENTS.clear()
    api.HEALTH_COMPONENTS.update(saved)


def test_the_messaging_app_registers_the_worker() -> None:
    assert list(api.HEALTH_COMPONENTS)[:3] == ["database", "cache", "channel_layer"]
    assert "worker" in api.HEALTH_COMPONENTS and not api.HEALTH_COMPONENTS["worker"].critical


def test_a_registered_check_that_raises_reports_error_and_degrades(
    db: Any, components: dict[str, api.HealthComponent], caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> str:
        raise RuntimeError("probe failed")

    api.register_health_component("search_index", broken)
    answer = Client().get("/api/v1/health")
    assert answer.status_code == 200
    body = answer.json()
    assert body["components"]["search_index"] == "error"
    assert body["status"] == "degraded" and "search_index" in body["degraded"]
    assert "search_index health check failed" in caplog.text


def test_a_critical_component_that_fails_takes_the_portal_down(
    db: Any, components: dict[str, api.HealthComponent]
) -> None:
    api.register_health_component("ledger", lambda: "unavailable", critical=True)
    answer = Client().get("/api/v1/health")
    assert answer.status_code == 503 and answer.json()["status"] == "down"
