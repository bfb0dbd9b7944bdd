"""Admin pages: the metrics configuration, and the call imports with a CSV upload."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from portal.access import can_view_metrics, is_portal_manager
from portal.admin import site
from portal.metrics.imports import ImportRejected, TooLarge, calls_import, too_many_bytes
from portal.metrics.models import CallImportBatch, MetricsConfig


class UploadForm(forms.Form):
    source = forms.SlugField(max_length=40, help_text="The phone system's name; call ids are unique per source.")
    file = forms.FileField(
        help_text="CSV: call_id, started_at, duration_seconds, direction, queue, reason, caller_phone, mrn, outcome"
    )


@admin.register(MetricsConfig, site=site)
class MetricsConfigAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("baseline_start", "baseline_end", "go_live", "updated_at")


@admin.register(CallImportBatch, site=site)
class CallImportBatchAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Read-only list of imports, with an upload page for users who may manage the portal."""

    list_display = ("created_at", "source", "via", "rows", "added", "duplicates")
    list_filter = ("via", "source")
    change_list_template = "metrics/admin_import_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_view_metrics(request.user) or is_portal_manager(request.user)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def get_urls(self) -> list[URLPattern]:
        upload = path("upload/", self.admin_site.admin_view(self.upload_view), name="metrics_callimport_upload")
        return [upload, *super().get_urls()]

    def upload_view(self, request: HttpRequest) -> HttpResponse:
        if not is_portal_manager(request.user):
            return HttpResponse(status=404)
        errors: list[dict[str, Any]] = []
        form = UploadForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                if upload.size > site_limit():
                    raise too_many_bytes(site_limit())
                batch = calls_import(
                    actor=request.user,
                    source=form.cleaned_data["source"],
                    data=upload.open("rb"),
                    via=CallImportBatch.Via.ADMIN,
                )
            except ImportRejected as exc:
                errors = [error.as_dict() for error in exc.line_errors[:1000]]
                messages.error(request, exc.message)
            except TooLarge as exc:
                messages.error(request, exc.message)
            else:
                messages.success(
                    request, f"{batch.rows} row(s): {batch.added} added, {batch.duplicates} already known."
                )
                return HttpResponseRedirect(reverse("admin:metrics_callimportbatch_changelist"))
        context = {**self.admin_site.each_context(request), "form": form, "errors": errors, "title": "Upload calls"}
        return TemplateResponse(request, "metrics/admin_upload.html", context)


def site_limit() -> int:
    from django.conf import settings

    return int(settings.PORTAL_METRICS_MAX_UPLOAD_BYTES)
