"""Create the "AOL operators" group: every console permission except switching to REAL mode,
plus read access to the AOL tables. Superusers keep everything; add staff to the group to let
them operate the daemon day to day."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "AOL operators"
CONTROL_PERMISSIONS = ["pause_daemon", "kill_daemon", "manage_dlq", "enqueue_action"]
VIEW_PERMISSIONS = [
    "view_action",
    "view_controlflags",
    "view_executionlog",
    "view_lease",
    "view_tickledger",
    "view_auditentry",
]


def create_group(apps, schema_editor):
    # Permissions are normally created after the whole migrate run (post_migrate); create this
    # app's now so that the group can be given them on a fresh database.
    app_config = apps.get_app_config("orchestration")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    codenames = CONTROL_PERMISSIONS + VIEW_PERMISSIONS
    permissions = list(Permission.objects.filter(content_type__app_label="orchestration", codename__in=codenames))
    missing = set(codenames) - {p.codename for p in permissions}
    if missing:
        raise RuntimeError(f"permissions missing for the AOL operators group: {sorted(missing)}")
    group, _ = Group.objects.get_or_create(name=GROUP)
    group.permissions.add(*permissions)


def delete_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=GROUP).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("orchestration", "0003_console_permissions_audit_queue_depth"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_group, delete_group)]
