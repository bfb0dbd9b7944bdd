"""System check ``portal.E001``: the configured keys must be able to read the encrypted data.

``manage.py check`` and ``migrate`` (and anything else that runs the system checks) fail before a
missing key file is replaced by a fresh key, or before the portal starts on the wrong keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.core.checks import CheckMessage, Error, Tags, register
from django.db import DEFAULT_DB_ALIAS

from portal.keys import check_keys


@register(Tags.database, Tags.security)
def encryption_keys_check(
    app_configs: Sequence[AppConfig] | None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    # Plain ``manage.py check`` passes no databases; it is still the command an operator runs to
    # see why the portal refuses to start, so the default database is checked then too.
    if databases is not None and DEFAULT_DB_ALIAS not in databases:
        return []
    # check_keys() returns nothing when the database is unreachable (or, before migrate, empty).
    return [
        Error(
            problem,
            hint="Configure the keys the data was encrypted with (PORTAL_ENCRYPTION_KEYS or the key file); "
            "retire a key only after `manage.py rotate_keys` has moved every value off it.",
            id="portal.E001",
        )
        for problem in check_keys()
    ]


@register(Tags.compatibility)
def time_zone_settings_check(app_configs: Sequence[AppConfig] | None, **kwargs: Any) -> list[CheckMessage]:
    """``portal.E002``: every time zone named in the settings exists in the installed tz database."""
    from django.conf import settings

    from portal import zones

    named = {
        "TIME_ZONE": getattr(settings, "TIME_ZONE", "UTC"),
        "PORTAL_HOSPITAL_TIME_ZONE": getattr(settings, "PORTAL_HOSPITAL_TIME_ZONE", "UTC"),
    }
    hours = getattr(settings, "PORTAL_BUSINESS_HOURS", None)
    if isinstance(hours, dict) and hours.get("time_zone"):
        named["PORTAL_BUSINESS_HOURS['time_zone']"] = hours["time_zone"]
    return [
        Error(
            f"{name} names an unknown time zone: {value!r}.",
            hint="Use an IANA zone name such as America/Chicago or UTC.",
            id="portal.E002",
        )
        for name, value in named.items()
        if not zones.is_known(value)
    ]
