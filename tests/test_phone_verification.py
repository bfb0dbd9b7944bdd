"""An account's phone number: set in E.164, verified with a one-time code texted to it (hashed,
expiring, a few tries, rate-limited, audited), unverified again whenever it changes. The code and
the number never reach a log or an audit row."""

from __future__ import annotations

import json
import logging
import re
from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from messaging.sms import LocmemSmsBackend
from portal.models import AuditEvent, PhoneVerification, User
from tests.conftest import World

NUMBER = "+13125550142"


@pytest.fixture(autouse=True)
def _empty_outbox() -> None:
    LocmemSmsBackend.outbox.clear()


def call(client: Client, method: str, url: str, body: dict[str, Any] | None = None) -> Any:
    if method == "get":
        return client.get(url)
    return getattr(client, method)(url, data=json.dumps(body or {}), content_type="application/json")


def set_phone(client: Client, phone: str) -> Any:
    return call(client, "put", "/api/v1/me/phone", {"phone": phone})


def send_code(client: Client, capture: Any) -> Any:
    with capture(execute=True):
        return call(client, "post", "/api/v1/me/phone/code")


def last_code() -> str:
    found = re.search(r"\b(\d{6})\b", LocmemSmsBackend.outbox[-1].body)
    assert found
    return found.group(1)


def verify(client: Client, code: str) -> Any:
    return call(client, "post", "/api/v1/me/phone/verify", {"code": code})


def test_a_guardian_sets_and_verifies_a_phone(world: World, django_capture_on_commit_callbacks, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    client = world.client("guardian")
    answer = set_phone(client, "(312) 555-0142")
    assert answer.status_code == 200
    assert answer.json() == {"phone": NUMBER, "verified": False, "verified_at": None}
    sent = send_code(client, django_capture_on_commit_callbacks)
    assert sent.status_code == 202 and "expires_at" in sent.json()
    [text] = LocmemSmsBackend.outbox
    assert text.to == NUMBER
    code = last_code()
    verification = PhoneVerification.objects.get(user=world.guardian)
    assert code not in verification.code_hash and verification.phone == NUMBER
    answer = verify(client, code)
    assert answer.status_code == 200 and answer.json()["verified"] is True
    world.guardian.refresh_from_db()
    assert world.guardian.phone_verified_at is not None
    reasons = list(
        AuditEvent.objects.filter(actor_id=world.guardian.pk, entity_type="Person").values_list("reason", flat=True)
    )
    assert reasons == ["phone_changed", "phone_code_sent", "phone_verified"]
    assert call(client, "get", "/api/v1/me/phone").json()["verified"] is True
    assert client.get("/api/v1/me").json()["phone_verified"] is True
    for row in AuditEvent.objects.all():
        assert NUMBER not in str(row.__dict__) and code not in str(row.__dict__)
    assert NUMBER not in caplog.text and "5550142" not in caplog.text and code not in caplog.text
    # Already verified: no new code is sent.
    again = send_code(client, django_capture_on_commit_callbacks)
    assert again.status_code == 409 and again.json()["code"] == "phone_already_verified"


def test_changing_the_number_clears_verification(world: World, django_capture_on_commit_callbacks) -> None:
    client = world.client("guardian")
    set_phone(client, NUMBER)
    send_code(client, django_capture_on_commit_callbacks)
    verify(client, last_code())
    old_code_row = PhoneVerification.objects.get()
    assert set_phone(client, NUMBER).json()["verified"] is True  # the same number again changes nothing
    answer = set_phone(client, "+34 612 345 678")
    assert answer.json() == {"phone": "+34612345678", "verified": False, "verified_at": None}
    old_code_row.refresh_from_db()
    assert old_code_row.confirmed_at is not None
    assert set_phone(client, "").json() == {"phone": "", "verified": False, "verified_at": None}
    refused = send_code(client, django_capture_on_commit_callbacks)
    assert refused.status_code == 422 and refused.json()["code"] == "phone_missing"


def test_a_code_for_the_old_number_does_not_verify_the_new_one(
    world: World, django_capture_on_commit_callbacks
) -> None:
    client = world.client("guardian")
    set_phone(client, NUMBER)
    send_code(client, django_capture_on_commit_callbacks)
    code = last_code()
    set_phone(client, "+16175550100")
    answer = verify(client, code)
    assert answer.status_code == 409 and answer.json()["code"] == "phone_code_not_requested"
    world.guardian.refresh_from_db()
    assert world.guardian.phone_verified_at is None


def test_wrong_codes_are_counted_and_then_refused(world: World, django_capture_on_commit_callbacks, settings) -> None:
    settings.PORTAL_PHONE_CODE_MAX_ATTEMPTS = 3
    client = world.client("guardian")
    set_phone(client, NUMBER)
    send_code(client, django_capture_on_commit_callbacks)
    code = last_code()
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(3):
        answer = verify(client, wrong)
        assert answer.status_code == 422 and answer.json()["code"] == "phone_code_invalid"
    assert PhoneVerification.objects.get().attempts == 3
    answer = verify(client, code)  # even the right code, once the tries are used up
    assert answer.status_code == 409 and answer.json()["code"] == "phone_code_attempts_exhausted"
    failures = AuditEvent.objects.filter(actor_id=world.guardian.pk, outcome="failure", entity_type="Person")
    assert (
        sorted(failures.values_list("reason", flat=True))
        == ["phone_code_attempts_used"] + ["phone_code_wrong_code"] * 3
    )
    # A new code replaces the exhausted one.
    send_code(client, django_capture_on_commit_callbacks)
    assert verify(client, last_code()).status_code == 200


def test_a_code_expires(world: World, django_capture_on_commit_callbacks) -> None:
    client = world.client("guardian")
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        set_phone(client, NUMBER)
        send_code(client, django_capture_on_commit_callbacks)
    with time_machine.travel(start + timedelta(minutes=11), tick=False):
        answer = verify(client, last_code())
    assert answer.status_code == 410 and answer.json()["code"] == "phone_code_expired"


def test_sending_codes_is_rate_limited(world: World, django_capture_on_commit_callbacks, settings) -> None:
    settings.PORTAL_PHONE_CODE_SEND_RATE = "2/h"
    client = world.client("guardian")
    set_phone(client, NUMBER)
    with time_machine.travel(timezone.now(), tick=False):
        assert send_code(client, django_capture_on_commit_callbacks).status_code == 202
        assert send_code(client, django_capture_on_commit_callbacks).status_code == 202
        refused = send_code(client, django_capture_on_commit_callbacks)
    assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"
    assert len(LocmemSmsBackend.outbox) == 2
    # Only the newest code is good.
    assert PhoneVerification.objects.filter(withdrawn_at=None).count() == 1


def test_confirming_is_rate_limited(world: World, django_capture_on_commit_callbacks, settings) -> None:
    settings.PORTAL_PHONE_CODE_CONFIRM_RATE = "2/m"
    client = world.client("guardian")
    set_phone(client, NUMBER)
    send_code(client, django_capture_on_commit_callbacks)
    with time_machine.travel(timezone.now(), tick=False):
        verify(client, "000001")
        verify(client, "000002")
        refused = verify(client, last_code())
    assert refused.status_code == 429


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"phone": "12"}, "invalid_phone"),
        ({"phone": "+1 555 010 0142"}, "invalid_phone"),  # 555 is no area code
        ({"phone": "not a number"}, "invalid_phone"),
        ({"phone": NUMBER, "verified": True}, "invalid_input"),
        ({"phone": "+1" + "3" * 40}, "invalid_input"),
        ({}, "invalid_input"),
    ],
)
def test_bad_numbers_are_refused_and_nothing_changes(world: World, body: dict[str, Any], code: str) -> None:
    answer = call(world.client("guardian"), "put", "/api/v1/me/phone", body)
    assert answer.status_code == 422 and answer.json()["code"] == code
    assert "message" in answer.json() and "555" not in answer.json()["message"]
    assert User.objects.get(pk=world.guardian.pk).phone == ""


def test_unknown_fields_on_verify_are_refused(world: World) -> None:
    answer = call(world.client("guardian"), "post", "/api/v1/me/phone/verify", {"code": "123456", "phone": NUMBER})
    assert answer.status_code == 422 and answer.json()["code"] == "invalid_input"


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("get", "/api/v1/me/phone", None),
        ("put", "/api/v1/me/phone", {"phone": NUMBER}),
        ("post", "/api/v1/me/phone/code", None),
        ("post", "/api/v1/me/phone/verify", {"code": "123456"}),
    ],
)
def test_signed_out_callers_are_refused(world: World, method: str, url: str, body: Any) -> None:
    assert call(Client(), method, url, body).status_code == 401


def test_each_account_sees_and_changes_only_its_own_number(world: World, django_capture_on_commit_callbacks) -> None:
    set_phone(world.client("guardian"), NUMBER)
    send_code(world.client("guardian"), django_capture_on_commit_callbacks)
    code = last_code()
    for persona in ("co_guardian", "other_guardian", "revoked_guardian", "clinician", "stranger"):
        client = world.client(persona)
        assert call(client, "get", "/api/v1/me/phone").json()["phone"] == ""
        # Another account's pending code verifies nothing for this one.
        assert verify(client, code).json()["code"] == "phone_code_not_requested"
    world.guardian.refresh_from_db()
    assert world.guardian.phone_verified_at is None
    assert verify(world.client("guardian"), code).status_code == 200


def test_a_number_changed_in_the_admin_must_be_verified_again(world: World) -> None:
    from types import SimpleNamespace

    from django.test import RequestFactory

    from portal.admin import UserAdmin, site

    user = User.objects.get(pk=world.admin.pk)
    user.phone, user.phone_verified_at = NUMBER, timezone.now()
    user.save(update_fields=["phone", "phone_verified_at"])
    model_admin = UserAdmin(User, site)
    user.display_name = "Ann A."
    model_admin.save_model(RequestFactory().post("/"), user, SimpleNamespace(changed_data=["display_name"]), True)
    assert User.objects.get(pk=user.pk).phone_verified_at is not None
    user.phone = "+16175550100"
    model_admin.save_model(RequestFactory().post("/"), user, SimpleNamespace(changed_data=["phone"]), True)
    assert User.objects.get(pk=user.pk).phone_verified_at is None


def test_one_number_is_texted_a_limited_number_of_codes_whatever_the_account(
    world: World, django_capture_on_commit_callbacks, settings
) -> None:
    settings.PORTAL_PHONE_CODE_SEND_RATE = "2/h"
    with time_machine.travel(timezone.now(), tick=False):
        statuses = []
        for persona in ("guardian", "stranger", "other_guardian"):
            set_phone(world.client(persona), NUMBER)
            statuses.append(send_code(world.client(persona), django_capture_on_commit_callbacks).status_code)
    assert statuses == [202, 202, 429]
    assert [t.to for t in LocmemSmsBackend.outbox] == [NUMBER, NUMBER]
