"""``Idempotency-Key`` handling: a retry gets the first answer; the same key with another body is 422.

Use inside the service's transaction::

    with transaction.atomic():
        replay = idempotency.begin(user=..., scope="refill.create", key=key, payload=body)
        if replay.done:
            return replay.status_code, replay.response
        ...do the work...
        replay.finish(201, response_body)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction

from portal.errors import Invalid
from portal.models import IdempotencyRecord, User

MAX_KEY_LENGTH = 100


def request_hash(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Replay:
    record: IdempotencyRecord
    done: bool

    @property
    def status_code(self) -> int:
        return int(self.record.status_code or 200)

    @property
    def response(self) -> Any:
        return self.record.response

    def finish(self, status_code: int, response: Any) -> None:
        self.record.status_code = status_code
        self.record.response = json.loads(json.dumps(response, default=str))
        self.record.save(update_fields=["status_code", "response"])


def begin(*, user: User, scope: str, key: str, payload: Any) -> Replay:
    """Claim ``key`` for this request, or find the earlier request that claimed it.

    Precondition: called inside ``transaction.atomic()``; the claim commits or rolls back with the work.
    """
    if not key or len(key) > MAX_KEY_LENGTH:
        raise Invalid(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters.", code="invalid_idempotency_key")
    digest = request_hash(payload)
    try:
        with transaction.atomic():
            record = IdempotencyRecord.objects.create(user=user, scope=scope, key=key, request_hash=digest)
        return Replay(record=record, done=False)
    except IntegrityError:
        record = IdempotencyRecord.objects.get(user=user, scope=scope, key=key)
    if record.request_hash != digest:
        raise Invalid("This Idempotency-Key was used for a different request.", code="idempotency_key_reused")
    return Replay(record=record, done=True)
