from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from portal.errors import ApiError
from portal.metrics.imports import ImportRejected, TooLarge, calls_import
from portal.metrics.models import CallImportBatch


class Command(BaseCommand):
    help = (
        "Import calls from a phone-system CSV (columns: call_id, started_at, duration_seconds, direction, queue, "
        "reason, caller_phone, mrn, outcome). A file with any bad line imports nothing; known call ids are skipped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--source", required=True, help="the phone system's name (call ids are unique per source)")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["path"]
        # Exit status 2 with one line for a file that cannot be taken (unreadable, over a limit);
        # 1 for a file with bad lines (each named on stderr first).
        try:
            stream = path.open("rb")
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}", returncode=2) from None
        try:
            with stream:
                batch = calls_import(actor=None, source=options["source"], data=stream, via=CallImportBatch.Via.COMMAND)
        except TooLarge as exc:
            raise CommandError(exc.message, returncode=2) from None
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}", returncode=2) from None
        except ImportRejected as exc:
            for error in exc.line_errors:
                self.stderr.write(f"line {error.line}, column {error.column or '-'}: {error.reason}")
            raise CommandError(exc.message) from None
        except ApiError as exc:  # an invalid source name
            raise CommandError(exc.message, returncode=2) from None
        self.stdout.write(f"{batch.rows} row(s): {batch.added} added, {batch.duplicates} already known.")
