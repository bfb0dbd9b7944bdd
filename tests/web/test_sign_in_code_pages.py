"""Signing in to the web app with a code sent by email (allauth's login by code): the code, its
attempts and allauth's rate limit, the second factor after it, and CSRF on every form."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.core import mail
from django.test import Client

from tests.canaries import ADA_NAME
from tests.conftest import World, totp_code

# Tuesday 10 March 2026, 14:00 UTC; codes expire, so the clock stands still.
NOW = datetime(2026, 3, 10, 14, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> Any:
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def mailed_code() -> str:
    found = re.search(r"^\s*([A-Z0-9]{4,}(?:-[A-Z0-9]{4,})*)\s*$", str(mail.outbox[-1].body), re.MULTILINE)
    assert found is not None, mail.outbox[-1].body
    return found.group(1)


def ask(client: Client, email: str) -> Any:
    return client.post("/sign-in/email/", {"email": email})


def test_the_sign_in_page_offers_a_code_by_email(db: Any) -> None:
    body = Client().get("/sign-in/").content.decode()
    assert 'href="/sign-in/email/"' in body and "Email me a sign-in code" in body
    page = Client().get("/sign-in/email/")
    assert page.status_code == 200 and "no-store" in page["Cache-Control"]


def test_a_guardian_signs_in_with_an_emailed_code(clock: Any, world: World) -> None:
    client = Client(enforce_csrf_checks=True)
    client.get("/sign-in/email/")
    token = client.cookies["csrftoken"].value
    response = client.post("/sign-in/email/", {"email": "guardian@example.org", "csrfmiddlewaretoken": token})
    assert response.status_code == 302 and response["Location"] == "/sign-in/email/code/"
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["guardian@example.org"]
    assert ADA_NAME not in str(mail.outbox[0].body) and ADA_NAME not in str(mail.outbox[0].subject)
    page = client.get("/sign-in/email/code/")
    assert page.status_code == 200 and "no-store" in page["Cache-Control"]
    assert client.get("/")["Location"] == "/sign-in/"  # not signed in before the code
    response = client.post(
        "/sign-in/email/code/", {"code": mailed_code(), "action": "verify", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302 and response["Location"] == "/"
    today = client.get("/", follow=True)
    assert today.status_code == 200 and ADA_NAME in today.content.decode()


def test_a_wrong_code_is_refused_and_the_attempts_run_out(clock: Any, world: World) -> None:
    client = Client()
    ask(client, "guardian@example.org")
    code = mailed_code()
    wrong = client.post("/sign-in/email/code/", {"code": "WRONG-CODE"})
    assert wrong.status_code == 400 and "That code is not right" in wrong.content.decode()
    last = None
    for _ in range(5):
        last = client.post("/sign-in/email/code/", {"code": "WRONG-CODE"})
        if last.status_code == 302:
            break
    assert last is not None and last.status_code == 302 and last["Location"] == "/sign-in/email/"
    # The right code no longer works: the login was abandoned.
    after = client.post("/sign-in/email/code/", {"code": code})
    assert after.status_code == 302 and after["Location"] == "/sign-in/email/"
    assert client.get("/")["Location"] == "/sign-in/"


def test_a_code_expires(clock: Any, world: World) -> None:
    client = Client()
    ask(client, "guardian@example.org")
    code = mailed_code()
    clock.shift(timedelta(hours=1))
    response = client.post("/sign-in/email/code/", {"code": code})
    assert response.status_code == 302 and response["Location"] == "/sign-in/email/"
    assert client.get("/")["Location"] == "/sign-in/"


def test_an_unknown_address_gets_the_same_answer_and_no_code(clock: Any, world: World) -> None:
    client = Client()
    response = ask(client, "nobody@example.org")
    assert response.status_code == 302 and response["Location"] == "/sign-in/email/code/"
    assert all(not re.search(r"^\s*[A-Z0-9]{4,}-[A-Z0-9]{4,}\s*$", str(m.body), re.MULTILINE) for m in mail.outbox)
    assert client.post("/sign-in/email/code/", {"code": "ABCD-EFGH"}).status_code == 400
    assert client.get("/")["Location"] == "/sign-in/"


def test_a_bad_address_is_refused_in_words(db: Any) -> None:
    response = ask(Client(), "not an address")
    assert response.status_code == 400
    assert "Enter the email address of your account." in response.content.decode()
    assert mail.outbox == []


def test_asking_for_codes_is_rate_limited_by_allauth(clock: Any, world: World) -> None:
    answers = [ask(Client(), "guardian@example.org").status_code for _ in range(4)]
    assert answers[:3] == [302, 302, 302] and answers[3] == 400
    assert len(mail.outbox) == 3


def test_no_new_code_is_offered_unless_allauth_allows_it(clock: Any, world: World) -> None:
    client = Client()
    ask(client, "guardian@example.org")
    assert 'value="resend"' not in client.get("/sign-in/email/code/").content.decode()
    # A forged "resend" is read as a (wrong) code, as allauth's own page does.
    assert client.post("/sign-in/email/code/", {"action": "resend"}).status_code == 400
    assert len(mail.outbox) == 1


def test_a_new_code_can_be_sent_where_allauth_allows_it(clock: Any, world: World, settings: Any) -> None:
    settings.ACCOUNT_LOGIN_BY_CODE_SUPPORTS_RESEND = True
    client = Client()
    ask(client, "guardian@example.org")
    first = mailed_code()
    assert 'value="resend"' in client.get("/sign-in/email/code/").content.decode()
    response = client.post("/sign-in/email/code/", {"action": "resend"})
    assert response.status_code == 302 and response["Location"] == "/sign-in/email/code/"
    assert len(mail.outbox) == 2 and mailed_code() != first
    assert client.post("/sign-in/email/code/", {"code": mailed_code()})["Location"] == "/"


def test_an_account_with_a_second_factor_is_asked_for_it_after_the_code(clock: Any, world: World) -> None:
    client = Client()
    ask(client, "clinician@example.org")
    response = client.post("/sign-in/email/code/", {"code": mailed_code()})
    assert response.status_code == 302 and response["Location"] == "/sign-in/code/"
    assert client.get("/")["Location"] == "/sign-in/"  # not signed in before the second factor
    assert client.post("/sign-in/code/", {"code": "000000"}).status_code == 400
    response = client.post("/sign-in/code/", {"code": totp_code()})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_the_code_page_without_a_request_goes_back(db: Any) -> None:
    assert Client().get("/sign-in/email/code/")["Location"] == "/sign-in/email/"
    assert Client().post("/sign-in/email/code/", {"code": "ABCD-EFGH"})["Location"] == "/sign-in/email/"


def test_a_signed_in_account_goes_home(world: World) -> None:
    client = Client()
    client.force_login(world.guardian)
    assert client.get("/sign-in/email/")["Location"] == "/"


def test_every_form_needs_the_csrf_token(clock: Any, world: World) -> None:
    client = Client(enforce_csrf_checks=True)
    assert client.post("/sign-in/email/", {"email": "guardian@example.org"}).status_code == 403
    assert mail.outbox == []
    client.get("/sign-in/email/")
    token = client.cookies["csrftoken"].value
    client.post("/sign-in/email/", {"email": "guardian@example.org", "csrfmiddlewaretoken": token})
    assert client.post("/sign-in/email/code/", {"code": mailed_code()}).status_code == 403
    assert client.post("/sign-in/email/code/", {"action": "resend"}).status_code == 403
    assert len(mail.outbox) == 1
    assert client.get("/")["Location"] == "/sign-in/"


def test_the_pages_speak_the_browsers_language(db: Any) -> None:
    spanish = Client(headers={"Accept-Language": "es"})
    assert "Enviarme un código de acceso por correo" in spanish.get("/sign-in/").content.decode()
    assert "Iniciar sesión con un código" in spanish.get("/sign-in/email/").content.decode()
