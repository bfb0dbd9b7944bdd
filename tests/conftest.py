"""Personas shared by every test (after healthchecks' alice/bob/charlie and Zulip's examples).

A guardian and a co-guardian of Ada; a guardian of another family (Ben's); a revoked guardian of Ada;
Ada's care-team clinician; a clinician of another team (Ben's); an administrator; a stranger.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import TOTP, format_hotp_value, hotp_value
from django.conf import settings
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.test import Client

from portal import services
from portal.crypto import reset_keyring
from portal.models import CareTeamMembership, Child, Department, DepartmentMembership, GuardianLink, User

PASSWORD = "correct horse battery staple"
TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"

# Planted canary PHI: none of these may appear in an error, a log line, a dump or a denied response.
from tests.canaries import ADA_MRN as ADA_MRN  # noqa: E402
from tests.canaries import ADA_NAME as ADA_NAME  # noqa: E402
from tests.canaries import BEN_MRN as BEN_MRN  # noqa: E402
from tests.canaries import BEN_NAME as BEN_NAME  # noqa: E402

PERSONAS = (
    "guardian",
    "co_guardian",
    "other_guardian",
    "revoked_guardian",
    "clinician",
    "other_clinician",
    "admin",
    "stranger",
)


def totp_code(secret: str = TOTP_SECRET, offset: int = 0) -> str:
    return format_hotp_value(hotp_value(secret, int(time.time()) // 30 + offset))


def make_user(email: str, name: str, **extra: Any) -> User:
    user = User.objects.create_user(email, PASSWORD, display_name=name, **extra)
    EmailAddress.objects.create(user=user, email=email, verified=True, primary=True)
    return user


def enrol_mfa(user: User, secret: str = TOTP_SECRET) -> None:
    TOTP.activate(user, secret)
    RecoveryCodes.activate(user)


@dataclass
class World:
    ada: Child
    ben: Child
    department: Department
    other_department: Department
    users: dict[str, User] = field(default_factory=dict)
    links: dict[str, GuardianLink] = field(default_factory=dict)
    clients: dict[str, Client] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        users = self.__dict__.get("users", {})
        if name in users:
            return users[name]
        raise AttributeError(name)

    def client(self, persona: str) -> Client:
        """An app client signed in as the persona (allauth session token in ``X-Session-Token``)."""
        if persona not in self.clients:
            self.clients[persona] = app_client(self.users[persona]) if persona in self.users else Client()
        return self.clients[persona]


def app_client(user: User) -> Client:
    browser = Client()
    browser.force_login(user)
    token = browser.session.session_key
    return Client(headers={"X-Session-Token": token})


def build_world() -> World:
    dept = Department.objects.create(code="endo", name="Endocrinology")
    other_dept = Department.objects.create(code="neuro", name="Neurology")
    users = {
        "guardian": make_user("guardian@example.org", "Gwen Guardian"),
        "co_guardian": make_user("coguardian@example.org", "Carl Coguardian"),
        "other_guardian": make_user("other@example.org", "Olga Otherfamily"),
        "revoked_guardian": make_user("revoked@example.org", "Rex Revoked"),
        "clinician": make_user("clinician@example.org", "Dr. Cleo Clinician"),
        "other_clinician": make_user("otherclin@example.org", "Dr. Oscar Otherteam"),
        "admin": make_user("admin@example.org", "Ann Administrator", is_staff=True),
        "stranger": make_user("stranger@example.org", "Sam Stranger"),
    }
    users["admin"].user_permissions.add(*Permission.objects.filter(codename__in=["view_metrics", "manage_portal"]))
    for persona in ("clinician", "other_clinician", "admin"):
        enrol_mfa(users[persona])
    DepartmentMembership.objects.create(department=dept, clinician=users["clinician"], role="doctor", is_lead=True)
    DepartmentMembership.objects.create(department=other_dept, clinician=users["other_clinician"], role="doctor")
    ada = services.child_create(
        actor=None,
        name=ADA_NAME,
        mrn=ADA_MRN,
        date_of_birth=date(2018, 5, 17),
        sex="female",
        time_zone="America/New_York",
        conditions=["46635009"],
    )
    ben = services.child_create(
        actor=None,
        name=BEN_NAME,
        mrn=BEN_MRN,
        date_of_birth=date(2016, 2, 3),
        sex="male",
        time_zone="Europe/Madrid",
        conditions=["84757009"],
    )
    CareTeamMembership.objects.create(child=ada, clinician=users["clinician"], department=dept, role="primary")
    CareTeamMembership.objects.create(
        child=ben, clinician=users["other_clinician"], department=other_dept, role="primary"
    )
    active = GuardianLink.Status.ACTIVE
    links = {
        "guardian": GuardianLink.objects.create(
            guardian=users["guardian"], child=ada, relationship="mother", status=active
        ),
        "co_guardian": GuardianLink.objects.create(
            guardian=users["co_guardian"], child=ada, relationship="father", status=active
        ),
        "other_guardian": GuardianLink.objects.create(
            guardian=users["other_guardian"], child=ben, relationship="mother", status=active
        ),
        "revoked_guardian": GuardianLink.objects.create(
            guardian=users["revoked_guardian"], child=ada, relationship="other", status=GuardianLink.Status.REVOKED
        ),
    }
    return World(ada=ada, ben=ben, department=dept, other_department=other_dept, users=users, links=links)


@pytest.fixture(autouse=True)
def _fresh_state() -> Any:
    cache.clear()
    reset_keyring()
    yield
    reset_keyring()


@pytest.fixture
def world(db: Any) -> World:
    return build_world()


@pytest.fixture
def needs_postgres() -> None:
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("needs PostgreSQL (runs in the PostgreSQL + Redis pass of .ci/run)")


@pytest.fixture
def needs_redis() -> None:
    if not settings.REDIS_URL:
        pytest.skip("needs Redis (runs in the PostgreSQL + Redis pass of .ci/run)")


# --- Audit hardening: the test database is emptied between transactional tests -----------------
# On PostgreSQL the audit table refuses TRUNCATE (portal/migrations/0005). Django empties the test
# database with one TRUNCATE; the test run's superuser does it in replica mode, where triggers do not
# fire (only a superuser may switch modes, which the portal's runtime role never is).
def _flush_in_replica_mode() -> None:
    try:
        from django.db.backends.postgresql.operations import DatabaseOperations
    except ImportError:  # pragma: no cover - psycopg not installed
        return
    original = DatabaseOperations.sql_flush

    def sql_flush(self: Any, style: Any, tables: Any, **kwargs: Any) -> list[str]:
        statements: list[str] = original(self, style, tables, **kwargs)
        return ["SET LOCAL session_replication_role = replica;", *statements] if statements else statements

    DatabaseOperations.sql_flush = sql_flush  # type: ignore[method-assign]


_flush_in_replica_mode()
