"""Validate the call-deflection figures on simulated hospitals with a known effect.

    .venv/bin/python tests/benchmarks/validate_deflection.py --replications 50 --families 300 --months 24

Each replication draws a hospital (``fixtures/metrics_simulation.py``: staggered enrolment, selection
on need, new patients, seasonal heterogeneity, partial caller ID, a known effect), feeds it through
the product's own path (guardian links with their audit rows, ``import_calls``' parser, the refresh
task, ``GET /api/v1/metrics/comparison``) in bulk and, for the first scenario, nightly mode, and
reads the stored estimate back. Output: a Markdown table of bias, RMSE, 95% interval coverage and
the share marked not credible, for the staggered-adoption estimate and the two-by-two figure.

Uses a throw-away SQLite database (or DATABASE_URL) and throw-away keys; never the portal's own.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")


def configure(workdir: Path) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "portal.settings"
    os.environ["PORTAL_VAR_DIR"] = str(workdir)
    os.environ["PORTAL_ENCRYPTION_KEYS"] = f"validate:{_key()}"
    os.environ["PORTAL_BLIND_INDEX_KEY"] = _key()
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("ALLOWED_HOSTS", "testserver")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replications", type=int, default=50)
    parser.add_argument("--nightly-replications", type=int, default=None, help="default: --replications")
    parser.add_argument("--families", type=int, default=300)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--effect", type=float, default=0.15)
    parser.add_argument("--scenario", action="append", help="run only these scenarios (repeatable)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as workdir:
        configure(Path(workdir))
        run(args)


def run(args: argparse.Namespace) -> None:
    from allauth.mfa.totp.internal.auth import TOTP
    from django.contrib.auth.models import Permission
    from django.core.management import call_command
    from django.test import Client

    from fixtures.metrics_simulation import SimParams
    from fixtures.metrics_validation import SCENARIOS, run_scenario
    from portal.models import User

    call_command("migrate", verbosity=0)
    user = User.objects.create_user("validate-admin@example.org", None)
    user.user_permissions.add(Permission.objects.get(codename="view_metrics"))
    TOTP.activate(user, "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
    client = Client()
    client.force_login(user)
    base = SimParams(families=args.families, months=args.months, effect=args.effect)
    columns = ["scenario", "mode", "reps", "estimate bias", "RMSE", "95% coverage", "not credible"]
    columns += ["2x2 bias", "2x2 coverage", "2x2 withheld"]
    print("| " + " | ".join(columns) + " |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for number, (name, overrides) in enumerate(SCENARIOS.items()):
        if args.scenario and name not in args.scenario:
            continue
        modes = ["bulk", "nightly"] if number == 0 else ["bulk"]
        for mode in modes:
            reps = args.replications if mode == "bulk" else (args.nightly_replications or args.replications)
            started = time.perf_counter()
            summary = run_scenario(base, overrides, mode, reps, client).row()
            print(
                f"| {name} | {mode} | {summary['replications']} | {summary['bias']} | {summary['rmse']} | "
                f"{summary['coverage']} | {summary['not_credible']} | {summary['simple_bias']} | "
                f"{summary['simple_coverage']} | {summary['simple_withheld']} |",
                flush=True,
            )
            print(f"<!-- {time.perf_counter() - started:.0f} s -->", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
