"""Unauthenticated refusals are rate-limited per address and coalesced in the audit trail: one row per
address, reason and window, carrying the count, so the trail is complete but cannot be flooded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
import time_machine
from django.core.management import call_command
from django.test import Client

from care import services as care
from portal import audit, refusals
from portal.models import AuditEvent, RefusalTally
from tests.conftest import World

pytestmark = pytest.mark.django_db

# A Saturday night, at the start of a five-minute window.
NOW = datetime(2026, 3, 14, 23, 30, tzinfo=UTC)
ATTACKER = "203.0.113.7"
NEIGHBOUR = "198.51.100.4"


def _feed(address: str, index: int) -> int:
    return Client(REMOTE_ADDR=address).get(f"/api/v1/calendar/nope{index}.ics").status_code


def _denials() -> list[tuple[str, str, int]]:
    rows = AuditEvent.objects.filter(action="deny", entity_type="CalendarFeed").order_by("seq")
    return list(rows.values_list("client_address", "reason", "count"))


def test_a_hundred_guesses_write_one_row_per_reason_with_the_count(world: World, settings: Any) -> None:
    settings.PORTAL_REFUSAL_RATE = "30/m"
    settings.PORTAL_REFUSAL_WINDOW_SECONDS = 300
    before = AuditEvent.objects.count()
    with time_machine.travel(NOW, tick=False):
        statuses = [_feed(ATTACKER, index) for index in range(100)]
        # The first 30 are answered like any unknown feed, the rest are refused for the rate.
        assert statuses == [404] * 30 + [429] * 70
        # Another address is not held back by the attacker's limit.
        assert _feed(NEIGHBOUR, 0) == 404
        # Nothing reached the trail while the window is open: only tallies.
        assert AuditEvent.objects.count() == before
        assert RefusalTally.objects.count() == 3
    with time_machine.travel(NOW + timedelta(minutes=2), tick=False):
        assert _feed(ATTACKER, 100) == 404  # the rate window has passed; same coalescing window
    with time_machine.travel(NOW + timedelta(minutes=6), tick=False):
        out = StringIO()
        call_command("flush_refusals", stdout=out)
        assert "Appended 3 coalesced refusal row(s)" in out.getvalue()
    assert sorted(_denials()) == sorted(
        [(ATTACKER, "unknown_feed_token", 31), (ATTACKER, "rate_limited", 70), (NEIGHBOUR, "unknown_feed_token", 1)]
    )
    assert AuditEvent.objects.count() == before + 3
    assert RefusalTally.objects.count() == 0
    assert list(audit.verify()) == []


def test_each_window_gets_its_own_row_and_the_next_refusal_flushes_closed_ones(world: World, settings: Any) -> None:
    settings.PORTAL_REFUSAL_RATE = "1000/m"
    settings.PORTAL_REFUSAL_WINDOW_SECONDS = 300
    with time_machine.travel(NOW + timedelta(seconds=10), tick=False):
        for index in range(5):
            _feed(ATTACKER, index)
    with time_machine.travel(NOW + timedelta(minutes=5, seconds=10), tick=False):
        _feed(ATTACKER, 5)  # a new window: the closed one joins the trail now
        assert _denials() == [(ATTACKER, "unknown_feed_token", 5)]
        last = AuditEvent.objects.get(entity_type="CalendarFeed")
        assert last.recorded_at == NOW + timedelta(seconds=10)  # when the window's last refusal happened
    with time_machine.travel(NOW + timedelta(minutes=11), tick=False):
        refusals.flush()
    assert _denials() == [(ATTACKER, "unknown_feed_token", 5), (ATTACKER, "unknown_feed_token", 1)]


def test_a_limited_address_cannot_use_even_a_valid_feed_until_its_window_passes(world: World, settings: Any) -> None:
    settings.PORTAL_REFUSAL_RATE = "3/m"
    _feed_row, token = care.calendar_feed_issue(actor=world.guardian)
    with time_machine.travel(NOW, tick=False):
        assert [_feed(ATTACKER, index) for index in range(4)] == [404, 404, 404, 429]
        assert Client(REMOTE_ADDR=ATTACKER).get(f"/api/v1/calendar/{token}.ics").status_code == 429
        assert Client(REMOTE_ADDR=NEIGHBOUR).get(f"/api/v1/calendar/{token}.ics").status_code == 200
    with time_machine.travel(NOW + timedelta(minutes=1, seconds=1), tick=False):
        assert Client(REMOTE_ADDR=ATTACKER).get(f"/api/v1/calendar/{token}.ics").status_code == 200


def test_the_export_includes_closed_windows_with_their_counts(world: World, settings: Any) -> None:
    with time_machine.travel(NOW, tick=False):
        for index in range(4):
            _feed(ATTACKER, index)
    with time_machine.travel(NOW + timedelta(minutes=10), tick=False):
        response = world.client("admin").get(
            "/api/v1/audit/export",
            {"start": (NOW - timedelta(days=1)).isoformat(), "end": (NOW + timedelta(days=1)).isoformat()},
        )
        text = b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
    header, *lines = text.splitlines()
    assert "count" in header.split(",")
    assert any("unknown_feed_token" in line and ",4," in line for line in lines)
