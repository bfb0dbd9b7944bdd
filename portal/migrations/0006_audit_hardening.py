"""Audit hardening.

- On PostgreSQL, the audit table also refuses TRUNCATE (a statement-level trigger: TRUNCATE fires no
  row triggers, so the UPDATE/DELETE trigger alone let a whole trail vanish at once).
- Audit rows carry a count, and unauthenticated refusals are tallied per address, reason and window
  before one row per window joins the chain (portal.refusals).
"""

from django.db import migrations, models

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
    dependencies = [("portal", "0005_invitation_recipient_staff_approval")]
    operations = [
        migrations.RunPython(forwards, backwards),
        migrations.AddField(
            model_name='auditevent',
            name='count',
            field=models.PositiveIntegerField(db_default=1, default=1),
        ),
        migrations.CreateModel(
            name='RefusalTally',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('client_address', models.CharField(blank=True, max_length=45)),
                ('entity_type', models.CharField(max_length=60)),
                ('reason', models.CharField(max_length=60)),
                ('window_start', models.DateTimeField()),
                ('count', models.PositiveIntegerField(default=1)),
                ('entity_id', models.CharField(blank=True, max_length=64)),
                ('user_agent', models.CharField(blank=True, max_length=200)),
                ('first_seen', models.DateTimeField()),
                ('last_seen', models.DateTimeField()),
            ],
            options={
                'indexes': [models.Index(fields=['window_start'], name='portal_refu_window__add7f4_idx')],
                'constraints': [models.UniqueConstraint(fields=('client_address', 'entity_type', 'reason', 'window_start'), name='unique_refusal_window')],
            },
        ),
    ]
