"""Automatic replies the messenger writes into a thread, in the reader's language (Django's i18n
catalogues under ``messaging/locale``). They name no child and quote nothing the family wrote.

The emergency reply belongs to triage (``triage.emergency_reply(language, number)``); the after-hours
reply is here.
"""

from __future__ import annotations

from datetime import datetime

from django.utils import translation
from django.utils.translation import gettext

from portal import zones


def local_when(moment: datetime, time_zone: str) -> str:
    """An unambiguous local time in any language: ``2027-06-10 17:00 EDT``."""
    return moment.astimezone(zones.zone(time_zone)).strftime("%Y-%m-%d %H:%M %Z")


def after_hours(*, language: str, number: str, when: datetime, time_zone: str) -> str:
    with translation.override(language):
        return gettext(
            "Automatic reply: the care team is outside business hours. You can expect a reply by %(when)s. "
            "If this is an emergency, call %(number)s."
        ) % {"when": local_when(when, time_zone), "number": number}
