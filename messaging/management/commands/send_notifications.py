from typing import Any

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Send the notifications that are due: retries and those held back by quiet hours (run every minute)."

    def handle(self, *args: Any, **options: Any) -> None:
        from messaging.notify import send_due

        self.stdout.write(f"attempted {send_due()} notification(s)")
