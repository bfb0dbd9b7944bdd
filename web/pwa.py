"""What makes the family web app installable: the web app manifest, the service worker and the page
it shows when the network is gone.

The service worker keeps ONLY the static files listed in ``PRECACHE_ASSETS`` and the offline page,
which says nothing about anyone. Every other page and every API answer carries PHI and is sent
``no-store``; the worker never stores them, it only falls back to the offline page when a page cannot
be fetched at all. Sign-out sends ``Clear-Site-Data: "cache", "storage"``, which also removes the
worker and its cache."""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path

from django.contrib.staticfiles import finders
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.templatetags.static import static
from django.urls import reverse
from django.utils import translation
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET

THEME_COLOUR = "#0b4f8a"
BACKGROUND_COLOUR = "#ffffff"

# Static files the worker stores at install time (names under STATIC_URL). Pages are never listed
# here: a test reads the worker's list and resolves every entry.
PRECACHE_ASSETS = (
    "web/app.css",
    "web/app.js",
    "web/messenger.js",
    "web/push.js",
    "web/icon.svg",
    "web/icon-192.png",
    "web/icon-512.png",
)

_WORKER_SOURCE = Path(__file__).resolve().parent / "static" / "web" / "sw.js"


def _revalidate(response: HttpResponse) -> HttpResponse:
    # Not PHI, but always checked with the server so a new worker or manifest is picked up at once.
    patch_cache_control(response, no_cache=True, max_age=0)
    return response


@cache
def _assets_digest() -> str:
    """A digest of the worker and of every precached file: when any of them changes, the worker's
    bytes change, so browsers install it again and it replaces its cache."""
    digest = hashlib.sha256(_WORKER_SOURCE.read_bytes())
    for name in PRECACHE_ASSETS:
        found = finders.find(name)
        if isinstance(found, str):
            digest.update(Path(found).read_bytes())
    return digest.hexdigest()[:16]


def worker_config() -> dict[str, object]:
    """What the served worker is told: its cache name, the static URLs to keep and the offline page."""
    return {
        "cache": f"portal-static-{_assets_digest()}",
        "assets": [static(name) for name in PRECACHE_ASSETS],
        "offline": reverse("web:offline"),
        "icon": static("web/icon-192.png"),
    }


@require_GET
def manifest(request: HttpRequest) -> HttpResponse:
    """The web app manifest (in the browser's or the account's language; no account data)."""
    document = {
        "name": _("Family care portal"),
        "short_name": _("Care portal"),
        "description": _("Your child's appointments, medicines, refills and messages with the care team."),
        "lang": translation.get_language() or "en",
        "id": "/",
        "start_url": "/",
        "scope": "/",
        "display": "standalone",
        "theme_color": THEME_COLOUR,
        "background_color": BACKGROUND_COLOUR,
        "icons": [
            {"src": static("web/icon.svg"), "sizes": "any", "type": "image/svg+xml"},
            {"src": static("web/icon-192.png"), "sizes": "192x192", "type": "image/png"},
            {"src": static("web/icon-512.png"), "sizes": "512x512", "type": "image/png"},
            {"src": static("web/icon-512.png"), "sizes": "512x512", "type": "image/png", "purpose": "maskable"},
        ],
    }
    response = HttpResponse(json.dumps(document, ensure_ascii=False), content_type="application/manifest+json")
    patch_vary_headers(response, ["Accept-Language"])
    return _revalidate(response)


@require_GET
def service_worker(request: HttpRequest) -> HttpResponse:
    """The service worker, served at ``/sw.js`` so that its scope is the whole app (``/``). Its
    configuration comes first, as JSON, then the static source ``web/static/web/sw.js``."""
    config = json.dumps(worker_config(), separators=(",", ":"))
    body = f"self.PORTAL_WORKER = {config};\n{_WORKER_SOURCE.read_text(encoding='utf-8')}"
    response = HttpResponse(body, content_type="text/javascript; charset=utf-8")
    response["Service-Worker-Allowed"] = "/"
    return _revalidate(response)


@require_GET
def offline(request: HttpRequest) -> HttpResponse:
    """The page the worker shows when a page cannot be reached. It is rendered without the request
    (no account, no session, no CSRF token), so it never holds anything about anyone."""
    response = HttpResponse(render_to_string("web/offline.html"))
    patch_vary_headers(response, ["Accept-Language"])
    return _revalidate(response)
