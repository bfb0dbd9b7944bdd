"""Settings for the family care portal, read from the environment.

Two shapes share this module:

* the embedded default (``PORTAL_ENV`` unset or ``development``): SQLite under ``var/``, the
  in-memory channel layer, a local-memory cache, a generated local secret key and console email;
* production (``PORTAL_ENV=production``): every secret must come from the environment (or a
  ``*_FILE`` beside it), HTTPS-only cookies and HSTS are on, and ``DATABASE_URL``/``REDIS_URL`` point
  at PostgreSQL and Redis.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("PORTAL_VAR_DIR", BASE_DIR / "var"))


def env(name: str, default: str | None = None) -> str | None:
    """Read ``NAME`` from the environment, or the contents of the file named by ``NAME_FILE``."""
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        return Path(file_name).read_text(encoding="utf-8").strip()
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = env(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = env(name)
    return int(value) if value else default


def env_list(name: str, default: list[str]) -> list[str]:
    value = env(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def _local_secret(path: Path) -> str:
    """A secret generated once for the embedded default and kept in a 0600 file under ``var/``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secrets.token_urlsafe(64))
    return path.read_text(encoding="utf-8").strip()


PORTAL_ENV = (env("PORTAL_ENV", "development") or "development").lower()
PRODUCTION = PORTAL_ENV == "production"

DEBUG = env_bool("DEBUG", False)

SECRET_KEY = env("SECRET_KEY") or ""
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured("SECRET_KEY (or SECRET_KEY_FILE) must be set when PORTAL_ENV=production.")
    SECRET_KEY = _local_secret(VAR_DIR / "secret_key")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "allauth",
    "allauth.account",
    "allauth.headless",
    "allauth.mfa",
    "allauth.usersessions",
    "ninja",
    "portal",
    "portal.metrics",
    "care",
    "django_tasks_db",
    "messaging",
    "messaging.groups",
    "interop",
    "web",  # the family web app at /
    "csp",
    "corsheaders",
]

MIDDLEWARE = [
    "portal.middleware.NoStoreMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # CORS before anything that may answer (input limits, health), so those answers carry it too.
    "corsheaders.middleware.CorsMiddleware",
    "portal.middleware.InputLimitsMiddleware",  # input limits and the API's error shape (see below)
    "portal.middleware.HealthMiddleware",  # /api/v1/health without sessions or authentication
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The page language from the browser; the web app's signed-in pages use the account's preference.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "portal.middleware.IdleTimeoutMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "allauth.usersessions.middleware.UserSessionsMiddleware",
    "csp.middleware.CSPMiddleware",  # CONTENT_SECURITY_POLICY below
]

ROOT_URLCONF = "portal.urls"
ASGI_APPLICATION = "portal.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'portal.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
    )
}
# --- Database connections: psycopg's pool, one per process (PostgreSQL) ----------------------------
# Each process (daphne or the task worker) keeps between MIN and MAX connections open; a request that
# cannot get one within TIMEOUT seconds is answered 503 "overloaded" with Retry-After (portal/overload.py).
# Size MAX so that processes times MAX stays under PostgreSQL's max_connections. Pooled connections stay
# open between requests and between the worker's tasks (persistent), so CONN_MAX_AGE must stay 0.
# PORTAL_DB_POOL=0 turns the pool off (e.g. behind PgBouncer); DATABASE_CONN_MAX_AGE then applies.
PORTAL_DB_POOL = env_bool("PORTAL_DB_POOL", True)
PORTAL_DB_POOL_MIN_SIZE = env_int("PORTAL_DB_POOL_MIN_SIZE", 2)
PORTAL_DB_POOL_MAX_SIZE = env_int("PORTAL_DB_POOL_MAX_SIZE", 20)
PORTAL_DB_POOL_TIMEOUT = float(env("PORTAL_DB_POOL_TIMEOUT", "5") or 5)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and PORTAL_DB_POOL:
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        **DATABASES["default"].get("OPTIONS", {}),
        "pool": {
            "min_size": PORTAL_DB_POOL_MIN_SIZE,
            "max_size": PORTAL_DB_POOL_MAX_SIZE,
            "timeout": PORTAL_DB_POOL_TIMEOUT,
            # Connections idle this long are closed (down to min_size); none lives longer than max_lifetime.
            "max_idle": 300,
            "max_lifetime": 3600,
        },
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several requests write at once under daphne; wait for the lock instead of failing.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    # Urgent alerts: the task worker and daphne share the file. WAL lets readers go on while one
    # writes, and the busy timeout above makes a writer wait for the lock instead of failing.
    DATABASES["default"]["OPTIONS"]["init_command"] = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "portal.User"

REDIS_URL = env("REDIS_URL") or ""
# --- Resilience: Redis is a cache and a channel layer, never the source of truth -----------------
# When Redis fails, sessions resolve from the database, rate limits count per process, sockets stay
# open and catch up from the database (portal/cache.py, portal/channel_layer.py). A dead Redis is
# noticed within PORTAL_REDIS_TIMEOUT seconds and then skipped for PORTAL_CACHE_RETRY_SECONDS.
PORTAL_REDIS_TIMEOUT = float(env("PORTAL_REDIS_TIMEOUT", "0.5") or 0.5)
PORTAL_CACHE_RETRY_SECONDS = float(env("PORTAL_CACHE_RETRY_SECONDS", "5") or 5)
CACHES: dict[str, dict[str, Any]]
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "portal.channel_layer.ResilientRedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_connect_timeout": PORTAL_REDIS_TIMEOUT}],
                "prefix": env("CHANNEL_PREFIX", "portal") or "portal",
            },
        }
    }
    _redis_cache_options = {
        "socket_connect_timeout": PORTAL_REDIS_TIMEOUT,
        "socket_timeout": PORTAL_REDIS_TIMEOUT,
        "RETRY_SECONDS": PORTAL_CACHE_RETRY_SECONDS,
    }
    CACHES = {
        "default": {
            "BACKEND": "portal.cache.ResilientRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env("CACHE_PREFIX", "portal") or "portal",
            "OPTIONS": {**_redis_cache_options, "FALLBACK": "local"},
        },
        "sessions": {
            "BACKEND": "portal.cache.ResilientRedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env("CACHE_PREFIX", "portal") or "portal",
            "OPTIONS": {**_redis_cache_options, "FALLBACK": "none"},
        },
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
        "sessions": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "sessions"},
    }

AUTHENTICATION_BACKENDS = [
    "allauth.account.auth_backends.AuthenticationBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("es", "Español"), ("fr", "Français"), ("de", "Deutsch")]
TIME_ZONE = env("TIME_ZONE", "UTC") or "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"

# --- Sessions, cookies and transport security -------------------------------------------------
# Sessions (browser cookies and app tokens alike) are read from the cache and written through to the
# database: every API call looks its session up, and the cache is Redis when REDIS_URL is set.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
# Its own alias: while Redis is down session reads miss and go to the database (never to a
# per-process copy, which could keep a session alive in one process after it ended in another).
SESSION_CACHE_ALIAS = "sessions"
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 12 * 3600)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", PRODUCTION)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", PRODUCTION)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", PRODUCTION)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000 if PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", PRODUCTION)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", PRODUCTION)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    # Only behind a proxy that always sets (and strips client-sent) X-Forwarded-Proto.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Idle timeouts (seconds) for browser sessions and app tokens; clinicians and administrators
# hold PHI of many children and time out sooner.
PORTAL_IDLE_TIMEOUT = env_int("PORTAL_IDLE_TIMEOUT", 8 * 3600)
PORTAL_STAFF_IDLE_TIMEOUT = env_int("PORTAL_STAFF_IDLE_TIMEOUT", 30 * 60)

# --- Email --------------------------------------------------------------------------------------
EMAIL_BACKEND = env("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "care-portal@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- django-allauth (headless only: the apps and the browser front end render every page) -----
HEADLESS_ONLY = True
HEADLESS_CLIENTS = ("app", "browser")
PORTAL_FRONTEND_URL = (env("PORTAL_FRONTEND_URL", "http://127.0.0.1:8000") or "").rstrip("/")
HEADLESS_FRONTEND_URLS = {
    "account_confirm_email": f"{PORTAL_FRONTEND_URL}/account/verify-email/{{key}}",
    "account_reset_password": f"{PORTAL_FRONTEND_URL}/account/password/reset",
    "account_reset_password_from_key": f"{PORTAL_FRONTEND_URL}/account/password/reset/key/{{key}}",
    "account_signup": f"{PORTAL_FRONTEND_URL}/account/signup",
}
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*"]
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_EMAIL_VERIFICATION_BY_CODE_ENABLED = True
ACCOUNT_LOGIN_BY_CODE_ENABLED = True
ACCOUNT_PASSWORD_RESET_BY_CODE_ENABLED = True
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_PREVENT_ENUMERATION = True
ACCOUNT_ADAPTER = "portal.adapters.PortalAccountAdapter"
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Care portal] "
# Rate limits live in the default cache, so with REDIS_URL every daphne process shares them.
ACCOUNT_RATE_LIMITS = {
    "login": "30/m/ip",
    "login_failed": "10/m/ip,5/300s/key",
    "reset_password": "20/m/ip,5/m/key",
    "reset_password_from_key": "20/m/ip",
    "request_login_code": "20/m/ip,3/m/key",
    "signup": "20/m/ip",
    "confirm_email": "1/10s/key",
    "change_password": "5/m/user",
    "reauthenticate": "10/m/user",
    "manage_email": "10/m/user",
}
MFA_ADAPTER = "portal.mfa.PortalMFAAdapter"
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = env("MFA_TOTP_ISSUER", "Family care portal") or "Family care portal"
USERSESSIONS_TRACK_ACTIVITY = True

# --- Portal rules --------------------------------------------------------------------------------
# Adolescent confidentiality (MyChart practice): from this birthday a guardian's scope becomes
# limited unless staff record an exception; from the adult birthday the link expires unless it is
# a court-appointed guardianship.
PORTAL_ADOLESCENT_AGE = env_int("PORTAL_ADOLESCENT_AGE", 12)
PORTAL_ADULT_AGE = env_int("PORTAL_ADULT_AGE", 18)
PORTAL_INVITATION_TTL_HOURS = env_int("PORTAL_INVITATION_TTL_HOURS", 72)
# Redemption attempts per user and per client address (a brute-force guard on invitation codes).
PORTAL_INVITATION_REDEEM_RATE = env("PORTAL_INVITATION_REDEEM_RATE", "10/m") or "10/m"
PORTAL_INVITATION_CREATE_RATE = env("PORTAL_INVITATION_CREATE_RATE", "30/h") or "30/h"
PORTAL_ADMIN_LOGIN_RATE = env("PORTAL_ADMIN_LOGIN_RATE", "10/m") or "10/m"
# Phone numbers typed without a country code are read as numbers of this region (ISO 3166 alpha-2).
PORTAL_PHONE_DEFAULT_REGION = env("PORTAL_PHONE_DEFAULT_REGION", "US") or "US"
# Verifying an account's phone: a 6-digit code texted to it, good for this long and this many wrong
# tries; codes sent per account and per number, confirmations per account and client address.
PORTAL_PHONE_CODE_TTL_MINUTES = env_int("PORTAL_PHONE_CODE_TTL_MINUTES", 10)
PORTAL_PHONE_CODE_MAX_ATTEMPTS = env_int("PORTAL_PHONE_CODE_MAX_ATTEMPTS", 5)
PORTAL_PHONE_CODE_SEND_RATE = env("PORTAL_PHONE_CODE_SEND_RATE", "5/h") or "5/h"
PORTAL_PHONE_CODE_CONFIRM_RATE = env("PORTAL_PHONE_CODE_CONFIRM_RATE", "10/m") or "10/m"

# Keys for PHI at rest: "kid:base64key,kid2:base64key" (first encrypts, all decrypt), or a file.
PORTAL_ENCRYPTION_KEYS = env("PORTAL_ENCRYPTION_KEYS") or ""
PORTAL_BLIND_INDEX_KEY = env("PORTAL_BLIND_INDEX_KEY") or ""
PORTAL_KEY_FILE = Path(env("PORTAL_KEY_FILE") or VAR_DIR / "encryption_keys.json")
PORTAL_ALLOW_LOCAL_KEY_FILE = env_bool("PORTAL_ALLOW_LOCAL_KEY_FILE", not PRODUCTION)

# The Ed25519 key that signs the audit ledger's checkpoints: base64 of its 32-byte private seed, or
# the key file (PORTAL_AUDIT_KEY_FILE), which the embedded default creates with mode 0600.
# PORTAL_AUDIT_TRUSTED_KEYS: base64 public keys of retired signing keys whose checkpoints still verify.
PORTAL_AUDIT_SIGNING_KEY = env("PORTAL_AUDIT_SIGNING_KEY") or ""
PORTAL_AUDIT_KEY_FILE = Path(env("PORTAL_AUDIT_KEY_FILE") or VAR_DIR / "audit_signing_key.json")
PORTAL_AUDIT_TRUSTED_KEYS = env_list("PORTAL_AUDIT_TRUSTED_KEYS", [])
# Web push (VAPID, RFC 8292): the application server's P-256 key pair, base64url (the private key as
# its raw 32 bytes or PEM), and the contact the push services may write to. Unset: in the embedded
# default a pair is generated into PORTAL_VAPID_KEY_FILE (0600); in production web push is off.
PORTAL_VAPID_PRIVATE_KEY = env("PORTAL_VAPID_PRIVATE_KEY") or ""
PORTAL_VAPID_PUBLIC_KEY = env("PORTAL_VAPID_PUBLIC_KEY") or ""
PORTAL_VAPID_SUBJECT = env("PORTAL_VAPID_SUBJECT") or "mailto:privacy@portal.invalid"
PORTAL_VAPID_KEY_FILE = Path(env("PORTAL_VAPID_KEY_FILE") or VAR_DIR / "vapid_keys.json")
# Devices registered per account (rate) and at most this many live at once.
PORTAL_PUSH_SUBSCRIBE_RATE = env("PORTAL_PUSH_SUBSCRIBE_RATE", "10/h") or "10/h"
PORTAL_PUSH_MAX_DEVICES = env_int("PORTAL_PUSH_MAX_DEVICES", 10)
# How often the worker seals new audit rows into the ledger (seconds).
PORTAL_AUDIT_SEAL_SECONDS = float(env("PORTAL_AUDIT_SEAL_SECONDS") or 0.5)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {
        # Request bodies never reach the logs; Django's request logger prints only path and status.
        "django.request": {"level": "WARNING"},
    },
}

HEADLESS_SERVE_SPECIFICATION = True

# --- CORS for apps served from other origins (django-cors-headers) --------------------------------
# Only the JSON API, only the listed origins (none by default: same-origin only). Credentials are
# never allowed: a cross-origin app sends its allauth token in X-Session-Token, so a page on another
# origin can never use a browser's session cookie (nor need, or get round, the CSRF check).
CORS_ALLOWED_ORIGINS = env_list("PORTAL_CORS_ORIGINS", [])
CORS_URLS_REGEX = r"^/api/"
CORS_ALLOW_CREDENTIALS = False
CORS_ALLOW_METHODS = ("DELETE", "GET", "OPTIONS", "PATCH", "POST")
CORS_ALLOW_HEADERS = ("accept", "content-type", "if-none-match", "idempotency-key", "x-session-token")
CORS_EXPOSE_HEADERS = ("ETag", "Retry-After")
CORS_PREFLIGHT_MAX_AGE = 600
PORTAL_WS_ALLOWED_ORIGINS = env_list("PORTAL_WS_ALLOWED_ORIGINS", [])
PORTAL_WS_HEARTBEAT_SECONDS = float(env("PORTAL_WS_HEARTBEAT_SECONDS", "5") or 5)
PORTAL_WS_CLIENT_HEARTBEAT_SECONDS = float(env("PORTAL_WS_CLIENT_HEARTBEAT_SECONDS", "30") or 0)
PORTAL_OPEN_SIGNUP = env_bool("PORTAL_OPEN_SIGNUP", True)

# --- Messaging (the messaging app; see messaging/conf.py for every default) ----------------------
# care.today.today() asks the messenger for unread counts per child (one query).
PORTAL_UNREAD_COUNTER = "messaging.selectors.unread_counts"
# Background tasks (notifications, escalation) run on django-tasks' database backend: it works on
# SQLite and PostgreSQL alike; run `python manage.py db_worker` beside daphne.
TASKS = {
    "default": {
        "BACKEND": env("PORTAL_TASK_BACKEND", "django_tasks_db.DatabaseBackend") or "django_tasks_db.DatabaseBackend"
    }
}
PORTAL_EMERGENCY_NUMBER = env("PORTAL_EMERGENCY_NUMBER", "911") or "911"
PORTAL_SMS_BACKEND = env("PORTAL_SMS_BACKEND", "messaging.sms.ConsoleSmsBackend") or "messaging.sms.ConsoleSmsBackend"
PORTAL_SMS_HTTP_URL = env("PORTAL_SMS_HTTP_URL", "") or ""
PORTAL_SMS_HTTP_TOKEN = env("PORTAL_SMS_HTTP_TOKEN", "") or ""
PORTAL_MESSAGE_RATE = env("PORTAL_MESSAGE_RATE", "30/m") or "30/m"
# A family's FHIR export of a child's record (the whole record in one answer), per account.
PORTAL_EXPORT_RATE = env("PORTAL_EXPORT_RATE", "20/h") or "20/h"

# --- Messenger triage replies (messaging/triage): numbers each red-flag category's reply gives ------
# Poison Control for swallowed medicines, chemicals, batteries; the crisis line for self-harm (US
# defaults). Per-category advice texts can be replaced with PORTAL_TRIAGE_REPLIES (see messaging/conf.py).
PORTAL_POISON_CONTROL_NUMBER = env("PORTAL_POISON_CONTROL_NUMBER", "1-800-222-1222") or "1-800-222-1222"
PORTAL_CRISIS_LINE_NUMBER = env("PORTAL_CRISIS_LINE_NUMBER", "988") or "988"
# --- Hospital hours, urgent alerts and the worker's health (care.scheduling, messaging.alerts) ----
# Business hours, holidays and reply-by times are counted in the hospital's time zone (required in
# production; the demo hospital is in Dallas). PORTAL_BUSINESS_HOURS (a dict, see care.scheduling)
# and a department's own DepartmentHours refine it.
PORTAL_HOSPITAL_TIME_ZONE = env("PORTAL_HOSPITAL_TIME_ZONE") or ("" if PRODUCTION else "America/Chicago")
if not PORTAL_HOSPITAL_TIME_ZONE:
    raise ImproperlyConfigured("PORTAL_HOSPITAL_TIME_ZONE must be set when PORTAL_ENV=production.")
try:
    ZoneInfo(PORTAL_HOSPITAL_TIME_ZONE)
except (ValueError, ZoneInfoNotFoundError) as exc:
    raise ImproperlyConfigured(f"PORTAL_HOSPITAL_TIME_ZONE: unknown time zone {PORTAL_HOSPITAL_TIME_ZONE!r}.") from exc
# Minutes an urgent alert waits for an acknowledgement before paging the next on-call clinician, and
# again before paging the department lead.
PORTAL_ALERT_ACK_MINUTES = env_int("PORTAL_ALERT_ACK_MINUTES", 10)
# The worker writes a heartbeat this often; /health says "degraded" when the last one is older than
# PORTAL_WORKER_STALE_SECONDS or the oldest ready task has waited longer than PORTAL_QUEUE_LAG_SECONDS.
PORTAL_WORKER_HEARTBEAT_SECONDS = float(env("PORTAL_WORKER_HEARTBEAT_SECONDS", "5") or 5)
PORTAL_WORKER_STALE_SECONDS = float(env("PORTAL_WORKER_STALE_SECONDS", "30") or 30)
PORTAL_QUEUE_LAG_SECONDS = float(env("PORTAL_QUEUE_LAG_SECONDS", "120") or 120)
# How often the worker sweeps for due escalations, overdue threads and notifications to retry.
PORTAL_WORKER_SWEEP_SECONDS = float(env("PORTAL_WORKER_SWEEP_SECONDS", "15") or 15)

# --- Call-deflection metrics (portal.metrics) ------------------------------------------------------
# Webhook sources and their HMAC secrets: "source:secret,source2:secret2" (or a *_FILE).
PORTAL_METRICS_WEBHOOK_SECRETS = env("PORTAL_METRICS_WEBHOOK_SECRETS") or ""
PORTAL_METRICS_WEBHOOK_WINDOW_SECONDS = env_int("PORTAL_METRICS_WEBHOOK_WINDOW_SECONDS", 300)
PORTAL_METRICS_MAX_UPLOAD_BYTES = env_int("PORTAL_METRICS_MAX_UPLOAD_BYTES", 50 * 1024 * 1024)
PORTAL_METRICS_MAX_ROWS = env_int("PORTAL_METRICS_MAX_ROWS", 500_000)
PORTAL_METRICS_WEBHOOK_MAX_CALLS = env_int("PORTAL_METRICS_WEBHOOK_MAX_CALLS", 1000)
# Cells (export rows) about fewer patients than this are suppressed.
PORTAL_METRICS_MIN_CELL = env_int("PORTAL_METRICS_MIN_CELL", 11)
# Country calling code for national numbers without one, when caller phones are normalized to E.164.
PORTAL_METRICS_DEFAULT_COUNTRY_CODE = env("PORTAL_METRICS_DEFAULT_COUNTRY_CODE", "1") or "1"
# Default baseline period ("YYYY-MM-DD..YYYY-MM-DD", inclusive) and go-live date, until an
# administrator sets them in the admin (MetricsConfig).
PORTAL_METRICS_BASELINE = env("PORTAL_METRICS_BASELINE") or ""
PORTAL_METRICS_GO_LIVE = env("PORTAL_METRICS_GO_LIVE") or ""
# Call-deflection attribution: the largest tolerated log-scale bias from differing match rates
# between enrolled and comparison groups before a comparison is flagged and its effect withheld.
PORTAL_METRICS_MATCH_MARGIN = float(env("PORTAL_METRICS_MATCH_MARGIN") or "0.05")

# Peer groups: posting limits per member, and the reading rate past which an account is flagged to staff.
PORTAL_GROUP_POST_RATE = env("PORTAL_GROUP_POST_RATE", "5/m") or "5/m"
PORTAL_GROUP_POST_HOURLY_RATE = env("PORTAL_GROUP_POST_HOURLY_RATE", "30/h") or "30/h"
PORTAL_GROUP_READ_ALERT = env("PORTAL_GROUP_READ_ALERT", "500/10m") or "500/10m"

# --- Limited scope reveals no diagnosis (care, messaging, calendar feed) ----------------------------
# Where a limited-scope guardian (and every calendar feed) is told an appointment takes place, instead of
# the clinic's own name ("Endocrine clinic, 3rd floor" names the condition): the hospital's address.
PORTAL_NEUTRAL_LOCATION = (
    env("PORTAL_NEUTRAL_LOCATION", "Children's Hospital, main entrance (ask at reception)")
    or "Children's Hospital, main entrance (ask at reception)"
)
# The label a limited-scope guardian sees instead of the visit type ("Epilepsy follow-up").
PORTAL_NEUTRAL_VISIT_LABEL = env("PORTAL_NEUTRAL_VISIT_LABEL", "Appointment") or "Appointment"


def _result_hold(items: list[str]) -> dict[str, float]:
    """``category:hours,...`` (e.g. ``genetic:72``): results and visit summaries of these categories
    wait that long before families see them, unless a care-team clinician releases them sooner."""
    hold: dict[str, float] = {}
    for item in items:
        category, _, hours = item.partition(":")
        try:
            hold[category.strip().lower()] = float(hours)
        except ValueError:
            raise ImproperlyConfigured(f"PORTAL_RESULT_HOLD: {item!r} is not category:hours") from None
        if not category.strip() or hold[category.strip().lower()] < 0:
            raise ImproperlyConfigured(f"PORTAL_RESULT_HOLD: {item!r} is not category:hours")
    return hold


PORTAL_RESULT_HOLD = _result_hold(env_list("PORTAL_RESULT_HOLD", []))
# --- Response caching, refusal coalescing, audit roles (access hardening) ------------------------
# Responses under these path prefixes may carry PHI or credentials: never stored by any cache.
PORTAL_NO_STORE_PREFIXES = ("/api/", "/_allauth/", "/fhir/")
# Unauthenticated refusals: at most this many per address per window are answered normally (then
# 429), and each (address, reason) writes one audit row per window, carrying the count.
PORTAL_REFUSAL_WINDOW_SECONDS = env_int("PORTAL_REFUSAL_WINDOW_SECONDS", 300)
PORTAL_REFUSAL_RATE = env("PORTAL_REFUSAL_RATE", "30/m") or "30/m"

# -- Content-Security-Policy (django-csp): scripts, styles, images, forms and connections from this
# origin only; no inline script or style, no plugins, no framing. Pages that inline their own script or
# style by design (the API's Swagger page, allauth's OpenAPI page, the metrics dashboard's charts) are
# left out of it; the family web app and the API are under it.
CONTENT_SECURITY_POLICY = {
    "EXCLUDE_URL_PREFIXES": ["/api/v1/docs", "/_allauth/openapi.html", "/metrics/", "/admin/"],
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        # The installable app: its service worker (/sw.js) and manifest come from this origin only.
        "worker-src": ["'self'"],
        "manifest-src": ["'self'"],
        "form-action": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
    },
}

# -- Input limits (oversized requests are refused before they are read; see portal/limits.py) ------
# JSON and form bodies: Django's DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MiB by default). A multipart upload
# may be as large as the largest file it can carry (an attachment, a calls file) plus its envelope.
PORTAL_MAX_UPLOAD_BODY_BYTES = env_int(
    "PORTAL_MAX_UPLOAD_BODY_BYTES",
    max(env_int("PORTAL_ATTACHMENT_MAX_BYTES", 10 * 1024 * 1024), PORTAL_METRICS_MAX_UPLOAD_BYTES) + 1024 * 1024,
)
PORTAL_MAX_URL_BYTES = env_int("PORTAL_MAX_URL_BYTES", 8 * 1024)  # path and query string
PORTAL_MAX_HEADER_BYTES = env_int("PORTAL_MAX_HEADER_BYTES", 16 * 1024)  # all header names and values

# -- The FHIR R4 API for the hospital's integration engine (interop/smart.py, interop/api.py) ------
# Access tokens issued to backend clients live this long (seconds); token requests per client
# address and per client id; the largest transaction/batch Bundle accepted (entries and bytes, the
# latter below DATA_UPLOAD_MAX_MEMORY_SIZE); the most changes one $changes page lists.
# The API's public base URL (``https://portal.example.org/fhir/R4``): the audience client assertions
# must name is its ``/token``. Unset, it is taken from the request (host and scheme as Django sees them).
PORTAL_FHIR_BASE_URL = env("PORTAL_FHIR_BASE_URL") or ""
PORTAL_FHIR_TOKEN_SECONDS = env_int("PORTAL_FHIR_TOKEN_SECONDS", 300)
PORTAL_FHIR_TOKEN_RATE = env("PORTAL_FHIR_TOKEN_RATE", "30/m") or "30/m"
PORTAL_FHIR_BUNDLE_MAX_ENTRIES = env_int("PORTAL_FHIR_BUNDLE_MAX_ENTRIES", 500)
PORTAL_FHIR_BUNDLE_MAX_BYTES = env_int("PORTAL_FHIR_BUNDLE_MAX_BYTES", 2 * 1024 * 1024)
PORTAL_FHIR_CHANGES_MAX_COUNT = env_int("PORTAL_FHIR_CHANGES_MAX_COUNT", 1000)
# Secure messages as FHIR Communication (read, search, $changes, the family's export): off unless the
# hospital turns it on, since message bodies are the family's own words.
PORTAL_FHIR_COMMUNICATION = env_bool("PORTAL_FHIR_COMMUNICATION", False)
