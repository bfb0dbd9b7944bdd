"""The metrics configuration: baseline period and go-live date (admin row, else settings), and the
match-rate margin beyond which a comparison is flagged."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from django.conf import settings
from django.db import transaction

from portal import audit
from portal.errors import Invalid
from portal.metrics.models import MetricsConfig
from portal.vocabulary import Resource


@dataclass(frozen=True)
class Settings:
    baseline_start: date | None
    baseline_end: date | None
    go_live: date | None


def _parse_period(spec: str) -> tuple[date | None, date | None]:
    if ".." not in spec:
        return None, None
    first, _, last = spec.partition("..")
    return date.fromisoformat(first.strip()), date.fromisoformat(last.strip())


def metrics_settings() -> Settings:
    """The baseline period and go-live date: the admin's ``MetricsConfig``, else the settings."""
    start, end = _parse_period(settings.PORTAL_METRICS_BASELINE)
    go_live_spec: str = settings.PORTAL_METRICS_GO_LIVE
    go_live = date.fromisoformat(go_live_spec) if go_live_spec else None
    row = MetricsConfig.objects.filter(pk=1).first()
    if row is not None:
        start = row.baseline_start or start
        end = row.baseline_end or end
        go_live = row.go_live or go_live
    return Settings(baseline_start=start, baseline_end=end, go_live=go_live)


def match_margin() -> float:
    """Largest tolerated difference (log scale) between the groups' changes in match rate."""
    return float(getattr(settings, "PORTAL_METRICS_MATCH_MARGIN", 0.05))


def config_set(*, actor: Any, baseline_start: date, baseline_end: date, go_live: date | None) -> MetricsConfig:
    """Set the baseline period (inclusive) and the go-live date."""
    if baseline_end < baseline_start:
        raise Invalid("The baseline must end after it starts.", code="invalid_period")
    with transaction.atomic():
        row, _ = MetricsConfig.objects.update_or_create(
            pk=1, defaults={"baseline_start": baseline_start, "baseline_end": baseline_end, "go_live": go_live}
        )
        audit.record(actor=actor, action=audit.Action.UPDATE, entity_type=Resource.METRICS_CONFIG, entity_id="1")
    return row
