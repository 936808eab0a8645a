"""What a course plot shows, as data: the panels (the dose, each lab or group of labs the
rules read), each threshold in the lab's own unit, the periods of holds and stops with the
rule that began them, and the values carried from an earlier visit. No drawing here: that is
`plots`, with matplotlib.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from fractions import Fraction

import attrs

from dosing.core.units import format_number
from dosing.engine.decision import Decision
from dosing.protocol.guards import Comparison, comparisons_in
from dosing.protocol.model import Protocol
from dosing.replay.replay import DERIVED_PLOTTED, LabPoint


@attrs.frozen
class Threshold:
    """A value the rules compare a lab with, and the actions of those rules."""

    value: Fraction
    actions: tuple[str, ...]

    def label(self, unit: str) -> str:
        """'1 x10^9/L · hold': the value, and the two weightiest things rules do there (a
        refer, which many rules fall back to, only when nothing else is done there)."""
        weightiest = sorted(self.actions, key=_WEIGHT.index)
        if len(weightiest) > 1:
            weightiest = [action for action in weightiest if action != "refer"]
        return f"{format_number(self.value)} {unit} · {', '.join(weightiest[:2])}".strip()


_WEIGHT = [
    "ineligible", "discontinue", "hold", "decrease", "resume", "increase", "start", "continue",
    "refer",
]  # fmt: skip


@attrs.frozen
class Panel:
    """One lab panel: its labs, their unit, and the thresholds drawn as bands."""

    title: str
    labs: tuple[str, ...]
    unit: str
    thresholds: tuple[Threshold, ...]
    per_uln: bool = False
    """Values drawn as multiples of each lab's upper limit of normal (liver tests)."""


def plan(protocol: Protocol) -> list[Panel]:
    """The lab panels for a protocol: each lab its rules read once treatment has started, in
    the protocol's order; labs compared with their ULN together, as multiples of it; CrCl
    when the rules read it. Screening-only criteria are not a course and are left out."""
    found: dict[str, dict[Fraction, set[str]]] = defaultdict(lambda: defaultdict(set))
    relative: dict[str, dict[Fraction, set[str]]] = defaultdict(lambda: defaultdict(set))
    for state in protocol.states.values():
        if state.initial:
            continue
        for transition in state.transitions:
            for atom in comparisons_in(transition.when):
                if not isinstance(atom, Comparison):
                    continue
                name, reference = atom.subject, atom.reference
                if reference is None:
                    found[name][atom.factor].add(transition.action)
                elif reference == f"{name}_uln":
                    relative[name][atom.factor].add(transition.action)
                elif reference in protocol.constants:
                    value = atom.factor * protocol.constants[reference]
                    found[name][value].add(transition.action)
    panels: list[Panel] = []
    liver = [name for name in protocol.labs if name in relative]
    for name, lab in protocol.labs.items():
        if name in liver and name == liver[0]:
            merged: dict[Fraction, set[str]] = defaultdict(set)
            for each in liver:
                for value, actions in relative[each].items():
                    merged[value] |= actions
            labels = ", ".join(protocol.labs[each].label for each in liver)
            panels.append(
                Panel(f"{labels} (x ULN)", tuple(liver), "x ULN", _thresholds(merged), True)
            )
        elif name in found and name not in liver:
            panels.append(Panel(lab.label, (name,), lab.unit, _thresholds(found[name])))
    for name in DERIVED_PLOTTED:
        kind = protocol.scope.get(name)
        if name in found and kind is not None:
            unit = getattr(kind, "unit", "")
            panels.append(Panel(kind.label, (name,), unit, _thresholds(found[name])))
    return panels


def _thresholds(found: dict[Fraction, set[str]]) -> tuple[Threshold, ...]:
    return tuple(Threshold(value, tuple(sorted(found[value]))) for value in sorted(found))


_SHADED = {
    "hold": "held",
    "discontinue": "stopped",
    "ineligible": "not eligible",
    "refer": "referred",
}


@attrs.frozen
class Period:
    """Visits in a row with no dose for one reason: held, stopped, not eligible, referred."""

    start: dt.date
    end: dt.date
    kind: str
    rule: str
    """The rule of the visit that began it ('hematologic-hold')."""


def periods(decisions: Sequence[Decision]) -> list[Period]:
    """Runs of hold, stop, exclusion or refer decisions; each lasts until the next visit
    (the last until its next check, or a week)."""
    found: list[Period] = []
    for index, decision in enumerate(decisions):
        kind = _SHADED.get(decision.action)
        if kind is None:
            continue
        if index + 1 < len(decisions):
            end = decisions[index + 1].date
        else:
            end = decision.next_check or decision.date + dt.timedelta(days=7)
        rule = ", ".join(rule.id for rule in decision.rules) or decision.action
        last = found[-1] if found else None
        if last is not None and last.kind == kind and last.end == decision.date:
            found[-1] = attrs.evolve(last, end=end)
        else:
            found.append(Period(decision.date, end, kind, rule))
    return found


def merged_points(points: Sequence[LabPoint]) -> list[LabPoint]:
    """One point per lab and draw date: a value measured for a visit is drawn filled, even if
    later visits used it again; one only ever used again (drawn before any visit) hollow."""
    by_key: dict[tuple[str, dt.date], LabPoint] = {}
    for point in points:
        key = (point.name, point.drawn_on)
        known = by_key.get(key)
        if known is None or (known.reused and not point.reused):
            by_key[key] = point
    return sorted(by_key.values(), key=lambda p: (p.name, p.drawn_on))


def carried(points: Sequence[LabPoint]) -> list[LabPoint]:
    """Each use of a value at a later visit than it was drawn for (drawn dotted, from the
    draw date to that visit): one per lab, draw date and visit."""
    return sorted(
        {(p.name, p.drawn_on, p.used_on): p for p in points if p.used_on is not None}.values(),
        key=lambda p: (p.name, p.drawn_on, p.used_on or p.drawn_on),
    )
