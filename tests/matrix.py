"""The persona matrix: every child-scoped endpoint, called by every persona.

Those without access get 404 with the standard error body, no PHI of either child, and a ``deny``
audit row. ``ENDPOINTS`` must list every operation whose path names a child; a test checks it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.utils import timezone

from portal.models import AuditEvent, CareTeamMembership, DepartmentMembership, GuardianLink
from tests.conftest import ADA_MRN, ADA_NAME, BEN_MRN, BEN_NAME, PERSONAS, World, make_user

READERS = frozenset({"guardian", "co_guardian", "clinician"})
MANAGERS = frozenset({"clinician", "admin"})
CARE_TEAM = frozenset({"clinician"})
# Actions that speak for the family (confirm, change request, refill request, new insurance): guardians
# only; the care team and staff get 404 like anyone else without the right.
GUARDIANS = frozenset({"guardian", "co_guardian"})


@dataclass
class Endpoint:
    method: str
    path: str  # with {child} and other placeholders filled by ``params``
    allowed: frozenset[str]
    body: Callable[[World], dict[str, Any]] | None = None
    params: Callable[[World], dict[str, str]] = field(default=lambda world: {})

    @property
    def route(self) -> str:
        return self.path


ENDPOINTS: list[Endpoint] = []


def register(endpoint: Endpoint) -> Endpoint:
    ENDPOINTS.append(endpoint)
    return endpoint


def phi_strings(world: World) -> list[str]:
    return [
        ADA_NAME,
        ADA_MRN,
        BEN_NAME,
        BEN_MRN,
        "Adaline",
        "Canaryfeather",
        "46635009",
        "84757009",
        world.ada.date_of_birth.isoformat(),
        "CANARYLAB",
        "CANARYDOC",
        "CANARYNOTE",
    ]


def call(world: World, persona: str, endpoint: Endpoint) -> Any:
    client = world.client(persona)
    values = {"child": str(world.ada.pk), **endpoint.params(world)}
    url = "/api/v1" + endpoint.path.format(**values)
    body = endpoint.body(world) if endpoint.body else None
    kwargs: dict[str, Any] = {}
    if body is not None:
        kwargs = {"data": json.dumps(body), "content_type": "application/json"}
    return getattr(client, endpoint.method.lower())(url, **kwargs)


def assert_matrix(world: World, endpoint: Endpoint) -> None:
    """Run ``endpoint`` against every persona and assert the policy held, leaking nothing."""
    leaks = []
    for persona in PERSONAS:
        denials_before = AuditEvent.objects.filter(action="deny").count()
        response = call(world, persona, endpoint)
        text = response.content.decode()
        if persona in endpoint.allowed:
            assert response.status_code < 400, (persona, endpoint.method, endpoint.path, response.status_code, text)
            assert response.status_code != 404, (persona, endpoint.path, text)
            continue
        assert response.status_code == 404, (persona, endpoint.method, endpoint.path, response.status_code, text)
        assert json.loads(text)["code"] == "not_found"
        for secret in phi_strings(world):
            if secret in text:
                leaks.append((persona, endpoint.path, secret))
        assert AuditEvent.objects.filter(action="deny").count() == denials_before + 1, (persona, endpoint.path)
    assert leaks == []


# -- portal ---------------------------------------------------------------------------------------


def _invited_link(world: World) -> dict[str, str]:
    link = GuardianLink.objects.create(child=world.ada, relationship="other", status=GuardianLink.Status.INVITED)
    return {"link": str(link.pk)}


def _membership(world: World) -> dict[str, str]:
    locum = make_user(f"locum{uuid.uuid4().hex[:8]}@example.org", "Dr. Locum")
    row = CareTeamMembership.objects.create(
        child=world.ada, clinician=locum, role="specialist", end=timezone.now() + timedelta(days=30)
    )
    return {"membership": str(row.pk)}


register(Endpoint("GET", "/children/{child}", READERS))
register(Endpoint("GET", "/children/{child}/care-team", READERS))
register(Endpoint("GET", "/children/{child}/access-log", READERS))
register(Endpoint("GET", "/children/{child}/guardian-links", MANAGERS))
register(
    Endpoint(
        "POST",
        "/children/{child}/invitations",
        MANAGERS,
        body=lambda w: {"relationship": "other", "recipient_email": f"invitee{uuid.uuid4().hex[:8]}@example.org"},
    )
)


def _new_clinician(world: World) -> dict[str, str]:
    clinician = make_user(f"locum{uuid.uuid4().hex[:8]}@example.org", "Dr. Locum")
    DepartmentMembership.objects.create(department=world.department, clinician=clinician, role="doctor")
    return {"clinician_id": str(clinician.pk), "role": "specialist"}


register(Endpoint("POST", "/children/{child}/care-team", MANAGERS, body=_new_clinician))
register(Endpoint("DELETE", "/children/{child}/care-team/{membership}", MANAGERS, params=_membership))
register(
    Endpoint(
        "PATCH",
        "/children/{child}/guardian-links/{link}",
        MANAGERS,
        body=lambda w: {"adolescent_exception": True},
        params=_invited_link,
    )
)
register(Endpoint("POST", "/children/{child}/guardian-links/{link}/revoke", MANAGERS, params=_invited_link))


def _staff_link_waiting(world: World) -> dict[str, str]:
    """A clinician (a staff role) redeemed Ada's clinician's invitation: waiting for a second person."""
    parent = make_user(f"staffparent{uuid.uuid4().hex[:8]}@example.org", "Dr. Parent")
    DepartmentMembership.objects.create(department=world.other_department, clinician=parent, role="doctor")
    link = GuardianLink.objects.create(
        child=world.ada,
        guardian=parent,
        relationship="father",
        status=GuardianLink.Status.PENDING_APPROVAL,
        granted_by=world.clinician,
    )
    return {"link": str(link.pk)}


# Approving a staff member's link is for manage_portal alone (the care team manages links but is not
# the second person).
register(
    Endpoint(
        "POST", "/children/{child}/guardian-links/{link}/approve", frozenset({"admin"}), params=_staff_link_waiting
    )
)


# -- care -----------------------------------------------------------------------------------------


def _appointment(world: World) -> dict[str, str]:
    from tests import care_data

    return {"appointment": str(care_data.appointment(world.ada, world.clinician).pk)}


def _plan(world: World) -> dict[str, str]:
    from tests import care_data

    return {"plan": str(care_data.plan(world.ada, world.clinician).pk)}


def _refill(world: World) -> dict[str, str]:
    from tests import care_data

    plan = care_data.plan(world.ada, world.clinician)
    return {"refill": str(care_data.refill(plan, world.guardian).pk)}


def _pending_coverage(world: World) -> dict[str, str]:
    from tests import care_data

    return {"coverage": str(care_data.coverage(world.ada, world.guardian, status="pending").pk)}


def _appointment_body(world: World) -> dict[str, Any]:
    start = timezone.now() + timedelta(days=3, minutes=uuid.uuid4().int % 10_000)
    return {
        "clinician_id": str(world.clinician.pk),
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=20)).isoformat(),
        "location": "Clinic A",
        "visit_type": "Review",
    }


def _plan_body(world: World) -> dict[str, Any]:
    return {
        "medication": "Salbutamol",
        "dose_quantity": "2",
        "dose_unit": "puffs",
        "schedule_kind": "as_needed",
        "min_interval_minutes": 240,
        "max_per_day": 4,
        "start": timezone.now().isoformat(),
    }


register(Endpoint("GET", "/children/{child}/schedule", READERS))
register(Endpoint("GET", "/children/{child}/appointments", READERS))
register(Endpoint("POST", "/children/{child}/appointments", CARE_TEAM, body=_appointment_body))
register(
    Endpoint(
        "PATCH",
        "/children/{child}/appointments/{appointment}",
        CARE_TEAM,
        body=lambda w: {"status": "cancelled"},
        params=_appointment,
    )
)
register(Endpoint("POST", "/children/{child}/appointments/{appointment}/confirm", GUARDIANS, params=_appointment))
register(
    Endpoint(
        "POST",
        "/children/{child}/appointments/{appointment}/change-request",
        GUARDIANS,
        body=lambda w: {"action": "reschedule", "note": "mornings"},
        params=_appointment,
    )
)
register(Endpoint("GET", "/children/{child}/medications", READERS))
register(Endpoint("POST", "/children/{child}/medications", CARE_TEAM, body=_plan_body))
register(Endpoint("GET", "/children/{child}/medications/{plan}/doses", READERS, params=_plan))
register(
    Endpoint(
        "POST",
        "/children/{child}/medications/{plan}/doses",
        READERS,
        params=_plan,
        body=lambda w: {"client_id": str(uuid.uuid4()), "status": "skipped"},
    )
)
register(Endpoint("GET", "/children/{child}/refills", READERS))
register(
    Endpoint(
        "POST",
        "/children/{child}/medications/{plan}/refills",
        GUARDIANS,
        params=_plan,
        body=lambda w: {"note": "running low"},
    )
)
register(
    Endpoint(
        "POST",
        "/children/{child}/refills/{refill}/transition",
        READERS,
        params=_refill,
        body=lambda w: {"to": "cancelled"},
    )
)
register(Endpoint("GET", "/children/{child}/coverage", READERS))
register(
    Endpoint(
        "POST", "/children/{child}/coverage", GUARDIANS, body=lambda w: {"payer": "Acme Health", "member_id": "NEW-123"}
    )
)
register(
    Endpoint(
        "POST",
        "/children/{child}/coverage/{coverage}/verify",
        MANAGERS,
        params=_pending_coverage,
        body=lambda w: {"accept": True},
    )
)


# -- messaging ------------------------------------------------------------------------------------


def _message_thread(world: World) -> dict[str, str]:
    from tests.messaging import data

    return {"thread": str(data.thread(world).pk)}


def _urgent_alert(world: World) -> dict[str, str]:
    from messaging.models import Message, UrgentAlert
    from tests.messaging import data

    thread = data.thread(world)
    alert = UrgentAlert.objects.create(thread=thread, message=Message.objects.get(thread=thread, position=1))
    return {"alert": str(alert.pk)}


def _sent_attachment(world: World) -> dict[str, str]:
    from tests.messaging import data

    return {"attachment": str(data.sent_attachment(world).pk)}


class UploadEndpoint(Endpoint):
    """A multipart upload (``call`` sends JSON bodies); see the wrapper of ``call`` below."""


class DownloadEndpoint(Endpoint):
    """Answers the file's bytes; the wrapper checks them and stands a text marker in for them."""


def _multipart_aware_call(world: World, persona: str, endpoint: Endpoint) -> Any:
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.messaging import data

    if isinstance(endpoint, DownloadEndpoint):
        response = _json_call(world, persona, endpoint)
        if response.status_code == 200:
            assert response.content == data.PNG
            response.content = b"the attachment's bytes"
        return response
    if not isinstance(endpoint, UploadEndpoint):
        return _json_call(world, persona, endpoint)

    url = "/api/v1" + endpoint.path.format(child=str(world.ada.pk), **endpoint.params(world))
    upload = SimpleUploadedFile("photo.png", data.PNG, content_type="image/png")
    return world.client(persona).post(url, {"file": upload})


_json_call = call
call = _multipart_aware_call  # assert_matrix looks ``call`` up in this module at run time

register(Endpoint("GET", "/children/{child}/threads", READERS))
register(
    Endpoint(
        "POST",
        "/children/{child}/threads",
        READERS,
        body=lambda w: {"subject": "Question", "topic": "medical", "body": "Hello", "client_id": str(uuid.uuid4())},
    )
)
register(Endpoint("GET", "/children/{child}/threads/{thread}", READERS, params=_message_thread))
register(
    Endpoint(
        "POST",
        "/children/{child}/threads/{thread}/messages",
        READERS,
        params=_message_thread,
        body=lambda w: {"body": "Thanks", "client_id": str(uuid.uuid4())},
    )
)
register(Endpoint("POST", "/children/{child}/threads/{thread}/read", READERS, params=_message_thread))
register(Endpoint("POST", "/children/{child}/threads/{thread}/claim", CARE_TEAM, params=_message_thread))
register(
    Endpoint(
        "POST",
        "/children/{child}/threads/{thread}/assign",
        CARE_TEAM,
        params=_message_thread,
        body=lambda w: {"assignee_id": str(w.clinician.pk)},
    )
)
register(Endpoint("POST", "/children/{child}/threads/{thread}/close", CARE_TEAM, params=_message_thread))
register(Endpoint("POST", "/children/{child}/alerts/{alert}/acknowledge", CARE_TEAM, params=_urgent_alert))
register(UploadEndpoint("POST", "/children/{child}/attachments", READERS))
register(DownloadEndpoint("GET", "/children/{child}/attachments/{attachment}", READERS, params=_sent_attachment))


# -- results and visit summaries ------------------------------------------------------------------


def _result(world: World) -> dict[str, str]:
    from tests.care import results_data

    return {"result": str(results_data.result(world.ada, world.clinician).pk)}


def _held_result(world: World) -> dict[str, str]:
    from tests.care import results_data

    held = results_data.result(world.ada, world.clinician, category="genetic")
    held.hold_until, held.released_at = timezone.now() + timedelta(days=3), None
    held.save(update_fields=["hold_until", "released_at"])
    return {"result": str(held.pk)}


def _summary(world: World) -> dict[str, str]:
    from tests.care import results_data

    return {"summary": str(results_data.summary(world.ada, world.clinician).pk)}


class PdfEndpoint(Endpoint):
    """Answers the visit summary's PDF; the wrapper checks the bytes and stands a text marker in for them."""


def _pdf_aware_call(world: World, persona: str, endpoint: Endpoint) -> Any:
    from tests.care import results_data

    response = _call_before_pdf(world, persona, endpoint)
    if isinstance(endpoint, PdfEndpoint) and response.status_code == 200:
        assert response.content == results_data.PDF
        assert response["Content-Type"] == "application/pdf"
        response.content = b"the summary's PDF"
    return response


_call_before_pdf = call
call = _pdf_aware_call  # assert_matrix looks ``call`` up in this module at run time

register(Endpoint("GET", "/children/{child}/results", READERS))
register(Endpoint("GET", "/children/{child}/results/{result}", READERS, params=_result))
register(
    Endpoint(
        "POST",
        "/children/{child}/results/{result}/comments",
        CARE_TEAM,
        params=_result,
        body=lambda w: {"body": "Nothing to worry about."},
    )
)
register(Endpoint("POST", "/children/{child}/results/{result}/release", CARE_TEAM, params=_held_result))
register(Endpoint("GET", "/children/{child}/visit-summaries", READERS))
register(Endpoint("GET", "/children/{child}/visit-summaries/{summary}", READERS, params=_summary))
register(PdfEndpoint("GET", "/children/{child}/visit-summaries/{summary}/pdf", READERS, params=_summary))
register(Endpoint("POST", "/children/{child}/visit-summaries/{summary}/release", CARE_TEAM, params=_summary))

# -- the family's export --------------------------------------------------------------------------

# The family's own copy: guardians only (the care team reads the record in the EHR).
register(Endpoint("GET", "/children/{child}/export", GUARDIANS))
