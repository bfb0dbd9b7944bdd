"""The scheduled entry point (cron, a systemd timer, Celery beat or Django's task framework can call it)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from portal.metrics.refresh import metrics_refresh


def refresh_metrics_task() -> dict[str, Any]:
    """Derive new self-service events and refresh the rollups of dirty days; returns the counts."""
    return asdict(metrics_refresh())
