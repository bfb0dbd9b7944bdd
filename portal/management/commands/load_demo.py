from typing import Any

from django.core.management.base import BaseCommand

from fixtures import demo


class Command(BaseCommand):
    help = "Load the demo hospital (once) and print the demo logins."

    def handle(self, *args: Any, **options: Any) -> None:
        if demo.already_loaded():
            self.stdout.write("Demo data already loaded.")
            logins = demo.logins()
        else:
            logins = demo.load()
            self.stdout.write(self.style.SUCCESS("Demo data loaded."))
        self.stdout.write(f"\nDemo logins (password for every demo account: {demo.DEMO_PASSWORD}):")
        for login in logins:
            extra = f"  TOTP secret {login.totp_secret}" if login.totp_secret else ""
            self.stdout.write(f"  {login.email:<28} {login.role}{extra}")
        self.stdout.write(
            '\nSign in: POST /_allauth/app/v1/auth/login {"email": ..., "password": ...}; '
            "API docs at http://127.0.0.1:8000/api/v1/docs"
        )
