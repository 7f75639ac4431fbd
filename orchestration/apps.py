from django.apps import AppConfig


class OrchestrationConfig(AppConfig):
    name = "orchestration"
    verbose_name = "Autonomy Orchestration Layer"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from orchestration import checks  # noqa: F401  (registers the system checks)
