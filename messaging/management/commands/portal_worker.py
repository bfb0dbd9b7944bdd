from typing import Any

from django_tasks_db.management.commands.db_worker import Command as DbWorkerCommand

from messaging.worker import PortalWorker


class Command(DbWorkerCommand):
    help = (
        "Run the background worker: queued tasks (notifications with retries), a heartbeat for /health, "
        "and the periodic sweeps (urgent-alert escalation, overdue threads, notification retries)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        self.configure_logging(options["verbosity"])
        worker = PortalWorker(
            queue_names=options["queue_name"].split(","),
            interval=options["interval"],
            batch=False,
            backend_name=options["backend_name"],
            startup_delay=False,
            max_tasks=options["max_tasks"],
            worker_id=options["worker_id"],
        )
        worker.configure_signals()
        worker.run()
