"""On PostgreSQL, the audit table also refuses TRUNCATE (a statement-level trigger: TRUNCATE fires no
row triggers, so the UPDATE/DELETE trigger alone let a whole trail vanish at once)."""

from django.db import migrations

CREATE = """
CREATE TRIGGER portal_auditevent_no_truncate
    BEFORE TRUNCATE ON portal_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION portal_audit_append_only();
"""

DROP = "DROP TRIGGER IF EXISTS portal_auditevent_no_truncate ON portal_auditevent;"


def forwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("portal", "0004_child_conditions_blank")]
    operations = [migrations.RunPython(forwards, backwards)]
