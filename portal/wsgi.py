"""The WSGI application: the HTTP API under a WSGI server (gunicorn; measured beside daphne by
tests/benchmarks/bench_servers.py, README Deployment). Websockets need ``portal.asgi`` (daphne)."""

import os

from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
application = get_wsgi_application()

from django.db import connections  # noqa: E402

from portal.keys import check_keys  # noqa: E402

# As portal.asgi: refuse to serve on keys that cannot read the stored PHI.
_key_problems = check_keys()
connections.close_all()
if _key_problems:
    raise ImproperlyConfigured("Encryption keys do not match the stored data: " + " ".join(_key_problems))
