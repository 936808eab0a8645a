"""Guards as sets of inputs: disjunctive normal form over intervals and value sets.

Each comparison constrains one variable: a lab (`anc`), or a lab as a multiple of its
reference (`alt/alt_uln`). A conjunction is satisfiable when every variable keeps a non-empty
interval or set. Two rules overlap when some conjunction of one and some of the other are
satisfiable together; the witness is a concrete input a person can read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fractions import Fraction

import attrs

from dosing.core.errors import DosingError
from dosing.protocol.guards import (
    NEGATED_OP,
    Comparison,
    Complement,
    Conjunction,
    Disjunction,
    Either,
    Guard,
    Membership,
    Tally,
    exact_years,
)

Atom = Comparison | Membership
MAX_CASES = 1000
"""Conjunctions in a guard's disjunctive form: shipped protocols need at most 5. Twenty
'and'-ed pairs of alternatives are a million, which once took `dosing check` minutes and
gigabytes; past this, a guard is reported as too complex to analyse."""
MAX_PAIRS = 100_000
"""Pairs of conjunctions compared to find a common input (shipped protocols: at most 48)."""


class TooComplex(DosingError):
    """A guard, or a pair of guards, with too many cases to analyse exhaustively."""


@attrs.frozen
class Interval:
    """An interval of the reals; None bounds are unbounded."""

    low: Fraction | None = None
    low_closed: bool = False
    high: Fraction | None = None
    high_closed: bool = False

    def meet(self, other: Interval) -> Interval:
        low, low_closed = self.low, self.low_closed
        if other.low is not None and (
            low is None or other.low > low or (other.low == low and not other.low_closed)
        ):
            low, low_closed = other.low, other.low_closed
        high, high_closed = self.high, self.high_closed
        if other.high is not None and (
            high is None or other.high < high or (other.high == high and not other.high_closed)
        ):
            high, high_closed = other.high, other.high_closed
        return Interval(low, low_closed, high, high_closed)

    def empty(self) -> bool:
        if self.low is None or self.high is None:
            return False
        return self.low > self.high or (
            self.low == self.high and not (self.low_closed and self.high_closed)
        )

    def witness(self) -> Fraction:
        """A point inside (assumes not empty)."""
        if self.low is not None and self.high is not None:
            if self.low_closed:
                return self.low
            return (
                self.high
                if self.high_closed and self.high == self.low
                else (self.low + self.high) / 2
            )
        if self.low is not None:
            return self.low if self.low_closed else self.low + 1
        if self.high is not None:
            return self.high if self.high_closed else self.high - 1
        return Fraction(0)


def _interval(op: str, bound: Fraction) -> Interval:
    return {
        "<": Interval(high=bound),
        "<=": Interval(high=bound, high_closed=True),
        ">": Interval(low=bound),
        ">=": Interval(low=bound, low_closed=True),
        "==": Interval(bound, True, bound, True),
    }[op]


def variable(atom: Atom) -> str:
    """The variable an atom constrains: a name, or name/reference for multiples."""
    if isinstance(atom, Comparison) and atom.reference is not None:
        return f"{atom.subject}/{atom.reference}"
    return atom.subject


def _negate(atom: Atom) -> list[Atom]:
    if isinstance(atom, Membership):
        return [attrs.evolve(atom, values=atom.domain - atom.values)]
    if atom.op == "==":
        return [attrs.evolve(atom, op="<"), attrs.evolve(atom, op=">")]
    return [attrs.evolve(atom, op=NEGATED_OP[atom.op])]


def dnf(guard: Guard, negated: bool = False) -> list[list[Atom]]:
    """The guard (or its negation) as a list of conjunctions of atoms. A count is one
    variable (its count(...) text): analysis does not look inside it."""
    if isinstance(guard, Tally):
        guard = Comparison(guard.counted, guard.op, guard.threshold, None, "", guard.text)
    if isinstance(guard, Complement):
        return dnf(guard.item, not negated)
    if isinstance(guard, Either):  # as sets of inputs: either measure may meet it
        guard = Disjunction(guard.items)
    if isinstance(guard, Comparison) and guard.completed_years:
        return dnf(exact_years(guard), negated)
    if isinstance(guard, Comparison | Membership):
        if not negated:
            atoms: list[Atom] = (
                [attrs.evolve(guard, op="<"), attrs.evolve(guard, op=">")]
                if isinstance(guard, Comparison) and guard.op == "!="
                else [guard]
            )
            return [[atom] for atom in atoms]
        return [[atom] for atom in _negate(guard)]
    conjunctive = isinstance(guard, Conjunction) != negated
    parts = [dnf(item, negated) for item in guard.items]
    if not conjunctive:
        if sum(len(part) for part in parts) > MAX_CASES:
            raise TooComplex(f"more than {MAX_CASES} cases")
        return [conj for part in parts for conj in part]
    result: list[list[Atom]] = [[]]
    for part in parts:
        if len(result) * len(part) > MAX_CASES:
            raise TooComplex(f"more than {MAX_CASES} cases")
        result = [left + right for left in result for right in part]
    return result


Region = dict[str, Interval | frozenset[str]]


def region(atoms: list[Atom], start: Region | None = None) -> Region | None:
    """The box of inputs satisfying all `atoms` (within `start`), or None when there is none."""
    box: Region = dict(start or {})
    for atom in atoms:
        key = variable(atom)
        if isinstance(atom, Membership):
            current = box.get(key, atom.domain)
            assert isinstance(current, frozenset)
            narrowed: Interval | frozenset[str] = current & atom.values
            if not narrowed:
                return None
        else:
            current_interval = box.get(key, Interval())
            assert isinstance(current_interval, Interval)
            narrowed = current_interval.meet(_interval(atom.op, atom.factor))
            if narrowed.empty():
                return None
        box[key] = narrowed
    return box


def regions(guard: Guard) -> Iterator[Region]:
    """The satisfiable boxes of a guard."""
    for conjunction in dnf(guard):
        box = region(conjunction)
        if box is not None:
            yield box


def common_region(first: Guard, second: Guard) -> Region | None:
    """Some box of inputs for which both guards hold, or None. Raises TooComplex when
    there are too many cases to compare."""
    lefts, rights = dnf(first), dnf(second)
    if len(lefts) * len(rights) > MAX_PAIRS:
        raise TooComplex(f"more than {MAX_PAIRS} pairs of cases")
    for left in lefts:
        for right in rights:
            box = region(left + right)
            if box is not None:
                return box
    return None


MAX_BOXES = 4096
"""How many boxes `uncovered_common_region` keeps before it stops and answers 'some'."""


def uncovered_common_region(first: Guard, second: Guard, above: Iterable[Guard]) -> Region | None:
    """Some box of inputs for which both guards hold and none of `above` does, or None.
    When the boxes to follow pass MAX_BOXES the answer is a box of the common region
    (a safe 'they may both decide'), never a wrong None. Raises TooComplex as dnf does."""
    lefts, rights = dnf(first), dnf(second)
    if len(lefts) * len(rights) > MAX_PAIRS:
        raise TooComplex(f"more than {MAX_PAIRS} pairs of cases")
    boxes = [box for left in lefts for right in rights if (box := region(left + right)) is not None]
    for guard in above:
        negation = dnf(guard, negated=True)
        narrowed: list[Region] = []
        for box in boxes:
            for conjunction in negation:
                inside = region(conjunction, box)
                if inside is not None:
                    narrowed.append(inside)
            if len(narrowed) > MAX_BOXES:
                return boxes[0]
        boxes = narrowed
        if not boxes:
            return None
    return boxes[0] if boxes else None


def witness(box: Region) -> dict[str, Fraction | str]:
    """A concrete input inside a box."""
    point: dict[str, Fraction | str] = {}
    for key, constraint in sorted(box.items()):
        point[key] = (
            constraint.witness() if isinstance(constraint, Interval) else sorted(constraint)[0]
        )
    return point
