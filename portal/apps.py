from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Family care portal"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        import portal.checks  # noqa: F401  (registers portal.E001 keys and portal.E002 time zones)
        from portal import signals  # noqa: F401  (audits sign-in and sign-out)
