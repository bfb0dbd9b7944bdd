"""PostgreSQL: the audit trail and its ledger hold against the credentials the portal runs with. The
tables refuse TRUNCATE to everyone; the runtime role set up by ``audit_db_roles`` may only read and
append, and, not owning the tables, cannot disable or drop their triggers."""

from __future__ import annotations

import uuid
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from portal import audit, ledger
from portal.models import AuditEvent
from portal.vocabulary import Resource

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def _refused(sql: str, params: list[Any] | None = None) -> str:
    """Run ``sql`` in a savepoint and return the database's refusal (the test fails if it succeeds)."""
    with pytest.raises(DatabaseError) as raised, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
    return str(raised.value)


def test_truncate_is_refused_even_for_the_owner(needs_postgres: None) -> None:
    audit.record(actor=None, action=audit.Action.READ, entity_type=Resource.PATIENT, entity_id="e1")
    # The ledger's leaves refer to the rows, so a plain TRUNCATE stops there; with CASCADE the
    # triggers refuse it.
    assert "referenced in a foreign key" in _refused("TRUNCATE portal_auditevent")
    assert "append-only (TRUNCATE refused)" in _refused("TRUNCATE portal_auditevent CASCADE")
    assert AuditEvent.objects.count() == 1


def test_runtime_role_may_only_read_and_append(needs_postgres: None) -> None:
    run = uuid.uuid4().hex[:10]
    owner, runtime = f"portal_owner_{run}", f"portal_app_{run}"
    before = audit.record(actor=None, action=audit.Action.READ, entity_type=Resource.PATIENT, entity_id="before")
    out = StringIO()
    try:
        call_command("audit_db_roles", owner=owner, runtime=runtime, create=True, stdout=out)
        assert f"{runtime} may only read and append portal_auditevent" in out.getvalue()
        with connection.cursor() as cursor:
            cursor.execute(f"SET ROLE {runtime}")
        try:
            seq = before.seq
            assert "permission denied" in _refused("UPDATE portal_auditevent SET reason = 'x' WHERE seq = %s", [seq])
            assert "permission denied" in _refused("DELETE FROM portal_auditevent WHERE seq = %s", [seq])
            assert "permission denied" in _refused("TRUNCATE portal_auditevent")
            for trigger in ("portal_auditevent_append_only", "portal_auditevent_no_truncate"):
                assert "must be owner" in _refused(f"ALTER TABLE portal_auditevent DISABLE TRIGGER {trigger}")
                assert "must be owner" in _refused(f"DROP TRIGGER {trigger} ON portal_auditevent")
            assert "must be owner" in _refused("ALTER TABLE portal_auditevent DISABLE TRIGGER ALL")
            assert "must be owner" in _refused("DROP TABLE portal_auditevent")
            assert "must be owner" in _refused("DROP FUNCTION portal_audit_append_only()")
            assert "permission denied" in _refused("CREATE TABLE portal_sneaky (id int)")
            # The application still appends and seals, and reads its own tables.
            audit.record(actor=None, action=audit.Action.READ, entity_type=Resource.PATIENT, entity_id="after")
            assert ledger.seal() == 2
            # The ledger holds like the trail: read and append only, triggers out of reach.
            for table in ("portal_ledgerleaf", "portal_ledgernode", "portal_ledgercheckpoint"):
                assert "permission denied" in _refused(f"DELETE FROM {table}")
                assert "permission denied" in _refused(f"TRUNCATE {table}")
                assert "must be owner" in _refused(f"ALTER TABLE {table} DISABLE TRIGGER ALL")
                assert "must be owner" in _refused(f"DROP TRIGGER {table}_append_only ON {table}")
            assert "permission denied" in _refused("UPDATE portal_ledgerleaf SET hash = hash")
            assert "permission denied" in _refused("UPDATE portal_ledgercheckpoint SET root_hash = root_hash")
            assert "must be owner" in _refused("DROP FUNCTION portal_audit_ledger_append_only()")
            with connection.cursor() as cursor:
                cursor.execute("SELECT current_user")
                assert cursor.fetchone() == (runtime,)
                cursor.execute("SELECT count(*) FROM portal_child")
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET ROLE")
        assert [item.problem for item in audit.verify()] == []
        # The triggers hold against the owner too: it may not edit rows or truncate.
        with connection.cursor() as cursor:
            cursor.execute(f"SET ROLE {owner}")
        try:
            assert "append-only" in _refused("UPDATE portal_auditevent SET reason = 'x'")
            with connection.cursor() as cursor:  # the seal's foreign-key checks, so TRUNCATE meets the triggers
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            assert "append-only" in _refused("TRUNCATE portal_auditevent CASCADE")
            for table in ("portal_ledgerleaf", "portal_ledgernode", "portal_ledgercheckpoint"):
                assert "append-only" in _refused(f"DELETE FROM {table}")
                assert "append-only" in _refused(f"TRUNCATE {table}")
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET ROLE")
    finally:
        with connection.cursor() as cursor:
            for role in (runtime, owner):
                cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
                if cursor.fetchone():
                    cursor.execute(f"REASSIGN OWNED BY {role} TO CURRENT_USER")
                    cursor.execute(f"DROP OWNED BY {role}")
                    cursor.execute(f"DROP ROLE {role}")


def test_the_command_refuses_bad_names_and_unknown_roles(needs_postgres: None) -> None:
    with pytest.raises(CommandError, match="plain lower-case"):
        call_command("audit_db_roles", owner="Robert'); DROP", runtime="app", stdout=StringIO())
    with pytest.raises(CommandError, match="must differ"):
        call_command("audit_db_roles", owner="same", runtime="same", stdout=StringIO())
    with pytest.raises(CommandError, match="does not exist"):
        call_command("audit_db_roles", owner="portal_nobody_x", runtime="portal_nobody_y", stdout=StringIO())
