from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "messaging"
    verbose_name = "Messaging: threads, routing, triage, realtime events, notifications"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from messaging import notify, publish
        from messaging.realtime import connect
        from messaging.worker import worker_health
        from portal import events
        from portal.api import register_health_component

        # Every app's domain events join each user's event stream; control events reach the sockets.
        connect()
        # Refill changes reach the guardians' installed apps as PHI-free push notices.
        events.subscribe(notify.on_event)
        publish.register_rules()
        register_health_component("worker", worker_health)
