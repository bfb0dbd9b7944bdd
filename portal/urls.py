from django.urls import include, path

from portal.admin import site as admin_site
from portal.apiroot import api

urlpatterns = [
    path("api/v1/", api.urls),
    path("_allauth/", include("allauth.headless.urls")),
    path("admin/", admin_site.urls),
    path("metrics/", include("portal.metrics.urls")),
    # The FHIR R4 API for the hospital's integration engine (SMART Backend Services tokens only).
    path("fhir/", include("interop.api")),
    # The family web app (sign-in, today, doses, refills); its footer links the API documentation.
    path("", include("web.urls")),
]

# An uncaught exception outside the API's own handlers: 503 overloaded when no database connection
# could be had in time, otherwise Django's 500 page.
handler500 = "portal.overload.handler500"
