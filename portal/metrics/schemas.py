"""Metrics API schemas: queries forbid unknown parameters; outputs are aggregates only."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from ninja import Schema
from pydantic import Field

from portal.schemas import In

TopicName = Literal["scheduling", "medication", "refill", "advice", "results", "billing", "other"]


class ReportQuery(In):
    period: Literal["day", "week", "month"] = "month"
    start: date | None = Field(None, description="Default: 12 months before end.")
    end: date | None = Field(None, description="Inclusive. Default: the last day with data.")
    group_by: Literal["none", "topic", "department"] = "none"
    department: str | None = Field(None, max_length=40)
    topic: TopicName | None = None


class ComparisonQuery(In):
    start: date | None = Field(None, description="Comparison period; default: the last 90 days with data.")
    end: date | None = None
    topic: TopicName | None = None
    baseline_start: date | None = None
    baseline_end: date | None = None


class ReportRowOut(Schema):
    period_start: date
    topic: TopicName | None
    department: str | None
    calls: int | None = Field(description="Inbound calls (null: suppressed, see suppressed).")
    calls_enrolled: int | None
    calls_not_enrolled: int | None
    calls_unattributed: int | None = Field(description="Calls no known identity matched.")
    callbacks: int | None = Field(description="Calls on a topic the family used the portal for in the 7 days before.")
    callbacks_expected: float | None = Field(description="Same-topic calls expected within 7 days anyway.")
    callbacks_excess: float | None = Field(description="Call-backs beyond the same-topic base rate.")
    actions: int | None = Field(description="Self-service actions in the portal.")
    patients: int | None = Field(description="Mean patients present (registered, not exited) over the period.")
    enrolled: int | None = Field(description="Mean patients with an active guardian link.")
    calls_per_1000_patients: float | None
    calls_per_1000_person_months: float | None
    calls_per_1000_enrolled: float | None
    calls_per_1000_not_enrolled: float | None
    deflection_net: float | None = Field(
        description="Month rows: 1 - (enrolled now / a year ago) / (not enrolled now / a year ago), every call once."
    )
    deflection_gross: float | None = Field(description="The same without call-backs.")
    actions_per_call: float | None
    active_guardians: int | None = Field(description="Monthly active guardians (period=month).")
    responses: int | None
    mean_response_minutes: float | None
    responded_within_1h: float | None
    responded_within_24h: float | None
    suppressed: list[str] = Field(
        description="Parts hidden: fewer than 11 distinct patients, or complements of such parts."
    )


class ReportOut(Schema):
    period: Literal["day", "week", "month"]
    start: date
    end: date
    baseline_start: date | None
    baseline_end: date | None
    rows: list[ReportRowOut]


class RatesOut(Schema):
    treated_baseline: float | None
    treated_period: float | None
    control_baseline: float | None
    control_period: float | None


class ComparisonOut(Schema):
    baseline_start: date
    baseline_end: date
    period_start: date
    period_end: date
    topic: TopicName | None
    treated_patients: int | None
    control_patients: int | None
    rates_per_1000_per_30_days: RatesOut
    effect: float | None = Field(description="Difference-in-differences: relative call reduction due to the portal.")
    ci_low: float | None
    ci_high: float | None
    confidence: float
    dispersion: float | None
    naive_before_after: float | None = Field(description="Enrolled families before vs after: includes the trend.")
    naive_enrolled_vs_not: float | None = Field(description="Enrolled vs not in the period: includes selection.")
    match_rates: RatesOut = Field(description="Estimated share of each group's calls attributed to a patient.")
    match_bias: float | None = Field(description="Log-scale bias the match rates put on the effect.")
    match_bias_se: float | None
    match_margin: float
    match_flagged: bool = Field(description="Match rates differ beyond the margin (or cannot be checked): no effect.")
    suppressed: bool
    included: str = Field(description="Which patients and calls the comparison counts.")
    estimate: dict[str, Any] | None = Field(
        description="The staggered-adoption estimate (fitted nightly): att, event_study, pretrend, credible, balance."
    )


class WebhookOut(Schema):
    import_id: str
    rows: int
    added: int
    duplicates: int
