"""Keeps the blind index of real names (``messaging.groups.names``) in step with users and children: a
pseudonym check must know a name from the moment it exists, whichever code path saved it."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save

from messaging.groups import names
from messaging.groups.models import NameKey
from portal.models import Child, User


def _user_saved(sender: Any, instance: User, update_fields: Any = None, raw: bool = False, **kwargs: Any) -> None:
    if raw or (update_fields is not None and "display_name" not in update_fields):
        return  # e.g. last_login: the name did not change
    names.index_user(instance)


def _child_saved(sender: Any, instance: Child, update_fields: Any = None, raw: bool = False, **kwargs: Any) -> None:
    if raw or (update_fields is not None and "name" not in update_fields):
        return
    names.index_child(instance)


def _user_deleted(sender: Any, instance: User, **kwargs: Any) -> None:
    names.forget(NameKey.Owner.USER, instance.pk)


def _child_deleted(sender: Any, instance: Child, **kwargs: Any) -> None:
    names.forget(NameKey.Owner.CHILD, instance.pk)


def connect() -> None:
    post_save.connect(_user_saved, sender=User, dispatch_uid="community.names.user")
    post_save.connect(_child_saved, sender=Child, dispatch_uid="community.names.child")
    post_delete.connect(_user_deleted, sender=User, dispatch_uid="community.names.user_deleted")
    post_delete.connect(_child_deleted, sender=Child, dispatch_uid="community.names.child_deleted")
