"""Seal the audit rows written since the last run into the ledger, once (the worker does this every
``PORTAL_AUDIT_SEAL_SECONDS``; see ``portal.ledger``)."""

from typing import Any

from django.core.management.base import BaseCommand

from portal import ledger


class Command(BaseCommand):
    help = "Seal new audit rows into the ledger and sign a checkpoint (once)."

    def handle(self, *args: Any, **options: Any) -> None:
        count = ledger.seal()
        checkpoint = ledger.latest_checkpoint()
        size = checkpoint.tree_size if checkpoint else 0
        self.stdout.write(self.style.SUCCESS(f"Sealed {count} audit row(s); the ledger holds {size}."))
