"""Export the ledger's latest signed checkpoint, or a proof, as JSON to keep outside the database.

    python manage.py audit_checkpoint --export checkpoint.json
    python manage.py audit_checkpoint --inclusion 1234 --export proof.json   # audit row seq 1234
    python manage.py audit_checkpoint --consistency-from old.json --export proof.json

A checkpoint kept elsewhere is what later detects a truncated or rewritten ledger
(``audit_verify --checkpoint FILE``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal import ledger


class Command(BaseCommand):
    help = "Print or export (JSON) the latest signed ledger checkpoint, an inclusion or a consistency proof."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--export", metavar="FILE", help="write the JSON to FILE instead of printing it")
        parser.add_argument("--seal", action="store_true", help="seal pending audit rows first")
        what = parser.add_mutually_exclusive_group()
        what.add_argument("--inclusion", type=int, metavar="SEQ", help="the inclusion proof of audit row SEQ")
        what.add_argument(
            "--consistency-from", metavar="FILE", help="the consistency proof from an exported checkpoint to the latest"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["seal"]:
            ledger.seal()
        latest = ledger.latest_checkpoint()
        if latest is None:
            raise CommandError("The ledger has no checkpoint yet: run audit_seal first.")
        document: dict[str, Any]
        if options["inclusion"] is not None:
            inclusion = ledger.prove_inclusion(options["inclusion"], latest)
            if inclusion is None:
                raise CommandError(f"Audit row {options['inclusion']} is not sealed (or does not exist).")
            document = {
                "type": "inclusion",
                "seq": inclusion.event_seq,
                "leaf_index": inclusion.index,
                "leaf_hash": inclusion.leaf_hash,
                "proof": inclusion.proof,
                "checkpoint": latest.to_json(),
            }
        elif options["consistency_from"]:
            old = load_checkpoint(Path(options["consistency_from"]))
            if old.tree_size > latest.tree_size:
                raise CommandError("The checkpoint is larger than the ledger (it was truncated): run audit_verify.")
            document = {
                "type": "consistency",
                "old": old.to_json(),
                "new": latest.to_json(),
                "proof": [item.hex() for item in ledger.consistency_proof(old.tree_size, latest.tree_size)],
            }
        else:
            document = latest.to_json()
        text = json.dumps(document, indent=2)
        if options["export"]:
            Path(options["export"]).write_text(text + "\n", encoding="utf-8")
            self.stdout.write(self.style.SUCCESS(f"Wrote {options['export']} (ledger size {latest.tree_size})."))
        else:
            self.stdout.write(text)


def load_checkpoint(path: Path) -> ledger.Checkpoint:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise CommandError(f"Cannot read {path}: {error}") from None
    try:
        return ledger.Checkpoint.from_json(data)
    except ledger.CheckpointError as error:
        raise CommandError(f"{path}: {error}") from None
