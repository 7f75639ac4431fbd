"""Let the "AOL operators" group edit rate limits and see paused action types.

Approving PROOF artifacts for their REAL run (``approve_action``) is NOT given to the group, like
switching to REAL mode: grant it to the people who sign off what goes out in the brand's name.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "AOL operators"
PERMISSIONS = ["view_ratelimit", "add_ratelimit", "change_ratelimit", "delete_ratelimit", "view_actiontypepause"]


def grant(apps, schema_editor):
    app_config = apps.get_app_config("orchestration")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=GROUP)
    permissions = list(Permission.objects.filter(content_type__app_label="orchestration", codename__in=PERMISSIONS))
    missing = set(PERMISSIONS) - {p.codename for p in permissions}
    if missing:
        raise RuntimeError(f"permissions missing for the AOL operators group: {sorted(missing)}")
    group.permissions.add(*permissions)


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group = Group.objects.filter(name=GROUP).first()
    if group is not None:
        group.permissions.remove(
            *Permission.objects.filter(content_type__app_label="orchestration", codename__in=PERMISSIONS)
        )


class Migration(migrations.Migration):
    dependencies = [
        ("orchestration", "0007_flow_control_priority_approval_cancel_rate_limits"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
