from django.apps import AppConfig


class MetricsConfig(AppConfig):
    name = "portal.metrics"
    label = "metrics"
    verbose_name = "Call-deflection metrics"
    default_auto_field = "django.db.models.BigAutoField"
