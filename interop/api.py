"""The FHIR R4 API at ``/fhir/R4`` for the hospital's integration engine.

Thin views: each reads the request, authenticates the backend client's bearer token
(``interop.smart``; user sessions and app tokens are not looked at), checks the token's scope for the
type and interaction, calls one service or selector, and answers FHIR JSON
(``application/fhir+json``). Every error is an OperationOutcome with an issue code. Every call is
audited: the client's account is the actor; a call without a valid token is an unauthenticated
refusal, coalesced per address (``portal.refusals``). ``metadata`` and the SMART configuration are
public, as FHIR and SMART expect.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from interop import apply, fhir_read, outbox, smart
from interop.mapping import MAPPINGS
from portal import audit, ratelimit, refusals
from portal.errors import RateLimited
from portal.vocabulary import Resource

FHIR_JSON = "application/fhir+json; charset=utf-8"
FHIR_VERSION = "4.0.1"
_VOCABULARY = {str(member) for member in Resource}


# --- Answers --------------------------------------------------------------------------------------


def fhir_response(body: dict[str, Any], status: int = 200, **headers: str) -> HttpResponse:
    response = HttpResponse(json.dumps(body, separators=(",", ":")), status=status, content_type=FHIR_JSON)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def outcome(status: int, code: str, message: str, *, expression: str = "", **headers: str) -> HttpResponse:
    """An OperationOutcome: ``code`` from the FHIR issue-type value set, ``message`` names no value."""
    issue: dict[str, Any] = {"severity": "error", "code": code, "diagnostics": message}
    if expression:
        issue["expression"] = [expression]
    return fhir_response({"resourceType": "OperationOutcome", "issue": [issue]}, status, **headers)


def base_url(request: HttpRequest) -> str:
    configured = str(settings.PORTAL_FHIR_BASE_URL)
    return configured.rstrip("/") if configured else request.build_absolute_uri("/fhir/R4")


def token_url(request: HttpRequest) -> str:
    return base_url(request) + "/token"


def entity(resource_type: str) -> Resource:
    return Resource(resource_type) if resource_type in _VOCABULARY else Resource.BUNDLE


# --- Authentication and scope ---------------------------------------------------------------------


class Refused(Exception):
    def __init__(self, response: HttpResponse) -> None:
        super().__init__(response.status_code)
        self.response = response


def authenticate(request: HttpRequest, resource_type: str) -> smart.Caller:
    """The caller of a bearer token, or ``Refused`` (401, an unauthenticated refusal, coalesced)."""
    kind = entity(resource_type)
    try:
        refusals.guard(kind)
    except RateLimited:
        raise Refused(outcome(429, "throttled", "Too many refused requests; wait a minute.")) from None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    caller = smart.caller_from_token(token.strip()) if scheme.lower() == "bearer" else None
    if caller is None:
        refusals.refuse(entity_type=kind, reason="fhir_token_invalid" if token else "fhir_token_missing")
        raise Refused(
            outcome(
                401,
                "login",
                "A valid access token is required (SMART Backend Services).",
                WWW_Authenticate='Bearer error="invalid_token"',
            )
        )
    return caller


def require(caller: smart.Caller, resource_type: str, permission: str, entity_id: str = "") -> None:
    """403 (audited) unless the token's scopes give ``permission`` on the type."""
    if caller.may(resource_type, permission):
        return
    audit.deny(actor=caller.actor, entity_type=entity(resource_type), entity_id=entity_id or None, reason="fhir_scope")
    raise Refused(outcome(403, "forbidden", f"The access token lacks the scope system/{resource_type}.{permission}."))


def allow(*methods: str) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Other methods answer 405 as an OperationOutcome, with ``Allow`` (HEAD goes with GET). No view
    here is authenticated by a cookie, so none needs Django's CSRF check."""
    allowed = {*methods, "HEAD"} if "GET" in methods else set(methods)

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in allowed:
                return outcome(
                    405, "not-supported", "This method is not allowed here.", Allow=", ".join(sorted(allowed))
                )
            return view(request, *args, **kwargs)

        return csrf_exempt(wrapped)

    return decorate


def refused(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except Refused as refusal:
            return refusal.response

    return wrapped


# --- metadata and SMART discovery -----------------------------------------------------------------


PARAM_TYPES = {"_lastUpdated": "date", "patient": "reference", "_count": "number", "_cursor": "string"}


def _resources() -> list[dict[str, Any]]:
    """Read and search for every type the portal renders; create, update and delete (through
    transaction and batch Bundles) for every type the import maps."""
    found: dict[str, dict[str, Any]] = {}
    for kind, params in fhir_read.searchable().items():
        found[kind] = {
            "type": kind,
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [{"name": name, "type": PARAM_TYPES.get(name, "string")} for name in sorted(params)],
        }
    for kind in MAPPINGS:
        entry = found.setdefault(kind, {"type": kind, "interaction": []})
        entry["interaction"] += [{"code": "create"}, {"code": "update"}, {"code": "delete"}]
        entry["conditionalDelete"] = "single"
    return [found[kind] for kind in sorted(found)]


@allow("GET")
def metadata(request: HttpRequest) -> HttpResponse:
    """The CapabilityStatement (public)."""
    base = base_url(request)
    return fhir_response(
        {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": timezone.now().date().isoformat(),
            "kind": "instance",
            "software": {"name": "Family care portal"},
            "implementation": {"description": "Family care portal FHIR API", "url": base},
            "fhirVersion": FHIR_VERSION,
            "format": ["json"],
            "rest": [
                {
                    "mode": "server",
                    "security": {
                        "service": [
                            {
                                "coding": [
                                    {
                                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                        "code": "SMART-on-FHIR",
                                    }
                                ]
                            }
                        ],
                        "extension": [
                            {
                                "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                                "extension": [{"url": "token", "valueUri": token_url(request)}],
                            }
                        ],
                        "description": "SMART Backend Services: client credentials with a signed JWT (RS384, ES384).",
                    },
                    "resource": _resources(),
                    "interaction": [{"code": "transaction"}, {"code": "batch"}],
                    "operation": [{"name": "changes", "definition": base + "/OperationDefinition/changes"}],
                }
            ],
        }
    )


@allow("GET")
def smart_configuration(request: HttpRequest) -> HttpResponse:
    """``.well-known/smart-configuration`` (public): where to get a token, and how."""
    response = fhir_response(
        {
            "token_endpoint": token_url(request),
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": list(smart.ALGORITHMS),
            "scopes_supported": ["system/*.rs", "system/*.cud"],
            "capabilities": ["client-confidential-asymmetric"],
        }
    )
    response["Content-Type"] = "application/json"
    return response


# --- The token endpoint ---------------------------------------------------------------------------


def _oauth_error(error: smart.OAuthError) -> HttpResponse:
    response = HttpResponse(
        json.dumps({"error": error.error, "error_description": error.description}),
        status=error.status,
        content_type="application/json",
    )
    response["Cache-Control"] = "no-store"
    return response


@allow("POST")
def token(request: HttpRequest) -> HttpResponse:
    """POST (form): client credentials with a signed JWT assertion → an access token."""
    address = audit.current_client().address
    try:
        ratelimit.enforce("fhir_token", [f"ip:{address or '-'}"], settings.PORTAL_FHIR_TOKEN_RATE)
        form = {key: request.POST.get(key, "") for key in request.POST}
        issued = smart.token_issue(form=form, token_url=token_url(request))
    except RateLimited:
        refusals.refuse(entity_type=Resource.BACKEND_CLIENT, reason="fhir_token_rate")
        response = _oauth_error(smart.OAuthError("invalid_request", "Too many token requests; wait a minute.", "", 429))
        response["Retry-After"] = "60"
        return response
    except smart.OAuthError as error:
        if error.reason in {
            "unknown_client",
            "assertion_unreadable",
            "assertion_missing",
            "assertion_type",
            "grant_type",
        }:
            refusals.refuse(entity_type=Resource.BACKEND_CLIENT, reason=f"fhir_{error.reason}"[:60])
        return _oauth_error(error)
    response = HttpResponse(
        json.dumps(
            {
                "access_token": issued.token,
                "token_type": "bearer",
                "expires_in": issued.expires_in,
                "scope": issued.scopes,
            }
        ),
        content_type="application/json",
    )
    response["Cache-Control"] = "no-store"
    return response


# --- Writes: transaction and batch Bundles --------------------------------------------------------


def _response_bundle(result: apply.Result) -> dict[str, Any]:
    entries = []
    for item in result.outcomes:
        response: dict[str, Any] = {"status": item.status}
        if item.resource_type and item.resource_id and not item.status.startswith("204"):
            location = f"{item.resource_type}/{item.resource_id}"
            if item.version_id:
                location += f"/_history/{item.version_id}"
            response["location"] = location
        if item.last_modified:
            response["lastModified"] = item.last_modified
        if item.status[:1] in {"4", "5"}:
            response["outcome"] = {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "invalid", "diagnostics": item.reason}],
            }
        entries.append({"response": response})
    return {"resourceType": "Bundle", "type": f"{result.kind}-response", "entry": entries}


ISSUE_CODES = {400: "invalid", 403: "forbidden", 404: "not-found", 409: "conflict", 413: "too-costly"}


@allow("POST")
@refused
def bundle(request: HttpRequest) -> HttpResponse:
    """POST a transaction or batch Bundle (``interop.apply``)."""
    caller = authenticate(request, "Bundle")
    limit = int(settings.PORTAL_FHIR_BUNDLE_MAX_BYTES)
    if len(request.body) > limit:
        audit.record(
            actor=caller.actor,
            action=audit.Action.CREATE,
            entity_type=Resource.BUNDLE,
            outcome=audit.Outcome.FAILURE,
            reason="fhir_bundle_too_large",
        )
        return outcome(413, "too-costly", f"The Bundle is larger than the limit of {limit} bytes.")
    content_type = (request.content_type or "").lower()
    if content_type not in {"application/fhir+json", "application/json"}:
        return outcome(415, "not-supported", "Send the Bundle as application/fhir+json.")
    try:
        data = json.loads(request.body)
    except ValueError:
        data = None
    try:
        result = apply.bundle_apply(
            actor=caller.actor,
            body=request.body,
            bundle=data,
            max_entries=int(settings.PORTAL_FHIR_BUNDLE_MAX_ENTRIES),
            permits=caller.may,
        )
    except apply.BundleError as error:
        where = f"Bundle.entry[{error.index}]" if error.index is not None else "Bundle"
        audit.record(
            actor=caller.actor,
            action=audit.Action.DENY if error.status == 403 else audit.Action.CREATE,
            entity_type=Resource.BUNDLE,
            outcome=audit.Outcome.DENIED if error.status == 403 else audit.Outcome.FAILURE,
            reason=f"fhir_bundle:{error.reason}"[:60],
        )
        message = f"{where}: {error.reason}" + (" (nothing was applied)" if error.index is not None else "")
        return outcome(error.status, ISSUE_CODES.get(error.status, "invalid"), message, expression=where)
    audit.record(
        actor=caller.actor, action=audit.Action.CREATE, entity_type=Resource.BUNDLE, reason=f"fhir_{result.kind}"
    )
    return fhir_response(_response_bundle(result))


# --- The outbox -----------------------------------------------------------------------------------


def _int(value: str | None, default: int, low: int, high: int) -> int | None:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        return None
    return number if low <= number <= high else None


def change_types() -> list[str]:
    """The outbox lists changes of what the API serves now (the audit trail's own rows aside)."""
    return sorted(kind for kind in fhir_read.searchable() if kind != "AuditEvent")


@allow("GET")
@refused
def changes(request: HttpRequest) -> HttpResponse:
    """``$changes?_since=<cursor>&_count=``: the outbox (``interop.outbox``) as a history Bundle."""
    caller = authenticate(request, "Bundle")
    types = [kind for kind in change_types() if caller.may(kind, "r")]
    if not types:
        require(caller, "*", "r")
    maximum = int(settings.PORTAL_FHIR_CHANGES_MAX_COUNT)
    since = _int(request.GET.get("_since"), -1, -1, 2**62)
    count = _int(request.GET.get("_count"), min(100, maximum), 1, maximum)
    unknown = set(request.GET) - {"_since", "_count"}
    if since is None or count is None or unknown:
        return outcome(
            400,
            "invalid",
            f"_since must be a cursor (-1 or a number this API gave) and _count 1 to {maximum}; no other parameters.",
        )
    page = outbox.changes_since(cursor=since, count=count, types=types)
    base = base_url(request)
    methods = {"create": ("POST", "201 Created"), "update": ("PUT", "200 OK"), "delete": ("DELETE", "204 No Content")}
    entries = []
    for change in page.changes:
        method, status = methods[change.operation]
        entry: dict[str, Any] = {
            "fullUrl": f"{base}/{change.resource_type}/{change.resource_id}",
            "request": {"method": method, "url": f"{change.resource_type}/{change.resource_id}"},
            "response": {
                "status": status,
                "lastModified": change.recorded_at.isoformat(),
                "etag": f'W/"{change.cursor}"',
            },
        }
        entries.append(entry)
    audit.record(actor=caller.actor, action=audit.Action.READ, entity_type=Resource.BUNDLE, reason="fhir_changes")
    next_url = f"{base}/$changes?" + urlencode({"_since": page.cursor, "_count": count})
    return fhir_response(
        {
            "resourceType": "Bundle",
            "type": "history",
            "link": [
                {"relation": "self", "url": request.build_absolute_uri()},
                {"relation": "next", "url": next_url},
            ],
            "entry": entries,
        }
    )


# --- Read and search -------------------------------------------------------------------------------

_PATIENT_REFERENCES = ("subject", "patient", "beneficiary", "for")


def _child_of(resource: dict[str, Any]) -> str | None:
    """The child a rendered resource is about (its id, when it names the Patient by a portal id)."""
    if resource.get("resourceType") == "Patient":
        return str(resource.get("id") or "") or None
    for name in _PATIENT_REFERENCES:
        reference = resource.get(name)
        if isinstance(reference, dict):
            kind, _, ident = str(reference.get("reference") or "").partition("/")
            if kind == "Patient" and _is_uuid(ident):
                return ident
    return None


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _audit_reads(caller: smart.Caller, resources: list[dict[str, Any]], reason: str) -> None:
    audit.record_many(
        [
            audit.Entry(
                action=audit.Action.READ,
                entity_type=entity(str(item.get("resourceType"))),
                entity_id=str(item.get("id") or "")[:64] or None,
                child_id=_child_of(item),
                reason=reason,
            )
            for item in resources
        ],
        actor=caller.actor,
    )


def _known_type(resource_type: str) -> None:
    if resource_type not in fhir_read.searchable():
        raise Refused(outcome(404, "not-supported", "This resource type is not served here."))


@allow("GET")
@refused
def read(request: HttpRequest, resource_type: str, resource_id: str) -> HttpResponse:
    """``GET /fhir/R4/{type}/{id}``: scope ``system/{type}.r``."""
    _known_type(resource_type)
    caller = authenticate(request, resource_type)
    require(caller, resource_type, "r", resource_id[:64])
    found = fhir_read.read(resource_type, resource_id)
    if found is None:
        audit.record(
            actor=caller.actor,
            action=audit.Action.READ,
            entity_type=entity(resource_type),
            entity_id=resource_id[:64],
            outcome=audit.Outcome.FAILURE,
            reason="fhir_not_found",
        )
        return outcome(404, "not-found", f"No {resource_type} with this id.")
    _audit_reads(caller, [found], "fhir_read")
    response = fhir_response(found)
    meta = found.get("meta") or {}
    if meta.get("versionId"):
        response["ETag"] = f'W/"{meta["versionId"]}"'
    return response


@allow("GET")
@refused
def search(request: HttpRequest, resource_type: str) -> HttpResponse:
    """``GET /fhir/R4/{type}?...``: scope ``system/{type}.s`` (``interop.fhir_read`` for the parameters)."""
    _known_type(resource_type)
    caller = authenticate(request, resource_type)
    require(caller, resource_type, "s")
    params = {name: request.GET.getlist(name) for name in request.GET}
    try:
        page = fhir_read.search(resource_type, params, base_url=base_url(request))
    except fhir_read.SearchError as error:
        audit.record(
            actor=caller.actor,
            action=audit.Action.READ,
            entity_type=entity(resource_type),
            outcome=audit.Outcome.FAILURE,
            reason=f"fhir_search:{error.code}"[:60],
        )
        return outcome(400, "invalid", f"{error.code}: {error.message}")
    found = [item["resource"] for item in page.get("entry", [])]
    if found:
        _audit_reads(caller, found, "fhir_search")
    else:
        audit.record(
            actor=caller.actor, action=audit.Action.READ, entity_type=entity(resource_type), reason="fhir_search"
        )
    return fhir_response(page)


def not_found(request: HttpRequest, rest: str) -> HttpResponse:
    """Any other path under /fhir/R4: an OperationOutcome rather than Django's HTML page."""
    return outcome(404, "not-found", "No such endpoint of this FHIR API (see /fhir/R4/metadata).")


urlpatterns = [
    path("R4", bundle),
    path("R4/", bundle),
    path("R4/metadata", metadata),
    path("R4/.well-known/smart-configuration", smart_configuration),
    path("R4/token", token),
    path("R4/$changes", changes),
    path("R4/<str:resource_type>/<str:resource_id>", read),
    path("R4/<str:resource_type>", search),
    path("R4/<path:rest>", not_found),
]
