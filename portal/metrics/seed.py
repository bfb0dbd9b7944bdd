"""Synthetic call and portal data with a known true effect, for demos, tests and benchmarks.

Each patient has a call propensity (gamma-distributed; families who will enrol call 30% more, as
sicker children's families do). The daily intensity multiplies a weekly pattern, a winter season
and a hospital-wide trend. From the go-live date enrolment grows; from the day a patient enrols,
their call rate is multiplied by ``1 - effect`` (the true effect) and they start using the portal.
Some of their calls follow a portal action on the same topic within days (call-backs), so net
deflection is lower than gross. Synthetic patients are ``MetricsPatient`` rows only (no children,
no PHI); their families are random hashes.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from portal.metrics.models import (
    NEVER,
    CallRecord,
    MetricsConfig,
    MetricsPatient,
    SelfServiceEvent,
)

SOURCE = "seed"
TOPICS = ("scheduling", "medication", "refill", "advice", "results", "billing", "other")
CALL_TOPIC_WEIGHTS = (0.30, 0.14, 0.14, 0.16, 0.10, 0.09, 0.07)
EVENT_TOPIC_WEIGHTS = (0.38, 0.22, 0.14, 0.08, 0.08, 0.08, 0.02)
WEEKDAY = (1.30, 1.10, 1.00, 1.00, 0.90, 0.40, 0.30)
DEPARTMENTS = ("gen-peds", "endo", "cardio", "neuro", "pulm", "onc", "gastro", "nephro", "ortho", "derm")
OUTCOMES = ("answered", "answered", "answered", "answered", "abandoned", "voicemail", "transferred")
BATCH = 20_000


@dataclass
class SeedParams:
    patients: int
    months: int
    effect: float
    seed: int = 7
    trend: float = -0.15  # hospital-wide change of the call rate per year
    start: date | None = None
    enrol_share: float = 0.6
    calls_per_patient_year: float = 5.5
    actions_per_enrolled_day: float = 0.04
    callback_share: float = 0.25
    departments: int = 8


@dataclass
class SeedSummary:
    patients: int
    calls: int
    events: int
    start: date
    end: date
    go_live: date
    baseline_start: date
    baseline_end: date


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > 40:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


def _intensity(start: date, days: int, trend: float) -> list[float]:
    """Cumulative daily intensity (weekday x season x trend), C[0] = 0, C[d+1] = C[d] + m(d)."""
    cumulative = [0.0]
    for offset in range(days):
        day = start + timedelta(days=offset)
        season = 1 + 0.25 * math.cos(2 * math.pi * (day.timetuple().tm_yday - 15) / 365.25)
        factor = WEEKDAY[day.weekday()] * season * (1 + trend) ** (offset / 365.25)
        cumulative.append(cumulative[-1] + factor)
    return cumulative


def _family(seed: int, index: int) -> str:
    return hashlib.sha256(f"metrics-seed:{seed}:{index}".encode()).hexdigest()


def seed_metrics(params: SeedParams, *, log: Callable[[str], None] = lambda _: None) -> SeedSummary:
    """Replace earlier synthetic data with a fresh population, calls and portal actions."""
    rng = random.Random(params.seed)  # noqa: S311  (synthetic data, not security)
    today = timezone.now().date()
    start = params.start or _add_months(today.replace(day=1), -params.months)
    end = _add_months(start, params.months) - timedelta(days=1)
    days = (end - start).days + 1
    go_live = _add_months(start, params.months // 2)
    live_offset = (go_live - start).days
    baseline_end = go_live - timedelta(days=1)
    baseline_start = max(start, _add_months(go_live, -12))
    cumulative = _intensity(start, days, params.trend)
    total = cumulative[-1]
    base_rate = params.calls_per_patient_year / 365.25
    departments = DEPARTMENTS[: max(1, min(params.departments, len(DEPARTMENTS)))]

    with transaction.atomic():
        _clear()
        MetricsConfig.objects.update_or_create(
            pk=1, defaults={"baseline_start": baseline_start, "baseline_end": baseline_end, "go_live": go_live}
        )
    plan: list[tuple[str, str, int | None, float]] = []  # ref, department, enrol offset, propensity
    patient_rows = []
    for index in range(params.patients):
        enrols = rng.random() < params.enrol_share
        offset = live_offset + int((days - live_offset) * rng.random() ** 1.3) if enrols else None
        if offset is not None and offset >= days:
            offset = None
        propensity = rng.gammavariate(2.0, 0.5) * (1.3 if enrols else 1.0)
        department = departments[min(len(departments) - 1, int(rng.paretovariate(1.2)) - 1)]
        ref = f"s:{params.seed}:{index}"
        enrolled_on = start + timedelta(days=offset) if offset is not None else None
        plan.append((ref, department, offset, propensity))
        patient_rows.append(
            MetricsPatient(
                ref=ref,
                source=MetricsPatient.Source.SYNTHETIC,
                department=department,
                family_hash=_family(params.seed, index),
                enrolled_on=enrolled_on,
                cohort_month=enrolled_on.replace(day=1) if enrolled_on else NEVER,
            )
        )
    _write_patients(patient_rows)
    ids = dict(
        MetricsPatient.objects.filter(source=MetricsPatient.Source.SYNTHETIC).values_list("ref", "id").iterator()
    )
    log(f"{len(ids)} patients")

    def rows() -> Iterator[tuple[str, tuple[Any, ...]]]:
        call_no = 0
        for index, (ref, _department, offset, propensity) in enumerate(plan):
            pid = ids[ref]
            family = patient_rows[index].family_hash
            lam = base_rate * propensity
            cut = cumulative[offset] if offset is not None else total
            weight = cut + (1 - params.effect) * (total - cut)
            events_at: list[int] = []
            for _ in range(_poisson(rng, lam * weight)):
                u = rng.random() * weight
                if u < cut:
                    day_index = bisect.bisect_right(cumulative, u) - 1
                else:
                    scaled = cut + (u - cut) / (1 - params.effect) if params.effect < 1 else cut
                    day_index = bisect.bisect_right(cumulative, scaled) - 1
                day_index = min(max(day_index, 0), days - 1)
                topic = rng.choices(TOPICS, CALL_TOPIC_WEIGHTS)[0]
                at = datetime.combine(start + timedelta(days=day_index), time(8), tzinfo=UTC) + timedelta(
                    seconds=rng.randrange(10 * 3600)
                )
                inbound = rng.random() < 0.92
                call_no += 1
                yield (
                    "call",
                    (
                        SOURCE,
                        f"seed-{params.seed}-{call_no}",
                        at,
                        at.date(),
                        rng.randrange(30, 1200),
                        "inbound" if inbound else "outbound",
                        topic,
                        topic,
                        family,
                        pid,
                        rng.choice(OUTCOMES),
                    ),
                )
                if offset is not None and day_index > offset + 7 and inbound and rng.random() < params.callback_share:
                    # The family used the portal on this topic a few days before calling anyway.
                    before = at - timedelta(days=rng.uniform(0.5, 6.5))
                    yield ("event", (before, before.date(), topic, "viewed", family, family, pid))
            if offset is None:
                continue
            used = cumulative[days] - cumulative[offset]
            for _ in range(_poisson(rng, params.actions_per_enrolled_day * used * rng.uniform(0.5, 1.5))):
                u = cumulative[offset] + rng.random() * used
                day_index = min(max(bisect.bisect_right(cumulative, u) - 1, offset), days - 1)
                at = datetime.combine(start + timedelta(days=day_index), time(6), tzinfo=UTC) + timedelta(
                    seconds=rng.randrange(16 * 3600)
                )
                events_at.append(day_index)
                topic = rng.choices(TOPICS, EVENT_TOPIC_WEIGHTS)[0]
                yield ("event", (at, at.date(), topic, "viewed", family, family, pid))

    calls, events = _write_rows(rows(), log)
    return SeedSummary(
        patients=len(ids),
        calls=calls,
        events=events,
        start=start,
        end=end,
        go_live=go_live,
        baseline_start=baseline_start,
        baseline_end=baseline_end,
    )


def _clear() -> None:
    synthetic = MetricsPatient.objects.filter(source=MetricsPatient.Source.SYNTHETIC)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "DELETE FROM metrics_callrecord WHERE source = %s",
                [SOURCE],
            )
            cursor.execute(
                "DELETE FROM metrics_selfserviceevent WHERE audit_seq IS NULL AND patient_id IN "
                "(SELECT id FROM metrics_metricspatient WHERE source = 'synthetic')"
            )
    else:
        CallRecord.objects.filter(source=SOURCE).delete()
        SelfServiceEvent.objects.filter(audit_seq__isnull=True, patient__in=synthetic).delete()
    synthetic.delete()


def _write_patients(rows: list[MetricsPatient]) -> None:
    if connection.vendor == "postgresql":
        now = timezone.now()
        raw = connection.cursor().connection
        with (
            raw.cursor() as cursor,
            cursor.copy(
                "COPY metrics_metricspatient (ref, source, department, family_hash, enrolled_on, cohort_month, "
                "updated_at) FROM STDIN"
            ) as copy,
        ):
            for row in rows:
                copy.write_row(
                    (row.ref, row.source, row.department, row.family_hash, row.enrolled_on, row.cohort_month, now)
                )
        return
    MetricsPatient.objects.bulk_create(rows, batch_size=BATCH)


def _write_rows(rows: Iterator[tuple[str, tuple[Any, ...]]], log: Callable[[str], None]) -> tuple[int, int]:
    """COPY on PostgreSQL (the fast path for hospital scale), bulk_create in batches elsewhere."""
    calls = events = 0
    if connection.vendor == "postgresql":
        raw = connection.cursor().connection
        call_buf, event_buf = io.StringIO(), io.StringIO()

        def flush() -> None:
            with raw.cursor() as cursor:
                if call_buf.tell():
                    with cursor.copy(
                        "COPY metrics_callrecord (source, call_id, started_at, day, duration_seconds, direction, "
                        "queue, topic, caller_hash, patient_id, outcome) FROM STDIN"
                    ) as copy:
                        copy.write(call_buf.getvalue())
                if event_buf.tell():
                    with cursor.copy(
                        "COPY metrics_selfserviceevent (occurred_at, day, topic, kind, family_hash, guardian_hash, "
                        "patient_id) FROM STDIN"
                    ) as copy:
                        copy.write(event_buf.getvalue())
            call_buf.seek(0)
            call_buf.truncate()
            event_buf.seek(0)
            event_buf.truncate()

        pending = 0
        for kind, values in rows:
            line = "\t".join(v.isoformat() if isinstance(v, date | datetime) else str(v) for v in values) + "\n"
            if kind == "call":
                call_buf.write(line)
                calls += 1
            else:
                event_buf.write(line)
                events += 1
            pending += 1
            if pending >= 200_000:
                flush()
                pending = 0
                log(f"{calls} calls, {events} events")
        flush()
        return calls, events
    # Elsewhere (SQLite): executemany of plain tuples, far cheaper than model instances.
    call_sql = (
        "INSERT INTO metrics_callrecord (source, call_id, started_at, day, duration_seconds, direction, queue, "
        "topic, caller_hash, patient_id, outcome) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    )
    event_sql = (
        "INSERT INTO metrics_selfserviceevent (occurred_at, day, topic, kind, family_hash, guardian_hash, "
        "patient_id) VALUES (%s, %s, %s, %s, %s, %s, %s)"
    )
    ops = connection.ops
    call_rows: list[tuple[Any, ...]] = []
    event_rows: list[tuple[Any, ...]] = []

    def adapt(values: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(
            ops.adapt_datetimefield_value(v) if isinstance(v, datetime) else v.isoformat() if isinstance(v, date) else v
            for v in values
        )

    with connection.cursor() as cursor:
        for kind, values in rows:
            if kind == "call":
                call_rows.append(adapt(values))
                calls += 1
            else:
                event_rows.append(adapt(values))
                events += 1
            if len(call_rows) >= BATCH:
                cursor.executemany(call_sql, call_rows)
                call_rows = []
            if len(event_rows) >= BATCH:
                cursor.executemany(event_sql, event_rows)
                event_rows = []
        cursor.executemany(call_sql, call_rows)
        cursor.executemany(event_sql, event_rows)
    return calls, events
