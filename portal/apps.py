from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Family care portal"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from portal import signals  # noqa: F401  (audits sign-in and sign-out)
