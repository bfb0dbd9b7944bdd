"""Automatic replies to a red-flag message, in English and Spanish (the after-hours reply lives in
messaging/replies.py).

The texts are marked for translation (``gettext_noop``) so a ``.po`` catalogue can translate them;
until a catalogue translates a text, the Spanish below is used. Each category may add its own
advice with its own number (poison control, the crisis line); the numbers and, per deployment, the
texts are settings (see ``messaging.conf.triage_numbers`` and ``triage_replies``).
"""

from __future__ import annotations

from collections.abc import Sequence

from django.utils import translation
from django.utils.translation import gettext, gettext_noop

from messaging.conf import triage_numbers, triage_replies

LANGUAGES = ("en", "es")

EMERGENCY = gettext_noop(
    "Automatic reply: if this is an emergency, call {emergency} now or go to the nearest emergency department. "
    "Messages are not a way to get emergency help. We have marked your message urgent and alerted the on-call "
    "clinician."
)
# Advice added for a category, after the emergency text (in the order of the categories).
ADVICE = {
    "poisoning": gettext_noop(
        "Swallowed medicine, a chemical, a button battery or a magnet: call Poison Control at {poison} now. "
        "A swallowed battery or magnet needs an emergency department at once. Do not make your child vomit."
    ),
    "self_harm": gettext_noop(
        "Thoughts of suicide or self-harm: call or text {crisis} (Suicide and Crisis Lifeline) now and stay "
        "with your child. Call {emergency} if they are in immediate danger."
    ),
    "anaphylaxis": gettext_noop(
        "Allergic reaction: if your child has an adrenaline auto-injector (EpiPen), use it now, then call {emergency}."
    ),
    "status_epilepticus": gettext_noop(
        "A seizure of 5 minutes or more, or one after another: give the rescue medicine as the seizure plan "
        "says and call {emergency}."
    ),
    "bleeding": gettext_noop("Bleeding: press firmly on the wound with a clean cloth and keep pressing."),
    "infant_fever": gettext_noop(
        "A fever (38 °C / 100.4 °F or more) in a baby under 3 months needs a doctor now: go to the nearest "
        "emergency department."
    ),
    "meningitis": gettext_noop(
        "A stiff neck with fever, or a rash that does not fade when pressed with a glass, needs an emergency "
        "department now."
    ),
    "diabetic": gettext_noop(
        "Follow your child's diabetes emergency plan: glucagon for a severe low; with ketones and vomiting, go "
        "to an emergency department."
    ),
    "asthma_rescue_failed": gettext_noop(
        "Keep giving the reliever inhaler as the asthma action plan says while you call {emergency}."
    ),
}

SPANISH = {
    EMERGENCY: (
        "Respuesta automática: si es una emergencia, llame ahora al {emergency} o vaya a la sala de urgencias "
        "más cercana. Los mensajes no sirven para pedir ayuda urgente. Hemos marcado su mensaje como urgente y "
        "avisado al médico de guardia."
    ),
    ADVICE["poisoning"]: (
        "Medicina, producto químico, pila de botón o imán tragados: llame ahora a Control de Envenenamientos al "
        "{poison}. Una pila o un imán tragados necesitan urgencias de inmediato. No le provoque el vómito."
    ),
    ADVICE["self_harm"]: (
        "Pensamientos de suicidio o de hacerse daño: llame o envíe un texto al {crisis} (Línea de Prevención del "
        "Suicidio y Crisis) ahora y quédese con su hijo o hija. Llame al {emergency} si corre peligro inmediato."
    ),
    ADVICE["anaphylaxis"]: (
        "Reacción alérgica: si tiene un autoinyector de adrenalina (EpiPen), úselo ahora y después llame al "
        "{emergency}."
    ),
    ADVICE["status_epilepticus"]: (
        "Convulsión de 5 minutos o más, o una tras otra: dé el medicamento de rescate como dice el plan de "
        "convulsiones y llame al {emergency}."
    ),
    ADVICE["bleeding"]: "Sangrado: presione fuerte la herida con un paño limpio y no deje de presionar.",
    ADVICE["infant_fever"]: (
        "La fiebre (38 °C / 100.4 °F o más) en un bebé de menos de 3 meses necesita un médico ahora: vaya a la "
        "sala de urgencias más cercana."
    ),
    ADVICE["meningitis"]: (
        "El cuello rígido con fiebre, o manchas que no desaparecen al presionarlas con un vaso, necesitan "
        "urgencias ahora."
    ),
    ADVICE["diabetic"]: (
        "Siga el plan de emergencia de diabetes de su hijo o hija: glucagón para una hipoglucemia grave; con "
        "cetonas y vómitos, vaya a urgencias."
    ),
    ADVICE["asthma_rescue_failed"]: (
        "Siga dando el inhalador de rescate como dice el plan de acción para el asma mientras llama al {emergency}."
    ),
}


def _language(language: str) -> str:
    base = (language or "en").split("-")[0].lower()
    return base if base in LANGUAGES else "en"


def _text(msgid: str, language: str) -> str:
    """``msgid`` in ``language``: the active catalogue's translation, else the built-in Spanish."""
    with translation.override(language):
        text = gettext(msgid)
    if text == msgid and language == "es":
        return SPANISH.get(msgid, msgid)
    return text


def emergency_reply(language: str, number: str | None = None, *, categories: Sequence[str] = ()) -> str:
    """The automatic reply to a red-flag message in ``language`` (``en``, ``es``; others: English):
    the emergency instructions, then each category's own advice and number. ``number`` overrides the
    deployment's emergency number."""
    language = _language(language)
    numbers = triage_numbers()
    if number:
        numbers["emergency"] = number
    custom = triage_replies()
    parts = [_text(EMERGENCY, language)]
    for category in categories:
        configured = custom.get(category, {})
        if language in configured:
            parts.append(configured[language])
        elif category in ADVICE:
            parts.append(_text(ADVICE[category], language))
    return " ".join(dict.fromkeys(part.format(**numbers) for part in parts))
