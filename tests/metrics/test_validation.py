"""The validation harness runs end to end (a few replications; the full table comes from
``scripts/validate_deflection.py``), and its summary computes bias and coverage correctly."""

from __future__ import annotations

import pytest
from allauth.mfa.totp.internal.auth import TOTP
from django.contrib.auth.models import Permission
from django.test import Client

from fixtures.metrics_simulation import SimParams
from fixtures.metrics_validation import Outcome, run_scenario, summarise
from portal.models import User

pytestmark = pytest.mark.django_db


def test_summary_bias_and_coverage() -> None:
    outcomes = [
        Outcome(0.10, 0.0, 0.2, True, 0.2, 0.1, 0.3, False),
        Outcome(0.20, 0.16, 0.3, False, None, None, None, True),
    ]
    summary = summarise(outcomes, 0.15)
    assert summary.bias == pytest.approx(0.0)
    assert summary.coverage == pytest.approx(0.5)
    assert summary.not_credible == pytest.approx(0.5)
    assert summary.simple_bias == pytest.approx(0.05)
    assert summary.simple_withheld == pytest.approx(0.5)


def test_enrolling_at_a_peak_of_need_is_marked_not_credible_through_the_api() -> None:
    user = User.objects.create_user("validator@example.org", None)
    user.user_permissions.add(Permission.objects.get(codename="view_metrics"))
    TOTP.activate(user, "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
    client = Client()
    client.force_login(user)
    base = SimParams(families=250, months=18, go_live_month=8, effect=0.15)
    summary = run_scenario(base, {"season_by_need": 0.0, "dip": 1.0}, "bulk", 2, client, first_seed=3)
    assert summary.fitted == 2
    assert summary.not_credible == 1.0
