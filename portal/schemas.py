"""API schemas. Inputs forbid unknown fields; outputs carry external UUIDs only."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import Enum
from typing import Annotated, Any, Literal

from ninja import Schema
from ninja.schema import DjangoGetter
from pydantic import (
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ModelWrapValidatorHandler,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from portal import limits
from portal.limits import YEAR, window
from portal.models import Action, CareTeamMembership, Child, GuardianLink, Outcome


class OneOf:
    """``Annotated[str, OneOf(Model.Status)]``: a value of a closed vocabulary (a model's ``TextChoices``
    or a ``StrEnum``), so the OpenAPI document lists it as an ``enum`` and generated clients get a
    type. The set is read from the model, never copied; an empty choice is answered as ``null``, so it
    is left out. An answer carrying another value fails validation instead of reaching a client."""

    def __init__(self, choices: type[Enum]) -> None:
        self.values = tuple(str(member.value) for member in choices if member.value != "")

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {"type": "string", "enum": list(self.values)}

    def _check(self, value: str) -> str:
        if value not in self.values:
            raise ValueError("not one of the allowed values")
        return value


Scope = Annotated[str, OneOf(GuardianLink.Scope)]
Relationship = Annotated[str, OneOf(GuardianLink.Relationship)]
LinkStatus = Annotated[str, OneOf(GuardianLink.Status)]
CareRole = Annotated[str, OneOf(CareTeamMembership.Role)]


class In(Schema):
    """Base of every request body and query schema: unknown fields are an error, not silently dropped;
    text carries no NUL or other control characters (plaintext and encrypted fields alike); dates lie
    between 1900 and 2199 (fields narrow this with ``portal.limits.window``)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _clean_input(cls, value: Any) -> Any:
        problem = limits.text_problem(value) or limits.date_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class Out(Schema):
    """Base of an answer built as plain dictionaries by a presenter (``/me/today`` and what it nests).

    ninja wraps every object it validates in a ``DjangoGetter`` (so a schema can read model attributes,
    call ``resolve_*`` methods and turn managers into lists), and that Python wrapper, once per nested
    object, costs several times pydantic's own validation (``tests/benchmarks/profile_requests.py``). A
    plain ``dict`` needs none of it: pydantic validates it directly, with the same result. Anything else
    (a model instance, a schema with resolvers) still goes through ninja's getter."""

    @model_validator(mode="wrap")
    @classmethod
    def _run_root_validator(cls, values: Any, handler: ModelWrapValidatorHandler[Any], info: ValidationInfo) -> Any:
        if type(values) is dict and not cls._ninja_resolvers:
            return handler(values)
        if cls.model_config.get("extra") == "forbid" or cls.model_config.get("validate_assignment", False):
            handler(values)
        return handler(DjangoGetter(values, cls, info.context))


class ErrorOut(Schema):
    code: str
    message: str


class HealthOut(Schema):
    status: Literal["ok", "degraded", "down"]
    # database, cache, channel_layer: ok | unavailable; worker: ok | down | lagging | inline | unknown.
    components: dict[str, str]
    degraded: list[str] = Field(description="Components that are unavailable while the portal keeps answering.")


class ChildRefOut(Schema):
    id: uuid.UUID
    name: str
    scope: Scope | None = None
    relationship: Relationship | None = None
    roles: list[CareRole] | None = None


class MeOut(Schema):
    id: uuid.UUID
    email: str
    display_name: str
    phone: str
    # Whether ``phone`` was verified by a texted code (``/me/phone``): phone-bound invitations need it.
    phone_verified: bool
    preferred_language: str
    # The language of notifications and automatic replies (same value as preferred_language).
    language: str
    time_zone: str
    mfa_enrolled: bool
    mfa_required: bool
    permissions: list[str]
    children_as_guardian: list[ChildRefOut]
    children_as_clinician: list[ChildRefOut]


class CareTeamMemberOut(Schema):
    id: uuid.UUID
    clinician_id: uuid.UUID
    clinician_name: str
    role: CareRole
    department: str | None
    start: datetime
    end: datetime | None


class ChildOut(Schema):
    id: uuid.UUID
    name: str
    date_of_birth: date
    sex: Annotated[str, OneOf(Child.Sex)]
    time_zone: str
    access: Literal["guardian", "clinician"]
    scope: Scope | None = Field(None, description="The guardian's effective scope: full or limited.")
    mrn: str | None = Field(None, description="Care team only.")
    conditions: list[str] | None = Field(None, description="Full-scope guardians and the care team only.")


class MeIn(In):
    """What a user changes about themselves: the language notifications and automatic replies use."""

    language: Literal["en", "es"]


class InvitationIn(In):
    relationship: Literal["mother", "father", "legal_guardian", "foster_parent", "other"]
    recipient_email: str = Field(
        max_length=254,
        description="The address the invitation is sent to: only an account that has verified it may redeem it.",
    )
    scope: Literal["full", "limited"] = "full"
    court_appointed: bool = False
    expires_in_hours: int | None = Field(None, ge=1, le=24 * 14)

    @field_validator("recipient_email")
    @classmethod
    def _email(cls, value: str) -> str:
        from django.core.exceptions import ValidationError
        from django.core.validators import validate_email

        value = value.strip().lower()
        try:
            validate_email(value)
        except ValidationError:
            raise ValueError("not an email address") from None
        return value


class InvitationOut(Schema):
    id: uuid.UUID
    child_id: uuid.UUID
    code: str = Field(description="Shown once; give it to the guardian. Only a hash is stored.")
    recipient_email: str
    relationship: Relationship
    scope: Scope
    expires_at: datetime


class RedeemIn(In):
    code: str = Field(min_length=1, max_length=64)


class GuardianLinkOut(Schema):
    id: uuid.UUID
    child_id: uuid.UUID
    guardian_id: uuid.UUID | None = Field(description="Empty while the link is an unredeemed invitation.")
    guardian_name: str
    relationship: Relationship
    scope: Scope
    effective_scope: Scope
    status: LinkStatus = Field(description="pending_approval: a staff account's link waiting for a second person")
    court_appointed: bool
    adolescent_exception: bool
    valid_from: datetime
    valid_until: datetime | None
    granted_at: datetime
    revoked_at: datetime | None
    recipient_email: str | None = Field(None, description="The invited address (staff views only).")
    approved_at: datetime | None = Field(None, description="When a second staff member approved a staff link.")


class PendingLinkOut(Schema):
    id: uuid.UUID
    child_id: uuid.UUID
    guardian_id: uuid.UUID | None
    guardian_name: str
    relationship: Relationship
    scope: Scope
    invited_by_id: uuid.UUID | None
    invited_by_name: str
    recipient_email: str | None
    redeemed_at: datetime | None


class LinkUpdateIn(In):
    scope: Literal["full", "limited"] | None = None
    adolescent_exception: bool | None = None
    court_appointed: bool | None = None
    valid_until: Annotated[datetime, window(past=YEAR, future=25 * YEAR)] | None = None


class CareTeamIn(In):
    clinician_id: uuid.UUID
    role: Literal["primary", "specialist", "nurse", "pharmacist"]
    department_id: uuid.UUID | None = None
    start: Annotated[datetime, window(past=25 * YEAR, future=5 * YEAR)] | None = None
    end: Annotated[datetime, window(past=25 * YEAR, future=5 * YEAR)] | None = None


class AccessLogEntryOut(Schema):
    id: uuid.UUID
    seq: int
    recorded_at: datetime
    actor_name: str
    actor_role: str = Field(description="guardian (mother), care team (nurse), staff or system")
    action: Annotated[str, OneOf(Action)]
    entity_type: str
    outcome: Annotated[str, OneOf(Outcome)]


class AccessLogOut(Schema):
    entries: list[AccessLogEntryOut]
    next_before: int | None = Field(description="Pass as ?before= to get the next, older page.")
