"""The measured population: portal children as metrics patients, with their department, enrolment
(first guardian link to the real end of the last one), registration date and identities.

Enrolment is a guardian link that was ever taken up (active, revoked or expired); the patient is
enrolled from the earliest ``valid_from`` and, once no link is live, unenrolled from the day the last
link ended (its revocation or expiry), not the day the change was noticed. A child enters the
population on the day it was registered in the portal. Identities (the MRN's blind index, every
linked guardian's phone) go to ``attribution``, which attributes earlier calls again when a new one
appears.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from django.db import transaction
from django.db.models import Count, Max, Min
from django.utils import timezone

from portal.access import current_membership_q, live_link_q
from portal.metrics.attribution import identities_add
from portal.metrics.common import COHORTS_STALE, WRITE_BATCH, days_between, flag, mark_dirty, unflag
from portal.metrics.models import NEVER, CallRecord, CohortSize, MetricsPatient, PatientIdentity, SelfServiceEvent
from portal.metrics.topics import phone_hash
from portal.models import CareTeamMembership, Child, GuardianLink

CHUNK = 2000
FIELDS = ("department", "family_hash", "enrolled_on", "unenrolled_on", "registered_on", "exited_on")


@dataclass
class Links:
    """A child's guardian links that were ever taken up."""

    starts: list[datetime] = field(default_factory=list)
    ends: list[datetime | None] = field(default_factory=list)  # None: still open-ended
    live_phones: list[str] = field(default_factory=list)  # earliest live link first
    phones: set[str] = field(default_factory=set)
    live: bool = False


def _links(chunk: list[uuid.UUID], moment: datetime) -> dict[uuid.UUID, Links]:
    found: dict[uuid.UUID, Links] = defaultdict(Links)
    live_ids = set(GuardianLink.objects.filter(live_link_q(moment), child_id__in=chunk).values_list("id", flat=True))
    for link_id, child_id, valid_from, valid_until, revoked_at, phone in (
        GuardianLink.objects.filter(child_id__in=chunk, guardian__isnull=False)
        .exclude(status=GuardianLink.Status.INVITED)
        .order_by("valid_from")
        .values_list("id", "child_id", "valid_from", "valid_until", "revoked_at", "guardian__phone")
    ):
        item = found[child_id]
        item.starts.append(valid_from)
        ends = [moment_ for moment_ in (valid_until, revoked_at) if moment_ is not None]
        item.ends.append(min(ends) if ends else None)
        hashed = phone_hash(phone) if phone else ""
        if hashed:
            item.phones.add(hashed)
        if link_id in live_ids:
            item.live = True
            if hashed:
                item.live_phones.append(hashed)
    return found


def _departments(chunk: list[uuid.UUID], moment: datetime) -> dict[uuid.UUID, str]:
    departments: dict[uuid.UUID, str] = {}
    for child_id, code in (
        CareTeamMembership.objects.filter(current_membership_q(moment), child_id__in=chunk, department__isnull=False)
        .order_by("-start")
        .values_list("child_id", "department__code")
    ):
        departments[child_id] = code  # the earliest start wins (ordered descending)
    return departments


def _enrolment(links: Links | None, moment: datetime) -> tuple[date | None, date | None]:
    """(enrolled_on, unenrolled_on) from the links; unenrolled on the day the last link ended."""
    if links is None or not links.starts:
        return None, None
    enrolled = min(links.starts).date()
    if links.live:
        return enrolled, None
    ended = [end for end in links.ends if end is not None]
    last = max(ended).date() if ended else moment.date()
    return enrolled, max(last, enrolled)


def _apply(
    row: MetricsPatient, child: Mapping[str, Any], links: Links | None, dept: str | None, moment: datetime
) -> None:
    row.enrolled_on, row.unenrolled_on = _enrolment(links, moment)
    family = links.live_phones[0] if links and links.live_phones else ""
    row.family_hash = family or row.family_hash
    row.department = dept if dept is not None else row.department
    row.registered_on = child["created_at"].date()
    row.cohort_month = row.enrolled_on.replace(day=1) if row.enrolled_on else NEVER


def _data_span(today: date) -> tuple[date, date]:
    """The days whose rollups can change: from the first to the last day with calls (at most today)."""
    span = CallRecord.objects.aggregate(first=Min("day"), last=Max("day"))
    return span["first"] or today, min(span["last"] or today, today)


def _affected_days(before: tuple[Any, ...] | None, after: tuple[Any, ...], span: tuple[date, date]) -> set[date]:
    marks = [d for d in (before or (None,) * len(FIELDS))[2:] + after[2:] if isinstance(d, date)]
    first_day = min(marks) if marks else span[1]
    return set(days_between(max(first_day, span[0]), span[1]))


def _sync_chunk(chunk: list[uuid.UUID], moment: datetime) -> int:
    links = _links(chunk, moment)
    departments = _departments(chunk, moment)
    children = {row["id"]: row for row in Child.objects.filter(id__in=chunk).values("id", "created_at", "mrn_index")}
    existing = {row.child_id: row for row in MetricsPatient.objects.filter(child_id__in=chunk)}
    creates: list[MetricsPatient] = []
    updates: list[MetricsPatient] = []
    dirty: set[date] = set()
    span = _data_span(moment.date())
    for child_id in chunk:
        if child_id not in children:
            continue
        row = existing.get(child_id)
        before = tuple(getattr(row, name) for name in FIELDS) if row is not None else None
        if row is None:
            row = MetricsPatient(ref=f"c:{child_id}", child_id=child_id, source=MetricsPatient.Source.PORTAL)
        _apply(row, children[child_id], links.get(child_id), departments.get(child_id), moment)
        after = tuple(getattr(row, name) for name in FIELDS)
        if before is None:
            creates.append(row)
        elif before != after:
            row.updated_at = moment
            updates.append(row)
        else:
            continue
        dirty |= _affected_days(before, after, span)
    MetricsPatient.objects.bulk_create(creates, batch_size=WRITE_BATCH)
    if updates:
        MetricsPatient.objects.bulk_update(updates, [*FIELDS, "cohort_month", "updated_at"], batch_size=WRITE_BATCH)
        # Their past calls and actions move between cohorts and departments.
        changed_ids = [row.pk for row in updates]
        dirty.update(CallRecord.objects.filter(patient_id__in=changed_ids).values_list("day", flat=True))
        dirty.update(SelfServiceEvent.objects.filter(patient_id__in=changed_ids).values_list("day", flat=True))
    mark_dirty(dirty)
    patient_of = dict(MetricsPatient.objects.filter(child_id__in=chunk).values_list("child_id", "id"))
    identities: list[tuple[int, str, str]] = []
    for owner, pid in patient_of.items():
        if owner is None:
            continue
        identities.append((pid, PatientIdentity.Kind.MRN, children[owner]["mrn_index"]))
        identities.extend((pid, PatientIdentity.Kind.PHONE, key) for key in sorted(links[owner].phones))
    identities_add(identities)
    return len(creates) + len(updates)


def patients_sync(*, child_ids: list[uuid.UUID] | set[uuid.UUID] | None = None, now: datetime | None = None) -> int:
    """Bring the metrics population up to date with the portal's children (all of them, or some).

    Returns how many patients changed; their days are marked dirty.
    """
    moment = now or timezone.now()
    if child_ids is None:
        ids = list(Child.objects.order_by("id").values_list("id", flat=True))
    else:
        ids = sorted(set(child_ids))
    changed_total = 0
    for start in range(0, len(ids), CHUNK):
        changed_total += _sync_chunk(ids[start : start + CHUNK], moment)
    if changed_total:
        flag(COHORTS_STALE)
    return changed_total


def cohort_sizes_refresh() -> None:
    """Patients per enrolment month."""
    with transaction.atomic():
        CohortSize.objects.all().delete()
        CohortSize.objects.bulk_create(
            CohortSize(cohort_month=row["cohort_month"], patients=row["n"])
            for row in MetricsPatient.objects.values("cohort_month").annotate(n=Count("id"))
        )
        unflag(COHORTS_STALE)
