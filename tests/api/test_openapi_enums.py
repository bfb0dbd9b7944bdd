"""Every closed vocabulary the API speaks (a status, a kind, a role...) is an enum in the OpenAPI
document, in answers and in requests alike, so a generated client gets a type rather than a string."""

from __future__ import annotations

from typing import Any

from portal.apiroot import api

# Property names that always name one value of a closed set.
CLOSED = {
    "status",
    "type",
    "kind",
    "role",
    "category",
    "channel",
    "scope",
    "effective_scope",
    "relationship",
    "topic",
    "priority",
    "visibility",
    "join_policy",
    "membership_status",
    "my_role",
    "access",
    "action",
    "to",
    "when",
    "reason",
    "schedule_kind",
    "interpretation",
    "author_role",
    "author_kind",
    "automatic_reason",
    "subscriber_relationship",
    "sex",
}
# Open on purpose, with why: the value comes from outside the portal's own vocabulary.
OPEN = {
    # A result's or report's category comes from the EHR (FHIR observation-category and local codes).
    ("ResultOut", "category"),
    ("ResultDetailOut", "category"),
    ("ResultReportOut", "category"),
    ("VisitSummaryOut", "category"),
    ("VisitSummaryDetailOut", "category"),
    ("ResultsQuery", "category"),
    # FHIR DiagnosticReport.status, defined by the EHR interface (interop.fhir), which care may not import.
    ("ResultReportOut", "status"),
    # The EHR's subscriber-relationship code, stored as sent.
    ("CoverageOut", "subscriber_relationship"),
    # Staff write the reason for a denial or a hidden post in their own words.
    ("RefillTransitionIn", "reason"),
    ("PostModerationIn", "reason"),
    ("CoverageVerifyIn", "reason"),
}


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = document["components"]["schemas"][name]
    return schema


def _free_string(document: dict[str, Any], schema: dict[str, Any]) -> bool:
    schema = _resolve(document, schema)
    for combined in ("anyOf", "oneOf", "allOf"):
        if combined in schema:
            return any(_free_string(document, part) for part in schema[combined])
    if schema.get("type") == "array":
        return _free_string(document, schema.get("items", {}))
    return schema.get("type") == "string" and "enum" not in schema and "const" not in schema


def _parameters(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for parameter in operation.get("parameters", []):
                found.append((f"{method.upper()} {path}", parameter["name"], parameter.get("schema", {})))
    return found


def test_every_closed_vocabulary_is_an_enum() -> None:
    document = api.get_openapi_schema()
    free = []
    for name, schema in document["components"]["schemas"].items():
        for field, prop in schema.get("properties", {}).items():
            if field in CLOSED and (name, field) not in OPEN and _free_string(document, prop):
                free.append(f"{name}.{field}")
    for where, field, schema in _parameters(document):
        if field in CLOSED and _free_string(document, schema) and ("ResultsQuery", field) not in OPEN:
            free.append(f"{where} ?{field}")
    assert free == []


def test_the_walk_finds_a_free_string() -> None:
    # The check itself: a plain string property is caught, an enum (or a nullable enum) is not.
    document = {"components": {"schemas": {"E": {"type": "string", "enum": ["a"]}}}}
    assert _free_string(document, {"type": "string"})
    assert _free_string(document, {"anyOf": [{"type": "string"}, {"type": "null"}]})
    assert not _free_string(document, {"anyOf": [{"$ref": "#/components/schemas/E"}, {"type": "null"}]})
    assert not _free_string(document, {"type": "array", "items": {"$ref": "#/components/schemas/E"}})
