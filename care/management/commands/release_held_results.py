from typing import Any

from django.core.management.base import BaseCommand

from care.services.results import release_due


class Command(BaseCommand):
    help = (
        "Release the held test results and visit summaries whose hold has run out (PORTAL_RESULT_HOLD), "
        "each with its audit row and event; the worker runs it on every sweep."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        count = release_due()
        if options["verbosity"] > 0:
            self.stdout.write(f"{count} held item(s) released.")
