"""The family pages. Each view parses the form, checks access through ``portal.access.child_for`` (a
denial is a 404 and an audit row, exactly as in the JSON API), calls one selector or service of
``care`` and renders a template. No rule about who may do what lives here."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any

from allauth.account.adapter import get_adapter
from allauth.account.forms import ConfirmLoginCodeForm, LoginForm, RequestLoginCodeForm
from allauth.account.internal.flows.login_by_code import LoginCodeVerificationProcess
from allauth.account.internal.stagekit import clear_login, get_pending_stage
from allauth.account.stages import LoginByCodeStage, LoginStageController
from allauth.core.ratelimit import RateLimited
from allauth.mfa.base.forms import AuthenticateForm
from allauth.mfa.stages import AuthenticateStage
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import translation
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from care import selectors, services
from portal.access import Capability, child_for, has_mfa, requires_mfa
from portal.errors import ApiError, NotFound
from portal.models import User
from web import forms
from web import selectors as web_selectors
from web.wording import APPOINTMENT_STATUS, REFILL_STATUS, error_text, label

View = Callable[..., HttpResponse]


def _no_store(response: HttpResponse) -> HttpResponse:
    if "Cache-Control" in response:
        del response["Cache-Control"]
    add_never_cache_headers(response)
    response["Pragma"] = "no-cache"
    return response


def _use_account_language(request: HttpRequest, user: User) -> None:
    """Signed in, the account's language wins over the browser's (it also drives emails and SMS)."""
    language = user.preferred_language if user.preferred_language in ("en", "es") else "en"
    translation.activate(language)
    request.LANGUAGE_CODE = language


def family_page(view: View) -> View:
    """Signed-in pages: anonymous visitors go to the sign-in page; every answer is ``no-store``; an
    account that must use two factors and has none is told so instead of being served."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return _no_store(redirect("web:sign_in"))
        user = request.user
        _use_account_language(request, user)
        if requires_mfa(user) and not has_mfa(user):
            return _no_store(render(request, "web/mfa_required.html", status=403))
        try:
            return _no_store(view(request, user, *args, **kwargs))
        except NotFound:
            return _no_store(render(request, "web/not_found.html", status=404))

    return wrapper


# -- signing in and out ---------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def sign_in(request: HttpRequest) -> HttpResponse:
    """allauth's own login form and flow (rate limits, signals, login stages); a second factor, when
    the account has one, is asked for on the next page."""
    if request.user.is_authenticated:
        return _no_store(redirect("web:home"))
    form = LoginForm(data=request.POST or None, request=request)
    if request.method == "POST" and form.is_valid():
        form.login(request, redirect_url=reverse("web:home"))
        if request.user.is_authenticated:
            return _no_store(redirect("web:home"))
        stage = get_pending_stage(request)
        if stage is not None and stage.key == AuthenticateStage.key:
            return _no_store(redirect("web:sign_in_code"))
        # Any other stage (an unverified email address) is finished in the account pages of the app.
        clear_login(request)
        form.add_error(None, _("This account cannot sign in here yet: verify your email address first."))
    return _no_store(render(request, "web/sign_in.html", {"form": form}, status=400 if form.errors else 200))


@require_http_methods(["GET", "POST"])
def sign_in_code(request: HttpRequest) -> HttpResponse:
    """The second factor: allauth's authenticator form and login stage."""
    stage = LoginStageController.enter(request, AuthenticateStage.key)
    if stage is None or stage.login.user is None:
        return _no_store(redirect("web:sign_in"))
    form = AuthenticateForm(user=stage.login.user, data=request.POST or None)
    if request.method == "POST" and form.is_valid():
        form.save()
        stage.exit()
        if request.user.is_authenticated:
            return _no_store(redirect("web:home"))
        clear_login(request)
        return _no_store(redirect("web:sign_in"))
    return _no_store(render(request, "web/sign_in_code.html", {"form": form}, status=400 if form.errors else 200))


def _signed_in_or_next(request: HttpRequest) -> HttpResponse | None:
    """After allauth finished a login step: home when signed in, the second factor when the account
    has one; ``None`` when another stage (an unverified address) stopped the login, now cleared."""
    if request.user.is_authenticated:
        return _no_store(redirect("web:home"))
    stage = get_pending_stage(request)
    if stage is not None and stage.key == AuthenticateStage.key:
        return _no_store(redirect("web:sign_in_code"))
    clear_login(request)
    return None


@require_http_methods(["GET", "POST"])
def sign_in_email(request: HttpRequest) -> HttpResponse:
    """Ask for a sign-in code by email: allauth's form (its rate limit per address, and the same answer
    for an unknown address, which is sent a note instead of a code) and its login-by-code flow."""
    if request.user.is_authenticated:
        return _no_store(redirect("web:home"))
    form = RequestLoginCodeForm(data=request.POST or None)
    if request.method == "POST" and form.is_valid():
        LoginCodeVerificationProcess.initiate(
            request=request, user=getattr(form, "_user", None), email=form.cleaned_data.get("email")
        )
        return _no_store(redirect("web:sign_in_email_code"))
    status = 400 if form.errors else 200
    return _no_store(render(request, "web/sign_in_email.html", {"form": form}, status=status))


@require_http_methods(["GET", "POST"])
def sign_in_email_code(request: HttpRequest) -> HttpResponse:
    """Enter the emailed code (allauth's confirmation form, attempts and expiry), or ask for a new one;
    then the second factor when the account has one."""
    stage = LoginStageController.enter(request, LoginByCodeStage.key)
    process = LoginCodeVerificationProcess.resume(stage) if stage is not None else None
    if process is None:
        return _no_store(redirect("web:sign_in_email"))
    if request.method == "POST" and request.POST.get("action") == "resend" and process.can_resend:
        try:
            process.resend()
        except RateLimited:
            messages.error(request, _("Too many codes were asked for. Please wait a few minutes and try again."))
        else:
            messages.success(request, _("A new code is on its way."))
        return _no_store(redirect("web:sign_in_email_code"))
    form = ConfirmLoginCodeForm(data=request.POST or None, code=process.code)
    if request.method == "POST":
        if form.is_valid():
            process.finish(reverse("web:home"))
            done = _signed_in_or_next(request)
            if done is not None:
                return done
            messages.error(request, _("This account cannot sign in here yet: verify your email address first."))
            return _no_store(redirect("web:sign_in"))
        if not process.record_invalid_attempt():
            messages.error(request, _("Too many wrong codes. Ask for a new one."))
            return _no_store(redirect("web:sign_in_email"))
    context = {"form": form, "can_resend": process.can_resend}
    return _no_store(render(request, "web/sign_in_email_code.html", context, status=400 if form.errors else 200))


@require_POST
def sign_out(request: HttpRequest) -> HttpResponse:
    """Ends the session (allauth's logout: its signals close the session's sockets) and asks the
    browser to drop what it kept of the pages."""
    if request.user.is_authenticated:
        get_adapter(request).logout(request)
    response = _no_store(HttpResponseRedirect(reverse("web:sign_in")))
    response["Clear-Site-Data"] = '"cache", "storage"'
    return response


# -- family pages ---------------------------------------------------------------------------------


@family_page
def home(request: HttpRequest, user: User) -> HttpResponse:
    """The children the account may see; with none, why not."""
    glance = selectors.today(user=user)
    children = glance["children"]
    if len(children) == 1:
        return redirect("web:today", child_id=children[0]["child"]["id"])
    ended = web_selectors.ended_links(user=user) if not children else []
    return render(request, "web/home.html", {"children": children, "ended": ended})


@family_page
def child_today(request: HttpRequest, user: User, child_id: uuid.UUID) -> HttpResponse:
    """One child's day: next visits, doses due, open refills, unread messages, new results and visit
    summaries, medicines."""
    access = child_for(user, child_id, Capability.FAMILY_SCHEDULE)
    glance = selectors.today(user=user)
    entry = next((item for item in glance["children"] if item["child"]["id"] == access.child.pk), None)
    if entry is None:  # the link ended between the two reads
        raise NotFound()
    plans = []
    if access.can(Capability.FAMILY_CLINICAL):
        plans = [status for status in selectors.plans_list(user=user, access=access) if status.plan.status == "active"]
    doses = [{**dose, "form": forms.DoseForm.for_dose(dose)} for dose in entry["doses"] or []]
    medication = {str(status.plan.pk): status.plan.medication for status in plans}
    refills = [
        {**refill, "medication": medication.get(refill["plan_id"], ""), "label": label(REFILL_STATUS, refill["status"])}
        for refill in entry["open_refills"] or []
    ]
    appointments = [{**item, "label": label(APPOINTMENT_STATUS, item["status"])} for item in entry["appointments"]]
    return render(
        request,
        "web/today.html",
        {
            "child": entry["child"],
            "limited": entry["doses"] is None,
            "appointments": appointments,
            "doses": doses,
            "refills": refills,
            "unread": entry["unread_messages"],
            "new_results": entry["new_results"],
            "plans": plans,
            "time_zone": access.child.time_zone,
        },
    )


@family_page
@require_POST
def dose_record(request: HttpRequest, user: User, child_id: uuid.UUID, plan_id: uuid.UUID) -> HttpResponse:
    """One tap: a dose given or skipped, through the service the API uses (idempotent by client_id)."""
    access = child_for(user, child_id, Capability.CLINICAL)
    form = forms.DoseForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("The dose could not be recorded: the form was incomplete. Please try again."))
        return redirect("web:today", child_id=child_id)
    try:
        services.dose_record(actor=user, access=access, plan_id=plan_id, **form.cleaned_data)
    except NotFound:
        raise
    except ApiError as error:
        messages.error(request, error_text(error))
    else:
        if form.cleaned_data["status"] == "given":
            messages.success(request, _("Dose recorded as given."))
        else:
            messages.success(request, _("Dose recorded as skipped."))
    return redirect("web:today", child_id=child_id)


@family_page
@require_http_methods(["GET", "POST"])
def refill_request(request: HttpRequest, user: User, child_id: uuid.UUID, plan_id: uuid.UUID) -> HttpResponse:
    """Ask for a refill of one medicine, through the refill service (an idempotency key per form, so a
    double submission asks once)."""
    access = child_for(user, child_id, Capability.FAMILY_CLINICAL)
    plan = next((s.plan for s in selectors.plans_list(user=user, access=access) if s.plan.pk == plan_id), None)
    if plan is None:
        raise NotFound()
    form = forms.RefillForm(request.POST or None, initial={"pharmacy": plan.pharmacy, "key": uuid.uuid4()})
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                services.refill_request(
                    actor=user,
                    access=access,
                    plan_id=plan_id,
                    pharmacy=data["pharmacy"],
                    note=data["note"],
                    idempotency_key=str(data["key"]),
                )
            except NotFound:
                raise
            except ApiError as error:
                form.add_error(None, error_text(error))
            else:
                messages.success(request, _("Refill requested. The care team will review it."))
                return redirect("web:today", child_id=child_id)
        status = 400
    return render(request, "web/refill.html", {"form": form, "plan": plan, "child": access.child}, status=status)
