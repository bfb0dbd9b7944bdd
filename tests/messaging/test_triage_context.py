"""Triage with the child's context (age, conditions), the per-category replies and what is stored."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine

from messaging import triage
from messaging.models import Message
from portal.audit import AuditEvent
from tests.conftest import World
from tests.messaging import data

WEDNESDAY_10 = datetime(2027, 6, 9, 14, 0, tzinfo=UTC)  # 10:00 New York

INFANT = triage.TriageContext(age_months=1)
OLDER = triage.TriageContext(age_months=30)
DIABETES = triage.TriageContext(age_months=100, conditions=frozenset({triage.TYPE_1_DIABETES}))
EPILEPSY = triage.TriageContext(age_months=100, conditions=frozenset({triage.EPILEPSY}))


def _categories(text: str, context: triage.TriageContext | None = None) -> tuple[str, ...]:
    hit = triage.check(text, context)
    return hit.categories if hit else ()


@pytest.mark.parametrize("text", ["she feels really hot tonight", "temp is 38.2", "tiene calentura"])
def test_fever_is_a_red_flag_under_three_months_only(text: str) -> None:
    assert "infant_fever" in _categories(text, INFANT)
    assert _categories(text, OLDER) == ()
    assert _categories(text) == ()


@pytest.mark.parametrize("text", ["he threw up twice this morning", "esta vomitando", "sugar is 320 and tummy ache"])
def test_vomiting_or_a_high_reading_is_a_red_flag_with_diabetes(text: str) -> None:
    assert "diabetic" in _categories(text, DIABETES)
    assert _categories(text, OLDER) == ()


def test_ketones_and_severe_readings_need_no_context() -> None:
    assert "diabetic" in _categories("cant stop throwing up and meter says ketones high")
    assert "diabetic" in _categories("blood sugar 35 and shaky")


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("its been going on for 6 minutes now", "status_epilepticus"),
        ("she is doing the staring thing again", "seizure"),
        ("twitching on one side and wont answer", "seizure"),
    ],
)
def test_a_long_or_typical_episode_is_a_red_flag_with_epilepsy(text: str, category: str) -> None:
    assert category in _categories(text, EPILEPSY)
    assert category not in _categories(text, OLDER)


def test_a_long_seizure_is_status_epilepticus_for_anyone() -> None:
    assert "status_epilepticus" in _categories("seizure has been going for 6 minutes")


def test_negation_never_suppresses_a_flag() -> None:
    assert "breathing" in _categories("not breathing")
    assert "infant_fever" in _categories("no fever but she is 3 weeks old and feels hot")


@pytest.mark.parametrize(
    ("born", "today", "months"),
    [
        (date(2027, 3, 9), date(2027, 6, 8), 2),
        (date(2027, 3, 9), date(2027, 6, 9), 3),
        (date(2027, 1, 31), date(2027, 2, 28), 1),  # the last day of a shorter month completes it
        (date(2027, 1, 31), date(2027, 2, 27), 0),
        (date(2027, 6, 9), date(2027, 6, 9), 0),
    ],
)
def test_age_in_completed_calendar_months(born: date, today: date, months: int) -> None:
    assert triage.months_between(born, today) == months


def test_replies_carry_each_categorys_number(settings) -> None:
    settings.PORTAL_EMERGENCY_NUMBER = "112"
    settings.PORTAL_POISON_CONTROL_NUMBER = "0800 555 000"
    settings.PORTAL_CRISIS_LINE_NUMBER = "024"
    poison = triage.emergency_reply("en", categories=("poisoning",))
    assert "call 112" in poison and "Poison Control at 0800 555 000" in poison
    crisis = triage.emergency_reply("es", categories=("self_harm",))
    assert "llame ahora al 112" in crisis and "024" in crisis
    plain = triage.emergency_reply("en", categories=("breathing",))
    assert "112" in plain and "Poison" not in plain and "024" not in plain
    assert triage.emergency_reply("fr", "999").startswith("Automatic reply") and "999" in triage.emergency_reply(
        "fr", "999"
    )


@pytest.mark.parametrize("language", ["en", "es"])
def test_every_advice_has_its_spanish_and_fills_its_numbers(language: str) -> None:
    from messaging.triage import replies

    for category in replies.ADVICE:
        text = triage.emergency_reply(language, categories=(category,))
        assert "{" not in text and "}" not in text
        if language == "es":
            numbers = {"emergency": "911", "poison": "1-800-222-1222", "crisis": "988"}
            assert replies.SPANISH[replies.ADVICE[category]].format(**numbers) in text


def test_a_deployment_replaces_a_categorys_advice(settings) -> None:
    settings.PORTAL_TRIAGE_REPLIES = {
        "poisoning": {"en": "Ring the poison line on {poison}.", "es": "Llame al {poison}."}
    }
    assert "Ring the poison line on 1-800-222-1222." in triage.emergency_reply("en", categories=("poisoning",))
    assert "Llame al 1-800-222-1222." in triage.emergency_reply("es", categories=("poisoning",))


def test_the_reply_language_follows_the_message() -> None:
    assert triage.check("se trago una pila de boton").language == "es"  # type: ignore[union-attr]
    assert triage.check("he swallowed a button battery").language == "en"  # type: ignore[union-attr]


def test_messenger_passes_the_infants_age_and_stores_only_categories(world: World, caplog) -> None:
    world.ada.date_of_birth = date(2027, 4, 20)  # seven weeks old on the frozen day
    world.ada.compute_age_boundaries()
    world.ada.save(update_fields=["date_of_birth", "adolescent_from", "adult_from"])
    caplog.set_level(logging.DEBUG)
    with time_machine.travel(WEDNESDAY_10, tick=False):
        body = data.start_thread(world, body="Canaryfeather feels very warm, 38.3").json()
    assert body["priority"] == "urgent"
    family = Message.objects.get(thread_id=body["id"], kind="family")
    assert family.triage_categories == ["infant_fever"]
    reasons = set(AuditEvent.objects.values_list("reason", flat=True))
    assert "triage_red_flag" in reasons and not any("infant" in r or "38.3" in r for r in reasons)
    assert "38.3" not in caplog.text and "warm" not in caplog.text


def test_messenger_uses_the_childs_diabetes_and_the_poison_reply(world: World) -> None:
    with time_machine.travel(WEDNESDAY_10, tick=False):
        vomiting = data.start_thread(world, body="she threw up twice this morning").json()
        battery = data.start_thread(world, body="she swallowed one of those little round batteries").json()
        routine = data.start_thread(world, body="attaching her blood sugar log for the week").json()
    assert vomiting["priority"] == "urgent" and routine["priority"] == "routine"
    assert Message.objects.get(thread_id=vomiting["id"], kind="family").triage_categories == ["diabetic"]
    assert Message.objects.get(thread_id=routine["id"], kind="family").triage_categories is None
    reply = Message.objects.get(thread_id=battery["id"], kind="automatic").body
    assert "Poison Control at 1-800-222-1222" in reply and "call 911" in reply


def test_an_older_child_with_a_fever_is_not_flagged(world: World) -> None:
    with time_machine.travel(WEDNESDAY_10 + timedelta(minutes=1), tick=False):
        body = data.start_thread(world, body="she has a fever of 38.5 since lunch").json()
    assert body["priority"] == "routine"
