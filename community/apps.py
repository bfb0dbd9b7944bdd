from django.apps import AppConfig


class CommunityConfig(AppConfig):
    name = "community"
    verbose_name = "Peer family groups"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from community import signals

        signals.connect()
