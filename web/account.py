"""The account's own pages: redeem an invitation, verify a phone number, see and end sessions.

Each view parses its form and calls one service (``portal.services``, or ``messaging.phones`` where
a code is texted); the services decide who may do what, rate-limit and audit. Nothing here shows a
child's data: a refused invitation says why in terms of the account (its email address or phone),
never whose invitation it was.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import translation
from django.utils.functional import Promise
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_http_methods, require_POST

from messaging import phones
from portal import services
from portal.errors import ApiError, NotFound
from portal.models import User
from portal.services.invitations import CODE_LENGTH
from web.views import family_page

# Refusals of the account services in the reader's language, by code (English readers get the
# service's own sentence).
MESSAGES: dict[str, Promise] = {
    "invitation_not_found": gettext_lazy(
        "This invitation code is not valid. Check it, or ask the care team for a new one."
    ),
    "invitation_used": gettext_lazy(
        "This invitation code has already been used or withdrawn. Ask the care team for a new one."
    ),
    "invitation_expired": gettext_lazy("This invitation code has expired. Ask the care team for a new one."),
    "patient_is_adult": gettext_lazy("This patient is an adult; a guardian link needs a court-appointed guardianship."),
    "invitation_own": gettext_lazy("You created this invitation: only the person it was sent to may redeem it."),
    "invitation_wrong_recipient": gettext_lazy(
        "This invitation was sent to another email address or phone number. Sign in with the account that "
        "has verified it, or ask the care team for a new invitation."
    ),
    "invitation_phone_not_verified": gettext_lazy(
        "This invitation was sent by text message. Add and verify the phone number it was sent to, then "
        "enter the code again."
    ),
    "already_linked": gettext_lazy("You are already linked to this child."),
    "invalid_phone": gettext_lazy("This is not a valid phone number. Check it, with its country code."),
    "phone_missing": gettext_lazy("Add a phone number first."),
    "phone_already_verified": gettext_lazy("This phone number is already verified."),
    "phone_code_not_requested": gettext_lazy("No code is waiting for this number. Ask for a new code."),
    "phone_code_expired": gettext_lazy("This code has expired. Ask for a new code."),
    "phone_code_attempts_exhausted": gettext_lazy("Too many wrong codes. Ask for a new code."),
    "phone_code_invalid": gettext_lazy("This code is not right. Check the text message and try again."),
    "current_session": gettext_lazy("Use Sign out to end this session."),
    "rate_limited": gettext_lazy("Too many attempts. Please wait a minute and try again."),
}
FALLBACK = gettext_lazy("This could not be done. Please try again.")


def refusal_text(error: ApiError) -> str:
    if (translation.get_language() or "en").startswith("en"):
        return error.message
    return str(MESSAGES.get(error.code, FALLBACK))


def _client_address(request: HttpRequest) -> str:
    return str(request.META.get("REMOTE_ADDR", ""))


class InvitationCodeForm(forms.Form):
    # Twelve characters, with or without the dashes and spaces a person types.
    code = forms.CharField(label=gettext_lazy("Invitation code"), max_length=CODE_LENGTH + 8, strip=True)


class PhoneForm(forms.Form):
    phone = forms.CharField(label=gettext_lazy("Mobile phone number"), max_length=32, required=False, strip=True)


class PhoneCodeForm(forms.Form):
    code = forms.CharField(label=gettext_lazy("Code from the text message"), max_length=12, strip=True)


class SessionForm(forms.Form):
    session = forms.CharField(max_length=64, required=False)


# -- redeem an invitation -------------------------------------------------------------------------


@family_page
@require_http_methods(["GET", "POST"])
def redeem(request: HttpRequest, user: User) -> HttpResponse:
    """Enter an invitation code; refused, the page says why (and what to do about it)."""
    form = InvitationCodeForm(request.POST or None)
    refusal: ApiError | None = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                services.invitation_redeem(
                    actor=user, code=form.cleaned_data["code"], client_address=_client_address(request)
                )
            except ApiError as error:
                refusal = error
                status = error.status
            else:
                messages.success(request, _("Invitation accepted. You can now see this child's care."))
                return redirect("web:home")
        else:
            status = 400
    context = {
        "form": form,
        "refusal": refusal_text(refusal) if refusal else "",
        "refusal_code": refusal.code if refusal else "",
        "phone_unverified": user.phone_verified_at is None,
    }
    return render(request, "web/account/redeem.html", context, status=status)


# -- verify my phone ------------------------------------------------------------------------------


@family_page
@require_http_methods(["GET", "POST"])
def phone(request: HttpRequest, user: User) -> HttpResponse:
    """Enter a number (or clear it); a new number is sent a code at once and the next page asks for it."""
    form = PhoneForm(request.POST or None, initial={"phone": user.phone})
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                services.phone_set(actor=user, phone=form.cleaned_data["phone"])
                if user.phone and user.phone_verified_at is None:
                    phones.phone_code_send(actor=user)
            except ApiError as error:
                form.add_error("phone", refusal_text(error))
            else:
                if not user.phone:
                    messages.success(request, _("Phone number removed."))
                    return redirect("web:account_phone")
                if user.phone_verified_at is not None:
                    messages.success(request, _("This phone number is already verified."))
                    return redirect("web:account_phone")
                messages.success(request, _("We sent a code by text message. Enter it below."))
                return redirect("web:account_phone_verify")
        status = 400
    return render(request, "web/account/phone.html", {"form": form, "account": user}, status=status)


@family_page
@require_http_methods(["GET", "POST"])
def phone_verify(request: HttpRequest, user: User) -> HttpResponse:
    """Type back the code texted to the number."""
    if not user.phone:
        return redirect("web:account_phone")
    form = PhoneCodeForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                services.phone_verification_confirm(
                    actor=user, code=form.cleaned_data["code"], client_address=_client_address(request)
                )
            except ApiError as error:
                form.add_error("code", refusal_text(error))
                status = error.status
            else:
                messages.success(request, _("Your phone number is verified."))
                return redirect("web:account_phone")
        else:
            status = 400
    return render(request, "web/account/phone_verify.html", {"form": form, "account": user}, status=status)


@family_page
@require_POST
def phone_code(request: HttpRequest, user: User) -> HttpResponse:
    """Send a new code to the account's number."""
    try:
        phones.phone_code_send(actor=user)
    except ApiError as error:
        messages.error(request, refusal_text(error))
    else:
        messages.success(request, _("We sent a new code by text message."))
    return redirect("web:account_phone_verify")


# -- my sessions ----------------------------------------------------------------------------------


@family_page
def sessions(request: HttpRequest, user: User) -> HttpResponse:
    """Where the account is signed in: device, address, when; end one or all the others."""
    listed = services.user_sessions_list(user=user, current_key=request.session.session_key)
    return render(request, "web/account/sessions.html", {"sessions": listed})


@family_page
@require_POST
def sessions_end(request: HttpRequest, user: User) -> HttpResponse:
    form = SessionForm(request.POST)
    handle = form.cleaned_data["session"] if form.is_valid() else ""
    try:
        ended = services.user_sessions_end(actor=user, request=request, handle=handle or None)
    except NotFound:
        raise
    except ApiError as error:
        messages.error(request, refusal_text(error))
    else:
        if handle:
            messages.success(request, _("That session is signed out."))
        else:
            text = ngettext("Signed out of %(count)d other session.", "Signed out of %(count)d other sessions.", ended)
            messages.success(request, text % {"count": ended})
    return redirect("web:account_sessions")
