"""The messenger pages of the web app: a guardian's conversations (list with unread marks, a thread with
the urgent reply shown first, new conversations and replies with photos or files, read marks) and the
care team's shared inbox (claim, assign, reply, acknowledge), each behind the JSON API's access policy."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
import time_machine
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings

from messaging.models import Attachment, Message, Thread, ThreadAssignment, ThreadRead, UrgentAlert
from portal.audit import AuditEvent
from tests.canaries import ADA_MRN, ADA_NAME
from tests.conftest import World
from tests.messaging import data

SUBJECT = "Rash on the arm"
BODY = "Canaryfeather has a rash since Monday"
RED_FLAG = "She is not breathing and her lips are blue"
PHI = (ADA_NAME, ADA_MRN, SUBJECT, BODY)
DENIED = ("other_guardian", "revoked_guardian", "other_clinician", "stranger")


@pytest.fixture(autouse=True)
def clock() -> Any:
    # Inside business hours everywhere the personas live: no after-hours reply is added.
    with time_machine.travel(data.IN_BUSINESS_HOURS, tick=False) as traveller:
        yield traveller


def browser(world: World, persona: str) -> Client:
    client = Client()
    client.force_login(world.users[persona])
    return client


def photo(name: str = "photo.png", content: bytes = data.PNG, kind: str = "image/png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type=kind)


def threads_url(world: World) -> str:
    return f"/children/{world.ada.pk}/messages/"


def thread_url(world: World, thread: Thread | uuid.UUID) -> str:
    return f"/children/{world.ada.pk}/messages/{getattr(thread, 'pk', thread)}/"


def start(world: World, client: Client | None = None, body: str = BODY, **files: Any) -> Thread:
    """A guardian starts a conversation through the page."""
    client = client or browser(world, "guardian")
    form = {"subject": SUBJECT, "topic": "medical", "body": body, "client_id": str(uuid.uuid4()), **files}
    response = client.post(f"{threads_url(world)}new/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    thread = Thread.objects.get()
    assert response["Location"] == thread_url(world, thread)
    return thread


def assert_private(response: Any) -> None:
    assert "no-store" in response["Cache-Control"]


def assert_no_phi(response: Any) -> None:
    body = response.content.decode(errors="replace")
    for value in PHI:
        assert value not in body


# -- a guardian's conversations ----------------------------------------------------------------------


def test_a_guardian_starts_a_conversation_with_a_photo_and_downloads_it(world: World) -> None:
    client = browser(world, "guardian")
    form = client.get(f"{threads_url(world)}new/")
    assert form.status_code == 200
    page = form.content.decode()
    assert 'accept="image/*,application/pdf"' in page and 'capture="environment"' in page
    assert 'enctype="multipart/form-data"' in page
    assert not re.search(r"<script(?![^>]*\bsrc=)", page) and "style=" not in page
    thread = start(world, client, photo=photo())
    message = Message.objects.get(thread=thread)
    attachment = Attachment.objects.get()
    assert attachment.message_id == message.pk and attachment.uploaded_by_id == world.guardian.pk

    response = client.get(thread_url(world, thread))
    assert response.status_code == 200
    assert_private(response)
    body = response.content.decode()
    assert SUBJECT in body and BODY in body and "photo.png" in body
    assert "/static/web/messenger.js" in body
    download = client.get(f"/children/{world.ada.pk}/attachments/{attachment.pk}/")
    assert download.status_code == 200 and download.content == data.PNG
    assert download["Content-Type"] == "image/png" and "no-store" in download["Cache-Control"]
    # The care team sees it too; the co-guardian as well.
    assert (
        browser(world, "co_guardian").get(f"/children/{world.ada.pk}/attachments/{attachment.pk}/").content == data.PNG
    )


def test_the_list_marks_unread_conversations_and_opening_one_marks_it_read(world: World, clock: Any) -> None:
    thread = start(world)
    clock.shift(60)
    clinician = browser(world, "clinician")
    reply = {"body": "Please send a photo of the rash", "client_id": str(uuid.uuid4())}
    assert clinician.post(f"{thread_url(world, thread)}reply/", reply).status_code == 302
    clock.shift(60)
    guardian = browser(world, "guardian")
    listing = guardian.get(threads_url(world)).content.decode()
    assert SUBJECT in listing and "1 unread" in listing
    page = guardian.get(thread_url(world, thread)).content.decode()
    assert "Please send a photo of the rash" in page and "Dr. Cleo Clinician" in page
    assert "Read by Dr. Cleo Clinician" in page  # the clinician's read receipt (replying reads)
    assert ThreadRead.objects.filter(thread=thread, user=world.guardian).exists()
    assert (
        "unread" not in guardian.get(threads_url(world)).content.decode().split("<main", 1)[1].split("New message")[1]
    )


def test_a_red_flag_message_shows_the_emergency_reply_first_and_prominently(world: World) -> None:
    thread = start(world, body=RED_FLAG)
    page = browser(world, "guardian").get(thread_url(world, thread)).content.decode()
    urgent = page.index("Important: read this now")
    assert urgent < page.index(RED_FLAG)  # above the conversation
    assert "911" in page[urgent : page.index(RED_FLAG)]
    assert Thread.objects.get().priority == "urgent"


def test_a_reply_with_files_from_the_guardian(world: World, clock: Any) -> None:
    thread = start(world)
    clock.shift(60)
    client = browser(world, "guardian")
    reply = {
        "body": "Here are the photo and the letter",
        "client_id": str(uuid.uuid4()),
        "files": [photo("arm.jpg", data.JPEG, "image/jpeg"), photo("letter.pdf", data.PDF, "application/pdf")],
    }
    response = client.post(f"{thread_url(world, thread)}reply/", reply)
    assert response.status_code == 302 and response["Location"] == thread_url(world, thread)
    message = Message.objects.get(thread=thread, position=2)
    assert sorted(a.filename for a in Attachment.objects.filter(message=message)) == ["arm.jpg", "letter.pdf"]
    # The same form sent twice (a double tap, a retry) sends once.
    again = client.post(f"{thread_url(world, thread)}reply/", {**reply, "files": []})
    assert again.status_code == 302
    assert Message.objects.filter(thread=thread).count() == 2


@pytest.mark.parametrize(
    ("upload", "words"),
    [
        (photo("photo.jpg", data.EXE, "image/jpeg"), "Only JPEG, PNG and PDF files can be attached."),
        (photo("photo.jpg", data.JPEG + data.ZIP, "image/jpeg"), "The file contains another file or a script."),
        (photo("script.png", data.PDF, "image/png"), "The file&#x27;s name does not match its contents."),
        (photo("big.png", data.PNG + b"\x00" * 3000, "image/png"), "Attachments can be at most 10 MB."),
    ],
)
@override_settings(PORTAL_ATTACHMENT_MAX_BYTES=2000)
def test_a_refused_file_is_explained_and_nothing_is_written(world: World, upload: Any, words: str) -> None:
    thread = start(world)
    before = (Message.objects.count(), Attachment.objects.count(), ThreadRead.objects.count())
    client = browser(world, "guardian")
    # A good photo first, the refused file second: the good one is not kept either.
    form = {"body": "Two files", "client_id": str(uuid.uuid4()), "photo": photo(), "files": [upload]}
    response = client.post(f"{thread_url(world, thread)}reply/", form)
    assert response.status_code == 400
    page = response.content.decode()
    assert words in page and 'role="alert"' in page
    assert "Two files" in page  # the text typed is kept in the form
    assert (Message.objects.count(), Attachment.objects.count(), ThreadRead.objects.count()) == before


def test_a_new_conversation_with_a_refused_file_is_not_started(world: World) -> None:
    client = browser(world, "guardian")
    form = {
        "subject": SUBJECT,
        "topic": "medical",
        "body": BODY,
        "client_id": str(uuid.uuid4()),
        "files": [photo(), photo("run.pdf", data.EXE, "application/pdf")],
    }
    response = client.post(f"{threads_url(world)}new/", form)
    assert response.status_code == 400 and "Only JPEG, PNG and PDF" in response.content.decode()
    assert not Thread.objects.exists() and not Attachment.objects.exists() and not Message.objects.exists()


def test_more_than_five_files_are_refused(world: World) -> None:
    thread = start(world)
    form = {"body": "Many", "client_id": str(uuid.uuid4()), "files": [photo(f"p{n}.png") for n in range(6)]}
    response = browser(world, "guardian").post(f"{thread_url(world, thread)}reply/", form)
    assert response.status_code == 400 and "At most 5 attachments" in response.content.decode()
    assert Attachment.objects.count() == 0 and Message.objects.count() == 1


def test_bad_text_is_refused_in_words(world: World) -> None:
    client = browser(world, "guardian")
    response = client.post(
        f"{threads_url(world)}new/",
        {"subject": "", "topic": "nonsense", "body": "x\x00", "client_id": str(uuid.uuid4())},
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "This field is required." in page and "Select a valid choice" in page
    assert not Thread.objects.exists()


def test_posts_need_the_csrf_token(world: World) -> None:
    thread = start(world)
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.guardian)
    reply = {"body": "No token", "client_id": str(uuid.uuid4()), "photo": photo()}
    assert client.post(f"{thread_url(world, thread)}reply/", reply).status_code == 403
    assert client.post(f"{thread_url(world, thread)}read/").status_code == 403
    new = {"subject": "S", "topic": "other", "body": "B", "client_id": str(uuid.uuid4())}
    assert client.post(f"{threads_url(world)}new/", new).status_code == 403
    clinician = Client(enforce_csrf_checks=True)
    clinician.force_login(world.clinician)
    assert clinician.post(f"{thread_url(world, thread)}claim/").status_code == 403
    assert Message.objects.count() == 1 and Attachment.objects.count() == 0
    assert Thread.objects.get().assignee_id is None


def test_the_live_page_reads_messages_after_a_position_as_json(world: World, clock: Any) -> None:
    thread = start(world)
    clock.shift(60)
    browser(world, "clinician").post(
        f"{thread_url(world, thread)}reply/", {"body": "<b>Hi</b>", "client_id": uuid.uuid4()}
    )
    guardian = browser(world, "guardian")
    answer = guardian.get(f"{thread_url(world, thread)}since/", {"after": "1"})
    assert answer.status_code == 200 and "no-store" in answer["Cache-Control"]
    found = json.loads(answer.content)["messages"]
    assert [(m["position"], m["body"], m["author"], m["mine"]) for m in found] == [
        (2, "<b>Hi</b>", "Dr. Cleo Clinician", False)
    ]
    assert guardian.get(f"{thread_url(world, thread)}since/", {"after": "x"}).status_code == 400
    page = guardian.get(thread_url(world, thread)).content.decode()
    assert "&lt;b&gt;Hi&lt;/b&gt;" in page and "<b>Hi</b>" not in page
    assert guardian.post(f"{thread_url(world, thread)}read/", HTTP_ACCEPT="application/json").status_code == 204


def test_a_spanish_speaker_reads_the_messenger_in_spanish(world: World) -> None:
    world.guardian.preferred_language = "es"
    world.guardian.save(update_fields=["preferred_language"])
    client = browser(world, "guardian")
    assert "Mensaje nuevo" in client.get(threads_url(world)).content.decode()
    thread = start(world, client)
    form = {"body": "Foto", "client_id": str(uuid.uuid4()), "photo": photo("a.png", data.EXE, "image/png")}
    response = client.post(f"{thread_url(world, thread)}reply/", form)
    assert response.status_code == 400
    assert "Solo se pueden adjuntar archivos JPEG, PNG y PDF." in response.content.decode()


# -- the care team's shared inbox ------------------------------------------------------------------


def test_the_clinician_claims_answers_and_acknowledges_from_the_inbox(world: World, clock: Any) -> None:
    thread = start(world, body=RED_FLAG)
    alert = UrgentAlert.objects.get()
    clinician = browser(world, "clinician")
    assert clinician.get("/messages/")["Location"] == "/inbox/"
    inbox = clinician.get("/inbox/")
    assert inbox.status_code == 200 and SUBJECT in inbox.content.decode() and ADA_NAME in inbox.content.decode()
    assert "alert not acknowledged" in inbox.content.decode()
    assert_private(inbox)
    assert clinician.get("/inbox/", {"priority": "routine"}).content.decode().count(SUBJECT) == 0
    assert clinician.get("/inbox/", {"priority": "nonsense"}).status_code == 200  # ignored, not an error

    assert clinician.post(f"{thread_url(world, thread)}claim/")["Location"] == thread_url(world, thread)
    assert Thread.objects.get().assignee_id == world.clinician.pk
    page = clinician.get(thread_url(world, thread)).content.decode()
    assert "Acknowledge the urgent alert" in page and "Assigned to Dr. Cleo Clinician" in page
    response = clinician.post(f"/children/{world.ada.pk}/alerts/{alert.pk}/acknowledge/")
    assert response["Location"] == thread_url(world, thread)
    assert UrgentAlert.objects.get().status == "acknowledged"
    clock.shift(60)
    answer = {"body": "Call 911 now; we are calling you too.", "client_id": str(uuid.uuid4())}
    assert clinician.post(f"{thread_url(world, thread)}reply/", answer).status_code == 302
    assert Thread.objects.get().status == "awaiting_family"
    # Assigning to someone off the care team is refused in words; nothing changes.
    refused = clinician.post(f"{thread_url(world, thread)}assign/", {"assignee": str(world.other_clinician.pk)})
    assert refused.status_code == 302
    assert "Choose a clinician of the care team." in clinician.get(thread_url(world, thread)).content.decode()
    assigned = clinician.post(f"{thread_url(world, thread)}assign/", {"assignee": str(world.clinician.pk)})
    assert assigned.status_code == 302
    assert ThreadAssignment.objects.filter(thread=thread, kind="claim").count() == 1


def test_a_clinician_of_another_team_sees_nothing_in_the_inbox(world: World) -> None:
    start(world)
    response = browser(world, "other_clinician").get("/inbox/")
    assert response.status_code == 200
    assert_no_phi(response)


def test_a_guardian_has_no_inbox(world: World) -> None:
    start(world)
    assert browser(world, "guardian").get("/inbox/").status_code == 404
    assert browser(world, "guardian").get("/messages/")["Location"] == threads_url(world)


# -- access: the API's policy, its 404s and its audited denials ------------------------------------


def _requests(world: World, thread: Thread, attachment: Attachment, alert: UrgentAlert) -> list[tuple[str, str, Any]]:
    url = thread_url(world, thread)
    return [
        ("get", threads_url(world), {}),
        ("get", f"{threads_url(world)}new/", {}),
        (
            "post",
            f"{threads_url(world)}new/",
            {"subject": "S", "topic": "other", "body": "B", "client_id": uuid.uuid4()},
        ),
        ("get", url, {}),
        ("post", f"{url}reply/", {"body": "intrusion", "client_id": uuid.uuid4()}),
        ("get", f"{url}since/", {"after": "0"}),
        ("post", f"{url}read/", {}),
        ("get", f"/children/{world.ada.pk}/attachments/{attachment.pk}/", {}),
        ("post", f"{url}claim/", {}),
        ("post", f"{url}assign/", {"assignee": str(world.clinician.pk)}),
        ("post", f"/children/{world.ada.pk}/alerts/{alert.pk}/acknowledge/", {}),
    ]


@pytest.fixture
def urgent(world: World) -> tuple[Thread, Attachment, UrgentAlert]:
    thread = start(world, body=RED_FLAG, photo=photo())
    return thread, Attachment.objects.get(), UrgentAlert.objects.get()


@pytest.mark.parametrize("persona", DENIED)
def test_others_get_404_without_phi_and_the_denial_is_audited(
    world: World, urgent: tuple[Thread, Attachment, UrgentAlert], persona: str
) -> None:
    client = browser(world, persona)
    counts = (Thread.objects.count(), Message.objects.count(), ThreadRead.objects.count())
    for method, url, form in _requests(world, *urgent):
        before = AuditEvent.objects.filter(action="deny").count()
        response = getattr(client, method)(url, form)
        assert response.status_code == 404, (persona, method, url)
        assert_no_phi(response)
        assert_private(response)
        assert AuditEvent.objects.filter(action="deny").count() == before + 1, (persona, url)
    assert (Thread.objects.count(), Message.objects.count(), ThreadRead.objects.count()) == counts
    assert Thread.objects.get().assignee_id is None and UrgentAlert.objects.get().status == "open"


def test_guardians_cannot_use_the_care_teams_actions(
    world: World, urgent: tuple[Thread, Attachment, UrgentAlert]
) -> None:
    client = browser(world, "guardian")
    for method, url, form in _requests(world, *urgent)[-3:]:
        before = AuditEvent.objects.filter(action="deny").count()
        response = getattr(client, method)(url, form)
        assert response.status_code == 404, url
        assert AuditEvent.objects.filter(action="deny").count() == before + 1
    assert Thread.objects.get().assignee_id is None and UrgentAlert.objects.get().status == "open"


def test_a_signed_out_visitor_is_sent_to_sign_in(world: World, urgent: tuple[Thread, Attachment, UrgentAlert]) -> None:
    for method, url, form in _requests(world, *urgent):
        response = getattr(Client(), method)(url, form)
        assert response.status_code == 302 and response["Location"] == "/sign-in/", url
        assert_no_phi(response)
    assert Message.objects.count() == 2  # the message and its emergency reply


def test_the_inbox_reads_in_a_fixed_number_of_queries(
    world: World, django_assert_max_num_queries: Any, clock: Any
) -> None:
    for n in range(3):
        start_many = {"subject": f"S{n}", "topic": "other", "body": "B", "client_id": str(uuid.uuid4())}
        assert browser(world, "guardian").post(f"{threads_url(world)}new/", start_many).status_code == 302
        clock.shift(1)
    client = browser(world, "clinician")
    client.get("/inbox/")
    with django_assert_max_num_queries(20):
        assert client.get("/inbox/").content.decode().count("Take it") == 3


def test_a_confidential_conversation_is_for_the_care_team_only(world: World) -> None:
    secret = data.thread(world, confidential=True, subject="Private question")
    for persona in ("guardian", "co_guardian"):
        client = browser(world, persona)
        response = client.get(thread_url(world, secret))
        assert response.status_code == 404 and "Private question" not in response.content.decode()
        assert "Private question" not in client.get(threads_url(world)).content.decode()
        assert client.get(f"{thread_url(world, secret)}since/", {"after": "0"}).status_code == 404
        reply = {"body": "let me in", "client_id": str(uuid.uuid4())}
        assert client.post(f"{thread_url(world, secret)}reply/", reply).status_code == 404
    assert Message.objects.filter(thread=secret).count() == 1
    assert "Private question" in browser(world, "clinician").get(thread_url(world, secret)).content.decode()


def test_another_childs_conversation_cannot_be_reached_through_my_child(world: World) -> None:
    theirs = Thread.objects.create(
        child=world.ben, subject="Ben's question", topic="other", created_by=world.other_guardian
    )
    client = browser(world, "guardian")
    for method, url, form in [
        ("get", thread_url(world, theirs), {}),
        ("post", f"{thread_url(world, theirs)}reply/", {"body": "hi", "client_id": str(uuid.uuid4())}),
        ("post", f"{thread_url(world, theirs)}read/", {}),
    ]:
        response = getattr(client, method)(url, form)
        assert response.status_code == 404 and "Ben&#x27;s question" not in response.content.decode()
    assert not Message.objects.filter(thread=theirs).exists()
    assert not ThreadRead.objects.filter(thread=theirs).exists()
