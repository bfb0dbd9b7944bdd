from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings
from django.http import HttpRequest


class PortalAccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        # Guardians sign up themselves and then redeem the invitation code staff gave them.
        return bool(getattr(settings, "PORTAL_OPEN_SIGNUP", True))
