from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Escalate every thread past its reply-by time to its pool lead (run every few minutes)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--enqueue", action="store_true", help="queue the sweep as a background task instead")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["enqueue"]:
            from messaging.tasks import escalate_overdue_threads

            result = escalate_overdue_threads.enqueue()
            self.stdout.write(f"queued task {result.id}")
            return
        from messaging.handling import thread_escalate_overdue

        escalated = thread_escalate_overdue()
        self.stdout.write(f"escalated {len(escalated)} overdue thread(s)")
