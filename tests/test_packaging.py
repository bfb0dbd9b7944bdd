"""``pip install .`` (not editable) carries every app and its templates, static files and translations.
``.ci/package_check`` proves it end to end; this is the quick check of the same rules."""

from __future__ import annotations

import fnmatch
import subprocess
import tomllib
from pathlib import Path

from setuptools import find_namespace_packages

ROOT = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())
NOT_SHIPPED = {"tests", "scripts"}


def shipped_packages() -> set[str]:
    include = CONFIG["tool"]["setuptools"]["packages"]["find"]["include"]
    return {
        name
        for name in find_namespace_packages(str(ROOT), include=include)
        if (ROOT / name.replace(".", "/") / "__init__.py").exists()
    }


def test_every_app_is_a_shipped_package() -> None:
    apps = {p.parent.name for p in ROOT.glob("*/__init__.py")} - NOT_SHIPPED
    assert apps <= shipped_packages(), apps - shipped_packages()
    assert "messaging.groups" in shipped_packages()


def test_templates_static_and_translations_are_package_data() -> None:
    globs = CONFIG["tool"]["setuptools"]["package-data"]["*"]
    tracked = subprocess.run(
        ["git", "ls-files", "*/templates/*", "*/static/*", "*/locale/*"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    assert any("/templates/" in name for name in tracked)
    packages = shipped_packages()
    for name in tracked:
        path = Path(name)
        owner = next(
            (
                ".".join(path.parts[:i])
                for i in range(len(path.parts) - 1, 0, -1)
                if ".".join(path.parts[:i]) in packages
            ),
            None,
        )
        assert owner is not None, name
        relative = path.relative_to(*owner.split(".")).as_posix()
        assert any(fnmatch.fnmatch(relative, pattern.replace("**/", "*")) for pattern in globs), name


def test_every_data_file_of_a_package_ships() -> None:
    """Non-Python files inside a shipped package (templates, translations, the triage corpus) match
    the package data of the package that holds them."""
    data = CONFIG["tool"]["setuptools"]["package-data"]
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    packages = shipped_packages()
    checked = 0
    for name in tracked:
        path = Path(name)
        if path.suffix == ".py" or path.parts[0] not in packages:
            continue
        owner = next(
            ".".join(path.parts[:i]) for i in range(len(path.parts) - 1, 0, -1) if ".".join(path.parts[:i]) in packages
        )
        relative = path.relative_to(*owner.split(".")).as_posix()
        globs = [*data.get("*", []), *data.get(owner, [])]
        assert any(fnmatch.fnmatch(relative, pattern.replace("**/", "*")) for pattern in globs), name
        checked += 1
    assert checked > 0
