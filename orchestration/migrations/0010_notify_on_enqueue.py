"""PostgreSQL only: a statement trigger that NOTIFYs ``aol_actions`` after every INSERT into
aol_actions, so an idle daemon LISTENing on that channel claims new work at once instead of at its
next tick (orchestration/daemon/wakeup.py). Every writer is covered (the services, bulk enqueue,
the admin, raw SQL) at no extra round trip. SQLite has no such thing: there the daemon polls at its
tick interval."""

from django.db import migrations

CHANNEL = "aol_actions"  # orchestration.daemon.wakeup.CHANNEL

CREATE = [
    f"""CREATE OR REPLACE FUNCTION aol_notify_actions_inserted() RETURNS trigger AS $$
    BEGIN
        PERFORM pg_notify('{CHANNEL}', '');
        RETURN NULL;
    END;
    $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER aol_actions_notify_insert AFTER INSERT ON aol_actions
    FOR EACH STATEMENT EXECUTE FUNCTION aol_notify_actions_inserted()""",
]
DROP = [
    "DROP TRIGGER IF EXISTS aol_actions_notify_insert ON aol_actions",
    "DROP FUNCTION IF EXISTS aol_notify_actions_inserted()",
]


def _on_postgresql(statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            for statement in statements:
                schema_editor.execute(statement, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [("orchestration", "0009_action_claimed_in_batch")]

    operations = [migrations.RunPython(_on_postgresql(CREATE), _on_postgresql(DROP), elidable=False)]
