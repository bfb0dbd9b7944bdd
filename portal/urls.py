from django.http import HttpRequest, HttpResponse
from django.urls import include, path

from portal.admin import site as admin_site
from portal.apiroot import api


def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse(
        "<!doctype html><title>Family care portal</title><h1>Family care portal</h1>"
        '<ul><li><a href="/api/v1/docs">API documentation (OpenAPI)</a></li>'
        '<li><a href="/_allauth/openapi.html">Accounts API (allauth headless)</a></li>'
        '<li><a href="/api/v1/health">Health</a></li><li><a href="/admin/">Admin</a></li></ul>',
        content_type="text/html; charset=utf-8",
    )


urlpatterns = [
    path("", index),
    path("api/v1/", api.urls),
    path("_allauth/", include("allauth.headless.urls")),
    path("admin/", admin_site.urls),
    path("metrics/", include("portal.metrics.urls")),
    # The FHIR R4 API for the hospital's integration engine (SMART Backend Services tokens only).
    path("fhir/", include("interop.api")),
]

# An uncaught exception outside the API's own handlers: 503 overloaded when no database connection
# could be had in time, otherwise Django's 500 page.
handler500 = "portal.overload.handler500"
