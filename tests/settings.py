"""The small test override of ``portal.settings``."""

import os
import uuid

from portal.settings import *  # noqa: F403
from portal.settings import CACHES, REDIS_URL

# Fixed keys for tests only (they protect no real data).
PORTAL_ENCRYPTION_KEYS = "test1:" + "A" * 43 + "="
PORTAL_BLIND_INDEX_KEY = "B" * 43 + "="
PORTAL_ALLOW_LOCAL_KEY_FILE = False
# The audit ledger's checkpoint signing key (an Ed25519 seed), fixed for tests.
PORTAL_AUDIT_SIGNING_KEY = "C" * 43 + "="

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
PORTAL_WS_HEARTBEAT_SECONDS = 0.2
PORTAL_WS_CLIENT_HEARTBEAT_SECONDS = 0  # a heartbeat frame on every beat: tests wait for them
# Background tasks run at once, inside the test (messaging notifications, escalation).
# A worker started by a test (tests/messaging/test_worker.py) uses the database queue instead.
TASKS = {
    "default": {
        "BACKEND": os.environ.get("PORTAL_TEST_TASK_BACKEND") or "django_tasks.backends.immediate.ImmediateBackend"
    }
}
PORTAL_SMS_BACKEND = "messaging.sms.LocmemSmsBackend"
# Tests change a dependency's state between two /health calls: probe on every call here
# (tests/test_health_probes.py sets the window back to check it).
PORTAL_HEALTH_PROBE_SECONDS = 0

if REDIS_URL:
    # A prefix per run, so rate-limit counters never leak between runs sharing one Redis.
    # Processes a test starts together (two daphnes sharing presence) are given one prefix.
    CACHES["default"]["KEY_PREFIX"] = (
        os.environ.get("PORTAL_TEST_CACHE_PREFIX") or f"test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    )
    CACHES["sessions"]["KEY_PREFIX"] = CACHES["default"]["KEY_PREFIX"]

# pytest's own handlers (and its --log-file, which ``make test`` checks for planted PHI) collect every
# record; Django's dictConfig would replace them.
LOGGING_CONFIG = None
