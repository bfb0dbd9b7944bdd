import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from fixtures.metrics_seed import SeedParams, seed_metrics
from portal.metrics.common import days_between
from portal.metrics.models import DirtyDay
from portal.metrics.population import cohort_sizes_refresh
from portal.metrics.rollups import rollups_refresh


class Command(BaseCommand):
    help = (
        "Generate synthetic calls and portal activity with a known true effect (replacing earlier synthetic "
        "data), then build the rollups. Example: seed_metrics --patients 570000 --months 24 --effect 0.6"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--patients", type=int, default=20_000)
        parser.add_argument("--months", type=int, default=24)
        parser.add_argument("--effect", type=float, default=0.3, help="true relative call reduction when enrolled")
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--trend", type=float, default=-0.15, help="hospital-wide call trend per year")
        parser.add_argument("--calls-per-patient-year", type=float, default=5.5)
        parser.add_argument("--actions-per-enrolled-day", type=float, default=0.04)
        parser.add_argument("--no-rollups", action="store_true", help="leave the rollups for refresh_metrics")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["patients"] < 1 or not 2 <= options["months"] <= 120 or not 0 <= options["effect"] < 1:
            raise CommandError("--patients ≥ 1, --months 2..120 and 0 ≤ --effect < 1 are required.")
        started = time.perf_counter()
        summary = seed_metrics(
            SeedParams(
                patients=options["patients"],
                months=options["months"],
                effect=options["effect"],
                seed=options["seed"],
                trend=options["trend"],
                calls_per_patient_year=options["calls_per_patient_year"],
                actions_per_enrolled_day=options["actions_per_enrolled_day"],
            ),
            log=lambda line: self.stdout.write(line),
        )
        self.stdout.write(
            f"{summary.patients} patients, {summary.calls} calls, {summary.events} portal actions "
            f"({summary.start}..{summary.end}, go-live {summary.go_live}) in {time.perf_counter() - started:.1f}s"
        )
        if options["no_rollups"]:
            DirtyDay.objects.bulk_create(
                [DirtyDay(day=day) for day in days_between(summary.start, summary.end)], ignore_conflicts=True
            )
            return
        started = time.perf_counter()
        days = rollups_refresh(days=days_between(summary.start, summary.end))
        cohort_sizes_refresh()
        self.stdout.write(f"rollups for {days} days in {time.perf_counter() - started:.1f}s")
