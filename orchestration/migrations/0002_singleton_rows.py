"""Create the two singleton rows so that a fresh database starts in PROOF mode with a free lease."""

from django.db import migrations


def create_singletons(apps, schema_editor):
    apps.get_model("orchestration", "ControlFlags").objects.get_or_create(
        pk=1, defaults={"paused": False, "killed": False, "proof_mode": True}
    )
    apps.get_model("orchestration", "Lease").objects.get_or_create(pk=1, defaults={"owner": "", "token": 0})


class Migration(migrations.Migration):
    dependencies = [("orchestration", "0001_initial")]

    operations = [migrations.RunPython(create_singletons, migrations.RunPython.noop)]
