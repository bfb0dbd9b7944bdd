"""Clinic blocks, open slots and on-call duty, derived from working hours and exceptions."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from care.models import ScheduleException, WorkingHours
from portal import zones


@dataclass(frozen=True)
class Block:
    clinician_id: uuid.UUID
    location: str
    start: datetime
    end: datetime
    slot_minutes: int


def _overlaps(a_start: datetime, a_end: datetime, b_start: datetime, b_end: datetime) -> bool:
    return a_start < b_end and b_start < a_end


def clinic_blocks(hours: Iterable[WorkingHours], start: datetime, end: datetime) -> list[Block]:
    """Working-hour blocks in ``[start, end)``, in each clinic's own time zone (DST-safe)."""
    blocks = []
    for row in hours:
        tz = zones.zone(row.time_zone)
        day = start.astimezone(tz).date() - timedelta(days=1)
        last = end.astimezone(tz).date() + timedelta(days=1)
        while day <= last:
            valid = day >= row.valid_from and (row.valid_until is None or day <= row.valid_until)
            if valid and day.weekday() == row.weekday:
                begin = datetime.combine(day, row.start, tzinfo=tz).astimezone(UTC)
                finish = datetime.combine(day, row.end, tzinfo=tz).astimezone(UTC)
                if _overlaps(begin, finish, start, end):
                    blocks.append(Block(row.clinician_id, row.location, begin, finish, row.slot_minutes))
            day += timedelta(days=1)
    return sorted(blocks, key=lambda block: (block.start, str(block.clinician_id)))


def without_time_off(blocks: list[Block], exceptions: Iterable[ScheduleException]) -> list[Block]:
    """Drop (or trim) blocks that fall in a clinician's time off."""
    result: list[Block] = []
    offs = [e for e in exceptions if e.kind == ScheduleException.Kind.TIME_OFF]
    for block in blocks:
        pieces = [(block.start, block.end)]
        for off in offs:
            if off.clinician_id != block.clinician_id:
                continue
            next_pieces = []
            for piece_start, piece_end in pieces:
                if not _overlaps(piece_start, piece_end, off.start, off.end):
                    next_pieces.append((piece_start, piece_end))
                    continue
                if piece_start < off.start:
                    next_pieces.append((piece_start, off.start))
                if off.end < piece_end:
                    next_pieces.append((off.end, piece_end))
            pieces = next_pieces
        result.extend(Block(block.clinician_id, block.location, s, e, block.slot_minutes) for s, e in pieces)
    return result


@dataclass(frozen=True)
class Slot:
    clinician_id: uuid.UUID
    location: str
    start: datetime
    end: datetime


def open_slots(
    blocks: list[Block], booked: Iterable[tuple[uuid.UUID, datetime, datetime]], *, after: datetime, limit: int
) -> list[Slot]:
    """The first ``limit`` free slots starting at or after ``after`` (FHIR Slot, status free)."""
    busy: dict[uuid.UUID, list[tuple[datetime, datetime]]] = {}
    for clinician_id, start, end in booked:
        busy.setdefault(clinician_id, []).append((start, end))
    slots: list[Slot] = []
    for block in sorted(blocks, key=lambda b: b.start):
        step = timedelta(minutes=block.slot_minutes)
        moment = block.start
        while moment + step <= block.end:
            if moment >= after and not any(
                _overlaps(moment, moment + step, s, e) for s, e in busy.get(block.clinician_id, [])
            ):
                slots.append(Slot(block.clinician_id, block.location, moment, moment + step))
            moment += step
    slots.sort(key=lambda slot: (slot.start, str(slot.clinician_id)))
    return slots[:limit]


def on_call_at(exceptions: Iterable[ScheduleException], moment: datetime) -> set[uuid.UUID]:
    return {
        e.clinician_id for e in exceptions if e.kind == ScheduleException.Kind.ON_CALL and e.start <= moment < e.end
    }
