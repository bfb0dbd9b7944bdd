"""Communication: one message of the secure messenger (served only with ``PORTAL_FHIR_COMMUNICATION``).

People are referenced as the other outbound resources reference them: a guardian by the
RelatedPerson that is their link to the child, a clinician as a Practitioner, an account with neither
by its account id. A thread is the chain of its messages: each later message is ``partOf`` the
thread's first and ``inResponseTo`` the one before it; the thread's subject is the ``topic``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from interop.outbound.common import drop_empty, instant, meta, ref, user_ref
from messaging import selectors
from messaging.models import Attachment, Message, Priority
from portal.models import GuardianLink

AUTOMATIC_SENDER = {"display": "Automatic reply"}


def _links(child_ids: set[Any]) -> tuple[dict[tuple[Any, Any], Any], dict[Any, list[Any]]]:
    """Per (child, guardian) the guardian's newest link, and per child its active links: one query."""
    newest: dict[tuple[Any, Any], Any] = {}
    active: dict[Any, list[Any]] = {}
    rows = (
        GuardianLink.objects.filter(child_id__in=child_ids)
        .order_by("granted_at", "id")
        .values_list("child_id", "guardian_id", "pk", "status")
    )
    for child_id, guardian_id, pk, status in rows:
        if guardian_id is not None:
            newest[(child_id, guardian_id)] = pk
        if status == GuardianLink.Status.ACTIVE:
            active.setdefault(child_id, []).append(pk)
    return newest, active


def _attachment(row: Attachment, with_data: bool) -> dict[str, Any]:
    return {
        "contentAttachment": drop_empty(
            {
                "contentType": row.content_type,
                "size": row.size,
                "title": row.filename,
                "creation": instant(row.uploaded_at),
                "data": row.content if with_data else None,
            }
        )
    }


def practitioners_named(rows: Sequence[Message]) -> set[Any]:
    """The clinicians the Communications of ``rows`` reference: care-team senders, and the clinician
    holding the thread of a family message."""
    named = {row.author_id for row in rows if row.kind == Message.Kind.CARE_TEAM and row.author_id}
    named |= {row.thread.assignee_id for row in rows if row.kind == Message.Kind.FAMILY and row.thread.assignee_id}
    return named


def communications(rows: Sequence[Message], *, with_data: bool = False) -> list[dict[str, Any]]:
    """Needs ``thread`` loaded and the thread annotations of ``messaging.selectors.messages_with_thread``.
    Attachments are described (type, size, name, when uploaded); ``with_data`` (a read of the one
    resource) adds their bytes, as a DocumentReference read carries its PDF. Two queries a page."""
    files = selectors.message_attachments([row.pk for row in rows], with_content=with_data)
    newest, active = _links({row.thread.child_id for row in rows})
    out = []
    for message in rows:
        thread = message.thread
        child_id = thread.child_id
        sender: dict[str, Any] | None
        recipients: list[dict[str, Any]] = []
        if message.kind == Message.Kind.FAMILY:
            link = newest.get((child_id, message.author_id))
            sender = ref("RelatedPerson", link) if link else user_ref(message.author_id)
            if thread.assignee_id:
                recipients.append(ref("Practitioner", thread.assignee_id))
        else:
            if message.kind == Message.Kind.CARE_TEAM and message.author_id:
                sender = ref("Practitioner", message.author_id)
            else:
                sender = AUTOMATIC_SENDER
            # A confidential thread is the care team's: no guardian is its audience.
            if not thread.confidential:
                recipients = [ref("RelatedPerson", link) for link in active.get(child_id, [])]
        first = getattr(message, "first_message_id", None)
        previous = getattr(message, "previous_message_id", None)
        payload: list[dict[str, Any]] = [{"contentString": message.body}] if message.body else []
        payload += [_attachment(row, with_data) for row in files.get(message.pk, [])]
        out.append(
            drop_empty(
                {
                    "resourceType": "Communication",
                    "id": str(message.pk),
                    "meta": meta(message.created_at, confidential=thread.confidential),
                    "status": "completed",
                    "category": [{"text": thread.get_topic_display()}],
                    "priority": "urgent" if thread.priority == Priority.URGENT else "routine",
                    "subject": ref("Patient", child_id),
                    "topic": {"text": thread.subject} if thread.subject else None,
                    "partOf": [ref("Communication", first)] if first and first != message.pk else [],
                    "inResponseTo": [ref("Communication", previous)] if previous else [],
                    "sent": instant(message.created_at),
                    "sender": sender,
                    "recipient": recipients,
                    "payload": payload,
                }
            )
        )
    return out
