"""``manage.py fhir_import PATH... [--full-export]``: import FHIR Bulk Data NDJSON files from the EHR."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from interop.importer import DEFAULT_BATCH, OUTCOMES, Summary, import_files


def expand(paths: list[str]) -> list[Path]:
    """Files as given, and the ``*.ndjson`` files of any directory given."""
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found.extend(sorted(path.glob("*.ndjson")))
        elif path.is_file():
            found.append(path)
        else:
            raise CommandError(f"{name}: no such file or directory")
    if not found:
        raise CommandError("No NDJSON files to import.")
    return found


class Command(BaseCommand):
    help = (
        "Import FHIR R4 Bulk Data NDJSON files (one resource type per file, as $export writes them): "
        "idempotent, and an interrupted run over the same files continues where it stopped. "
        "Exits 1 if any line was rejected."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", help="NDJSON files, or directories holding them")
        parser.add_argument(
            "--full-export",
            action="store_true",
            help="The files are the EHR's whole export: what they no longer hold is removed (links end, items hide)",
        )
        parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, help="lines per transaction")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        summary = import_files(
            expand(options["paths"]), full_export=options["full_export"], batch_size=options["batch_size"]
        )
        self.report(summary)
        if summary.rejected:
            raise CommandError(f"{summary.rejected} line(s) rejected (listed above).")

    def report(self, summary: Summary) -> None:
        self.stdout.write(f"Import run {summary.run_id}{' (continued)' if summary.resumed else ''}")
        width = max([len("resource"), *(len(kind) for kind in summary.counts)])
        self.stdout.write("  ".join([f"{'resource':<{width}}", *(f"{o:>12}" for o in OUTCOMES)]))
        for kind, counts in summary.counts.items():
            self.stdout.write("  ".join([f"{kind:<{width}}", *(f"{counts[o]:>12}" for o in OUTCOMES)]))
        for kind in summary.skipped_deletions:
            self.stdout.write(f"{kind}: deletions skipped (some lines could not be identified)")
        for issue in summary.issues:
            self.stdout.write(f"{issue.file}:{issue.line}: {issue.resource_type or '-'} rejected: {issue.reason}")
