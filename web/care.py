"""The care team's pages: the signed-in landing of clinicians and administrators, the refill queue,
coverage verification and the appointment change requests.

Each view checks who may open it here (a clinician, a portal manager, a metrics reader), acts on a
child only through ``portal.access.child_for`` (a denial is a 404 page and a ``deny`` audit row, as in
the JSON API) and calls the same ``care`` selectors and services as the API's clinician endpoints."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST
from pydantic import ValidationError

from care import selectors, services
from care.schemas import AppointmentUpdateIn, CoverageVerifyIn, RefillTransitionIn
from portal import audit, zones
from portal.access import Capability, can_view_metrics, child_for, guardian_links, is_clinician, is_portal_manager
from portal.errors import ApiError, NotFound
from portal.models import User
from portal.vocabulary import Resource
from web import views
from web.groups import moderated_groups
from web.wording import CHANGE_REQUEST, REFILL_STATUS, error_text, label

View = Callable[..., HttpResponse]

# What the care team may do next with a refill request in each status (the service decides; these
# are the buttons offered). Denial needs a reason, so it has a form of its own.
REFILL_STEPS: dict[str, list[tuple[str, Any]]] = {
    "requested": [("approved", REFILL_STATUS["approved"])],
    "approved": [("sent_to_pharmacy", REFILL_STATUS["sent_to_pharmacy"])],
    "sent_to_pharmacy": [("ready", REFILL_STATUS["ready"])],
    "ready": [("picked_up", REFILL_STATUS["picked_up"])],
}


class RefillDecisionForm(forms.Form):
    """One decision on a refill request: the step (the button pressed) and, for a denial, the reason
    shown to the family. Checked against the API's own ``RefillTransitionIn``."""

    to = forms.ChoiceField(
        choices=[(step, step) for step in ("approved", "denied", "sent_to_pharmacy", "ready", "picked_up")]
    )
    reason = forms.CharField(required=False, max_length=500)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not self.errors:
            try:
                return RefillTransitionIn(**data).dict()
            except ValidationError:
                raise forms.ValidationError(
                    _("Remove the control characters from the reason."), code="invalid"
                ) from None
        return data

    def error_text(self) -> str:
        if "to" in self.errors:
            return _("That step is not one the refill queue offers.")
        if "reason" in self.errors:
            return _("Reason: %(problem)s") % {"problem": self.errors["reason"][0]}
        return " ".join(str(error) for error in self.non_field_errors())


def is_staff_member(user: User) -> bool:
    """Who gets the care team's landing instead of the family's: a clinician, a portal manager or a
    metrics reader."""
    return is_clinician(user) or is_portal_manager(user) or can_view_metrics(user)


def care_page(
    allowed: Callable[[User], bool], reason: str, resource: Resource = Resource.TASK
) -> Callable[[View], View]:
    """A page for part of the care team: signed in (with MFA where required, no-store, in the account's
    language, as every page of the app) and ``allowed``; anyone else gets the 404 page and a ``deny``
    audit row, like a child they may not see."""

    def decorate(view: View) -> View:
        @views.family_page
        @wraps(view)
        def wrapper(request: HttpRequest, user: User, *args: Any, **kwargs: Any) -> HttpResponse:
            if not allowed(user):
                audit.deny(actor=user, entity_type=resource, entity_id=None, reason=reason)
                raise NotFound()
            return view(request, user, *args, **kwargs)

        return wrapper

    return decorate


# -- the landing ----------------------------------------------------------------------------------


def home(request: HttpRequest) -> HttpResponse:
    """``/``: the care team's landing for clinicians and administrators, the family's otherwise."""
    if request.user.is_authenticated and is_staff_member(request.user):
        return landing(request)
    return views.home(request)


@care_page(is_staff_member, "not_staff")
def landing(request: HttpRequest, user: User) -> HttpResponse:
    """What this account may open: the queues of its role, the groups it moderates, the dashboard."""
    clinician = is_clinician(user)
    return render(
        request,
        "web/care/landing.html",
        {
            "clinician": clinician,
            "refills_waiting": len(selectors.refill_queue(user=user, status="requested")) if clinician else 0,
            "coverage": may_verify_coverage(user),
            "coverage_waiting": len(selectors.coverage_queue(user=user)) if may_verify_coverage(user) else 0,
            "changes_waiting": len(selectors.change_request_queue(user=user)) if clinician else 0,
            "moderated": moderated_groups(user=user),
            "manager": is_portal_manager(user),
            "metrics": can_view_metrics(user),
            # A staff member who is also a guardian (a link a second staff member approved) keeps the
            # way to their own children's pages.
            "children": [link.child for link in guardian_links(user)],
        },
    )


# -- the refill queue -----------------------------------------------------------------------------


def _queue(request: HttpRequest, user: User, *, status: int = 200, error: str = "") -> HttpResponse:
    rows = [
        {
            "refill": refill,
            "label": label(REFILL_STATUS, refill.status),
            "steps": REFILL_STEPS.get(refill.status, []),
        }
        for refill in selectors.refill_queue(user=user)
    ]
    return render(request, "web/care/refills.html", {"rows": rows, "error": error}, status=status)


@care_page(is_clinician, "not_a_clinician")
def refill_queue(request: HttpRequest, user: User) -> HttpResponse:
    """Open refill requests of the clinician's patients, oldest first (``care.selectors.refill_queue``)."""
    return _queue(request, user)


@care_page(is_clinician, "not_a_clinician")
@require_POST
def refill_decide(request: HttpRequest, user: User, child_id: uuid.UUID, refill_id: uuid.UUID) -> HttpResponse:
    """Approve, deny with a reason, or take the pharmacy steps, through ``care.services.refill_transition``
    (the care team of this child only: anyone else gets a 404 and a ``deny`` audit row)."""
    access = child_for(user, child_id, Capability.TREAT)
    form = RefillDecisionForm(request.POST)
    if not form.is_valid():
        return _queue(request, user, status=400, error=form.error_text())
    try:
        refill = services.refill_transition(actor=user, access=access, refill_id=refill_id, **form.cleaned_data)
    except NotFound:
        raise
    except ApiError as error:
        return _queue(request, user, status=error.status, error=error_text(error))
    # Flash messages may travel in a cookie: the status only, never the child or the medicine.
    messages.success(
        request, _("Refill request updated: %(status)s.") % {"status": label(REFILL_STATUS, refill.status)}
    )
    return redirect("web:care_refills")


# -- coverage verification ------------------------------------------------------------------------


def may_verify_coverage(user: User) -> bool:
    """The care team verifies its patients' coverage; a portal manager, anyone's (``coverage_verify``)."""
    return is_clinician(user) or is_portal_manager(user)


class CoverageDecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[("accept", "accept"), ("reject", "reject")])
    reason = forms.CharField(required=False, max_length=200)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not self.errors:
            try:
                return CoverageVerifyIn(accept=data["decision"] == "accept", reason=data["reason"]).dict()
            except ValidationError:
                raise forms.ValidationError(
                    _("Remove the control characters from the reason."), code="invalid"
                ) from None
        return data

    def error_text(self) -> str:
        if "decision" in self.errors:
            return _("Choose to accept or to reject the coverage.")
        if "reason" in self.errors:
            return _("Reason: %(problem)s") % {"problem": self.errors["reason"][0]}
        return " ".join(str(error) for error in self.non_field_errors())


def _coverage(request: HttpRequest, user: User, *, status: int = 200, error: str = "") -> HttpResponse:
    rows = selectors.coverage_queue(user=user)
    return render(request, "web/care/coverage.html", {"rows": rows, "error": error}, status=status)


@care_page(may_verify_coverage, "not_care_staff", Resource.COVERAGE)
def coverage_queue(request: HttpRequest, user: User) -> HttpResponse:
    """Insurance cards families submitted, waiting for verification (``care.selectors.coverage_queue``)."""
    return _coverage(request, user)


@care_page(may_verify_coverage, "not_care_staff", Resource.COVERAGE)
@require_POST
def coverage_decide(request: HttpRequest, user: User, child_id: uuid.UUID, coverage_id: uuid.UUID) -> HttpResponse:
    """Accept or reject submitted coverage through ``care.services.coverage_verify``."""
    access = child_for(user, child_id, Capability.MANAGE)
    form = CoverageDecisionForm(request.POST)
    if not form.is_valid():
        return _coverage(request, user, status=400, error=form.error_text())
    try:
        services.coverage_verify(actor=user, access=access, coverage_id=coverage_id, **form.cleaned_data)
    except NotFound:
        raise
    except ApiError as error:
        return _coverage(request, user, status=error.status, error=error_text(error))
    if form.cleaned_data["accept"]:
        messages.success(request, _("Coverage verified."))
    else:
        messages.success(request, _("Coverage rejected; the family sees the reason."))
    return redirect("web:care_coverage")


# -- appointment change requests ------------------------------------------------------------------


class ChangeAnswerForm(forms.Form):
    """The care team's answer to a family's request: cancel the visit, move it (a new start and end,
    on the child's wall clock), or close the request after settling it another way (by phone)."""

    answer = forms.ChoiceField(choices=[("cancel", "cancel"), ("move", "move"), ("dismiss", "dismiss")])
    start = forms.DateTimeField(required=False, input_formats=["%Y-%m-%dT%H:%M"])
    end = forms.DateTimeField(required=False, input_formats=["%Y-%m-%dT%H:%M"])

    def __init__(self, *args: Any, time_zone: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.zone = zones.zone(time_zone)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        update: dict[str, Any] = {"clear_change_request": True}
        if data["answer"] == "cancel":
            update["status"] = "cancelled"
        elif data["answer"] == "move":
            if data.get("start") is None or data.get("end") is None:
                raise forms.ValidationError(_("Give the new start and end of the visit."), code="required")
            # The browser sends the wall-clock time; it is the child's (the family's) time zone.
            update["start"] = data["start"].replace(tzinfo=None).replace(tzinfo=self.zone)
            update["end"] = data["end"].replace(tzinfo=None).replace(tzinfo=self.zone)
        try:
            return AppointmentUpdateIn(**update).dict(exclude_unset=True)
        except ValidationError:
            raise forms.ValidationError(
                _("That time is outside the dates the portal accepts."), code="invalid"
            ) from None

    def error_text(self) -> str:
        if "answer" in self.errors:
            return _("Choose how to answer the request.")
        if "start" in self.errors or "end" in self.errors:
            return _("Give the new start and end as a date and a time.")
        return " ".join(str(error) for error in self.non_field_errors())


def _changes(request: HttpRequest, user: User, *, status: int = 200, error: str = "") -> HttpResponse:
    rows = [
        {"visit": visit, "label": label(CHANGE_REQUEST, visit.change_request)}
        for visit in selectors.change_request_queue(user=user)
    ]
    return render(request, "web/care/changes.html", {"rows": rows, "error": error}, status=status)


@care_page(is_clinician, "not_a_clinician", Resource.APPOINTMENT)
def change_requests(request: HttpRequest, user: User) -> HttpResponse:
    """Visits whose family asked to cancel or move them (``care.selectors.change_request_queue``)."""
    return _changes(request, user)


@care_page(is_clinician, "not_a_clinician", Resource.APPOINTMENT)
@require_POST
def change_answer(request: HttpRequest, user: User, child_id: uuid.UUID, appointment_id: uuid.UUID) -> HttpResponse:
    """Answer a family's request through ``care.services.appointment_update`` (the care team only)."""
    access = child_for(user, child_id, Capability.TREAT)
    form = ChangeAnswerForm(request.POST, time_zone=access.child.time_zone)
    if not form.is_valid():
        return _changes(request, user, status=400, error=form.error_text())
    try:
        services.appointment_update(actor=user, access=access, appointment_id=appointment_id, **form.cleaned_data)
    except NotFound:
        raise
    except ApiError as error:
        return _changes(request, user, status=error.status, error=error_text(error))
    messages.success(request, _("The family's request is answered."))
    return redirect("web:care_changes")
