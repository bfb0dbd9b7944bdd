"""The audit ledger (portal.ledger).

- Audit rows take their ``seq`` from the database (an identity column continuing after the last row),
  so appending needs no lock; rows written from now on carry no chain hash.
- On PostgreSQL each audit row records the transaction that inserted it (``xid``), which the
  sequencer compares with the oldest running transaction to seal only rows that can no longer be
  joined by an earlier, still uncommitted one. Existing rows get this migration's transaction id.
- Leaves, complete subtrees and signed checkpoints of the Merkle tree, insert-only: on PostgreSQL
  triggers refuse UPDATE, DELETE and TRUNCATE on them, as on the audit table.
"""

import django.db.models.deletion
from django.db import migrations, models

LEDGER_TABLES = ("portal_ledgerleaf", "portal_ledgernode", "portal_ledgercheckpoint")

CREATE = """
SELECT setval(pg_get_serial_sequence('portal_auditevent', 'seq'), COALESCE(MAX(seq), 0) + 1, false)
    FROM portal_auditevent;
ALTER TABLE portal_auditevent ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX portal_auditevent_xid ON portal_auditevent (xid);
CREATE OR REPLACE FUNCTION portal_audit_ledger_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '% is append-only (% refused)', TG_TABLE_NAME, TG_OP;
END;
$$ LANGUAGE plpgsql;
"""

TABLE_TRIGGERS = """
CREATE TRIGGER {table}_append_only
    BEFORE UPDATE OR DELETE ON {table}
    FOR EACH ROW EXECUTE FUNCTION portal_audit_ledger_append_only();
CREATE TRIGGER {table}_no_truncate
    BEFORE TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION portal_audit_ledger_append_only();
"""

DROP = """
DROP INDEX IF EXISTS portal_auditevent_xid;
ALTER TABLE portal_auditevent DROP COLUMN IF EXISTS xid;
"""


def forwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)
        for table in LEDGER_TABLES:
            schema_editor.execute(TABLE_TRIGGERS.format(table=table), params=None)


def backwards(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        for table in LEDGER_TABLES:
            schema_editor.execute(
                f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}; "
                f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table};",
                params=None,
            )
        schema_editor.execute(DROP + "DROP FUNCTION IF EXISTS portal_audit_ledger_append_only();", params=None)


class Migration(migrations.Migration):

    dependencies = [
        ('portal', '0006_audit_hardening'),
    ]

    operations = [
        migrations.CreateModel(
            name='LedgerCheckpoint',
            fields=[
                ('tree_size', models.BigIntegerField(primary_key=True, serialize=False)),
                ('root_hash', models.CharField(max_length=64)),
                ('timestamp', models.DateTimeField()),
                ('key_id', models.CharField(max_length=32)),
                ('signature', models.CharField(max_length=100)),
                ('horizon', models.BigIntegerField(blank=True, null=True)),
            ],
            options={
                'verbose_name': 'ledger checkpoint',
            },
        ),
        migrations.AlterField(
            model_name='auditevent',
            name='hash',
            field=models.CharField(blank=True, default='', max_length=64),
        ),
        migrations.AlterField(
            model_name='auditevent',
            name='prev_hash',
            field=models.CharField(blank=True, default='', max_length=64),
        ),
        migrations.AlterField(
            model_name='auditevent',
            name='seq',
            field=models.BigAutoField(primary_key=True, serialize=False),
        ),
        migrations.CreateModel(
            name='LedgerLeaf',
            fields=[
                ('index', models.BigIntegerField(primary_key=True, serialize=False)),
                ('hash', models.CharField(max_length=64)),
                ('event', models.OneToOneField(db_column='event_seq', on_delete=django.db.models.deletion.PROTECT, related_name='leaf', to='portal.auditevent')),
            ],
            options={
                'verbose_name': 'ledger leaf',
            },
        ),
        migrations.CreateModel(
            name='LedgerNode',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('level', models.PositiveSmallIntegerField()),
                ('index', models.BigIntegerField()),
                ('hash', models.CharField(max_length=64)),
            ],
            options={
                'verbose_name': 'ledger node',
                'constraints': [models.UniqueConstraint(fields=('level', 'index'), name='unique_ledger_node')],
            },
        ),
        migrations.RunPython(forwards, backwards),
    ]
