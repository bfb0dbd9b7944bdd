"""Care endpoints: schedules, appointments, medicines and doses, refills, coverage, results and visit
summaries, today, calendar."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from django.http import HttpRequest, HttpResponse
from ninja import Header, Query, Router, Status
from ninja.decorators import decorate_view

from care import presenters, result_selectors, selectors, services
from care.schemas import (
    AppointmentIn,
    AppointmentOut,
    AppointmentUpdateIn,
    ChangeRequestIn,
    ClinicianScheduleOut,
    CommentIn,
    CommentOut,
    CoverageIn,
    CoverageOut,
    CoverageVerifyIn,
    DoseIn,
    DoseOut,
    FeedIn,
    FeedOut,
    FeedStatusOut,
    PlanIn,
    PlanOut,
    RefillIn,
    RefillOut,
    RefillQueueOut,
    RefillQueueQuery,
    RefillTransitionIn,
    ResultDetailOut,
    ResultOut,
    ResultsQuery,
    TodayOut,
    VisitSummaryDetailOut,
    VisitSummaryOut,
)
from care.services import results as results_service
from portal import refusals
from portal.access import Capability, child_for
from portal.api import actor
from portal.errors import NotFound
from portal.etag import etag, etag_ignoring
from portal.idempotency import status_for
from portal.pagination import Page, PageIn, pager
from portal.vocabulary import Resource

router = Router(tags=["care"])


# -- schedules and appointments -----------------------------------------------------------------


@router.get(
    "/children/{child_id}/schedule",
    response=Page[ClinicianScheduleOut],
    summary="The care team's clinic hours, next open slots and who is on call",
)
def schedule(request: HttpRequest, child_id: uuid.UUID, page: Query[PageIn]) -> dict[str, Any]:
    access = child_for(actor(request), child_id, Capability.SCHEDULE)
    pages = pager(request, page, "role", "id")
    rows = selectors.child_schedule(user=actor(request), access=access)
    return pages.page_of(
        rows, lambda row: presenters.schedule_out(row, limited=access.limited_view), row=lambda row: row.member
    )


class AppointmentsQuery(PageIn):
    when: Literal["upcoming", "past"] = "upcoming"


@router.get(
    "/children/{child_id}/appointments",
    response={200: Page[AppointmentOut], 304: None},
    summary="Upcoming (soonest first) or past (latest first) visits",
)
@decorate_view(etag)
def appointments(request: HttpRequest, child_id: uuid.UUID, query: Query[AppointmentsQuery]) -> dict[str, Any]:
    access = child_for(actor(request), child_id, Capability.SCHEDULE)
    order = ("start", "id") if query.when == "upcoming" else ("-start", "-id")
    pages = pager(request, query, *order)
    rows = selectors.appointments_list(user=actor(request), access=access, when=query.when, page=pages)
    return pages.page(rows, lambda row: presenters.appointment_out(row, limited=access.limited_view))


@router.post(
    "/children/{child_id}/appointments",
    response={201: AppointmentOut},
    summary="Care team: book or propose an appointment (double-booking refused)",
)
def appointment_create(request: HttpRequest, child_id: uuid.UUID, payload: AppointmentIn) -> Status[dict[str, Any]]:
    access = child_for(actor(request), child_id, Capability.TREAT)
    appointment = services.appointment_create(actor=actor(request), access=access, **payload.dict())
    return Status(status_for(created=True), presenters.appointment_out(appointment))


@router.patch(
    "/children/{child_id}/appointments/{appointment_id}",
    response=AppointmentOut,
    summary="Care team: change status, time or place; answer a family's request",
)
def appointment_update(
    request: HttpRequest, child_id: uuid.UUID, appointment_id: uuid.UUID, payload: AppointmentUpdateIn
) -> dict[str, Any]:
    access = child_for(actor(request), child_id, Capability.TREAT)
    appointment = services.appointment_update(
        actor=actor(request), access=access, appointment_id=appointment_id, **payload.dict(exclude_unset=True)
    )
    return presenters.appointment_out(appointment)


@router.post(
    "/children/{child_id}/appointments/{appointment_id}/confirm",
    response=AppointmentOut,
    summary="Guardian: confirm attendance",
)
def appointment_confirm(request: HttpRequest, child_id: uuid.UUID, appointment_id: uuid.UUID) -> dict[str, Any]:
    access = child_for(actor(request), child_id, Capability.FAMILY_SCHEDULE)
    appointment = services.appointment_confirm(actor=actor(request), access=access, appointment_id=appointment_id)
    return presenters.appointment_out(appointment, limited=access.limited_view)


@router.post(
    "/children/{child_id}/appointments/{appointment_id}/change-request",
    response=AppointmentOut,
    summary="Guardian: ask staff to cancel or move the appointment",
)
def appointment_change_request(
    request: HttpRequest, child_id: uuid.UUID, appointment_id: uuid.UUID, payload: ChangeRequestIn
) -> dict[str, Any]:
    access = child_for(actor(request), child_id, Capability.FAMILY_SCHEDULE)
    appointment = services.appointment_request_change(
        actor=actor(request), access=access, appointment_id=appointment_id, **payload.dict()
    )
    return presenters.appointment_out(appointment, limited=access.limited_view)


# -- medicines ----------------------------------------------------------------------------------


@router.get(
    "/children/{child_id}/medications",
    response={200: Page[PlanOut], 304: None},
    summary="Medication plans with the next dose, overdue doses and adherence",
)
@decorate_view(etag)
def medications(request: HttpRequest, child_id: uuid.UUID, page: Query[PageIn]) -> dict[str, Any]:
    access = child_for(actor(request), child_id, Capability.CLINICAL)
    pages = pager(request, page, "status", "start", "id")
    views = selectors.plans_list(user=actor(request), access=access)
    return pages.page_of(views, presenters.plan_out, row=lambda view: view.plan)


@router.post("/children/{child_id}/medications", response={201: PlanOut}, summary="Care team: prescribe")
def medication_create(request: HttpRequest, child_id: uuid.UUID, payload: PlanIn) -> Status[dict[str, Any]]:
    access = child_for(actor(request), child_id, Capability.TREAT)
    plan = services.plan_create(actor=actor(request), access=access, **payload.dict())
    views = {view.plan.pk: view for view in selectors.plans_list(user=actor(request), access=access)}
    return Status(status_for(created=True), presenters.plan_out(views[plan.pk]))


@router.get(
    "/children/{child_id}/medications/{plan_id}/doses",
    response=Page[DoseOut],
    summary="Doses recorded in the last 30 days, latest first",
)
def doses(request: HttpRequest, child_id: uuid.UUID, plan_id: uuid.UUID, page: Query[PageIn]) -> dict[str, Any]:
    access = child_for(actor(request), child_id, Capability.CLINICAL)
    pages = pager(request, page, "-occurred_at", "-id")
    rows = selectors.doses_list(user=actor(request), access=access, plan_id=plan_id, page=pages)
    return pages.page(rows, presenters.dose_out)


@router.post(
    "/children/{child_id}/medications/{plan_id}/doses",
    response={200: DoseOut, 201: DoseOut},
    summary="Record a dose given or skipped (idempotent by client_id)",
)
def dose_record(
    request: HttpRequest, child_id: uuid.UUID, plan_id: uuid.UUID, payload: DoseIn
) -> Status[dict[str, Any]]:
    access = child_for(actor(request), child_id, Capability.CLINICAL)
    dose, created = services.dose_record(actor=actor(request), access=access, plan_id=plan_id, **payload.dict())
    return Status(status_for(created=created), presenters.dose_out(dose))


# -- refills ------------------------------------------------------------------------------------


@router.get("/children/{child_id}/refills", response=Page[RefillOut], summary="Refill requests, latest first")
def refills(request: HttpRequest, child_id: uuid.UUID, page: Query[PageIn]) -> dict[str, Any]:
    access = child_for(actor(request), child_id, Capability.CLINICAL)
    pages = pager(request, page, "-requested_at", "-id")
    return pages.page(selectors.refills_list(user=actor(request), access=access, page=pages), presenters.refill_out)


@router.post(
    "/children/{child_id}/medications/{plan_id}/refills",
    response={200: RefillOut, 201: RefillOut},
    summary="Guardian: request a refill (send an Idempotency-Key to retry safely)",
)
def refill_request(
    request: HttpRequest,
    child_id: uuid.UUID,
    plan_id: uuid.UUID,
    payload: RefillIn,
    idempotency_key: Annotated[str | None, Header(None, alias="Idempotency-Key")] = None,
) -> Status[Any]:
    access = child_for(actor(request), child_id, Capability.FAMILY_CLINICAL)
    refill, created = services.refill_request(
        actor=actor(request), access=access, plan_id=plan_id, idempotency_key=idempotency_key, **payload.dict()
    )
    return Status(status_for(created=created), presenters.refill_out(refill))


@router.post(
    "/children/{child_id}/refills/{refill_id}/transition",
    response=RefillOut,
    summary="Care team: approve, deny (with a reason), send, mark ready or picked up; guardian: cancel",
)
def refill_transition(
    request: HttpRequest, child_id: uuid.UUID, refill_id: uuid.UUID, payload: RefillTransitionIn
) -> dict[str, Any]:
    access = child_for(actor(request), child_id, Capability.CLINICAL)
    refill = services.refill_transition(actor=actor(request), access=access, refill_id=refill_id, **payload.dict())
    return presenters.refill_out(refill)


@router.get(
    "/refills/queue",
    response=Page[RefillQueueOut],
    summary="Clinician: open refill requests for my patients, oldest first",
)
def refill_queue(request: HttpRequest, query: Query[RefillQueueQuery]) -> dict[str, Any]:
    pages = pager(request, query, "requested_at", "id")
    rows = selectors.refill_queue(user=actor(request), status=query.status, page=pages)
    return pages.page(rows, presenters.refill_queue_out)


# -- coverage -----------------------------------------------------------------------------------


@router.get(
    "/children/{child_id}/coverage", response=Page[CoverageOut], summary="Insurance: active and pending, latest first"
)
def coverage(request: HttpRequest, child_id: uuid.UUID, page: Query[PageIn]) -> dict[str, Any]:
    access = child_for(actor(request), child_id, Capability.CLINICAL)
    pages = pager(request, page, "-submitted_at", "-id")
    rows = selectors.coverage_list(user=actor(request), access=access)
    return pages.page_of(rows, lambda row: presenters.coverage_out(row.coverage, row.status), row=lambda r: r.coverage)


@router.post(
    "/children/{child_id}/coverage",
    response={201: CoverageOut},
    summary="Guardian: submit new card details (pending until staff verify)",
)
def coverage_submit(request: HttpRequest, child_id: uuid.UUID, payload: CoverageIn) -> Status[dict[str, Any]]:
    access = child_for(actor(request), child_id, Capability.FAMILY_CLINICAL)
    data = payload.dict()
    data["copays"] = {name: f"{amount:.2f}" for name, amount in data["copays"].items()}
    row = services.coverage_submit(actor=actor(request), access=access, **data)
    return Status(status_for(created=True), presenters.coverage_out(row))


@router.post(
    "/children/{child_id}/coverage/{coverage_id}/verify",
    response=CoverageOut,
    summary="Staff: verify or reject submitted coverage",
)
def coverage_verify(
    request: HttpRequest, child_id: uuid.UUID, coverage_id: uuid.UUID, payload: CoverageVerifyIn
) -> dict[str, Any]:
    access = child_for(actor(request), child_id, Capability.MANAGE)
    row = services.coverage_verify(actor=actor(request), access=access, coverage_id=coverage_id, **payload.dict())
    return presenters.coverage_out(row)


# -- results and visit summaries ----------------------------------------------------------------


@router.get(
    "/children/{child_id}/results",
    response=Page[ResultOut],
    summary="Test results (FHIR Observation), newest first; released ones for the family",
)
def results(request: HttpRequest, child_id: uuid.UUID, query: Query[ResultsQuery]) -> dict[str, Any]:
    access = child_for(actor(request), child_id, Capability.CLINICAL)
    pages = pager(request, query, "-effective_at", "-recorded_at", "id")
    rows = result_selectors.results_list(user=actor(request), access=access, category=query.category, page=pages)
    return pages.page(rows, lambda row: presenters.result_out(row, clinician=access.is_clinician))


@router.get(
    "/children/{child_id}/results/{result_id}",
    response=ResultDetailOut,
    summary="One result with its reference range, flag, report, ordering clinician and the care team's comments",
)
def result_detail(request: HttpRequest, child_id: uuid.UUID, result_id: uuid.UUID) -> dict[str, Any]:
    access = child_for(actor(request), child_id, Capability.CLINICAL)
    row = result_selectors.result_detail(user=actor(request), access=access, result_id=result_id)
    return presenters.result_detail_out(row, row.shown_comments, clinician=access.is_clinician)  # type: ignore[attr-defined]


@router.post(
    "/children/{child_id}/results/{result_id}/comments",
    response={201: CommentOut},
    summary="Care team: explain a result to the family",
)
def result_comment(
    request: HttpRequest, child_id: uuid.UUID, result_id: uuid.UUID, payload: CommentIn
) -> Status[dict[str, Any]]:
    access = child_for(actor(request), child_id, Capability.TREAT)
    comment = results_service.result_comment_add(
        actor=actor(request), access=access, result_id=result_id, body=payload.body
    )
    return Status(status_for(created=True), presenters.comment_out(comment))


@router.post(
    "/children/{child_id}/results/{result_id}/release",
    response=ResultOut,
    summary="Care team: show a held result to the family now",
)
def result_release(request: HttpRequest, child_id: uuid.UUID, result_id: uuid.UUID) -> dict[str, Any]:
    access = child_for(actor(request), child_id, Capability.TREAT)
    row = results_service.result_release(actor=actor(request), access=access, result_id=result_id)
    return presenters.result_out(row, clinician=True)


@router.get(
    "/children/{child_id}/visit-summaries",
    response=Page[VisitSummaryOut],
    summary="Visit summaries (FHIR DocumentReference), newest first; released ones for the family",
)
def visit_summaries(request: HttpRequest, child_id: uuid.UUID, page: Query[PageIn]) -> dict[str, Any]:
    access = child_for(actor(request), child_id, Capability.CLINICAL)
    pages = pager(request, page, "-date", "-recorded_at", "id")
    rows = result_selectors.summaries_list(user=actor(request), access=access, page=pages)
    return pages.page(rows, presenters.visit_summary_out)


@router.get(
    "/children/{child_id}/visit-summaries/{summary_id}",
    response=VisitSummaryDetailOut,
    summary="One visit summary with its text",
)
def visit_summary_detail(request: HttpRequest, child_id: uuid.UUID, summary_id: uuid.UUID) -> dict[str, Any]:
    access = child_for(actor(request), child_id, Capability.CLINICAL)
    row = result_selectors.summary_detail(user=actor(request), access=access, summary_id=summary_id)
    return presenters.visit_summary_detail_out(row)


@router.get(
    "/children/{child_id}/visit-summaries/{summary_id}/pdf",
    response={200: None},
    summary="Download the visit summary's PDF",
)
def visit_summary_pdf(request: HttpRequest, child_id: uuid.UUID, summary_id: uuid.UUID) -> HttpResponse:
    access = child_for(actor(request), child_id, Capability.CLINICAL)
    row, data = result_selectors.summary_pdf(user=actor(request), access=access, summary_id=summary_id)
    response = HttpResponse(data, content_type="application/pdf")
    # The file is named by its id alone: no title, date or name of the child in a header or a URL.
    response["Content-Disposition"] = f'attachment; filename="{row.pk}.pdf"'
    response["Cache-Control"] = "private, no-store"
    return response


@router.post(
    "/children/{child_id}/visit-summaries/{summary_id}/release",
    response=VisitSummaryOut,
    summary="Care team: show a held visit summary to the family now",
)
def visit_summary_release(request: HttpRequest, child_id: uuid.UUID, summary_id: uuid.UUID) -> dict[str, Any]:
    access = child_for(actor(request), child_id, Capability.TREAT)
    row = results_service.visit_summary_release(actor=actor(request), access=access, summary_id=summary_id)
    return presenters.visit_summary_out(row)


# -- one glance and the calendar feed -----------------------------------------------------------


@router.get(
    "/me/today",
    response={200: TodayOut, 304: None},
    summary="Next appointments, doses due, open refills and unread messages for every child",
)
@decorate_view(etag_ignoring("generated_at"))
def today(request: HttpRequest) -> dict[str, Any]:
    return selectors.today(user=actor(request))


@router.get("/me/calendar-feed", response=FeedStatusOut, summary="Whether a calendar feed is active")
def feed_status(request: HttpRequest) -> dict[str, Any]:
    return presenters.feed_status_out(selectors.calendar_feed_active(user=actor(request)))


@router.post(
    "/me/calendar-feed",
    response={201: FeedOut},
    summary="Issue (or re-issue) the secret calendar URL; the previous one stops working",
)
def feed_issue(request: HttpRequest, payload: FeedIn) -> Status[dict[str, Any]]:
    feed, token = services.calendar_feed_issue(actor=actor(request), include_doses=payload.include_doses)
    url = request.build_absolute_uri(f"/api/v1/calendar/{token}.ics")
    return Status(
        status_for(created=True), {"url": url, "include_doses": feed.include_doses, "created_at": feed.created_at}
    )


@router.delete("/me/calendar-feed", response={204: None}, summary="Revoke the calendar URL")
def feed_revoke(request: HttpRequest) -> Status[None]:
    services.calendar_feed_revoke(actor=actor(request))
    return Status(204, None)


@router.get(
    "/calendar/{token}.ics",
    auth=None,
    response={200: None},
    summary="The calendar feed itself (the secret token is the credential)",
)
def calendar(request: HttpRequest, token: str) -> HttpResponse:
    refusals.guard(Resource.CALENDAR_FEED)
    body = selectors.calendar_ics(token=token) if len(token) <= 100 else None
    if body is None:
        refusals.refuse(entity_type=Resource.CALENDAR_FEED, reason="unknown_feed_token")
        raise NotFound()
    return HttpResponse(body, content_type="text/calendar; charset=utf-8")
