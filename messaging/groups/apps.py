from django.apps import AppConfig


class GroupsConfig(AppConfig):
    # The label stays "community": migrations, tables and content types were made under it.
    name = "messaging.groups"
    label = "community"
    verbose_name = "Peer family groups"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from messaging.groups import realtime, signals

        signals.connect()
        realtime.connect()
