"""Disclosure control of the published counts: small cells hidden, and enough others hidden with them
that no hidden cell can be worked out from the totals shown beside it.

A cell is small when it concerns fewer than ``PORTAL_METRICS_MIN_CELL`` distinct patients (not calls,
not the largest day: the distinct patients of the whole cell). Cells are tied by additive equations
(a period's calls = enrolled + not enrolled + unattributed; a topic's cells add up to the period's;
each cohort's cells over topics add up to the cohort's total). In every equation either no cell is
hidden or at least two are: where exactly one is, the smallest visible cell of that equation is
hidden too (complementary suppression), until no equation has a single hidden cell. Large cells are
never hidden for being large groups of small days.

Scope: the equations inside one report and its ungrouped margins. Reports of different period
lengths (days inside a month) are not coordinated with each other.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping

Key = Hashable


def protect(
    patients: Mapping[Key, int], equations: Iterable[list[Key]], low: int, shown_elsewhere: Iterable[Key] = ()
) -> set[Key]:
    """The cells to hide: primary (fewer than ``low`` patients) and complementary ones.

    ``shown_elsewhere``: cells another report publishes (margins), never chosen as complements.
    """
    fixed = set(shown_elsewhere)
    hidden = {key for key, count in patients.items() if count < low}
    lines = [[key for key in line if key in patients] for line in equations]
    changed = True
    while changed:
        changed = False
        for line in lines:
            inside = [key for key in line if key in hidden]
            if len(inside) != 1:
                continue
            visible = [key for key in line if key not in hidden and key not in fixed]
            if not visible:
                continue
            hidden.add(min(visible, key=lambda key: (patients[key], str(key))))
            changed = True
    return hidden
