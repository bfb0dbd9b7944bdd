"""Outage bookkeeping for dependencies the portal can run without (Redis as cache and channel layer).

One ``Outage`` per dependency and process: the first failure is logged once (a warning naming the
error type, never a key or a value), calls skip the dependency for ``retry_seconds`` instead of
waiting on a dead socket every request, then one call probes it again; the first success after an
outage is logged once too.
"""

from __future__ import annotations

import logging
import threading
import time

logger = logging.getLogger("portal.resilience")


class Skipped(Exception):
    """Mixed into errors raised without trying the dependency (an outage is known): they are not
    failures, and must not put the next probe off."""


class Outage:
    def __init__(self, name: str, retry_seconds: float) -> None:
        self.name = name
        self.retry_seconds = retry_seconds
        self.down_since: float | None = None
        self.next_probe = 0.0
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def should_try(self) -> bool:
        """True when the dependency is up, or it is time to probe it again."""
        return self.down_since is None or time.monotonic() >= self.next_probe

    def failed(self, error: BaseException) -> None:
        if isinstance(error, Skipped):
            return
        now = time.monotonic()
        with self._lock:
            self.next_probe = now + self.retry_seconds
            if self.down_since is not None:
                return
            self.down_since = now
        logger.warning(
            "%s unavailable (%s); running without it and retrying every %.0f s",
            self.name,
            type(error).__name__,
            self.retry_seconds,
        )

    def succeeded(self) -> None:
        if self.down_since is None:
            return
        with self._lock:
            since, self.down_since = self.down_since, None
        if since is not None:
            logger.warning("%s available again after %.1f s", self.name, time.monotonic() - since)


_outages: dict[str, Outage] = {}
_outages_lock = threading.Lock()


def outage(name: str, retry_seconds: float, *, key: str | None = None) -> Outage:
    """The process-wide outage record for ``key`` (default: ``name``), shared by every thread and
    cache instance talking to the same dependency; ``name`` is what the log says."""
    with _outages_lock:
        found = _outages.get(key or name)
        if found is None:
            found = _outages[key or name] = Outage(name, retry_seconds)
        return found
