"""daphne serves HTTP and websockets from this one application."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
django_http = get_asgi_application()

from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.db import connections  # noqa: E402

from portal.keys import check_keys  # noqa: E402

# Refuse to serve on keys that cannot read the stored PHI (or a lost key file), rather than fail on
# every request that touches it; daphne does not run the system checks itself.
_key_problems = check_keys()
# Requests use their own threads' connections; the one the check opened would only sit idle.
connections.close_all()
if _key_problems:
    raise ImproperlyConfigured("Encryption keys do not match the stored data: " + " ".join(_key_problems))

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import path  # noqa: E402

from messaging.realtime.consumer import EventsConsumer, WebsocketAuthMiddleware  # noqa: E402
from portal import serverlimits  # noqa: E402

# daphne's HTTP parser answers overlong request and header lines (414/431) instead of hanging up.
serverlimits.install()

# A process holding thousands of sockets keeps a large heap of long-lived objects, and Python's full
# collection walks all of it with the event loop stopped (0.3-0.7 s at 2,000 sockets on the shared
# test machine), every few seconds with the default thresholds while sockets open and messages flow.
# The young generation is collected less often (short-lived objects are gone by then, so fewer are
# promoted) and the full collection a tenth as often.
GC_THRESHOLDS = (10_000, 10, 100)
gc.set_threshold(*GC_THRESHOLDS)

# The one consumer: the user's persisted event stream and control messages (messaging.realtime).
websocket_urls = [path("ws/v1/events", EventsConsumer.as_asgi())]

http_app = ASGIStaticFilesHandler(django_http) if not settings.PRODUCTION else django_http

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": WebsocketAuthMiddleware(URLRouter(websocket_urls)),
    }
)
