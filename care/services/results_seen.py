"""What a guardian has already seen of a child's results and visit summaries: a marker per guardian
and child, moved forward when the guardian lists them (everything released until then is seen) or
opens one (everything released until that item was is seen). ``/me/today`` shows what was released
after it as new. The marker only moves forward, and it is the guardian's own reading state: no audit
row (the read itself is audited), no event.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from django.db import IntegrityError, transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce, Greatest

from care.models import ResultsSeen, TestResult, VisitSummary

Kind = Literal["results", "summaries"]
_FIELDS: dict[Kind, str] = {"results": "results_seen_at", "summaries": "summaries_seen_at"}


def release_moment(row: TestResult | VisitSummary) -> datetime | None:
    """When the item came out to the family: its release, or the end of its hold (which the sweep
    may not have recorded yet)."""
    return row.released_at or row.hold_until


def results_seen_mark(*, guardian_id: uuid.UUID, child_id: uuid.UUID, kind: Kind, upto: datetime) -> None:
    """Move the guardian's marker for the child's ``kind`` to ``upto`` (never back). One query when
    the marker exists."""
    field = _FIELDS[kind]
    advance = {field: Greatest(Coalesce(F(field), Value(upto)), Value(upto))}
    rows = ResultsSeen.objects.filter(guardian_id=guardian_id, child_id=child_id)
    if rows.update(**advance):
        return
    try:
        with transaction.atomic():  # a savepoint: two first views at once, one inserts
            ResultsSeen.objects.create(guardian_id=guardian_id, child_id=child_id, **{field: upto})
    except IntegrityError:
        rows.update(**advance)
