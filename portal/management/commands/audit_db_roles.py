"""Separate the database role that owns the schema (and runs migrations) from the role the portal
runs with, so the audit trail and its ledger hold against the application's own credentials.

Run once as a superuser (or the current owner of the tables), and again after adding apps:

    python manage.py audit_db_roles --owner portal_owner --runtime portal_app [--create] [--dry-run]

Afterwards: run ``migrate`` with the owner's credentials, serve with the runtime role's. The runtime
role may read and write the application's tables, but on ``portal_auditevent`` and the ledger's tables
(leaves, nodes, checkpoints) it holds only SELECT and INSERT: it cannot UPDATE, DELETE or TRUNCATE the
trail or its ledger, and, not owning the tables, it cannot disable or drop the triggers that refuse
those statements.
"""

from __future__ import annotations

import re
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction

ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
AUDIT_TABLE = "portal_auditevent"
# The audit table and the ledger that seals it (portal.ledger): read and append only.
APPEND_ONLY_TABLES = (AUDIT_TABLE, "portal_ledgerleaf", "portal_ledgernode", "portal_ledgercheckpoint")


def role_setup_sql(*, owner: str, runtime: str, schema: str, tables: list[str], functions: list[str]) -> list[str]:
    """The statements that hand every object to ``owner`` and grant ``runtime`` what it needs."""
    q = connection.ops.quote_name
    statements = [f"ALTER TABLE {q(schema)}.{q(table)} OWNER TO {q(owner)}" for table in tables]
    statements += [f"ALTER FUNCTION {q(schema)}.{function}() OWNER TO {q(owner)}" for function in functions]
    statements += [
        f"GRANT USAGE ON SCHEMA {q(schema)} TO {q(runtime)}",
        f"REVOKE CREATE ON SCHEMA {q(schema)} FROM {q(runtime)}",
        # Ordinary data access to the application's tables and their sequences...
        f"REVOKE ALL ON ALL TABLES IN SCHEMA {q(schema)} FROM {q(runtime)}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {q(schema)} TO {q(runtime)}",
        f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {q(schema)} TO {q(runtime)}",
        # ... and the same on tables and sequences later migrations create.
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {q(owner)} IN SCHEMA {q(schema)} "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {q(runtime)}",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {q(owner)} IN SCHEMA {q(schema)} "
        f"GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {q(runtime)}",
    ]
    # The audit trail and its ledger: read and append only (their identity sequences are among the
    # sequences granted above).
    for table in APPEND_ONLY_TABLES:
        statements += [
            f"REVOKE ALL ON {q(schema)}.{q(table)} FROM {q(runtime)}",
            f"REVOKE ALL ON {q(schema)}.{q(table)} FROM PUBLIC",
            f"GRANT SELECT, INSERT ON {q(schema)}.{q(table)} TO {q(runtime)}",
        ]
    return statements


class Command(BaseCommand):
    help = "PostgreSQL: make --owner own the schema and give --runtime only SELECT/INSERT on the audit table."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--owner", required=True, help="role that owns the tables and runs migrations")
        parser.add_argument("--runtime", required=True, help="role the portal's processes connect as")
        parser.add_argument("--schema", default="public")
        parser.add_argument("--create", action="store_true", help="create missing roles (NOLOGIN; set a password)")
        parser.add_argument("--dry-run", action="store_true", help="print the statements, change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("Database roles apply to PostgreSQL only.")
        owner, runtime, schema = options["owner"], options["runtime"], options["schema"]
        for name in (owner, runtime, schema):
            if not ROLE_NAME.match(name):
                raise CommandError(f"{name!r} is not a plain lower-case identifier.")
        if owner == runtime:
            raise CommandError("The owner and the runtime role must differ.")
        q = connection.ops.quote_name
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT rolname, rolsuper FROM pg_roles WHERE rolname IN (%s, %s)", [owner, runtime])
            existing = dict(cursor.fetchall())
            if existing.get(runtime):
                raise CommandError(f"{runtime} is a superuser: superusers bypass every privilege.")
            statements = []
            for name in (owner, runtime):
                if name not in existing:
                    if not options["create"]:
                        raise CommandError(f"Role {name} does not exist (pass --create to create it).")
                    statements.append(f"CREATE ROLE {q(name)} NOLOGIN")
            cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename", [schema])
            tables = [row[0] for row in cursor.fetchall()]
            if not set(APPEND_ONLY_TABLES) <= set(tables):
                raise CommandError(f"{schema}.{AUDIT_TABLE} or its ledger does not exist: run migrate first.")
            cursor.execute(
                "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = %s AND p.proname LIKE 'portal\\_audit\\_%%' ORDER BY p.proname",
                [schema],
            )
            functions = [row[0] for row in cursor.fetchall()]
            statements += role_setup_sql(
                owner=owner, runtime=runtime, schema=schema, tables=tables, functions=functions
            )
            for statement in statements:
                self.stdout.write(statement + ";")
                if not options["dry_run"]:
                    cursor.execute(statement)
            if options["dry_run"]:
                transaction.set_rollback(True)
        verb = "Would hand" if options["dry_run"] else "Handed"
        self.stdout.write(
            self.style.SUCCESS(
                f"{verb} {len(tables)} tables to {owner}; "
                f"{runtime} may only read and append {AUDIT_TABLE} and its ledger."
            )
        )
