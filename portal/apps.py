from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Family care portal"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        import portal.checks  # noqa: F401  (registers portal.E001 keys and portal.E002 time zones)
        from portal import (
            admission,
            crypto,
            keys,
            signals,  # noqa: F401  (audits sign-in and sign-out)
        )

        admission.connect()  # forget settled MFA answers when roles or authenticators change
        # A lost key file is never silently replaced while encrypted rows exist.
        crypto.register_encrypted_data_probe(keys.encrypted_data_exists)
