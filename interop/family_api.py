"""The family's export of a child's record (FHIR R4), under ``/api/v1`` beside the child endpoints.

The hospital's FHIR API is ``interop.api``."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from ninja import Router

from interop.export import child_export
from portal import audit, ratelimit
from portal.access import Capability, child_for
from portal.api import actor
from portal.errors import NotFound
from portal.vocabulary import Resource

router = Router(tags=["interop"])
FHIR_JSON = "application/fhir+json"


@router.get(
    "/children/{child_id}/export",
    response={200: dict[str, Any]},
    summary="Guardian: the child's record as a FHIR R4 collection Bundle (what this guardian may see)",
)
def export(request: HttpRequest, child_id: uuid.UUID) -> HttpResponse:
    user = actor(request)
    access = child_for(user, child_id, Capability.VIEW)
    if not access.is_guardian:
        # The care team reads the record in the EHR; the export is the family's copy.
        audit.deny(actor=user, entity_type=Resource.PATIENT, entity_id=str(child_id), reason="export_guardian_only")
        raise NotFound("No such child.")
    ratelimit.enforce("child_export", [str(user.pk)], settings.PORTAL_EXPORT_RATE)
    bundle = child_export(user=user, access=access, base_url=request.build_absolute_uri("/fhir/R4"))
    response = HttpResponse(json.dumps(bundle, separators=(",", ":")), content_type=FHIR_JSON)
    response["Content-Disposition"] = f'attachment; filename="{access.child.pk}.json"'
    return response
