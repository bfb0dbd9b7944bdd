"""The Django admin, for staff with two factors. Its login asks for the TOTP (or a recovery) code as
well as the password, and is rate-limited in the shared cache per client address and per account."""

from __future__ import annotations

from typing import Any

from allauth.core import context
from allauth.mfa.base.forms import BaseAuthenticateForm
from django import forms
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.http import HttpRequest, HttpResponse

from portal import models, ratelimit
from portal.access import has_mfa
from portal.errors import RateLimited


class AdminMfaLoginForm(AdminAuthenticationForm):
    code = forms.CharField(
        label="Authenticator code", max_length=32, widget=forms.TextInput(attrs={"autocomplete": "one-time-code"})
    )

    def clean(self) -> dict[str, Any]:
        request = self.request
        address = str(request.META.get("REMOTE_ADDR", "")) if request else ""
        email = str(self.data.get("username", "")).strip().lower()
        try:
            ratelimit.enforce("admin_login", [f"ip:{address}", f"account:{email}"], settings.PORTAL_ADMIN_LOGIN_RATE)
        except RateLimited:
            raise forms.ValidationError(
                "Too many sign-in attempts. Wait a minute and try again.", code="rate_limited"
            ) from None
        cleaned = super().clean()
        user = self.get_user()
        if user is None or not has_mfa(user):
            raise forms.ValidationError(
                "The admin requires two-factor authentication: enrol TOTP through the portal first.",
                code="mfa_required",
            )
        with context.request_context(request):
            second = BaseAuthenticateForm(data={"code": self.data.get("code", "")}, user=user)
            if not second.is_valid():
                raise forms.ValidationError("Incorrect authenticator code.", code="incorrect_code")
        return cleaned


class PortalAdminSite(admin.AdminSite):
    site_header = "Family care portal administration"
    site_title = "Care portal admin"
    login_form = AdminMfaLoginForm
    login_template = "admin/portal_login.html"

    def has_permission(self, request: HttpRequest) -> bool:
        return bool(super().has_permission(request) and has_mfa(request.user))

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        return super().login(request, extra_context)


site = PortalAdminSite(name="admin")


@admin.register(models.User, site=site)
class UserAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("email", "display_name", "is_active", "is_staff")
    search_fields = ("email", "display_name")
    fields = (
        "email",
        "display_name",
        "phone",
        "preferred_language",
        "time_zone",
        "is_active",
        "is_staff",
        "groups",
        "user_permissions",
        "phone_verified_at",
    )
    readonly_fields = ("phone_verified_at",)
    filter_horizontal = ("groups", "user_permissions")

    def save_model(self, request: HttpRequest, obj: models.User, form: Any, change: bool) -> None:
        # A number typed here was never proved to reach the account: it must be verified again before
        # a phone-bound invitation accepts it (otherwise staff could put an invited number on an account).
        if "phone" in form.changed_data:
            obj.phone_verified_at = None
        super().save_model(request, obj, form, change)


@admin.register(models.Department, site=site)
class DepartmentAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("name", "code")


@admin.register(models.DepartmentMembership, site=site)
class DepartmentMembershipAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("clinician", "department", "role", "is_lead", "active")
    list_filter = ("department", "role", "active")


@admin.register(models.AuditEvent, site=site)
class AuditEventAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Read-only: the audit trail is append-only."""

    list_display = ("seq", "recorded_at", "action", "entity_type", "outcome", "reason")
    list_filter = ("action", "outcome", "entity_type")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
