"""The 12th- and 18th-birthday rules, computed in the child's time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine

from portal import services
from portal.access import effective_scope, effective_status
from portal.models import GuardianLink
from tests.conftest import World, app_client, make_user

# Auckland is UTC+12 in June (winter, no DST): the birthday starts at noon UTC the day before.
# Los Angeles is UTC-7 in June (DST): the birthday starts at 07:00 UTC on the day itself.
CASES = [
    ("Pacific/Auckland", datetime(2026, 6, 14, 12, 0, tzinfo=UTC)),
    ("America/Los_Angeles", datetime(2026, 6, 15, 7, 0, tzinfo=UTC)),
]


def _child_and_link(world: World, tz: str, dob: date, **link: object) -> tuple[GuardianLink, object]:
    child = services.child_create(
        actor=None, name="Teen Tester", mrn=f"MRN-T-{tz}", date_of_birth=dob, time_zone=tz, conditions=["84757009"]
    )
    guardian = make_user(f"parent-{tz.replace('/', '-').lower()}@example.org", "Pat Parent")
    made = GuardianLink.objects.create(
        guardian=guardian,
        child=child,
        relationship="mother",
        status=GuardianLink.Status.ACTIVE,
        valid_from=datetime(2010, 1, 1, tzinfo=UTC),
        **link,
    )
    return made, guardian


@pytest.mark.parametrize(("tz", "birthday_starts"), CASES)
def test_twelfth_birthday_limits_scope_in_the_childs_time_zone(
    world: World, tz: str, birthday_starts: datetime
) -> None:
    link, guardian = _child_and_link(world, tz, date(2014, 6, 15))
    client = app_client(guardian)  # type: ignore[arg-type]
    before = birthday_starts - timedelta(minutes=1)
    after = birthday_starts + timedelta(minutes=1)
    with time_machine.travel(before, tick=False):
        assert effective_scope(link) == "full"
        child = client.get(f"/api/v1/children/{link.child_id}").json()
        assert child["scope"] == "full" and child["conditions"] == ["84757009"]
    with time_machine.travel(after, tick=False):
        assert effective_scope(link) == "limited"
        child = client.get(f"/api/v1/children/{link.child_id}").json()
        # Limited scope: schedule and messaging only, no clinical content.
        assert child["scope"] == "limited" and child["conditions"] is None
    # In UTC it may still be the day before: the rule follows the child's calendar, not the server's.
    assert before.date() <= date(2026, 6, 15)


@pytest.mark.parametrize(("tz", "birthday_starts"), CASES)
def test_staff_exception_keeps_full_scope(world: World, tz: str, birthday_starts: datetime) -> None:
    link, _ = _child_and_link(world, tz, date(2014, 6, 15), adolescent_exception=True)
    with time_machine.travel(birthday_starts + timedelta(days=1), tick=False):
        assert effective_scope(link) == "full"


@pytest.mark.parametrize(("tz", "birthday_starts"), CASES)
def test_eighteenth_birthday_ends_the_link_unless_court_appointed(
    world: World, tz: str, birthday_starts: datetime
) -> None:
    link, guardian = _child_and_link(world, tz, date(2008, 6, 15))
    client = app_client(guardian)  # type: ignore[arg-type]
    with time_machine.travel(birthday_starts - timedelta(minutes=1), tick=False):
        assert effective_status(link) == "active"
        assert client.get(f"/api/v1/children/{link.child_id}").status_code == 200
    with time_machine.travel(birthday_starts + timedelta(minutes=1), tick=False):
        assert effective_status(link) == "expired"
        assert client.get(f"/api/v1/children/{link.child_id}").status_code == 404
        assert client.get("/api/v1/children").json()["items"] == []
        assert services.links_expire() == 1
    link.refresh_from_db()
    assert link.status == "expired"


def test_court_appointed_guardianship_continues_past_eighteen(world: World) -> None:
    link, guardian = _child_and_link(world, "Pacific/Auckland", date(2008, 6, 15), court_appointed=True)
    client = app_client(guardian)  # type: ignore[arg-type]
    with time_machine.travel(datetime(2026, 7, 1, tzinfo=UTC), tick=False):
        assert effective_status(link) == "active"
        assert client.get(f"/api/v1/children/{link.child_id}").status_code == 200
        assert services.links_expire() == 0


def test_leap_day_birthday_counts_from_first_of_march(world: World) -> None:
    link, _ = _child_and_link(world, "UTC", date(2012, 2, 29))
    assert link.child.adolescent_from == datetime(2024, 2, 29, tzinfo=UTC)  # 2024 is a leap year
    assert link.child.adult_from == datetime(2030, 3, 1, tzinfo=UTC)
