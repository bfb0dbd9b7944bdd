"""RelatedPerson → a guardian invitation bound to the email address or phone number on the resource.

The invitation is the portal's own (an ``invited`` link and a single-use code; only its hash is kept),
issued by ``portal.services.invitation_create_for_system`` (recipient-bound and audited as staff
invitations are, not counted against a person's create rate, since the import is one trusted batch
from the EHR) and sent after commit, with no PHI in the message: by email when the resource has an
address, otherwise by text message to its phone number (normalised to E.164; only an account that
has verified that number redeems it), in the language of ``RelatedPerson.communication`` (preferred
first) when the portal speaks it, else the hospital's default. A RelatedPerson with neither an address
nor a usable phone number is reported as ``no_contact_for_invitation`` so staff can invite that
family by hand. A re-import of the same resource sends nothing again.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from interop.context import Context
from interop.errors import Unmappable
from interop.fhir import Resource, codes
from interop.mapping.base import Mapped, Mapping
from interop.models import SourceRecord
from messaging.phones import TEXT_LANGUAGES, invitation_text_send
from portal import audit, events
from portal.errors import ApiError
from portal.models import Child, GuardianLink
from portal.phones import normalize_or_none
from portal.services import invitation_create_for_system
from portal.vocabulary import Resource as Entity

logger = logging.getLogger(__name__)

# HL7 v3 RoleCode (family members) → the portal's relationship.
RELATIONSHIPS = {
    "MTH": GuardianLink.Relationship.MOTHER,
    "NMTH": GuardianLink.Relationship.MOTHER,
    "STPMTH": GuardianLink.Relationship.MOTHER,
    "FTH": GuardianLink.Relationship.FATHER,
    "NFTH": GuardianLink.Relationship.FATHER,
    "STPFTH": GuardianLink.Relationship.FATHER,
    "GUARD": GuardianLink.Relationship.LEGAL_GUARDIAN,
    "FOSTERPARENT": GuardianLink.Relationship.FOSTER_PARENT,
}
LIVE = (GuardianLink.Status.INVITED, GuardianLink.Status.PENDING_APPROVAL, GuardianLink.Status.ACTIVE)

INVITATION_SUBJECT = "Your invitation to the family care portal"
INVITATION_BODY = (
    "The hospital has invited you to its family care portal.\n\n"
    "Your invitation code: {code}\n\n"
    "Create an account with this email address (or sign in), confirm the address, and enter the code. "
    "The code works once and expires in {hours} hours. If you did not expect this message, ignore it."
)


def _contact(data: dict[str, Any]) -> tuple[str, str]:
    """(email, "") when the resource has an email address, else ("", phone in E.164).

    Of the phone numbers, one marked for texts (``sms``) or mobile comes first; a number that does not
    parse as a valid one is passed over.
    """
    telecoms = [t for t in data.get("telecom") or [] if isinstance(t, dict) and t.get("value")]
    for telecom in telecoms:
        if telecom.get("system") == "email" and "@" in str(telecom["value"]):
            return str(telecom["value"]).strip().lower(), ""
    phones = [t for t in telecoms if t.get("system") in ("sms", "phone")]
    phones.sort(key=lambda t: (t.get("system") != "sms", t.get("use") != "mobile"))
    for telecom in phones:
        number = normalize_or_none(str(telecom["value"]))
        if number:
            return "", number
    raise Unmappable("no_contact_for_invitation")


def _language(data: dict[str, Any]) -> str:
    """The recipient's language from ``communication`` (preferred first) if the texts are written in it."""
    entries = [c for c in data.get("communication") or [] if isinstance(c, dict)]
    entries.sort(key=lambda c: not c.get("preferred"))
    for entry in entries:
        for code in codes(entry.get("language") or {}):
            primary = code.split("-")[0].lower()
            if primary in TEXT_LANGUAGES:
                return primary
    return str(settings.LANGUAGE_CODE)


def _relationship(data: dict[str, Any]) -> str:
    for concept in data.get("relationship") or []:
        for code in codes(concept):
            if code in RELATIONSHIPS:
                return RELATIONSHIPS[code]
    return GuardianLink.Relationship.OTHER


def _send(email: str, code: str, hours: int, invitation_id: Any) -> None:
    try:
        send_mail(
            INVITATION_SUBJECT,
            INVITATION_BODY.format(code=code, hours=hours),
            settings.DEFAULT_FROM_EMAIL,
            [email],
            fail_silently=False,
        )
    except OSError:  # SMTP failures are OSErrors; the invitation stays and staff can re-issue it
        logger.warning("invitation email not sent", extra={"invitation": str(invitation_id)})


def _invite(ctx: Context, child: Child, relationship: str, contact: tuple[str, str], language: str) -> GuardianLink:
    email, phone = contact
    hours = int(settings.PORTAL_INVITATION_TTL_HOURS)
    try:
        invitation, code = invitation_create_for_system(
            actor=ctx.actor,
            child=child,
            relationship=relationship,
            recipient_email=email,
            recipient_phone=phone,
            reason="ehr_import",
            expires_in_hours=hours,
        )
    except ApiError as error:
        raise Unmappable(f"invitation:{error.code}") from None
    if invitation.recipient_email:
        transaction.on_commit(lambda: _send(email, code, hours, invitation.pk))
    else:
        invitation_text_send(
            phone=invitation.recipient_phone, code=code, hours=hours, language=language, invitation_id=invitation.pk
        )
    return invitation.link


def _end(ctx: Context, link: GuardianLink, reason: str) -> None:
    if link.status not in LIVE:
        return
    link.status = GuardianLink.Status.REVOKED
    link.revoked_by = ctx.actor
    link.revoked_at = timezone.now()
    link.save(update_fields=["status", "revoked_by", "revoked_at", "updated_at"])
    ctx.audit(audit.Action.UPDATE, Entity.RELATED_PERSON, link.pk, link.child_id, reason=reason)
    if link.guardian_id:
        events.access_revoked(user_id=link.guardian_id)


def apply(ctx: Context, resource: Resource, record: SourceRecord | None) -> Mapped:
    data = resource.data
    child = ctx.child(data.get("patient"))
    relationship = _relationship(data)
    link = (
        GuardianLink.objects.select_for_update(of=("self",))
        .select_related("invitation")
        .filter(pk=record.target)
        .first()
        if record and record.targets
        else None
    )
    if data.get("active") is False:
        if link is not None:
            _end(ctx, link, "ehr_related_person_inactive")
        return Mapped(targets=[str(link.pk)] if link else [], state={"inactive": True})
    contact = _contact(data)
    language = _language(data)
    if link is None or link.status not in LIVE or link.child_id != child.pk:
        if link is not None:
            _end(ctx, link, "ehr_related_person_moved")
        return Mapped(targets=[str(_invite(ctx, child, relationship, contact, language).pk)])
    invitation = getattr(link, "invitation", None)
    if (
        link.status == GuardianLink.Status.INVITED
        and invitation is not None
        and (invitation.recipient_email, invitation.recipient_phone) != contact
    ):
        # Not yet redeemed and the EHR now has another address or number: withdraw it, invite the new one.
        _end(ctx, link, "ehr_related_person_readdressed")
        return Mapped(targets=[str(_invite(ctx, child, relationship, contact, language).pk)])
    if link.relationship != relationship:
        link.relationship = relationship
        link.save(update_fields=["relationship", "updated_at"])
        ctx.audit(audit.Action.UPDATE, Entity.RELATED_PERSON, link.pk, child.pk, reason="ehr_import:relationship")
    return Mapped(targets=[str(link.pk)])


def remove(ctx: Context, record: SourceRecord) -> None:
    link = GuardianLink.objects.select_for_update().filter(pk=record.target).first()
    if link is not None:
        _end(ctx, link, "ehr_related_person_removed")


MAPPING = Mapping(target_type="portal.GuardianLink", apply=apply, remove=remove)
