"""``manage.py generate_fhir_hospital --patients N --out DIR``: write a synthetic hospital's Bulk Data export."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from fixtures import fhir_hospital


class Command(BaseCommand):
    help = (
        "Write NDJSON files (one per FHIR resource type) for a synthetic hospital, streaming (memory flat in "
        "--patients); deterministic for a seed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--patients", type=int, default=20)
        parser.add_argument("--out", required=True)
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--anchor", default="2026-12-01", help="the export's date (ISO), around which visits fall")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["patients"] < 1:
            raise CommandError("--patients must be at least 1.")
        anchor = datetime.fromisoformat(options["anchor"]).replace(tzinfo=UTC)
        paths = fhir_hospital.export(
            Path(options["out"]), patients=options["patients"], seed=options["seed"], anchor=anchor
        )
        for path in paths:
            self.stdout.write(str(path))
