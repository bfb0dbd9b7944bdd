"""The family pages beyond "today": appointments (confirm, ask to change), the care team's schedule,
medicines with adherence and refill progress, coverage with a card photo, who opened the record, and
the account's notification preferences and language.

Like ``web.views``: each view checks access through ``portal.access.child_for`` (a denial is a 404
and an audit row), calls the selectors and services the JSON API calls, shapes rows with the API's
own presenters where the reader's scope changes what they may see, and renders a template."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import translation
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from care import presenters, selectors, services
from care.models import Appointment, Coverage, RefillRequest
from messaging import attachments, notify, push, sending
from messaging import selectors as messaging_selectors
from messaging.conf import max_attachment_bytes
from messaging.files import TooLarge
from messaging.models import Topic
from portal import audit
from portal import selectors as portal_selectors
from portal import services as portal_services
from portal.access import Capability, ChildAccess, child_for
from portal.errors import ApiError, NotFound
from portal.models import User
from portal.vocabulary import Resource
from web import forms
from web import selectors as web_selectors
from web.views import family_page
from web.wording import APPOINTMENT_STATUS, REFILL_STATUS, error_text, label

View = Callable[..., HttpResponse]

APPOINTMENT_LABELS: dict[str, Promise] = {
    **APPOINTMENT_STATUS,
    "fulfilled": gettext_lazy("Done"),
    "cancelled": gettext_lazy("Cancelled"),
    "noshow": gettext_lazy("Missed"),
}
REFILL_LABELS: dict[str, Promise] = {
    **REFILL_STATUS,
    "picked_up": gettext_lazy("Picked up"),
    "denied": gettext_lazy("Denied"),
    "cancelled": gettext_lazy("Cancelled"),
}
# The steps of a refill that goes well, in order (a denied or cancelled one stops where it was).
REFILL_STEPS = ("requested", "approved", "sent_to_pharmacy", "ready")
COVERAGE_LABELS: dict[str, Promise] = {
    "active": gettext_lazy("Active"),
    "pending": gettext_lazy("Waiting for the hospital to check it"),
    "pending_start": gettext_lazy("Checked; starts later"),
    "rejected": gettext_lazy("Not accepted"),
    "superseded": gettext_lazy("Replaced"),
}
ACTION_LABELS: dict[str, Promise] = {
    "read": gettext_lazy("Viewed"),
    "create": gettext_lazy("Added"),
    "update": gettext_lazy("Changed"),
    "delete": gettext_lazy("Removed"),
    "export": gettext_lazy("Downloaded"),
    "deny": gettext_lazy("Refused access"),
    "login": gettext_lazy("Signed in"),
    "logout": gettext_lazy("Signed out"),
}
CARD_PHOTO_SUBJECT = "New insurance card"
CARD_PHOTO_BODY = "A photo of the new insurance card, sent with the card details in the portal."


def child_page(view: View) -> View:
    """A family page about one child: ``family_page`` (sign-in, language, ``no-store``), and a 404 that
    tells a guardian whose own link ended why (the words of the start page; the child is not named)."""

    @family_page
    @wraps(view)
    def wrapper(request: HttpRequest, user: User, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, user, *args, **kwargs)
        except NotFound:
            ended = web_selectors.ended_links(user=user)
            return render(request, "web/not_found.html", {"ended": ended}, status=404)

    return wrapper


def clinical_access(request: HttpRequest, user: User, child_id: uuid.UUID) -> ChildAccess | HttpResponse:
    """Access to a clinical page (medicines, coverage, the access log). Anyone without a live link is
    a 404 (``child_for``); a limited-scope guardian is refused too (audited like the API's 404), but
    told why rather than shown an empty page."""
    access = child_for(user, child_id, Capability.SCHEDULE)
    if access.can(Capability.CLINICAL):
        return access
    audit.deny(actor=user, entity_type=Resource.PATIENT, entity_id=str(child_id), reason="no_clinical_access")
    return render(request, "web/family/limited.html", {"child": access.child}, status=403)


def child_nav(access: ChildAccess) -> dict[str, Any]:
    """What the pages' child navigation needs: the child, and whether the clinical pages are open."""
    return {"child": access.child, "limited": not access.can(Capability.CLINICAL)}


# -- appointments -----------------------------------------------------------------------------------


@child_page
def appointments(request: HttpRequest, user: User, child_id: uuid.UUID) -> HttpResponse:
    """Upcoming and past visits as the API shows them to this reader (neutral at limited scope)."""
    access = child_for(user, child_id, Capability.SCHEDULE)

    def shown(when: str) -> list[dict[str, Any]]:
        rows = selectors.appointments_list(user=user, access=access, when=when)
        return [
            {
                **presenters.appointment_out(row, limited=access.limited_view),
                "label": label(APPOINTMENT_LABELS, row.status),
                "open": row.status in (Appointment.Status.PROPOSED, Appointment.Status.BOOKED),
            }
            for row in rows
        ]

    context = {
        **child_nav(access),
        "upcoming": shown("upcoming"),
        "past": shown("past")[:20],
        "family": access.can(Capability.FAMILY_SCHEDULE),
        "time_zone": access.child.time_zone,
    }
    return render(request, "web/family/appointments.html", context)


@child_page
@require_POST
def appointment_confirm(
    request: HttpRequest, user: User, child_id: uuid.UUID, appointment_id: uuid.UUID
) -> HttpResponse:
    """The family will come: ``care.services.appointment_confirm``, as ``POST .../confirm`` in the API."""
    access = child_for(user, child_id, Capability.FAMILY_SCHEDULE)
    try:
        services.appointment_confirm(actor=user, access=access, appointment_id=appointment_id)
    except NotFound:
        raise
    except ApiError as error:
        messages.error(request, error_text(error))
    else:
        messages.success(request, _("Thank you: your attendance is confirmed."))
    return redirect("web:appointments", child_id=child_id)


@child_page
@require_http_methods(["GET", "POST"])
def appointment_change(
    request: HttpRequest, user: User, child_id: uuid.UUID, appointment_id: uuid.UUID
) -> HttpResponse:
    """Ask the care team to move or cancel a visit (``care.services.appointment_request_change``)."""
    access = child_for(user, child_id, Capability.FAMILY_SCHEDULE)
    row = next(
        (r for r in selectors.appointments_list(user=user, access=access) if r.pk == appointment_id),
        None,
    )
    if row is None:
        raise NotFound()
    visit = {
        **presenters.appointment_out(row, limited=access.limited_view),
        "label": label(APPOINTMENT_LABELS, row.status),
    }
    form = forms.ChangeRequestForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                services.appointment_request_change(
                    actor=user, access=access, appointment_id=appointment_id, **form.cleaned_data
                )
            except NotFound:
                raise
            except ApiError as error:
                form.add_error(None, error_text(error))
            else:
                messages.success(request, _("Your request was sent. The care team will contact you."))
                return redirect("web:appointments", child_id=child_id)
        status = 400
    context = {**child_nav(access), "visit": visit, "form": form, "time_zone": access.child.time_zone}
    return render(request, "web/family/appointment_change.html", context, status=status)


# -- the care team's schedule -----------------------------------------------------------------------


@child_page
def schedule(request: HttpRequest, user: User, child_id: uuid.UUID) -> HttpResponse:
    """Each care-team clinician's clinic hours for two weeks and next open slots (neutral places at
    limited scope), through ``care.selectors.child_schedule`` and the API's presenter."""
    access = child_for(user, child_id, Capability.SCHEDULE)
    rows = [
        presenters.schedule_out(row, limited=access.limited_view)
        for row in selectors.child_schedule(user=user, access=access)
    ]
    context = {**child_nav(access), "clinicians": rows, "time_zone": access.child.time_zone}
    return render(request, "web/family/schedule.html", context)


# -- medicines --------------------------------------------------------------------------------------


def _refill_progress(refill: RefillRequest, history: list[Any]) -> dict[str, Any]:
    reached = {step.to_status for step in history} | {refill.status}
    stopped = refill.status in (RefillRequest.Status.DENIED, RefillRequest.Status.CANCELLED)
    return {
        "refill": refill,
        "label": label(REFILL_LABELS, refill.status),
        "stopped": stopped,
        "steps": [
            {"label": label(REFILL_LABELS, step), "done": step in reached, "current": step == refill.status}
            for step in REFILL_STEPS
        ],
        "history": [{"at": step.at, "label": label(REFILL_LABELS, step.to_status)} for step in history],
    }


@child_page
def medicines(request: HttpRequest, user: User, child_id: uuid.UUID) -> HttpResponse:
    """Each plan with its next dose, the doses of the last week and adherence (``plans_list`` and
    ``doses_list``, as the API), and each open refill's steps and history."""
    access = clinical_access(request, user, child_id)
    if isinstance(access, HttpResponse):
        return access
    plans = selectors.plans_list(user=user, access=access)
    # One read per plan, as the API's doses endpoint; a child has a handful of plans.
    doses = {
        status.plan.pk: selectors.doses_list(user=user, access=access, plan_id=status.plan.pk, days=7)[:10]
        for status in plans
    }
    refills = selectors.refills_list(user=user, access=access)
    recent = [refill for refill in refills if refill.status in REFILL_STEPS]
    history = web_selectors.refill_history(refills=recent)
    context = {
        **child_nav(access),
        "plans": [{"status": status, "doses": doses[status.plan.pk]} for status in plans],
        "refills": [_refill_progress(refill, history.get(refill.pk, [])) for refill in recent],
        "time_zone": access.child.time_zone,
    }
    return render(request, "web/family/medicines.html", context)


# -- coverage ---------------------------------------------------------------------------------------


def _coverage_rows(user: User, access: ChildAccess) -> list[dict[str, Any]]:
    return [
        {"coverage": row.coverage, "status": row.status, "label": label(COVERAGE_LABELS, row.status)}
        for row in selectors.coverage_list(user=user, access=access)
    ]


@transaction.atomic
def _coverage_submit(user: User, access: ChildAccess, data: dict[str, Any], photo: Any) -> Coverage:
    """The card details (``care.services.coverage_submit``) and, with a photo, a message to the care
    team carrying it (``messaging``'s upload checks and services, as ``POST .../attachments`` then a
    new thread): one transaction, so a refused photo leaves no card details behind, and the reverse."""
    details = {key: value for key, value in data.items() if key != "photo"}
    coverage = services.coverage_submit(actor=user, access=access, **details)
    if photo is not None:
        if photo.size is not None and photo.size > max_attachment_bytes():
            raise TooLarge()
        upload = attachments.attachment_upload(
            actor=user, access=access, filename=str(photo.name or ""), data=photo.read(max_attachment_bytes() + 1)
        )
        sending.thread_create(
            actor=user,
            access=access,
            subject=CARD_PHOTO_SUBJECT,
            topic=Topic.BILLING,
            body=CARD_PHOTO_BODY,
            client_id=uuid.uuid4(),
            attachment_ids=[upload.pk],
        )
    return coverage


@child_page
@require_http_methods(["GET", "POST"])
def coverage(request: HttpRequest, user: User, child_id: uuid.UUID) -> HttpResponse:
    """The child's insurance (active, waiting, not accepted) and a form for a new card."""
    access = clinical_access(request, user, child_id)
    if isinstance(access, HttpResponse):
        return access
    family = access.can(Capability.FAMILY_CLINICAL)
    form = forms.CoverageForm(request.POST or None, request.FILES or None)
    status = 200
    if request.method == "POST":
        if not family:  # the care team does not speak for the family (404 and audited, as the API)
            child_for(user, child_id, Capability.FAMILY_CLINICAL)
        if form.is_valid():
            try:
                _coverage_submit(user, access, form.cleaned_data, form.cleaned_data.get("photo"))
            except NotFound:
                raise
            except ApiError as error:
                form.add_error("photo" if error.code.startswith("attachment_") else None, error_text(error))
            else:
                messages.success(request, _("Thank you. The hospital will check the new card."))
                return redirect("web:coverage", child_id=child_id)
        status = 400
    context = {**child_nav(access), "rows": _coverage_rows(user, access), "form": form, "family": family}
    return render(request, "web/family/coverage.html", context, status=status)


# -- who opened the record --------------------------------------------------------------------------


@child_page
def access_log(request: HttpRequest, user: User, child_id: uuid.UUID) -> HttpResponse:
    """Who read or changed the record, newest first (``portal.selectors.access_log``, as the API)."""
    access = clinical_access(request, user, child_id)
    if isinstance(access, HttpResponse):
        return access
    page = portal_selectors.access_log(user=user, access=access, limit=100)
    entries = [
        {
            "at": entry.event.recorded_at,
            "who": entry.actor_name,
            "role": entry.actor_role,
            "action": label(ACTION_LABELS, entry.event.action),
            "denied": entry.event.outcome != "success",
        }
        for entry in page.entries
    ]
    context = {**child_nav(access), "entries": entries, "more": page.next_before is not None}
    return render(request, "web/family/access_log.html", context)


# -- the account: notifications and language --------------------------------------------------------


def _settings_page(
    request: HttpRequest, user: User, *, preferences: forms.PreferencesForm | None = None, status: int = 200
) -> HttpResponse:
    current = messaging_selectors.preferences(user=user)
    preferences = preferences or forms.PreferencesForm(
        initial={
            "email": current.email,
            "sms": current.sms,
            "quiet_start": current.quiet_start.strftime("%H:%M") if current.quiet_start else None,
            "quiet_end": current.quiet_end.strftime("%H:%M") if current.quiet_end else None,
        }
    )
    language = forms.LanguageForm(initial={"language": user.preferred_language or "en"})
    context = {
        "preferences": preferences,
        "language": language,
        "has_phone": bool(user.phone),
        "push_key": push.public_key(),
        "push_devices": messaging_selectors.push_subscriptions(user=user),
    }
    return render(request, "web/family/settings.html", context, status=status)


@family_page
def account(request: HttpRequest, user: User) -> HttpResponse:
    """The account's notification preferences and language (its own; no child on this page)."""
    return _settings_page(request, user)


@family_page
@require_POST
def notifications_update(request: HttpRequest, user: User) -> HttpResponse:
    """Email, SMS and quiet hours, through ``messaging.notify.preferences_update`` (as ``PATCH
    /me/notification-preferences``)."""
    form = forms.PreferencesForm(request.POST)
    if not form.is_valid():
        return _settings_page(request, user, preferences=form, status=400)
    notify.preferences_update(actor=user, **form.cleaned_data)
    messages.success(request, _("Your notification choices are saved."))
    return redirect("web:account")


@family_page
@require_POST
def push_device_revoke(request: HttpRequest, user: User, subscription_id: uuid.UUID) -> HttpResponse:
    """Stop web push to one of the account's devices (``messaging.push.push_subscription_revoke``, as
    ``DELETE /me/push-subscriptions/{id}``); another account's device is a 404, audited."""
    push.push_subscription_revoke(actor=user, subscription_id=subscription_id)
    messages.success(request, _("That device will no longer receive notifications."))
    return redirect("web:account")


@family_page
@require_POST
def language_update(request: HttpRequest, user: User) -> HttpResponse:
    """The account's language (``portal.services.user_language_set``, as ``PATCH /me``): the pages,
    emails and text messages switch to it."""
    form = forms.LanguageForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Choose English or Spanish."))
        return redirect("web:account")
    language = form.cleaned_data["language"]
    portal_services.user_language_set(actor=user, language=language)
    # The next page is rendered in the new language (``family_page`` reads the account's choice).
    with translation.override(language):
        messages.success(request, _("Language changed."))
    return redirect("web:account")
