"""The messenger's import layering: no cycles; portal's core never imports the messenger (only the
composition root does); the messenger asks care only through ``care.scheduling``; the realtime
package knows no app that publishes to it."""

from __future__ import annotations

from functools import cache

import grimp

COMPOSITION_ROOT = {"portal.asgi", "portal.urls", "portal.apiroot"}


@cache
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("messaging", "portal", "care")


def _imports(prefix: str) -> dict[str, set[str]]:
    g = graph()
    return {
        module: set(g.find_modules_directly_imported_by(module)) for module in g.modules if module.startswith(prefix)
    }


def test_messaging_has_no_import_cycle() -> None:
    g = graph()
    cycles = {
        (module, imported)
        for module, imports in _imports("messaging").items()
        for imported in imports
        if imported.startswith("messaging") and g.chain_exists(importer=imported, imported=module)
    }
    assert not cycles, sorted(cycles)


def test_portal_core_does_not_import_messaging() -> None:
    offending = {
        module: sorted(i for i in imports if i.startswith("messaging"))
        for module, imports in _imports("portal").items()
        if module not in COMPOSITION_ROOT
    }
    assert not {module: found for module, found in offending.items() if found}


def test_messaging_reaches_care_through_scheduling_only() -> None:
    offending = {
        module: sorted(i for i in imports if i.startswith("care") and i != "care.scheduling")
        for module, imports in _imports("messaging").items()
    }
    assert not {module: found for module, found in offending.items() if found}


def test_realtime_imports_no_publisher() -> None:
    allowed = ("messaging.realtime", "messaging.models", "messaging.conf")
    offending = {
        module: sorted(i for i in imports if i.startswith("messaging") and not i.startswith(allowed))
        for module, imports in _imports("messaging.realtime").items()
    }
    assert not {module: found for module, found in offending.items() if found}
