"""Uploading an attachment: checked (``messaging.files``), encrypted and stored for the uploader's
next message about the child, which claims it (``messaging.sending``)."""

from __future__ import annotations

import base64
import hashlib

from django.db import transaction

from messaging import files
from messaging.conf import upload_rate
from messaging.models import Attachment
from portal import audit, ratelimit
from portal.access import Capability, ChildAccess
from portal.models import User
from portal.vocabulary import Resource


def attachment_upload(*, actor: User, access: ChildAccess, filename: str, data: bytes) -> Attachment:
    """Check and store a file (encrypted) for the user's next message about this child."""
    access.require(Capability.MESSAGE)
    ratelimit.enforce("attachment_upload", [str(actor.pk)], upload_rate())
    checked = files.check(data, filename)
    with transaction.atomic():
        attachment = Attachment(
            child=access.child,
            uploaded_by=actor,
            content_type=checked.content_type,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            filename=filename[:200] or f"attachment{checked.extension}",
        )
        # The associated data names the row, so the primary key must exist before encrypting.
        attachment.content = base64.b64encode(data).decode("ascii")
        attachment.save(force_insert=True)
        audit.record_for_child(actor, audit.Action.CREATE, Resource.BINARY, attachment.pk, access.child.pk)
    return attachment
