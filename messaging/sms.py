"""Pluggable SMS backends, chosen by ``PORTAL_SMS_BACKEND`` (a dotted path).

* ``messaging.sms.ConsoleSmsBackend`` (default): writes the message to standard output.
* ``messaging.sms.LocmemSmsBackend``: keeps messages in ``outbox`` (tests).
* ``messaging.sms.DummySmsBackend``: sends nothing (benchmarks that import thousands of families).
* ``messaging.sms.HttpSmsBackend``: POSTs ``{"to": ..., "body": ...}`` as JSON to
  ``PORTAL_SMS_HTTP_URL`` with ``Authorization: Bearer PORTAL_SMS_HTTP_TOKEN`` (the shape most SMS
  gateways accept behind a small adapter); any non-2xx answer raises, and the task retries.

Bodies are the fixed, PHI-free texts of ``messaging.notify``; phone numbers are never logged.
"""

from __future__ import annotations

import json
import sys
import urllib.request
from dataclasses import dataclass
from typing import ClassVar

from django.conf import settings
from django.utils.module_loading import import_string


class SmsError(Exception):
    """The provider refused or could not be reached."""


class BaseSmsBackend:
    def send(self, to: str, body: str) -> None:
        raise NotImplementedError


class ConsoleSmsBackend(BaseSmsBackend):
    def send(self, to: str, body: str) -> None:
        sys.stdout.write(f"SMS to ...{to[-2:]}: {body}\n")
        sys.stdout.flush()


@dataclass
class SentSms:
    to: str
    body: str


class LocmemSmsBackend(BaseSmsBackend):
    outbox: ClassVar[list[SentSms]] = []

    def send(self, to: str, body: str) -> None:
        self.outbox.append(SentSms(to=to, body=body))


class DummySmsBackend(BaseSmsBackend):
    def send(self, to: str, body: str) -> None:
        return None


class HttpSmsBackend(BaseSmsBackend):
    timeout = 10

    def send(self, to: str, body: str) -> None:
        url: str = settings.PORTAL_SMS_HTTP_URL
        if not url.startswith("https://") and not url.startswith("http://127.0.0.1"):
            raise SmsError("PORTAL_SMS_HTTP_URL must be an https:// URL.")
        request = urllib.request.Request(  # noqa: S310 (scheme checked above)
            url,
            data=json.dumps({"to": to, "body": body}).encode(),
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {settings.PORTAL_SMS_HTTP_TOKEN}",
            },
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                status = int(response.status)
        except OSError as exc:
            raise SmsError(f"SMS provider unreachable ({type(exc).__name__}).") from None
        if not 200 <= status < 300:
            raise SmsError(f"SMS provider answered {status}.")


def backend() -> BaseSmsBackend:
    cls = import_string(getattr(settings, "PORTAL_SMS_BACKEND", "messaging.sms.ConsoleSmsBackend"))
    instance: BaseSmsBackend = cls()
    return instance
