from typing import Any

from django.core.management.base import BaseCommand

from portal.services import links_expire


class Command(BaseCommand):
    help = "Mark guardian links past their end or the adult birthday, and stale invitations, as expired."

    def handle(self, *args: Any, **options: Any) -> None:
        count = links_expire()
        self.stdout.write(f"{count} link(s) expired.")
