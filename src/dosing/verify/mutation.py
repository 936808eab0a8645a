"""Mutation testing of a protocol's scenarios: would they notice a small mistake in a rule?

Mutants are made from the loaded protocol (not its text):
- a comparator flipped: < and <=, > and >= swapped;
- a threshold nudged by +10% and -10%;
- a rule's target state swapped for another state;
- the priorities of two rules of a state swapped.

A mutant is caught when some scenario visit no longer gets what the file expects, gets a
different decision from the unmutated protocol (state, action, doses or the rule that fired,
all of which a user sees), or the engine refuses to decide. Every surviving mutant is a
scenario nobody wrote yet.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from fractions import Fraction

import attrs

from dosing.core.errors import DosingError
from dosing.core.units import format_number
from dosing.protocol.analysis import TooComplex, uncovered_common_region
from dosing.protocol.guards import (
    COMPARE,
    WHOLE_DAYS,
    Comparison,
    CountType,
    Guard,
    comparisons_in,
    exact_years,
    map_comparisons,
)
from dosing.protocol.model import Protocol, Scenario, State, Transition
from dosing.verify.findings import Finding
from dosing.verify.scenarios import run_scenario

TARGET = Fraction(9, 10)
_FLIP = {"<": "<=", "<=": "<", ">": ">=", ">=": ">"}


@attrs.frozen
class Mutant:
    """One small change to one rule."""

    where: str
    change: str
    protocol: Protocol


@attrs.frozen
class MutationResult:
    """How many mutants the scenarios caught, and the ones they missed."""

    protocol: str
    total: int
    caught: int
    survivors: tuple[Mutant, ...]
    """Mutants no scenario catches."""
    by_invariants: tuple[Mutant, ...] = ()
    """Of the survivors, those a label invariant catches on generated courses."""
    invariants_searched: bool = False

    @property
    def score(self) -> Fraction:
        """The share the scenarios catch (the label invariants are reported beside it)."""
        return Fraction(self.caught, self.total) if self.total else Fraction(1)

    def __str__(self) -> str:
        share = format_number(self.score * 100, 1)
        text = (
            f"{self.caught} of {self.total} mutants caught by scenarios ({share}%; target >= 90%)"
        )
        if self.invariants_searched and self.survivors:
            both = format_number(
                Fraction(self.caught + len(self.by_invariants), self.total) * 100, 1
            )
            text += (
                f"; the label invariants catch {len(self.by_invariants)} of the "
                f"{len(self.survivors)} left ({both}% with both)"
            )
        return text

    def findings(self) -> list[Finding]:
        found = [
            Finding(
                "mutation",
                "note" if mutant in self.by_invariants else "warning",
                mutant.where,
                f"survived the scenarios: {mutant.change} "
                + (
                    "(a label invariant catches it)"
                    if mutant in self.by_invariants
                    else "(add a scenario)"
                ),
            )
            for mutant in self.survivors
        ]
        if self.score < TARGET:
            found.append(
                Finding("mutation", "error", self.protocol, f"mutation score too low: {self}")
            )
        return found

    def to_json(self) -> dict[str, object]:
        return {
            "total": self.total,
            "caught": self.caught,
            "score": float(self.score),
            "caught_only_by_invariants": len(self.by_invariants)
            if self.invariants_searched
            else None,
            "survivors": [
                {"where": m.where, "change": m.change, "invariant_catches": m in self.by_invariants}
                for m in self.survivors
            ],
        }


Outcome = list[tuple[str, str, tuple[str, ...], tuple[str, ...]]]


MutantProgress = Callable[[str, int, int], None]
"""Told (what, done, out of) as mutants are run: the CLI draws it; the core does not."""


def _quiet(what: str, done: int, total: int) -> None:
    """No progress to show."""


def mutation_score(
    protocol: Protocol, invariant_examples: int = 0, progress: MutantProgress = _quiet
) -> MutationResult:
    """Run every mutant against the scenarios; with `invariant_examples`, search that many
    generated courses (and scenario timelines) of each survivor for a label invariant it
    breaks: the mutants only the invariants catch."""
    baseline = [_outcome(protocol, scenario) for scenario in protocol.scenarios]
    survivors = []
    made = list(mutants(protocol))
    total = len(made)
    for done, mutant in enumerate(made, 1):
        if not _caught(mutant.protocol, baseline):
            survivors.append(mutant)
        progress("mutants against the scenarios", done, total)
    by_invariants: list[Mutant] = []
    if invariant_examples and protocol.invariants and survivors:
        from dosing.verify.property_search import search, search_all  # hypothesis: only when asked

        # An invariant the protocol itself breaks tells no mutant apart: leave it out.
        kept = attrs.evolve(protocol, properties=())
        itself = {found.property for found in search_all(kept, invariant_examples, shrink=False)}
        watched = tuple(i for i in protocol.invariants if i.name not in itself)
        for done, mutant in enumerate(survivors if watched else (), 1):
            only_invariants = attrs.evolve(mutant.protocol, properties=(), invariants=watched)
            try:
                broken = search(only_invariants, invariant_examples, shrink=False) is not None
            except DosingError:  # the mutant made the engine refuse a course: caught too
                broken = True
            if broken:
                by_invariants.append(mutant)
            progress("survivors against the label invariants", done, len(survivors))
    return MutationResult(
        protocol.id,
        total,
        total - len(survivors),
        tuple(survivors),
        tuple(by_invariants),
        bool(invariant_examples and protocol.invariants),
    )


def _outcome(protocol: Protocol, scenario: Scenario) -> Outcome:
    results = run_scenario(protocol, scenario)
    if any(result.failures for result in results):
        raise _Failed
    return [
        (
            r.decision.state,
            r.decision.action,
            tuple(dose.short() for dose in r.decision.doses),
            tuple(rule.id for rule in r.decision.rules),
        )
        for r in results
    ]


class _Failed(Exception):
    """A scenario's expectation failed."""


def _caught(protocol: Protocol, baseline: list[Outcome]) -> bool:
    for scenario, expected in zip(protocol.scenarios, baseline, strict=True):
        try:
            if _outcome(protocol, scenario) != expected:
                return True
        except (_Failed, DosingError):
            return True
    return False


def mutants(protocol: Protocol) -> Iterator[Mutant]:
    """Every mutant of the protocol, in file order."""
    names = list(protocol.states)
    for name, state in protocol.states.items():
        for index, transition in enumerate(state.transitions):
            where = f"states.{name}.transitions[{index}] ({transition.rule})"
            for atom in comparisons_in(transition.when):
                if not isinstance(atom, Comparison):
                    continue
                changes = []
                if atom.op in _FLIP:
                    changes.append(
                        (
                            attrs.evolve(atom, op=_FLIP[atom.op]),
                            f"'{atom.text}' with {atom.op} read as {_FLIP[atom.op]}",
                        )
                    )
                for factor, label in ((Fraction(11, 10), "+10%"), (Fraction(9, 10), "-10%")):
                    changes.append(
                        (
                            attrs.evolve(atom, factor=atom.factor * factor),
                            f"'{atom.text}' with its threshold {label}",
                        )
                    )
                for mutated, change in changes:
                    if not _equivalent(protocol, atom, mutated):
                        yield _with(protocol, state, index, atom, mutated, where, change)
            other = next((n for n in names if n != transition.target and n != name), None)
            if other is not None:
                swapped = attrs.evolve(transition, target=other)
                yield Mutant(
                    where,
                    f"target {transition.target} swapped for {other}",
                    _replace_transition(protocol, state, index, swapped),
                )
            for later in range(index + 1, len(state.transitions)):
                partner = state.transitions[later]
                top = max(transition.priority, partner.priority)
                above = [rule.when for rule in state.transitions if rule.priority > top]
                if partner.priority != transition.priority and _may_both_decide(
                    protocol, transition.when, partner.when, above
                ):  # rules that never both decide (a higher rule takes every visit where
                    # both apply): swapping their priorities changes no decision
                    transitions = list(state.transitions)
                    transitions[index] = attrs.evolve(transition, priority=partner.priority)
                    transitions[later] = attrs.evolve(partner, priority=transition.priority)
                    changed = attrs.evolve(state, transitions=tuple(transitions))
                    yield Mutant(
                        where,
                        f"priorities of '{transition.rule}' ({transition.priority}) and "
                        f"'{partner.rule}' ({partner.priority}) swapped",
                        attrs.evolve(protocol, states={**protocol.states, name: changed}),
                    )
                    break


def _equivalent(protocol: Protocol, atom: Comparison, mutated: Comparison) -> bool:
    """Whether no value the subject can take tells the two comparisons apart: a dose on a
    ladder takes only its levels; counts and days are whole numbers. Such a mutant cannot
    be caught by any scenario, so it is not counted."""
    if atom.completed_years:  # an age in completed years: compare what each really means
        return exact_years(atom) == exact_years(mutated)
    before, after = COMPARE[atom.op], COMPARE[mutated.op]
    levels = _levels(protocol, atom.subject)
    if atom.reference is not None and levels is not None:
        if levels != _levels(protocol, atom.reference):
            return False
        return all(
            before(value, atom.factor * other) == after(value, mutated.factor * other)
            for value in levels
            for other in levels
        )
    threshold, changed = atom.factor, mutated.factor
    if atom.reference is not None:
        constant = protocol.constants.get(atom.reference)
        if constant is None:
            return False
        threshold, changed = atom.factor * constant, mutated.factor * constant
    values: list[Fraction]
    if levels is not None:
        values = list(levels)
    elif atom.subject in WHOLE_DAYS or isinstance(protocol.scope.get(atom.subject), CountType):
        middle = int(threshold)
        spread = 4 + middle // 5
        values = [Fraction(n) for n in range(max(0, middle - spread), middle + spread)]
    else:
        return False
    return all(before(value, threshold) == after(value, changed) for value in values)


def _levels(protocol: Protocol, name: str) -> tuple[Fraction, ...] | None:
    slot = protocol.memory.get(name)
    if slot is None or slot.ladder is None:
        return None
    return protocol.ladders[slot.ladder].levels


def _with(
    protocol: Protocol,
    state: State,
    index: int,
    old: Comparison,
    new: Comparison,
    where: str,
    change: str,
) -> Mutant:
    transition = state.transitions[index]
    mutated = attrs.evolve(transition, when=_replace(transition.when, old, new))
    return Mutant(where, change, _replace_transition(protocol, state, index, mutated))


def _replace_transition(protocol: Protocol, state: State, index: int, new: Transition) -> Protocol:
    transitions = list(state.transitions)
    transitions[index] = new
    changed = attrs.evolve(state, transitions=tuple(transitions))
    return attrs.evolve(protocol, states={**protocol.states, state.name: changed})


def _replace(guard: Guard, old: Comparison, new: Comparison) -> Guard:
    """The guard with one atom (by identity) replaced."""
    return map_comparisons(guard, lambda atom: new if atom is old else atom)


def _may_both_decide(protocol: Protocol, first: Guard, second: Guard, above: list[Guard]) -> bool:
    """Whether some input meets both guards and none of `above` (assumed so when too
    complex to tell)."""
    try:
        region = uncovered_common_region(
            _resolved(protocol, first),
            _resolved(protocol, second),
            [_resolved(protocol, guard) for guard in above],
        )
    except TooComplex:
        return True
    return region is not None


def _resolved(protocol: Protocol, guard: Guard) -> Guard:
    """The guard with thresholds written as a parameter (`trough >= trough_refer_above`) as
    plain thresholds, so overlap analysis compares them with thresholds written as numbers."""

    def plain(atom: Comparison) -> Comparison:
        constant = None if atom.reference is None else protocol.constants.get(atom.reference)
        if constant is None:
            return atom
        return attrs.evolve(atom, factor=atom.factor * constant, reference=None)

    return map_comparisons(guard, plain)
