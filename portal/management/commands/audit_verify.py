"""Verify the audit trail: the whole ledger (and the pre-ledger chain), checkpoints exported earlier,
and proofs exported by ``audit_checkpoint``.

    python manage.py audit_verify
    python manage.py audit_verify --checkpoint kept-elsewhere.json [--checkpoint older.json]
    python manage.py audit_verify --proof proof.json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal import audit, ledger, merkle
from portal.management.commands.audit_checkpoint import load_checkpoint
from portal.models import AuditEvent


class Command(BaseCommand):
    help = (
        "Verify the audit ledger: every row against its leaf, every checkpoint's root and signature, "
        "exported checkpoints and proofs (exit 1 on any problem)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--checkpoint", action="append", default=[], metavar="FILE", help="an exported checkpoint to hold against"
        )
        parser.add_argument("--proof", action="append", default=[], metavar="FILE", help="an exported proof to check")
        parser.add_argument("--skip-ledger", action="store_true", help="check only the given checkpoints and proofs")
        parser.add_argument(
            "--all-checkpoints", action="store_true", help="check every stored checkpoint, not only the latest"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        problems: list[str] = []
        if not options["skip_ledger"]:
            for item in audit.verify(all_checkpoints=options["all_checkpoints"]):
                if item.seq is not None:
                    problems.append(f"row {item.seq}: {item.problem}")
                elif item.index is not None:
                    problems.append(f"leaf {item.index}: {item.problem}")
                else:
                    problems.append(item.problem)
        for name in options["checkpoint"]:
            checkpoint = load_checkpoint(Path(name))
            problems += [f"{name}: {problem}" for problem in ledger.verify_against(checkpoint)]
        for name in options["proof"]:
            problems += [f"{name}: {problem}" for problem in _check_proof(Path(name))]
        for problem in problems:
            self.stdout.write(problem)
        if problems:
            raise CommandError(f"The audit trail is broken in {len(problems)} place(s).")
        self.stdout.write(self.style.SUCCESS("The audit trail is intact."))


def _check_proof(path: Path) -> list[str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        kind = data["type"]
        if kind == "inclusion":
            checkpoint = ledger.Checkpoint.from_json(data["checkpoint"])
            checkpoint.verify_signature()
            event = AuditEvent.objects.filter(seq=int(data["seq"])).first()
            if event is None:
                return [f"audit row {data['seq']} is missing (deleted)"]
            ledger.Inclusion(
                event_seq=event.seq,
                index=int(data["leaf_index"]),
                leaf_hash=str(data["leaf_hash"]),
                checkpoint=checkpoint,
                proof=[str(item) for item in data["proof"]],
            ).verify(event)
            return ledger.verify_against(checkpoint)
        if kind == "consistency":
            old = ledger.Checkpoint.from_json(data["old"])
            new = ledger.Checkpoint.from_json(data["new"])
            old.verify_signature()
            new.verify_signature()
            proof = [bytes.fromhex(str(item)) for item in data["proof"]]
            merkle.verify_consistency(old.tree_size, new.tree_size, old.root(), new.root(), proof)
            return []
        return [f"unknown proof type {kind!r}"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return [f"not a readable proof ({error})"]
    except (ledger.CheckpointError, merkle.ProofError) as error:
        return [str(error)]
