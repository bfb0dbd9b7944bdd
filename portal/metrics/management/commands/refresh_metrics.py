from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from portal.metrics.refresh import metrics_refresh


class Command(BaseCommand):
    help = (
        "Derive self-service events from new audit rows, sync new children, and refresh the rollups of dirty "
        "days. Run it every few minutes (cron, a systemd timer, or portal.metrics.tasks.refresh_metrics_task)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--full", action="store_true", help="re-sync every child's enrolment and department")

    def handle(self, *args: Any, **options: Any) -> None:
        result = metrics_refresh(full=options["full"])
        self.stdout.write(
            f"{result.audit_rows} audit row(s) read, {result.patients_changed} patient(s) changed, "
            f"{result.days} day(s) refreshed."
        )
