"""Reading one NDJSON line: JSON, validation against the FHIR R4 models (``fhir.resources``' R4B
package, wire-compatible with R4 for every resource imported here), identity and version.

Nothing here returns a value from the record in an error: reasons name the field path and the kind
of problem only, because they reach the command's output and the logs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from interop.errors import Unmappable

MR_CODE = "MR"


@dataclass(frozen=True)
class Resource:
    """A validated resource: its JSON, identity, version and content hash."""

    type: str
    id: str
    data: dict[str, Any]
    identifier: str
    identifier_is_logical_id: bool
    version_id: str
    last_updated: datetime | None
    content_hash: str


def parse_line(line: str) -> dict[str, Any]:
    try:
        data = json.loads(line)
    except ValueError:
        raise Unmappable("not_json") from None
    if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
        raise Unmappable("no_resource_type")
    return data


def _model(resource_type: str) -> Any:
    from fhir.resources.R4B import get_fhir_model_class  # imported on first use: loading takes ~0.5 s

    return get_fhir_model_class(resource_type)


def validate(data: dict[str, Any]) -> None:
    """Raise ``Unmappable`` naming the first invalid field path and the kind of error (no value)."""
    try:
        _model(data["resourceType"]).model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        path = list(first["loc"])
        if first["type"] == "extra_forbidden":
            path = path[:-1]  # an unknown key is the record's own text: name where it sits, not the key
        where = ".".join(str(part) for part in path)[:120] or "resource"
        raise Unmappable(f"invalid:{where}:{first['type']}") from None
    except ValueError:
        raise Unmappable("invalid:resource") from None


def business_identifier(data: dict[str, Any]) -> tuple[str, bool]:
    """``Type|system|value`` of the identifier the EHR keys the resource by: for a Patient its medical
    record number (type MR), else the first identifier with a system and a value. Without one, the
    logical id stands in (``Type|id|<id>``; flagged, since an EHR may re-key logical ids)."""
    kind = data["resourceType"]
    identifiers = [i for i in data.get("identifier") or [] if i.get("system") and i.get("value")]
    if kind == "Patient":
        mrns = [
            i for i in identifiers if any(c.get("code") == MR_CODE for c in (i.get("type") or {}).get("coding", []))
        ]
        identifiers = mrns or identifiers
    if identifiers:
        return f"{kind}|{identifiers[0]['system']}|{identifiers[0]['value']}", False
    if not data.get("id"):
        raise Unmappable("no_identifier")
    return f"{kind}|id|{data['id']}", True


def content_hash(data: dict[str, Any]) -> str:
    """sha256 of the resource without ``meta`` (which changes with every export), keys sorted."""
    body = {key: value for key, value in data.items() if key != "meta"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def parse_instant(value: str | None) -> datetime | None:
    if not value:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise Unmappable("instant_without_offset")
    return moment


def read(line: str) -> Resource:
    """Parse and validate one line (``Unmappable`` says why it cannot be read)."""
    return resource_of(parse_line(line))


def resource_of(data: dict[str, Any]) -> Resource:
    """Validate parsed JSON against the FHIR models and read its identity and version."""
    validate(data)
    identifier, logical = business_identifier(data)
    meta = data.get("meta") or {}
    return Resource(
        type=data["resourceType"],
        id=str(data.get("id") or ""),
        data=data,
        identifier=identifier,
        identifier_is_logical_id=logical,
        version_id=str(meta.get("versionId") or ""),
        last_updated=parse_instant(meta.get("lastUpdated")),
        content_hash=content_hash(data),
    )


def parse_date_time(value: str | None, time_zone: str) -> datetime | None:
    """A FHIR ``dateTime``: an instant with its offset, or a whole day (midnight in ``time_zone``, the
    hospital's). A year or a month alone is too vague to date a result: ``partial_date``."""
    if not value:
        return None
    if len(value) == 10:
        day = date.fromisoformat(value)
        return datetime.combine(day, time(0), tzinfo=ZoneInfo(time_zone))
    if len(value) < 10:
        raise Unmappable("partial_date")
    return parse_instant(value)


def is_older(incoming_version: str, incoming_updated: datetime | None, version: str, updated: datetime | None) -> bool:
    """Whether the incoming version precedes the stored one: by ``meta.lastUpdated`` when both carry
    it and they differ, else by ``meta.versionId`` when both are numbers (the usual EHR practice)."""
    if incoming_updated is not None and updated is not None and incoming_updated != updated:
        return incoming_updated < updated
    if incoming_version.isdigit() and version.isdigit():
        return int(incoming_version) < int(version)
    return False


def reference_id(reference: dict[str, Any] | None, resource_type: str) -> str | None:
    """The logical id in a relative reference ``Type/id`` of the given type, else None."""
    text = (reference or {}).get("reference") or ""
    kind, _, ident = text.partition("/")
    return ident if kind == resource_type and ident else None


def codes(concept: dict[str, Any] | None, system: str | None = None) -> list[str]:
    return [
        str(c["code"])
        for c in (concept or {}).get("coding") or []
        if c.get("code") and (system is None or c.get("system") == system)
    ]


def contained(data: dict[str, Any], reference: dict[str, Any] | None) -> dict[str, Any] | None:
    """The contained resource a local reference ``#id`` points to, else None."""
    text = str((reference or {}).get("reference") or "")
    if not text.startswith("#"):
        return None
    return next((c for c in data.get("contained") or [] if c.get("id") == text[1:]), None)


def concept_text(concept: dict[str, Any] | None) -> str:
    concept = concept or {}
    if concept.get("text"):
        return str(concept["text"])
    for coding in concept.get("coding") or []:
        if coding.get("display"):
            return str(coding["display"])
    return ""


# DiagnosticReport.status (R4): the codes a report may carry, read on import and written on output.
REPORT_STATUSES = frozenset(
    {
        "registered",
        "partial",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "appended",
        "cancelled",
        "entered-in-error",
    }
)
