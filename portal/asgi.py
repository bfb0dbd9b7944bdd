"""daphne serves HTTP and websockets from this one application."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
django_http = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import path  # noqa: E402

from portal.consumers import EventsConsumer, WebsocketAuthMiddleware  # noqa: E402

websocket_urls = [path("ws/v1/events", EventsConsumer.as_asgi())]

http_app = ASGIStaticFilesHandler(django_http) if not settings.PRODUCTION else django_http

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": WebsocketAuthMiddleware(URLRouter(websocket_urls)),
    }
)
