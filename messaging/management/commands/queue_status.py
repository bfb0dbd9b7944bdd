from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from messaging.worker import queue_state, uses_database_queue, worker_health


class Command(BaseCommand):
    help = "Show the task queue (ready, deferred, running, failed, lag) and the workers' heartbeats."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--fail-unhealthy", action="store_true", help="exit 1 unless the worker is healthy")

    def handle(self, *args: Any, **options: Any) -> None:
        if not uses_database_queue():
            self.stdout.write("tasks run inline (no database queue)")
            return
        now = timezone.now()
        state = queue_state(now)
        health = worker_health(now)
        self.stdout.write(f"worker: {health}")
        self.stdout.write(
            f"ready: {state.ready}  deferred: {state.deferred}  running: {state.running}  failed: {state.failed}"
        )
        self.stdout.write(f"lag: {state.lag_seconds:.1f} s")
        for worker in state.workers:
            age = (now - worker.beat_at).total_seconds()
            self.stdout.write(
                f"  {worker.worker_id} on {worker.hostname} pid {worker.pid}: last heartbeat {age:.1f} s ago, "
                f"{worker.tasks_run} task(s) run"
            )
        if options["fail_unhealthy"] and health != "ok":
            raise SystemExit(1)
