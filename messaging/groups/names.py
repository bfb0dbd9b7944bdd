"""The blind index of real names (``NameKey``): what a pseudonym may not spell.

Names are encrypted at rest (children) or personal (users), so the pseudonym check never decrypts
everyone's: each name is indexed once, as an HMAC under the blind-index key of its normalised
skeleton, and kept in step when a user or child is saved (``index_user``/``index_child``, connected in
``messaging.groups.apps``). ``python manage.py index_names`` rebuilds the whole index (after a key change,
or for rows written before the index existed).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from typing import Any

from django.db import transaction

from messaging.groups import normalise
from messaging.groups.models import NameKey
from portal.crypto import keyring
from portal.models import Child, User

PURPOSE = "community.namekey"


def digest(key: str) -> str:
    return keyring().blind_index(key, purpose=PURPOSE)


def keys_of(name: str) -> dict[str, str]:
    """``{part: digest}`` for a real name: the whole name, and its last word when there are two or more."""
    full = normalise.name_key(name)
    if len(full) < 2:
        return {}
    keys: dict[str, str] = {NameKey.Part.FULL: digest(full)}
    words = [w for w in re.findall(r"\w+", normalise.skeleton(name)) if w not in normalise.title_skeletons()]
    if len(words) >= 2:
        surname = normalise.name_key(words[-1])
        if len(surname) >= 2:
            keys[NameKey.Part.SURNAME] = digest(surname)
    return keys


def _store(owner_type: str, owner_id: uuid.UUID, name: str) -> None:
    wanted = keys_of(name)
    existing = {row.part: row for row in NameKey.objects.filter(owner_type=owner_type, owner_id=owner_id)}
    if {part: row.digest for part, row in existing.items()} == wanted:
        return
    with transaction.atomic():
        NameKey.objects.filter(owner_type=owner_type, owner_id=owner_id).delete()
        NameKey.objects.bulk_create(
            [NameKey(owner_type=owner_type, owner_id=owner_id, part=part, digest=d) for part, d in wanted.items()]
        )


def index_user(user: User) -> None:
    _store(NameKey.Owner.USER, user.pk, user.display_name or "")


def index_child(child: Child) -> None:
    _store(NameKey.Owner.CHILD, child.pk, str(child.name or ""))


def forget(owner_type: str, owner_id: Any) -> None:
    NameKey.objects.filter(owner_type=owner_type, owner_id=owner_id).delete()


def reindex_all(batch_size: int = 500) -> int:
    """Rebuild the whole index; returns how many names were indexed."""
    count = 0
    for user in User.objects.only("id", "display_name").iterator(chunk_size=batch_size):
        index_user(user)
        count += 1
    for child in Child.objects.iterator(chunk_size=batch_size):
        index_child(child)
        count += 1
    return count


def owners_named(key: str, *, part: str = NameKey.Part.FULL) -> list[tuple[str, uuid.UUID]]:
    """Users and children whose name (or surname) has this name key."""
    if len(key) < 2:
        return []
    rows = NameKey.objects.filter(digest=digest(key), part=part).values_list("owner_type", "owner_id")
    return list(rows)


def user_ids(owners: Iterable[tuple[str, uuid.UUID]]) -> list[uuid.UUID]:
    return [owner_id for owner_type, owner_id in owners if owner_type == NameKey.Owner.USER]
