from typing import Any

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Escalate every urgent alert not acknowledged in time (the worker does this on its own; "
        "use this where the worker does not run)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        from messaging.alerts import alerts_escalate_due

        escalated = alerts_escalate_due()
        self.stdout.write(f"escalated {len(escalated)} urgent alert(s)")
