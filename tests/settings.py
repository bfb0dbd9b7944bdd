"""The small test override of ``portal.settings``."""

import os
import uuid

from portal.settings import *  # noqa: F403
from portal.settings import CACHES, REDIS_URL

# Fixed keys for tests only (they protect no real data).
PORTAL_ENCRYPTION_KEYS = "test1:" + "A" * 43 + "="
PORTAL_BLIND_INDEX_KEY = "B" * 43 + "="
PORTAL_ALLOW_LOCAL_KEY_FILE = False

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
PORTAL_WS_HEARTBEAT_SECONDS = 0.2
# Background tasks run at once, inside the test (messaging notifications, escalation).
TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}
PORTAL_SMS_BACKEND = "messaging.sms.LocmemSmsBackend"

if REDIS_URL:
    # A prefix per run, so rate-limit counters never leak between runs sharing one Redis.
    CACHES["default"]["KEY_PREFIX"] = f"test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    CACHES["sessions"]["KEY_PREFIX"] = CACHES["default"]["KEY_PREFIX"]

# pytest's own handlers (and its --log-file, which ``make test`` checks for planted PHI) collect every
# record; Django's dictConfig would replace them.
LOGGING_CONFIG = None
