from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"
    verbose_name = "Messaging: threads, routing, triage, realtime events, notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from messaging import stream
        from messaging.worker import worker_health
        from portal.api import register_health_component

        # Care's domain events (refills, appointments, doses...) join each user's event stream.
        stream.connect()
        register_health_component("worker", worker_health)
