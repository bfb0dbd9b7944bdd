"""What every outbound resource shares: instants, references, ``meta`` and the EHR's identifiers.

A row the import made carries the business identifier its FHIR resource had (``system|value``, kept
encrypted on its ``SourceRecord``), so a resource read back from the portal matches the EHR's own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

from interop.models import SourceRecord

CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
# Portal accounts that are no FHIR resource of their own (a guardian recording a dose, the actor of
# an audit row) are named by their account id under this system.
PORTAL_USER_SYSTEM = "urn:ietf:rfc:3986"


def instant(moment: datetime) -> str:
    """A FHIR instant in UTC with microseconds (what keyset cursors compare)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def day(value: date) -> str:
    return value.isoformat()


def ref(resource_type: str, ident: Any) -> dict[str, str]:
    return {"reference": f"{resource_type}/{ident}"}


def user_ref(user_id: Any) -> dict[str, Any]:
    """An account that has no resource here, by its id (never its name or address)."""
    return {"identifier": {"system": PORTAL_USER_SYSTEM, "value": f"urn:uuid:{user_id}"}}


def meta(updated: datetime, *, confidential: bool = False) -> dict[str, Any]:
    """``lastUpdated`` from the row; adolescent-confidential rows carry the label R (restricted), the
    label the import reads as confidential."""
    out: dict[str, Any] = {"lastUpdated": instant(updated)}
    if confidential:
        out["security"] = [{"system": CONFIDENTIALITY, "code": "R", "display": "restricted"}]
    return out


def split_identifier(identifier: str) -> tuple[str, str] | None:
    """``Type|system|value`` → (system, value); None for a logical-id stand-in (``Type|id|...``)."""
    parts = identifier.split("|", 2)
    if len(parts) != 3 or parts[1] == "id":
        return None
    return parts[1], parts[2]


def business_identifiers(resource_type: str, row_ids: Iterable[Any]) -> dict[str, tuple[str, str]]:
    """The EHR identifier (system, value) of each row an imported resource of ``resource_type``
    became first, by row id; one query (an expression index on ``targets->0`` serves it on
    PostgreSQL)."""
    wanted = [str(i) for i in row_ids]
    if not wanted:
        return {}
    records = SourceRecord.objects.filter(
        resource_type=resource_type, deleted=False, identifier_is_logical_id=False, targets__0__in=wanted
    ).only("identifier", "targets")
    found: dict[str, tuple[str, str]] = {}
    for record in records:
        pair = split_identifier(record.identifier)
        if pair is not None and record.targets:
            found[str(record.targets[0])] = pair
    return found


def identifier_list(pair: tuple[str, str] | None) -> list[dict[str, Any]]:
    return [{"system": pair[0], "value": pair[1]}] if pair else []


def uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def drop_empty(data: dict[str, Any]) -> dict[str, Any]:
    """Without keys whose value is None, "" or an empty list/dict (FHIR allows no empty elements)."""
    return {key: value for key, value in data.items() if value not in (None, "", [], {})}
