"""What the browser tests share: Debian's chromium, the axe-core check and the README screenshots.

Runs when ``/usr/bin/chromium`` and the axe-core bundle (``make axe``) are present; with
``PORTAL_BROWSER_TESTS`` set (CI's PostgreSQL + Redis pass) a missing one is a failure, not a skip.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "docs" / "screenshots"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE: Any = {"width": 390, "height": 844}  # playwright's ViewportSize
DESKTOP: Any = {"width": 1366, "height": 900}
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


def _missing() -> str:
    if not CHROMIUM.exists():
        return "Debian's chromium is not installed (/usr/bin/chromium)"
    if not AXE.exists():
        return "the axe-core bundle is not installed (make axe)"
    return ""


def require_browser() -> None:
    """Skip (or, with ``PORTAL_BROWSER_TESTS`` set, fail) when chromium or axe-core is missing."""
    reason = _missing()
    if reason:
        if os.environ.get("PORTAL_BROWSER_TESTS"):
            pytest.fail(f"PORTAL_BROWSER_TESTS is set but {reason}")
        pytest.skip(reason)


def axe_check(page: Any, name: str) -> None:
    """Run axe-core in the page (evaluated over the DevTools protocol, so the page's CSP still holds
    for everything the page itself loads) and require zero violations."""
    page.evaluate(AXE.read_text(encoding="utf-8") + "\n;undefined")
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS)
    violations = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]]) for v in result["violations"]]
    assert violations == [], (name, violations)


def screenshot(page: Any, name: str, device: str = "phone") -> None:
    """Write ``docs/screenshots/<device>-<name>.png`` (the README shows them)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{device}-{name}.png"), full_page=True)
