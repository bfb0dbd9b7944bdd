"""Whether a signed-in account must use two factors, and has them: settled once per session.

Every API call asks this question, and answering it from the database costs two queries (staff
roles, enrolled authenticators). The answer is stored in the session instead and forgotten in every
session of the account, after commit, when anything it depends on changes: an MFA authenticator
added or removed, a department or care-team membership saved or deleted, a portal permission or a
group given or taken away. ``is_staff``, ``is_superuser`` and ``is_active`` are read from the user
row on every call, never from the session.

Only sessions allauth tracks (``UserSession``: every sign-in, browser or app) hold an answer, since
only those can be found again to forget it. A stored answer is also trusted for at most
``PORTAL_MFA_RECHECK_SECONDS``: the bound for a request that loaded its session before the answer
was forgotten and saves it afterwards.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase, UpdateError
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest

from portal.access import has_mfa, requires_mfa

MFA_KEY = "portal_mfa"
DEFAULT_RECHECK_SECONDS = 60


@dataclass(frozen=True)
class MfaState:
    required: bool  # a clinician or administrator: two factors are mandatory
    enrolled: bool  # a TOTP or WebAuthn authenticator (asked only when required)

    @property
    def admitted(self) -> bool:
        return self.enrolled or not self.required


def _recheck_seconds() -> int:
    return int(getattr(settings, "PORTAL_MFA_RECHECK_SECONDS", DEFAULT_RECHECK_SECONDS))


def _stored(session: SessionBase, user: Any, now: int) -> MfaState | None:
    stored = session.get(MFA_KEY)
    if not isinstance(stored, dict) or stored.get("user") != str(user.pk):
        return None
    if not 0 <= now - int(stored.get("at", 0)) < _recheck_seconds():
        return None
    required, enrolled = bool(stored.get("required")), bool(stored.get("enrolled"))
    if not required and (user.is_staff or user.is_superuser):
        return None  # made staff since: the flags on the user row decide at once
    return MfaState(required=required, enrolled=enrolled)


def _tracked(session: SessionBase, user: Any, request: HttpRequest | None) -> bool:
    """Whether allauth lists the session (so it can be found again), tracking it now if the request
    is at hand: a session made without allauth's sign-in (``Client.force_login``, a script)."""
    from allauth.usersessions.models import UserSession

    key = session.session_key
    if not key:
        return False
    if UserSession.objects.filter(session_key=key, user_id=user.pk).exists():
        return True
    if request is None:
        return False
    try:
        UserSession.objects.create_from_request(request, user=user, session=session)
    except PermissionDenied:
        # allauth refuses to list a session whose client address it cannot tell (no REMOTE_ADDR, or
        # a proxy header it was told to trust is missing): the answer is then asked on every call.
        return False
    return True


def mfa_state(session: SessionBase | None, user: Any, request: HttpRequest | None = None) -> MfaState:
    """The account's MFA requirement, from the session when it was settled there, otherwise from
    the database (and then stored in a tracked session; the caller saves the session)."""
    now = int(time.time())
    if session is not None:
        stored = _stored(session, user, now)
        if stored is not None:
            return stored
    required = requires_mfa(user)
    state = MfaState(required=required, enrolled=required and has_mfa(user))
    if session is not None and _tracked(session, user, request):
        session[MFA_KEY] = {"user": str(user.pk), "required": state.required, "enrolled": state.enrolled, "at": now}
    return state


def _forget_in_this_request(user_id: str) -> None:
    """The request making the change (enrolling a TOTP, say) saves its own session when it answers:
    drop the answer from that copy too, or the save would bring it back."""
    from allauth.core import context

    request = context.request
    session = getattr(request, "session", None)
    user = getattr(request, "user", None)
    if session is not None and str(getattr(user, "pk", "")) == user_id:
        session.pop(MFA_KEY, None)


def forget_now(user_id: Any) -> int:
    """Drop the stored answer from every tracked session of the account; returns how many held one."""
    from allauth.usersessions.models import UserSession

    _forget_in_this_request(str(user_id))
    store = import_module(settings.SESSION_ENGINE).SessionStore
    forgotten = 0
    for key in UserSession.objects.filter(user_id=user_id).values_list("session_key", flat=True):
        session = store(session_key=key)
        if session.get(MFA_KEY) is None:
            continue
        del session[MFA_KEY]
        try:
            session.save(must_create=False)
        except UpdateError:  # ended meanwhile: nothing left to forget
            continue
        forgotten += 1
    return forgotten


def forget(user_ids: Any) -> None:
    """Make every session of these accounts ask the database on its next call: at once, and again
    after the change commits (a call in between could have settled the old answer again)."""
    ids = sorted({str(user_id) for user_id in user_ids if user_id is not None})

    def run() -> None:
        for user_id in ids:
            forget_now(user_id)

    if ids:
        run()
        transaction.on_commit(run)


# -- what the answer depends on ---------------------------------------------------------------


def _membership_changed(sender: Any, instance: Any, **kwargs: Any) -> None:
    forget([instance.clinician_id])


def _authenticator_changed(sender: Any, instance: Any, **kwargs: Any) -> None:
    forget([instance.user_id])


def _user_relation_changed(sender: Any, instance: Any, action: str, reverse: bool, pk_set: Any, **kwargs: Any) -> None:
    """``User.user_permissions`` and ``User.groups``, from either side."""
    if action not in ("post_add", "post_remove", "pre_clear"):
        return
    if not reverse:
        forget([instance.pk])
    elif action == "pre_clear":
        forget(instance.user_set.values_list("pk", flat=True))
    else:
        forget(pk_set or ())


def _group_permissions_changed(sender: Any, instance: Any, action: str, reverse: bool, **kwargs: Any) -> None:
    """A group's permissions changed (or a permission's groups): every member of those groups."""
    if action not in ("post_add", "post_remove", "pre_clear", "post_clear"):
        return
    from django.contrib.auth.models import Group

    if reverse:
        groups = (
            Group.objects.filter(pk__in=kwargs.get("pk_set") or ())
            if action != "pre_clear"
            else instance.group_set.all()
        )
    else:
        groups = Group.objects.filter(pk=instance.pk)
    forget(groups.values_list("user__pk", flat=True))


def connect() -> None:
    """Called once from the portal's ``AppConfig.ready``."""
    from allauth.mfa.models import Authenticator
    from django.contrib.auth.models import Group
    from django.db.models.signals import m2m_changed, post_delete, post_save

    from portal.models import CareTeamMembership, DepartmentMembership, User

    uid = "portal.admission"
    for model in (DepartmentMembership, CareTeamMembership):
        post_save.connect(_membership_changed, sender=model, dispatch_uid=f"{uid}.save.{model.__name__}")
        post_delete.connect(_membership_changed, sender=model, dispatch_uid=f"{uid}.delete.{model.__name__}")
    post_save.connect(_authenticator_changed, sender=Authenticator, dispatch_uid=f"{uid}.save.authenticator")
    post_delete.connect(_authenticator_changed, sender=Authenticator, dispatch_uid=f"{uid}.delete.authenticator")
    m2m_changed.connect(_user_relation_changed, sender=User.user_permissions.through, dispatch_uid=f"{uid}.perms")
    m2m_changed.connect(_user_relation_changed, sender=User.groups.through, dispatch_uid=f"{uid}.groups")
    m2m_changed.connect(_group_permissions_changed, sender=Group.permissions.through, dispatch_uid=f"{uid}.group_perms")
