"""Fixed-window rate limits kept in the default cache (Redis in production, so every process
shares them). allauth rate-limits its own flows; this covers the portal's (invitation codes, the
admin login)."""

from __future__ import annotations

import time

from django.core.cache import cache

from portal.errors import RateLimited

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """``"10/m"`` → (10, 60); ``"5/300s"`` → (5, 300)."""
    amount, _, period = rate.partition("/")
    digits = period[:-1] or "1"
    return int(amount), int(digits) * _UNITS[period[-1]]


def hit(scope: str, key: str, rate: str) -> bool:
    """Count one attempt; False when the limit for this window is already used up."""
    limit, window = parse_rate(rate)
    bucket = int(time.time() // window)
    cache_key = f"rl:{scope}:{key}:{bucket}"
    cache.add(cache_key, 0, timeout=window + 5)
    try:
        count = cache.incr(cache_key)
    except ValueError:  # expired between add and incr
        cache.set(cache_key, 1, timeout=window + 5)
        count = 1
    return count <= limit


def enforce(scope: str, keys: list[str], rate: str) -> None:
    """Count an attempt under every key (user, client address...) and refuse if any is over."""
    results = [hit(scope, key, rate) for key in keys if key]
    if not all(results):
        raise RateLimited()
