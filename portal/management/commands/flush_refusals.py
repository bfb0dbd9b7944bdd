from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from portal import refusals


class Command(BaseCommand):
    help = "Append coalesced unauthenticated refusals of closed windows to the audit trail (run every few minutes)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--all", action="store_true", help="also windows still open (e.g. before shutdown)")

    def handle(self, *args: Any, **options: Any) -> None:
        total = 0
        while True:
            appended = refusals.flush(everything=options["all"])
            total += appended
            if appended < refusals.FLUSH_BATCH:
                break
        self.stdout.write(self.style.SUCCESS(f"Appended {total} coalesced refusal row(s) to the audit trail."))
