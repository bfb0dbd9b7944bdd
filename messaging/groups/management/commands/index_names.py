from typing import Any

from django.core.management.base import BaseCommand

from messaging.groups import names


class Command(BaseCommand):
    help = "Rebuild the blind index of real names that pseudonyms may not spell (after a key change or upgrade)."

    def handle(self, *args: Any, **options: Any) -> None:
        count = names.reindex_all()
        self.stdout.write(self.style.SUCCESS(f"Indexed {count} names."))
