"""Refusals of the care services in the reader's language.

The services explain a refusal in English (``ApiError.message``, the API's ``message``) with a stable
``code``. English readers get the service's own sentence, which may carry figures (the next allowed
time of an as-needed dose); other languages get the translated sentence for the code."""

from __future__ import annotations

from django.utils import translation
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from portal.errors import ApiError

MESSAGES: dict[str, Promise] = {
    "dose_already_recorded": _("This scheduled dose is already recorded."),
    "dose_in_future": _("A dose cannot be recorded in the future."),
    "not_a_scheduled_dose": _("No dose of this medicine is scheduled at that time."),
    "plan_not_active": _("This medicine is no longer active."),
    "dose_too_soon": _("The last dose was too recent; check the next allowed time on the medicine."),
    "daily_maximum_reached": _("The daily maximum of doses has been given today."),
    "no_refills_remaining": _("No refills remain on this prescription; message the care team."),
    "refill_already_open": _("A refill request for this medicine is already open."),
    "rate_limited": _("Too many attempts. Please wait a minute and try again."),
    "appointment_past": _("This appointment has already started."),
    "attachment_too_large": _("The photo is too large: at most 10 MB."),
    "attachment_empty": _("The photo is empty. Take it again."),
    "attachment_type_not_allowed": _("Only a JPEG or PNG photo (or a PDF) can be sent."),
    "attachment_type_mismatch": _("The file's name does not match its contents."),
    "attachment_polyglot": _("This file cannot be accepted. Take the photo again with the camera."),
    "not_pending": _("This coverage was already verified or replaced."),
    "slot_taken": _("The clinician already has a visit at that time."),
    "invalid_period": _("The end must come after the start."),
    "reason_required": _("Give the family a reason for the denial."),
    "invalid_transition": _("This has already changed; the page now shows where it stands."),
    "identifying_details": _("Remove names, contact details and other identifying details before posting."),
    "identifying_pseudonym": _("Choose a pseudonym that contains no real names or contact details."),
    "invalid_pseudonym": _("A pseudonym has 3 to 40 letters, digits, spaces, dots, dashes or apostrophes."),
    "pseudonym_taken": _("That pseudonym is taken in this group; choose another."),
    "already_member": _("You are already a member of this group."),
    "not_eligible": _("Groups are for the families of our patients and their clinicians."),
    "muted": _("A moderator has muted you in this group for now."),
    "already_reported": _("You have already reported this post."),
    "empty_post": _("A post needs some text."),
}
FALLBACK = _("This could not be done. Please try again or message the care team.")


def error_text(error: ApiError) -> str:
    """A refusal in words for the page."""
    if (translation.get_language() or "en").startswith("en"):
        return error.message
    return str(MESSAGES.get(error.code, FALLBACK))


REFILL_STATUS: dict[str, Promise] = {
    "requested": _("Requested"),
    "approved": _("Approved"),
    "sent_to_pharmacy": _("Sent to the pharmacy"),
    "ready": _("Ready to pick up"),
    "picked_up": _("Picked up"),
    "denied": _("Denied"),
    "cancelled": _("Cancelled"),
}
CHANGE_REQUEST: dict[str, Promise] = {
    "cancel": _("The family asks to cancel"),
    "reschedule": _("The family asks for a new time"),
}
APPOINTMENT_STATUS: dict[str, Promise] = {
    "proposed": _("Proposed"),
    "booked": _("Booked"),
    "arrived": _("Checked in"),
}


def label(labels: dict[str, Promise], value: str) -> str:
    return str(labels.get(value, value))


# -- the messenger ----------------------------------------------------------------------------------

THREAD_STATUS: dict[str, Promise] = {
    "awaiting_care_team": _("Waiting for the care team"),
    "awaiting_family": _("The care team answered"),
    "closed": _("Closed"),
}
TOPICS: dict[str, Promise] = {
    "medical": _("Medical question"),
    "medication": _("Medication"),
    "refill": _("Refill"),
    "scheduling": _("Scheduling"),
    "billing": _("Billing and insurance"),
    "other": _("Other"),
}
# Refusals of the messenger's services, by code, for readers of other languages than English.
ATTACHMENT_REFUSALS: dict[str, Promise] = {
    "attachment_too_large": _("Attachments can be at most 10 MB."),
    "attachment_empty": _("The file is empty."),
    "attachment_type_not_allowed": _("Only JPEG, PNG and PDF files can be attached."),
    "attachment_type_mismatch": _("The file's name does not match its contents."),
    "attachment_polyglot": _("The file contains another file or a script."),
    "too_many_attachments": _("At most 5 attachments per message."),
    "thread_closed": _("The conversation is closed."),
    "not_on_care_team": _("The assignee must be on the child's care team."),
    "duplicate_send": _("This message was already sent."),
}
