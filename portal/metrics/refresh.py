"""The scheduled job (``refresh_metrics``, the task): derive new events from the audit trail, sync
new children, attribute calls against the identities now known, refresh dirty days and months, and
refit the staggered-adoption estimate when its inputs changed. Estimates are fitted here, never
per request."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from portal.metrics.attribution import reattribute
from portal.metrics.common import ESTIMATE_STALE, flagged, unflag
from portal.metrics.derive import events_derive
from portal.metrics.models import MetricsPatient, WebhookReceipt
from portal.metrics.population import patients_sync
from portal.metrics.rollups import rollups_refresh
from portal.models import Child


@dataclass
class RefreshResult:
    audit_rows: int = 0
    patients_changed: int = 0
    calls_attributed: int = 0
    days: int = 0
    estimated: bool = False
    notes: list[str] = field(default_factory=list)


def metrics_refresh(*, full: bool = False, estimate: bool = True) -> RefreshResult:
    """One run of the scheduled job; returns the counts."""
    from portal.metrics.estimate import estimate_refresh  # the statistics libraries load only here

    result = RefreshResult()
    result.audit_rows = events_derive()
    if full:
        result.patients_changed = patients_sync()
    else:
        new_children = Child.objects.exclude(
            id__in=MetricsPatient.objects.filter(child_id__isnull=False).values("child_id")
        ).values_list("id", flat=True)
        result.patients_changed = patients_sync(child_ids=list(new_children))
    result.calls_attributed = reattribute()
    result.days = rollups_refresh()
    if estimate and flagged(ESTIMATE_STALE):
        estimate_refresh()
        unflag(ESTIMATE_STALE)
        result.estimated = True
    cutoff = timezone.now() - timedelta(seconds=4 * settings.PORTAL_METRICS_WEBHOOK_WINDOW_SECONDS)
    WebhookReceipt.objects.filter(received_at__lt=cutoff).delete()
    return result
