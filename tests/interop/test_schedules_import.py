"""Schedule + Slot: free slots become the clinician's open slots (one-day working hours), time away
becomes time off, booked slots make nothing; changes and removals follow, audited."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from care import scheduling
from care.models import ScheduleException, WorkingHours
from fixtures import fhir_hospital
from interop.fhir import parse_instant
from interop.models import ImportIssue, SourceRecord
from portal.models import AuditEvent, DepartmentMembership, User
from tests.interop.conftest import record_of, row_counts, run_import, write_export, write_lines

pytestmark = pytest.mark.django_db


def _at(text: str) -> datetime:
    moment = parse_instant(text)
    assert moment is not None
    return moment


@pytest.fixture
def imported(small_hospital, tmp_path, frozen):
    run_import(write_export(small_hospital, tmp_path / "export"))
    return small_hospital.resources


def _clinician_of(schedule) -> User:
    role = schedule["actor"][0]["reference"].partition("/")[2]
    membership = SourceRecord.objects.get(resource_type="PractitionerRole", resource_id=role)
    return DepartmentMembership.objects.get(pk=membership.target).clinician


def test_slots_become_the_clinicians_open_slots_and_time_off(imported, settings):
    zone = ZoneInfo(settings.PORTAL_HOSPITAL_TIME_ZONE)
    for schedule in imported["Schedule"]:
        clinician = _clinician_of(schedule)
        assert record_of(schedule).target == str(clinician.pk)
        slots = [s for s in imported["Slot"] if s["schedule"]["reference"] == f"Schedule/{schedule['id']}"]
        free = sorted(_at(s["start"]) for s in slots if s["status"] == "free")
        assert free and any(s["status"] == "busy" for s in imported["Slot"])
        for slot in slots:
            record = record_of(slot)
            start, end = _at(slot["start"]), _at(slot["end"])
            if slot["status"] == "free":
                hours = WorkingHours.objects.get(pk=record.target)
                local = start.astimezone(zone)
                assert (hours.clinician, hours.location) == (clinician, "Clinic B, 2nd floor")
                assert hours.department == DepartmentMembership.objects.get(clinician=clinician).department
                assert (hours.weekday, hours.start, hours.valid_from, hours.valid_until) == (
                    local.weekday(),
                    local.time().replace(tzinfo=None),
                    local.date(),
                    local.date(),
                )
                assert hours.slot_minutes == 20 and hours.time_zone == settings.PORTAL_HOSPITAL_TIME_ZONE
            elif slot["status"] == "busy-unavailable":
                away = ScheduleException.objects.get(pk=record.target)
                assert (away.clinician, away.kind, away.start, away.end) == (clinician, "time_off", start, end)
            else:
                assert record.targets == []
        # What the portal offers for this clinician is exactly the EHR's free slots, no other time.
        rows = WorkingHours.objects.filter(clinician=clinician)
        window_start, window_end = free[0] - timedelta(days=1), free[-1] + timedelta(days=1)
        blocks = scheduling.without_time_off(
            scheduling.clinic_blocks(rows, window_start, window_end),
            ScheduleException.objects.filter(clinician=clinician),
        )
        offered = scheduling.open_slots(blocks, [], after=window_start, limit=1000)
        assert [slot.start for slot in offered] == free
    assert AuditEvent.objects.filter(entity_type="Schedule", action="create").count() == (
        WorkingHours.objects.count() + ScheduleException.objects.count()
    )


def _newer(resource, **changes):
    newer = copy.deepcopy(resource)
    newer["meta"] = {"versionId": "2", "lastUpdated": "2026-11-30T12:00:00Z"}
    newer.update(changes)
    return newer


def test_a_slot_taken_or_moved_replaces_its_row_and_reimport_writes_nothing(imported, tmp_path):
    slot = next(s for s in imported["Slot"] if s["status"] == "free")
    hours = WorkingHours.objects.get(pk=record_of(slot).target)
    run_import(write_lines(tmp_path / "v2" / "Slot.ndjson", [_newer(slot, status="busy")]))
    assert not WorkingHours.objects.filter(pk=hours.pk).exists()
    assert record_of(slot).targets == []
    deleted = AuditEvent.objects.filter(entity_type="Schedule", action="delete", entity_id=str(hours.pk))
    assert deleted.get().reason == "ehr_slot_changed"

    later = _at(slot["start"]) + timedelta(hours=1)
    moved = _newer(
        slot,
        meta={"versionId": "3", "lastUpdated": "2026-11-30T13:00:00Z"},
        start=later.strftime("%Y-%m-%dT%H:%M:%SZ"),
        end=(later + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    path = write_lines(tmp_path / "v3" / "Slot.ndjson", [moved])
    run_import(path)
    again = WorkingHours.objects.get(pk=record_of(slot).target)
    assert again.slot_minutes == 30
    counts = row_counts()
    run_import(path)
    assert row_counts() == counts


def test_removed_slots_end_their_rows_and_keep_their_history(small_hospital, imported, tmp_path):
    schedule = imported["Schedule"][0]
    mine = [s for s in imported["Slot"] if s["schedule"]["reference"] == f"Schedule/{schedule['id']}"]
    rows = [record_of(s).target for s in mine if record_of(s).targets]
    audits = set(AuditEvent.objects.values_list("seq", flat=True))
    trimmed = fhir_hospital.Hospital()
    for kind, resources in small_hospital.resources.items():
        trimmed.resources[kind] = [r for r in resources if r not in mine and r is not schedule]

    run_import(write_export(trimmed, tmp_path / "full"), full_export=True)

    assert not WorkingHours.objects.filter(pk__in=rows).exists()
    assert not ScheduleException.objects.filter(pk__in=rows).exists()
    assert audits <= set(AuditEvent.objects.values_list("seq", flat=True))
    assert AuditEvent.objects.filter(entity_type="Schedule", action="delete", reason="ehr_removed").count() == len(rows)
    assert all(record_of(s).deleted for s in mine) and record_of(schedule).deleted
    others = [s for s in imported["Slot"] if s not in mine and s["status"] == "free"]
    assert WorkingHours.objects.count() == len(others)


def _utc(moment: datetime) -> str:
    return moment.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_schedules_and_slots_the_portal_cannot_hold_are_reported(small_hospital, tmp_path, frozen, settings):
    night = datetime(2026, 12, 2, 22, tzinfo=ZoneInfo(settings.PORTAL_HOSPITAL_TIME_ZONE))
    export = tmp_path / "export"
    write_export(small_hospital, export)
    schedule = small_hospital.resources["Schedule"][0]
    rooms = copy.deepcopy(schedule)
    rooms["id"], rooms["identifier"][0]["value"] = "rooms", "rooms"
    rooms["actor"] = [{"reference": "Location/clinic-b", "display": "Clinic B"}]
    pair = copy.deepcopy(schedule)
    pair["id"], pair["identifier"][0]["value"] = "pair", "pair"
    pair["actor"] = [{"reference": "PractitionerRole/role-0001"}, {"reference": "PractitionerRole/role-0002"}]
    write_lines(export / "Schedule.002.ndjson", [rooms, pair])
    slot = next(s for s in small_hospital.resources["Slot"] if s["status"] == "free")

    def variant(ident, **changes):
        bad = copy.deepcopy(slot)
        bad["id"], bad["identifier"][0]["value"] = ident, ident
        bad.update(changes)
        return bad

    write_lines(
        export / "Slot.002.ndjson",
        [
            variant("night", start=_utc(night), end=_utc(night + timedelta(hours=3))),  # 22:00-01:00 locally
            variant("blink", start="2026-12-03T15:00:00Z", end="2026-12-03T15:03:00Z"),
            variant("orphan", schedule={"reference": "Schedule/rooms"}),
            variant("backwards", start="2026-12-03T16:00:00Z", end="2026-12-03T15:00:00Z"),
        ],
    )

    output, failed = run_import(export)

    assert failed
    issues = {
        (file, line): reason
        for file, line, reason in ImportIssue.objects.filter(file_name__contains=".002.").values_list(
            "file_name", "line", "reason"
        )
    }
    assert issues == {
        ("Schedule.002.ndjson", 1): "schedule_without_practitioner",
        ("Schedule.002.ndjson", 2): "schedule_several_practitioners",
        ("Slot.002.ndjson", 1): "slot_crosses_midnight",
        ("Slot.002.ndjson", 2): "slot_too_short",
        ("Slot.002.ndjson", 3): "unresolved_reference:Schedule",
        ("Slot.002.ndjson", 4): "invalid_period",
    }
    assert "Slot.002.ndjson:1: Slot rejected: slot_crosses_midnight" in output
