"""Which patient a call is about, decided against every identity known at refresh time.

A call carries keyed hashes of the caller's phone and of the MRN given on it (either may be empty).
It belongs to the patient with that MRN, else to the patient (the lowest id, for siblings sharing a
phone) with that phone among all identities then known: registration phones, every guardian's phone,
MRNs. When an identity is added (a family enrols and its guardian's phone becomes known), the calls
with that key are attributed again, earlier ones included, so the result does not depend on when
the calls were imported or when the refresh ran.

``phone_known`` records, for calls attributed by MRN, whether the caller's phone alone would have
identified a patient: the share of such calls estimates each group's phone match rate without
knowing who the unmatched callers are (reports publish it per group and period).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from django.db import transaction
from django.db.models import Q, QuerySet

from portal.metrics.common import WRITE_BATCH, mark_dirty
from portal.metrics.models import CallRecord, ChangedIdentity, PatientIdentity

CHUNK = 5000


def _lowest(kind: str, keys: Iterable[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    ordered = sorted(set(keys) - {""})
    for start in range(0, len(ordered), CHUNK):
        for key, patient_id in (
            PatientIdentity.objects.filter(kind=kind, key__in=ordered[start : start + CHUNK])
            .order_by("key", "-patient_id")
            .values_list("key", "patient_id")
        ):
            found[key] = patient_id  # the lowest id wins (ordered descending)
    return found


def _resolve_chunk(rows: list[CallRecord]) -> tuple[list[CallRecord], set[date]]:
    by_mrn = _lowest(PatientIdentity.Kind.MRN, (row.mrn_hash for row in rows))
    by_phone = _lowest(PatientIdentity.Kind.PHONE, (row.caller_hash for row in rows))
    changed: list[CallRecord] = []
    dirty: set[date] = set()
    for row in rows:
        patient_id = by_mrn.get(row.mrn_hash) or by_phone.get(row.caller_hash)
        phone_known = row.caller_hash in by_phone
        if (row.patient_id, row.phone_known, row.resolved) == (patient_id, phone_known, True):
            continue
        if row.patient_id != patient_id or row.phone_known != phone_known:
            dirty.add(row.day)
        row.patient_id, row.phone_known, row.resolved = patient_id, phone_known, True
        changed.append(row)
    return changed, dirty


def resolve_calls(calls: QuerySet[CallRecord]) -> int:
    """Attribute the given calls against the identities known now; returns how many changed."""
    changed_total = 0
    last = 0
    fields = ("id", "day", "caller_hash", "mrn_hash", "patient_id", "phone_known", "resolved")
    while True:
        rows = list(calls.filter(id__gt=last).order_by("id").only(*fields)[:CHUNK])
        if not rows:
            return changed_total
        last = rows[-1].id
        changed, dirty = _resolve_chunk(rows)
        if changed:
            CallRecord.objects.bulk_update(changed, ["patient", "phone_known", "resolved"], batch_size=WRITE_BATCH)
            mark_dirty(dirty)
            changed_total += len(changed)


def identities_add(pairs: Iterable[tuple[int, str, str]]) -> int:
    """Record (patient id, kind, key) identities; a new one marks its key for attribution again."""
    rows = [PatientIdentity(patient_id=pid, kind=kind, key=key) for pid, kind, key in pairs if key]
    if not rows:
        return 0
    known = set(
        PatientIdentity.objects.filter(
            patient_id__in={row.patient_id for row in rows}, key__in={row.key for row in rows}
        ).values_list("patient_id", "kind", "key")
    )
    new = [row for row in rows if (row.patient_id, row.kind, row.key) not in known]
    PatientIdentity.objects.bulk_create(new, batch_size=WRITE_BATCH, ignore_conflicts=True)
    ChangedIdentity.objects.bulk_create(
        [ChangedIdentity(kind=row.kind, key=row.key) for row in new], batch_size=WRITE_BATCH, ignore_conflicts=True
    )
    return len(new)


def reattribute() -> int:
    """The refresh step: attribute calls not yet attributed and the calls of every changed key."""
    with transaction.atomic():
        changed = list(ChangedIdentity.objects.values_list("id", "kind", "key"))
        phones = [key for _, kind, key in changed if kind == PatientIdentity.Kind.PHONE]
        mrns = [key for _, kind, key in changed if kind == PatientIdentity.Kind.MRN]
        total = resolve_calls(CallRecord.objects.filter(resolved=False))
        for start in range(0, max(len(phones), len(mrns)), CHUNK):
            query = Q(caller_hash__in=phones[start : start + CHUNK]) | Q(mrn_hash__in=mrns[start : start + CHUNK])
            total += resolve_calls(CallRecord.objects.filter(query))
        ChangedIdentity.objects.filter(id__in=[row_id for row_id, _, _ in changed]).delete()
    return total
