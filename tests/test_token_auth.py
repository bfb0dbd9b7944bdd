"""The app token's account is read with a prepared query (``portal.auth.session_user``) and decided
exactly as Django's ``get_user`` decides it: a changed password, a deactivated account, a session
signed by an old secret or a forged user id in the session."""

from __future__ import annotations

from typing import Any
from unittest import mock

from allauth.headless import app_settings as headless_settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.base import SessionBase
from django.db import connection
from django.test import Client, RequestFactory, override_settings
from django.test.utils import CaptureQueriesContext

from portal import auth
from portal.models import User
from tests.conftest import World


def _session(user: User) -> tuple[str, SessionBase]:
    browser = Client()
    browser.force_login(user)
    token = str(browser.session.session_key)
    session = headless_settings.TOKEN_STRATEGY.lookup_session(token)
    assert session is not None
    return token, session


def _call(token: str) -> Any:
    return auth.app_token_auth(RequestFactory().get("/api/v1/me", HTTP_X_SESSION_TOKEN=token))


def test_the_common_path_reads_the_account_with_one_prepared_query(world: World) -> None:
    token, _ = _session(world.guardian)
    _call(token)  # compiles the prepared query
    with (
        # Django's get_user (through allauth) builds an ORM query on every call: not on this path.
        mock.patch("allauth.core.internal.sessionkit.get_user", side_effect=AssertionError("the slow path")),
        CaptureQueriesContext(connection) as queries,
    ):
        user = _call(token)
    assert user == world.guardian and user.email == "guardian@example.org"
    user_queries = [q["sql"] for q in queries.captured_queries if 'FROM "portal_user"' in q["sql"]]
    assert len(user_queries) == 1


def test_a_changed_password_ends_the_token(world: World) -> None:
    token, _ = _session(world.guardian)
    assert _call(token) == world.guardian
    world.guardian.set_password("a-brand-new-passphrase-9")
    world.guardian.save()
    assert _call(token) is None
    assert Client().get("/api/v1/me", headers={"X-Session-Token": token}).status_code == 401


def test_a_deactivated_account_is_refused(world: World) -> None:
    token, _ = _session(world.guardian)
    User.objects.filter(pk=world.guardian.pk).update(is_active=False)
    assert _call(token) is None
    assert Client().get("/api/v1/me", headers={"X-Session-Token": token}).status_code == 401


def test_a_session_signed_with_a_previous_secret_is_still_honoured(world: World) -> None:
    token, _ = _session(world.guardian)
    with override_settings(SECRET_KEY="a-new-secret-key-" + "x" * 40, SECRET_KEY_FALLBACKS=[_secret()]):
        assert _call(token) == world.guardian  # Django's own path re-keys the session


def test_a_forged_or_unknown_user_id_is_refused(world: World) -> None:
    token, session = _session(world.guardian)
    session[SESSION_KEY] = "not-a-uuid"
    session.save()
    assert _call(token) is None
    token, session = _session(world.guardian)
    session[SESSION_KEY] = "00000000-0000-4000-8000-000000000000"
    session.save()
    assert _call(token) is None
    token, session = _session(world.guardian)
    session[SESSION_KEY] = str(world.other_guardian.pk)  # another account's id with this one's hash
    session.save()
    assert _call(token) is None


def test_a_session_without_its_hash_is_refused(world: World) -> None:
    token, session = _session(world.guardian)
    del session[HASH_SESSION_KEY]
    session.save()
    assert _call(token) is None


def _secret() -> str:
    from django.conf import settings

    return str(settings.SECRET_KEY)


def test_answers_built_as_dictionaries_skip_ninjas_getter_and_are_still_validated() -> None:
    """``portal.schemas.Out``: a plain dict is validated by pydantic directly, not through ninja's
    per-object ``DjangoGetter``; an object still goes through it, and a wrong value is still refused."""
    import uuid
    from datetime import UTC, datetime
    from types import SimpleNamespace

    import pytest
    from pydantic import ValidationError

    from care.schemas import SlotOut, TodayChildOut

    child = {"id": uuid.uuid4(), "name": "Ada", "scope": "full"}
    with mock.patch("portal.schemas.DjangoGetter", side_effect=AssertionError("the getter")):
        assert TodayChildOut.model_validate(child).model_dump() == child
        with pytest.raises(ValidationError):
            TodayChildOut.model_validate({**child, "scope": "everything"})
    at = datetime(2026, 11, 21, 23, 30, tzinfo=UTC)
    slot = SlotOut.model_validate(SimpleNamespace(location="Clinic B", start=at, end=at))
    assert slot.location == "Clinic B"


def test_a_socket_handshake_reads_its_account_the_same_way(world: World) -> None:
    from messaging.realtime.consumer import _idle_deadline, _load_session

    token, _ = _session(world.guardian)
    with mock.patch("allauth.core.internal.sessionkit.get_user", side_effect=AssertionError("the slow path")):
        signed_in = _load_session(token)
        assert signed_in is not None and signed_in.user == world.guardian
        assert _idle_deadline(token, staff=False) is not None
    User.objects.filter(pk=world.guardian.pk).update(is_active=False)
    assert _load_session(token) is None
