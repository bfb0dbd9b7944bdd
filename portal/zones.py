"""Time zones read from stored rows and settings.

Zone names are validated on the way in (model validators, the ``portal.E002`` settings check), but a
row written before that, by a migration or by hand can still hold a name the installed tz database does
not know. ``zone()`` then answers UTC for that one item and logs the zone name once per process (a zone
name is not PHI), so one bad row degrades itself rather than turning a whole list into a 500.
"""

from __future__ import annotations

import logging
from datetime import UTC
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def is_known(name: object) -> bool:
    return isinstance(name, str) and name in known_zones()


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """The zone called ``name``, or UTC when the name is unknown (logged once per name)."""
    if is_known(name):
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    logger.warning("unknown stored time zone %r: using UTC", name[:64] if isinstance(name, str) else name)
    return ZoneInfo("UTC") if is_known("UTC") else UTC  # type: ignore[return-value]
