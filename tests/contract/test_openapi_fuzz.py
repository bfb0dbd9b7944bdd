"""Schemathesis over every operation of the OpenAPI document, signed in as a demo guardian (Maria
Garcia, with her own children's ids in the paths so requests reach the real handlers): no answer is
a server error, and every status is one the document declares for that operation.

It runs once per CI run (``make fuzz``, called by ``make test``), not in the ordinary suite:
``PORTAL_FUZZ=1`` turns it on; ``PORTAL_FUZZ_EXAMPLES`` bounds the cases per operation.
"""

from __future__ import annotations

import os
import random
from typing import Any

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from portal.apiroot import api

pytestmark = [
    pytest.mark.skipif(not os.environ.get("PORTAL_FUZZ"), reason="set PORTAL_FUZZ=1 (make fuzz)"),
    pytest.mark.django_db,
]

EXAMPLES = int(os.environ.get("PORTAL_FUZZ_EXAMPLES", "20"))

schema = schemathesis.openapi.from_dict(api.get_openapi_schema())
schema.app = get_wsgi_application()


@pytest.fixture(scope="module")
def demo_guardian(django_db_setup: Any, django_db_blocker: Any) -> Any:
    """The demo hospital, loaded once for the module; Maria's token and her children's ids."""
    from django.test import Client

    from fixtures import demo
    from portal.access import visible_children
    from portal.models import User

    with django_db_blocker.unblock():
        if not demo.already_loaded():
            demo.load()
        maria = User.objects.get(email="maria.garcia@demo.family")
        browser = Client()
        browser.force_login(maria)
        token = browser.session.session_key
        children = [str(child.pk) for child in visible_children(maria)]
    yield {"token": token, "children": children}
    with django_db_blocker.unblock():
        from django.core.management import call_command

        call_command("flush", "--noinput", verbosity=0)


@pytest.fixture(autouse=True)
def _one_connection() -> Any:
    """Requests go straight to the WSGI application, inside the test's transaction: keep Django from
    closing the connection at the end of each request (its own test client does the same)."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def signed_in(demo_guardian: Any, db: Any) -> Any:
    return demo_guardian


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors_and_only_declared_statuses(case: Any, signed_in: dict[str, Any]) -> None:
    if "child_id" in (case.path_parameters or {}) and random.random() < 0.8:
        case.path_parameters["child_id"] = random.choice(signed_in["children"])
    case.call_and_validate(
        headers={"X-Session-Token": signed_in["token"]},
        checks=[not_a_server_error, status_code_conformance],
    )
