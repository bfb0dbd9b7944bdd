"""The portal's dosing rules (``care.dosing``) → a MedicationRequest's dosage instruction: the inverse
of ``interop.mapping.timing``, so that a plan read back imports as the same plan.

Fixed clock times every day or on chosen weekdays become ``timeOfDay`` (with ``dayOfWeek``); every N
hours a period in hours; as needed ``asNeededBoolean`` with the minimum interval as the period and
the daily maximum as ``maxDosePerPeriod``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from care.models import MedicationPlan
from interop.outbound.common import UCUM, drop_empty, instant

DAY_CODES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _clock(value: str) -> str:
    return f"{value[:5]}:00"


def _period(minutes: int) -> dict[str, Any]:
    if minutes % 60 == 0:
        return {"frequency": 1, "period": minutes // 60, "periodUnit": "h"}
    return {"frequency": 1, "period": minutes, "periodUnit": "min"}


def repeat(plan: MedicationPlan) -> dict[str, Any]:
    kind = plan.schedule_kind
    if kind in (MedicationPlan.ScheduleKind.FIXED_TIMES, MedicationPlan.ScheduleKind.WEEKDAYS):
        times = sorted(plan.times_of_day or [])
        out: dict[str, Any] = {
            "frequency": len(times),
            "period": 1,
            "periodUnit": "d",
            "timeOfDay": [_clock(t) for t in times],
        }
        if kind == MedicationPlan.ScheduleKind.WEEKDAYS:
            out["dayOfWeek"] = [DAY_CODES[d] for d in sorted(plan.weekdays or [])]
        return out
    if kind == MedicationPlan.ScheduleKind.EVERY_N_HOURS:
        return {"frequency": 1, "period": int(plan.interval_hours or 0), "periodUnit": "h"}
    return _period(plan.min_interval_minutes) if plan.min_interval_minutes else {}


def _quantity(value: Decimal) -> int | float:
    normal = value.normalize()
    return int(normal) if normal == normal.to_integral_value() else float(normal)


def dosage(plan: MedicationPlan) -> dict[str, Any]:
    """The single dosage instruction of a plan."""
    bounds = drop_empty({"start": instant(plan.start), "end": instant(plan.end) if plan.end else None})
    timing_repeat = repeat(plan)
    timing_repeat["boundsPeriod"] = bounds
    out: dict[str, Any] = {
        "sequence": 1,
        "text": plan.instructions or None,
        "timing": {"repeat": timing_repeat},
        "route": {"text": plan.route} if plan.route else None,
        "doseAndRate": [{"doseQuantity": drop_empty({"value": _quantity(plan.dose_quantity), "unit": plan.dose_unit})}],
    }
    if plan.schedule_kind == MedicationPlan.ScheduleKind.AS_NEEDED:
        out["asNeededBoolean"] = True
        if plan.max_per_day:
            out["maxDosePerPeriod"] = {
                "numerator": {"value": plan.max_per_day},
                "denominator": {"value": 1, "unit": "d", "system": UCUM, "code": "d"},
            }
    return drop_empty(out)
