"""Refill requests: a guardian asks, the care team moves the request along (one open request per
plan, approval spends exactly one refill)."""

from __future__ import annotations

import uuid

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from care.models import (
    OPEN_REFILL_STATUSES,
    MedicationPlan,
    RefillRequest,
    RefillTransition,
)
from care.services.common import audit_child, publish
from care.services.medicines import plan_for
from portal import audit, idempotency
from portal.access import Capability, ChildAccess
from portal.errors import Conflict, Invalid, NotFound
from portal.models import User
from portal.vocabulary import EventType, Resource

REFILL_TRANSITIONS: dict[str, set[str]] = {
    RefillRequest.Status.REQUESTED: {
        RefillRequest.Status.APPROVED,
        RefillRequest.Status.DENIED,
        RefillRequest.Status.CANCELLED,
    },
    RefillRequest.Status.APPROVED: {RefillRequest.Status.SENT_TO_PHARMACY, RefillRequest.Status.CANCELLED},
    RefillRequest.Status.SENT_TO_PHARMACY: {RefillRequest.Status.READY},
    RefillRequest.Status.READY: {RefillRequest.Status.PICKED_UP},
}
GUARDIAN_CANCELLABLE = {RefillRequest.Status.REQUESTED, RefillRequest.Status.APPROVED}


def refill_request(
    *,
    actor: User,
    access: ChildAccess,
    plan_id: uuid.UUID,
    pharmacy: str = "",
    note: str = "",
    idempotency_key: str | None = None,
) -> tuple[RefillRequest, bool]:
    """A guardian asks for a refill of an active plan with refills remaining (one open request per plan).

    Returns (refill, created). With an ``Idempotency-Key``, a retry gets the first request's refill
    and answer (created as the first request was) and the same key with another body is refused (422).
    """
    access.require(Capability.FAMILY_CLINICAL)
    body = {"plan_id": str(plan_id), "pharmacy": pharmacy, "note": note, "child_id": str(access.child.pk)}
    with transaction.atomic():
        replay = None
        if idempotency_key is not None:
            replay = idempotency.begin(user=actor, scope="refill.request", key=idempotency_key, payload=body)
            if replay.done:
                # Keys stored before answers were kept by id alone hold the whole body, whose "id" is the refill's.
                first_id = replay.response.get("refill_id") or replay.response["id"]
                first = RefillRequest.objects.get(pk=first_id, child=access.child)
                return first, idempotency.created(replay.status_code)
        plan = plan_for(access, plan_id, lock=True)
        if plan.status != MedicationPlan.Status.ACTIVE or (plan.end and plan.end <= timezone.now()):
            raise Conflict("Refills can be requested only for an active medication plan.", code="plan_not_active")
        if plan.refills_remaining <= 0:
            raise Conflict(
                "No refills remain on this prescription; message the care team.", code="no_refills_remaining"
            )
        if RefillRequest.objects.filter(plan=plan, status__in=OPEN_REFILL_STATUSES).exists():
            raise Conflict("A refill request for this medicine is already open.", code="refill_already_open")
        try:
            with transaction.atomic():
                refill = RefillRequest.objects.create(
                    plan=plan, child=access.child, pharmacy=pharmacy or plan.pharmacy, note=note, requested_by=actor
                )
        except IntegrityError:  # the partial unique index: a concurrent request won
            raise Conflict("A refill request for this medicine is already open.", code="refill_already_open") from None
        RefillTransition.objects.create(refill=refill, from_status="", to_status=refill.status, actor=actor)
        audit_child(actor, audit.Action.CREATE, Resource.TASK, refill.pk, access, "refill_requested")
        publish(
            EventType.REFILL_CHANGED,
            access,
            Resource.TASK,
            refill.pk,
            actor,
            Capability.CLINICAL,
            plan.confidential,
            status=refill.status,
        )
        if replay is not None:
            replay.finish(idempotency.status_for(created=True), {"refill_id": str(refill.pk)})
    return refill, True


def refill_transition(
    *, actor: User, access: ChildAccess, refill_id: uuid.UUID, to: str, reason: str = ""
) -> RefillRequest:
    """The care team moves a request along; approval uses up exactly one refill, under a row lock."""
    if to == RefillRequest.Status.CANCELLED and not access.is_clinician:
        access.require(Capability.CLINICAL)
    else:
        access.require(Capability.TREAT)
    with transaction.atomic():
        refill = RefillRequest.objects.select_for_update().filter(pk=refill_id, child=access.child).first()
        if refill is None or (refill.plan.confidential and not access.is_clinician):
            raise NotFound("No such refill request.")
        allowed = REFILL_TRANSITIONS.get(refill.status, set())
        if not access.is_clinician and refill.status not in GUARDIAN_CANCELLABLE:
            allowed = set()
        if to not in allowed:
            raise Conflict(f"A refill request cannot go from {refill.status} to {to}.", code="invalid_transition")
        if to == RefillRequest.Status.DENIED and not reason.strip():
            raise Invalid("Give the family a reason for the denial.", code="reason_required")
        if to == RefillRequest.Status.APPROVED:
            used = MedicationPlan.objects.filter(pk=refill.plan_id, refills_remaining__gt=0).update(
                refills_remaining=F("refills_remaining") - 1, updated_at=timezone.now()
            )
            if not used:
                raise Conflict("No refills remain on this prescription.", code="no_refills_remaining")
        previous = refill.status
        refill.status = to
        refill.decided_by = actor if access.is_clinician else refill.decided_by
        update = ["status", "decided_by", "updated_at"]
        if to == RefillRequest.Status.DENIED:
            refill.denial_reason = reason.strip()
            update.append("denial_reason")
        refill.save(update_fields=update)
        RefillTransition.objects.create(refill=refill, from_status=previous, to_status=to, actor=actor)
        audit_child(actor, audit.Action.UPDATE, Resource.TASK, refill.pk, access, f"refill:{previous}->{to}")
        publish(
            EventType.REFILL_CHANGED,
            access,
            Resource.TASK,
            refill.pk,
            actor,
            Capability.CLINICAL,
            refill.plan.confidential,
            status=to,
        )
    return refill
