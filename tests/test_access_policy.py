"""Unit tests of the access policy beyond the persona matrix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from django.conf import settings

from portal import ratelimit
from portal.access import Capability, hide_confidential, resolve_access, visible_children
from portal.models import GuardianLink
from tests.conftest import World


def test_capabilities_by_scope(world: World) -> None:
    full = resolve_access(world.guardian, world.ada)
    assert full.can(Capability.CLINICAL) and not full.can(Capability.MANAGE)
    link = world.links["co_guardian"]
    link.scope = "limited"
    link.save(update_fields=["scope"])
    limited = resolve_access(world.co_guardian, world.ada)
    assert limited.can(Capability.SCHEDULE) and limited.can(Capability.MESSAGE)
    assert not limited.can(Capability.CLINICAL)
    clinician = resolve_access(world.clinician, world.ada)
    assert clinician.can(Capability.CLINICAL) and clinician.can(Capability.MANAGE)
    admin = resolve_access(world.admin, world.ada)
    assert admin.can(Capability.MANAGE) and not admin.can(Capability.VIEW) and not admin.can(Capability.CLINICAL)
    for persona in ("other_guardian", "revoked_guardian", "other_clinician", "stranger"):
        nobody = resolve_access(world.users[persona], world.ada)
        assert not any(nobody.can(capability) for capability in Capability), persona


def test_family_actions_approval_and_the_limited_view(world: World) -> None:
    """Guardian-only actions are the guardians' alone; approving a staff link is manage_portal's alone;
    only a limited-scope guardian gets the limited view."""
    full = resolve_access(world.guardian, world.ada)
    assert full.can(Capability.FAMILY_SCHEDULE) and full.can(Capability.FAMILY_CLINICAL)
    assert not full.can(Capability.APPROVE) and not full.limited_view
    link = world.links["co_guardian"]
    link.scope = "limited"
    link.save(update_fields=["scope"])
    limited = resolve_access(world.co_guardian, world.ada)
    assert limited.can(Capability.FAMILY_SCHEDULE) and not limited.can(Capability.FAMILY_CLINICAL)
    assert limited.limited_view
    clinician = resolve_access(world.clinician, world.ada)
    assert not clinician.can(Capability.FAMILY_SCHEDULE) and not clinician.can(Capability.FAMILY_CLINICAL)
    assert not clinician.can(Capability.APPROVE) and not clinician.limited_view
    admin = resolve_access(world.admin, world.ada)
    assert admin.can(Capability.APPROVE) and not admin.can(Capability.FAMILY_SCHEDULE)


def test_confidential_items_are_hidden_from_guardians(world: World) -> None:
    # Any boolean column stands in for an app's "confidential" flag here.
    rows = GuardianLink.objects.filter(child=world.ada)
    GuardianLink.objects.filter(pk=world.links["co_guardian"].pk).update(court_appointed=True)
    for persona in ("guardian", "co_guardian"):
        shown = hide_confidential(rows, resolve_access(world.users[persona], world.ada), field="court_appointed")
        assert world.links["co_guardian"].pk not in set(shown.values_list("pk", flat=True))
    care_team = hide_confidential(rows, resolve_access(world.clinician, world.ada), field="court_appointed")
    assert world.links["co_guardian"].pk in set(care_team.values_list("pk", flat=True))


def test_inactive_account_sees_nothing(world: World) -> None:
    world.guardian.is_active = False
    world.guardian.save(update_fields=["is_active"])
    assert not visible_children(world.guardian).exists()


def test_rate_limits_are_shared_between_processes(needs_redis: None) -> None:
    """Two processes on one Redis count against the same limit (daphne behind a load balancer)."""
    prefix = str(settings.CACHES["default"]["KEY_PREFIX"])
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='portal.settings'; django.setup();"
        "from portal import ratelimit;"
        "print([ratelimit.hit('shared-test', 'someone', '3/m') for _ in range(3)])"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "REDIS_URL": settings.REDIS_URL,
        "CACHE_PREFIX": prefix,
        "PORTAL_VAR_DIR": str(Path(settings.VAR_DIR)),
    }
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == "[True, True, True]"
    assert ratelimit.hit("shared-test", "someone", "3/m") is False
