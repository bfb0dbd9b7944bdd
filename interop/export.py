"""A family's own copy of a child's record as a FHIR R4 ``collection`` Bundle: exactly what the
guardian may see through the portal's child endpoints, by the same rules.

Every guardian gets the child (without the MRN, which is the care team's), their own link, the
current care team and the visits (a limited-scope guardian the limited view of them: time, clinician,
neutral place and label) with the family's change requests. A full-scope guardian also gets
medicines, doses, refill requests, coverage, conditions, and the released results, reports and visit
summaries. Adolescent-confidential items are left out for every guardian, and held results and
summaries until they are released. With ``PORTAL_FHIR_COMMUNICATION`` on, every guardian (limited
scope included, as the messenger allows) also gets the messages of the child's threads they may read
(not the confidential ones) as Communications, attachments described without their bytes. Clinicians
appear by name only (no address or EHR identifier).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.conf import settings
from django.utils import timezone

from care.models import (
    Appointment,
    Coverage,
    DoseLog,
    MedicationPlan,
    RefillRequest,
    ResultReport,
    TestResult,
    VisitSummary,
)
from care.services.results import family_results_q, family_summaries_q
from interop.models import SourceRecord
from interop.outbound import care, messages, people, results
from interop.outbound.common import instant
from messaging import selectors as messaging
from portal import audit
from portal.access import Capability, ChildAccess, current_membership_q
from portal.models import CareTeamMembership, GuardianLink, User
from portal.vocabulary import Resource


def _family_view(access: ChildAccess) -> ChildAccess:
    """The guardian's access alone: a guardian who is also on the care team exports what the family
    sees, not the care team's view."""
    return ChildAccess(child=access.child, link=access.link, scope=access.scope)


def _practitioners(ids: set[Any]) -> list[dict[str, Any]]:
    rows = list(User.objects.filter(pk__in=ids).order_by("pk"))
    out = []
    for resource in people.practitioners(rows):
        resource.pop("telecom", None)
        resource.pop("identifier", None)
        out.append(resource)
    return out


def _clinical(access: ChildAccess, now: Any) -> tuple[list[dict[str, Any]], set[Any]]:
    """What a full-scope guardian reads beyond the schedule, and the clinicians it names."""
    child = access.child
    plans = list(MedicationPlan.objects.filter(child=child, confidential=False).order_by("created_at", "id"))
    doses = list(DoseLog.objects.filter(plan__in=plans).select_related("plan").order_by("occurred_at", "id"))
    refills = list(
        RefillRequest.objects.filter(child=child, plan__confidential=False)
        .select_related("plan")
        .order_by("requested_at", "id")
    )
    coverages = list(Coverage.objects.filter(child=child).order_by("submitted_at", "id"))
    conditions = list(
        SourceRecord.objects.filter(resource_type="Condition", deleted=False, child_id=child.pk).order_by(
            "updated_at", "id"
        )
    )
    codes = {str(code) for code in child.conditions or []}
    shown_conditions = [r for r in conditions if r.state.get("present") and str(r.state.get("code")) in codes]
    observations = list(TestResult.objects.filter(family_results_q(now), child=child).order_by("effective_at", "id"))
    by_report: dict[Any, list[Any]] = defaultdict(list)
    for row in observations:
        if row.report_id:
            by_report[row.report_id].append(row.pk)
    reports = list(
        ResultReport.objects.filter(pk__in=list(by_report), confidential=False).order_by("recorded_at", "id")
    )
    summaries = list(VisitSummary.objects.filter(family_summaries_q(now), child=child).order_by("date", "id"))
    resources = [
        *care.medication_requests(plans),
        *care.medication_administrations(doses),
        *care.refill_tasks(refills),
        *care.coverages(coverages),
        *care.conditions(shown_conditions),
        *care.entered_conditions(child, conditions),
        *results.observations(observations),
        *results.diagnostic_reports(reports, by_report),
        *results.document_references(summaries),
    ]
    named = {plan.prescriber_id for plan in plans}
    named |= {row.ordering_clinician_id for row in observations if row.ordering_clinician_id}
    named |= {row.ordering_clinician_id for row in reports if row.ordering_clinician_id}
    named |= {row.author_id for row in summaries if row.author_id}
    return resources, named


def _messages(access: ChildAccess) -> tuple[list[dict[str, Any]], set[Any]]:
    """The messages of the threads the guardian may read, oldest first, and the clinicians they name."""
    rows = list(messaging.family_messages(access).order_by("created_at", "id"))
    return messages.communications(rows), messages.practitioners_named(rows)


def child_export(*, user: User, access: ChildAccess, base_url: str, now: Any = None) -> dict[str, Any]:
    """The Bundle for a guardian (``access`` from ``child_for`` with a guardian link), audited as
    ``export``. ``base_url`` is the FHIR base the entries' ``fullUrl``s are made from."""
    moment = now or timezone.now()
    view = _family_view(access)
    child = view.child
    if view.link is None:
        raise ValueError("child_export needs a guardian's access")
    link = GuardianLink.objects.select_related("guardian", "invitation").get(pk=view.link.pk)
    members = list(CareTeamMembership.objects.filter(current_membership_q(moment), child=child).order_by("start", "id"))
    visits = list(
        Appointment.objects.filter(child=child, confidential=False).select_related("department").order_by("start", "id")
    )
    requests = [row for row in visits if row.change_request and row.change_requested_at]
    patient = people.patients([child])[0]
    patient.pop("identifier", None)  # the MRN is the care team's
    resources: list[dict[str, Any]] = [
        patient,
        *people.related_persons([link]),
        *people.care_teams([child], members),
        *care.appointments(visits, limited=view.limited_view),
        *care.change_request_tasks(requests),
    ]
    named = {m.clinician_id for m in members} | {row.clinician_id for row in visits}
    if view.can(Capability.CLINICAL):
        clinical, more = _clinical(view, moment)
        resources += clinical
        named |= more
    if settings.PORTAL_FHIR_COMMUNICATION and view.can(Capability.MESSAGE):
        conversation, more = _messages(view)
        resources += conversation
        named |= more
    resources[1:1] = _practitioners(named)
    audit.record(
        actor=user, action=audit.Action.EXPORT, entity_type=Resource.PATIENT, entity_id=child.pk, child_id=child.pk
    )
    base = base_url.rstrip("/")
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": instant(moment),
        "entry": [{"fullUrl": f"{base}/{r['resourceType']}/{r['id']}", "resource": r} for r in resources],
    }


__all__ = ["child_export"]
