"""The background worker (``manage.py portal_worker``): django-tasks' database worker plus a heartbeat
and the periodic sweeps (urgent-alert escalation, overdue threads, notifications due for a retry).

``/health`` reads ``worker_health``: ``down`` when the newest heartbeat is older than
``PORTAL_WORKER_STALE_SECONDS``, ``lagging`` when the oldest ready task has waited longer than
``PORTAL_QUEUE_LAG_SECONDS``, ``inline`` when tasks do not use the database queue (they run at once).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.management import call_command
from django.db import close_old_connections
from django.db.models import Min, Q
from django.db.utils import OperationalError
from django.utils import timezone
from django_tasks import DEFAULT_TASK_BACKEND_ALIAS, task_backends
from django_tasks.base import TaskResultStatus
from django_tasks_db.backend import DatabaseBackend
from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult, get_date_max
from django_tasks_db.utils import exclusive_transaction

from messaging.conf import queue_lag_seconds, worker_heartbeat_seconds, worker_stale_seconds, worker_sweep_seconds
from messaging.models import WorkerHeartbeat
from portal import ledger

logger = logging.getLogger(__name__)


def uses_database_queue() -> bool:
    return isinstance(task_backends[DEFAULT_TASK_BACKEND_ALIAS], DatabaseBackend)


@dataclass(frozen=True)
class QueueState:
    ready: int
    deferred: int  # waiting for their run_after
    running: int
    failed: int
    lag_seconds: float  # how long the oldest ready task has waited (0 when none)
    last_heartbeat: datetime | None
    workers: list[WorkerHeartbeat]


def _ready_now(moment: datetime) -> Q:
    # A task queued without run_after carries django-tasks' far-future sentinel: it is ready at once.
    return Q(status=TaskResultStatus.READY) & (Q(run_after=get_date_max()) | Q(run_after__lte=moment))


def _lag_seconds(moment: datetime) -> float:
    """How long the oldest ready task has waited: since it was queued, or since its run_after passed."""
    oldest = DBTaskResult.objects.filter(_ready_now(moment), backend_name=DEFAULT_TASK_BACKEND_ALIAS).aggregate(
        queued=Min("enqueued_at", filter=Q(run_after=get_date_max())),
        due=Min("run_after", filter=Q(run_after__lte=moment)),
    )
    waiting_since = min(filter(None, [oldest["queued"], oldest["due"]]), default=None)
    return max((moment - waiting_since).total_seconds(), 0.0) if waiting_since else 0.0


def queue_state(now: datetime | None = None) -> QueueState:
    moment = now or timezone.now()
    rows = DBTaskResult.objects.filter(backend_name=DEFAULT_TASK_BACKEND_ALIAS)
    workers = list(WorkerHeartbeat.objects.order_by("-beat_at")[:20])
    return QueueState(
        ready=rows.filter(_ready_now(moment)).count(),
        deferred=rows.filter(status=TaskResultStatus.READY, run_after__gt=moment)
        .exclude(run_after=get_date_max())
        .count(),
        running=rows.filter(status=TaskResultStatus.RUNNING).count(),
        failed=rows.filter(status=TaskResultStatus.FAILED).count(),
        lag_seconds=_lag_seconds(moment),
        last_heartbeat=workers[0].beat_at if workers else None,
        workers=workers,
    )


def worker_health(now: datetime | None = None) -> str:
    """``ok``, ``down``, ``lagging`` or ``inline`` (see the module docstring)."""
    if not uses_database_queue():
        return "inline"
    moment = now or timezone.now()
    last = WorkerHeartbeat.objects.order_by("-beat_at").values_list("beat_at", flat=True).first()
    if last is None or (moment - last).total_seconds() > worker_stale_seconds():
        return "down"
    if _lag_seconds(moment) > queue_lag_seconds():
        return "lagging"
    return "ok"


def sweep(now: datetime | None = None) -> dict[str, int]:
    """The periodic jobs: escalate unacknowledged alerts and overdue threads, retry due notifications."""
    from messaging import alerts, handling, notify

    moment = now or timezone.now()
    # Held results whose hold ran out (care's command, called by name: messaging never imports care).
    call_command("release_held_results", verbosity=0)
    return {
        "alerts_escalated": len(alerts.alerts_escalate_due(now=moment)),
        "threads_escalated": len(handling.thread_escalate_overdue(now=moment)),
        "notifications_sent": notify.send_due(now=moment),
    }


class PortalWorker(Worker):
    """django-tasks' database worker loop, with a heartbeat between tasks and the sweeps every
    ``PORTAL_WORKER_SWEEP_SECONDS``. A task that hangs stops the heartbeat, so /health notices."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.started_at = timezone.now()
        self.next_beat = 0.0
        self.next_sweep = 0.0

    def beat(self) -> None:
        now = timezone.now()
        # Rows of workers gone for a day are history, not health.
        WorkerHeartbeat.objects.filter(beat_at__lt=now - timedelta(days=1)).delete()
        WorkerHeartbeat.objects.update_or_create(
            worker_id=self.worker_id,
            defaults={
                "hostname": socket.gethostname()[:120],
                "pid": os.getpid(),
                "started_at": self.started_at,
                "beat_at": now,
                "tasks_run": self._run_tasks,
            },
        )

    def housekeeping(self) -> None:
        clock = time.monotonic()
        try:
            if clock >= self.next_beat:
                self.beat()
                self.next_beat = clock + worker_heartbeat_seconds()
            if clock >= self.next_sweep:
                done = sweep()
                self.next_sweep = clock + worker_sweep_seconds()
                if any(done.values()):
                    logger.info("worker sweep: %s", done)
        except OperationalError:  # the database is busy or away: try again on the next turn
            logger.warning("worker housekeeping postponed: database unavailable")

    def run(self) -> None:
        logger.info("Starting portal worker worker_id=%s", self.worker_id)
        # The audit ledger's sequencer seals new audit rows on a thread of its own, every
        # PORTAL_AUDIT_SEAL_SECONDS, so a long task never delays sealing (portal.ledger).
        sequencer, stop_sequencer = ledger.start_sequencer_thread()
        try:
            self.serve()
        finally:
            stop_sequencer.set()
            sequencer.join(timeout=10)

    def serve(self) -> None:
        while self.running:
            self.housekeeping()
            tasks = DBTaskResult.objects.ready().filter(backend_name=self.backend_name)
            if not self.process_all_queues:
                tasks = tasks.filter(queue_name__in=self.queue_names)
            task_result = None
            try:
                with exclusive_transaction(tasks.db):
                    task_result = tasks.get_locked()
                    if task_result is not None:
                        task_result.claim(self.worker_id)
            except OperationalError:  # a locked or unreachable database: keep trying
                logger.warning("worker could not claim a task: database unavailable")
                task_result = None
            if task_result is not None:
                self.run_task(task_result)
            if self.max_tasks is not None and self._run_tasks >= self.max_tasks:
                return
            close_old_connections()
            if self.running and task_result is None:
                time.sleep(self.interval)
