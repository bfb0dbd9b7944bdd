from typing import Any

from django.core.management.base import BaseCommand, CommandError

from portal import audit


class Command(BaseCommand):
    help = "Walk the audit chain; report every edited, deleted, inserted or reordered row (exit 1 if any)."

    def handle(self, *args: Any, **options: Any) -> None:
        breaks = list(audit.verify())
        for item in breaks:
            self.stdout.write(f"row {item.seq}: {item.problem}")
        if breaks:
            raise CommandError(f"The audit chain is broken in {len(breaks)} place(s).")
        self.stdout.write(self.style.SUCCESS("The audit chain is intact."))
