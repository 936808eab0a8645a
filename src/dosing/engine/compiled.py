"""A protocol compiled for speed: guards as closures over exact thresholds, fast comparisons
that fall back to Fractions near a threshold, and the answers to repeated questions kept.

A replay asks the same questions millions of times: the same value text in the same unit,
the same ANC against the same threshold, the same finding put into words. Compiled once per
protocol (in memory, in milliseconds: nothing is written to disk, nothing is unpickled),
this evaluator answers each distinct question once and looks the answer up after that:

- each distinct (name, value text) is read once (`CachedReader`): the exact Fraction in the
  canonical unit, or the error, which is raised afresh each time;
- each guard becomes a closure; a comparison compares floats when the value lies outside a
  narrow band around the threshold (`BAND`, relative), and the exact Fractions inside it, so
  the answer is always the exact one; each atom keeps its outcomes by (value, reference);
- the words for a finding are kept per (atom, value, threshold, reference, text typed,
  defaults used): the same finding is worded once.

`engine.step` with the default evaluator (`evaluator.REFERENCE`) is the reference; this one
must give decision records identical byte for byte (tests/engine/test_compiled.py runs
every scenario of every protocol, re-typed in every unit, and generated courses, through
both). Every table is bounded (`TABLE_LIMIT`): a full table is emptied and fills again, so
memory stays flat however long the replay.
"""

from __future__ import annotations

import datetime as dt
import math
import operator
from collections.abc import Callable, Iterable, Mapping
from fractions import Fraction
from typing import Any

from dosing.engine import explain
from dosing.engine.observations import Observation, ObservationReader
from dosing.protocol.guards import (
    COMPARE,
    Comparison,
    Complement,
    Conjunction,
    Disjunction,
    Finding,
    Guard,
    Membership,
    NameType,
    Outcome,
    Value,
    evaluate,
    names_in,
)
from dosing.protocol.model import Protocol

BAND = 1e-12
"""Relative half-width of the band around a threshold inside which floats are not trusted
and the exact Fractions are compared. A float holds a Fraction to 2**-53 (about 1.1e-16)
relative: outside the band, the floats' order is the exact order."""
TINY = 1e-280
"""Below this magnitude (near float underflow, where relative precision is lost) the
Fractions are compared."""
TABLE_LIMIT = 32_768
"""Entries a table keeps before it is emptied: memory stays bounded on any input."""
WORDS_LIMIT = 131_072
"""Entries the table of worded findings keeps (about 40 MB when full): a finding is worded
per text typed, and a cohort types thousands of values in several units."""

_Run = Callable[[Mapping[str, Value | None]], Outcome]
_FLOAT_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


def fast_compare(op: str) -> Callable[[Fraction, Fraction], bool]:
    """`COMPARE[op]`, exact, on floats where floats cannot be wrong."""
    exact = COMPARE[op]
    fast = _FLOAT_COMPARE[op]

    def compare(value: Fraction, threshold: Fraction) -> bool:
        try:
            left = value.numerator / value.denominator
            right = threshold.numerator / threshold.denominator
        except OverflowError:
            return exact(value, threshold)
        size = max(abs(left), abs(right))
        if size > TINY and abs(left - right) > BAND * size and not math.isinf(size):
            return fast(left, right)
        return exact(value, threshold)

    return compare


def _exact(value: Value | None) -> object:
    """A value as a key: a Fraction by its numerator and denominator (hashing two integers
    costs a fraction of hashing a Fraction), a category as itself."""
    if value.__class__ is Fraction:
        return (value.numerator, value.denominator)
    return value


def _remembered(table: dict[Any, Any], key: Any, value: Any, limit: int = TABLE_LIMIT) -> None:
    if len(table) >= limit:
        table.clear()
    table[key] = value


def _comparison(atom: Comparison) -> _Run:
    subject, reference, factor = atom.subject, atom.reference, atom.factor
    compare = fast_compare(atom.op)
    whole_years = atom.completed_years
    table: dict[tuple[object, object], Outcome] = {}

    def decide(value: Value | None, given: Value | None) -> Outcome:
        if reference is None:
            threshold: Fraction | None = factor
        else:
            threshold = None if given is None else factor * _number(given)
        if value is None or threshold is None:
            lacking = {subject} if value is None else set()
            if reference is not None and given is None:
                lacking.add(reference)
            return Outcome(None, (), frozenset(lacking))
        number = _number(value)
        compared = Fraction(math.floor(number)) if whole_years else number
        holds = compare(compared, threshold)
        return Outcome(holds, (Finding(atom, holds, number, threshold, given),))  # type: ignore[arg-type]

    def run(values: Mapping[str, Value | None]) -> Outcome:
        value = values.get(subject)
        given = values.get(reference) if reference is not None else None
        key = (_exact(value), _exact(given))
        known = table.get(key)
        if known is None:
            known = decide(value, given)
            _remembered(table, key, known)
        return known

    return run


def _membership(atom: Membership) -> _Run:
    subject, accepted = atom.subject, atom.values
    lacking = Outcome(None, (), frozenset({subject}))
    table: dict[object, Outcome] = {}

    def run(values: Mapping[str, Value | None]) -> Outcome:
        value = values.get(subject)
        if value is None:
            return lacking
        key = _exact(value)
        known = table.get(key)
        if known is None:
            holds = value in accepted
            known = Outcome(holds, (Finding(atom, holds, value),))
            _remembered(table, key, known)
        return known

    return run


def _junction(items: list[_Run], deciding: bool) -> _Run:
    """An 'and' (a false part decides) or an 'or' (a true part decides), as `evaluate`."""

    def run(values: Mapping[str, Value | None]) -> Outcome:
        parts = [item(values) for item in items]
        decided = [part for part in parts if part.truth is deciding]
        if decided:
            return Outcome(deciding, tuple(f for part in decided for f in part.findings))
        missing = frozenset().union(*(part.missing for part in parts))
        findings = tuple(f for part in parts for f in part.findings)
        if missing:
            return Outcome(None, findings, missing)
        return Outcome(not deciding, findings)

    return run


def _negated(item: _Run) -> _Run:
    def run(values: Mapping[str, Value | None]) -> Outcome:
        inner = item(values)
        truth = None if inner.truth is None else not inner.truth
        return Outcome(truth, inner.findings, inner.missing)

    return run


def compile_guard(guard: Guard) -> _Run:
    """A guard as a closure giving what `evaluate` gives. A count of criteria (Tally) and a
    choice of measures (Either) are evaluated by the reference itself."""
    if isinstance(guard, Comparison):
        return _comparison(guard)
    if isinstance(guard, Membership):
        return _membership(guard)
    if isinstance(guard, Conjunction | Disjunction):
        items = [compile_guard(item) for item in guard.items]
        return _junction(items, deciding=isinstance(guard, Disjunction))
    if isinstance(guard, Complement):
        return _negated(compile_guard(guard.item))
    return lambda values: evaluate(guard, values)


def _number(value: Value) -> Fraction:
    if isinstance(value, str):
        raise TypeError("a category is not a number")
    return value


class CompiledEvaluator:
    """The evaluator a replay uses: same answers as the reference, each computed once."""

    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        self._guards: dict[int, tuple[Guard, _Run]] = {}
        self._words: dict[tuple[Any, ...], tuple[object, object, str]] = {}
        self._short: dict[tuple[Any, ...], tuple[object, object, str]] = {}
        for state in protocol.states.values():
            for transition in state.transitions:
                self._compiled(transition.when)
            for monitoring in state.monitoring:
                if monitoring.when is not None:
                    self._compiled(monitoring.when)
        for slot in protocol.memory.values():
            for guard in (slot.track, slot.once):
                if guard is not None:
                    self._compiled(guard)

    def _compiled(self, guard: Guard) -> _Run:
        known = self._guards.get(id(guard))
        if known is not None and known[0] is guard:
            return known[1]
        run = compile_guard(guard)
        if len(names_in(guard)) == 1:  # one input: the whole guard's outcome by its value
            run = _by_value(next(iter(names_in(guard))), run)
        self._guards[id(guard)] = (guard, run)  # the guard is kept, so its id stays its own
        return run

    def evaluate(self, guard: Guard, values: Mapping[str, Value | None]) -> Outcome:
        return self._compiled(guard)(values)

    def describe(
        self,
        finding: Finding,
        scope: Mapping[str, NameType],
        entered: Mapping[str, str],
        defaults_used: frozenset[str],
    ) -> str:
        atom = finding.atom
        subject: str | None = getattr(atom, "subject", None)
        reference: str | None = getattr(atom, "reference", None)
        key = (  # the threshold follows from the atom and the reference value
            id(atom),
            finding.holds,
            _exact(finding.value),
            _exact(finding.reference_value),
            None if subject is None else entered.get(subject),
            subject in defaults_used,
            reference in defaults_used,
        )
        known = self._words.get(key)
        if known is not None and known[0] is atom and known[1] is scope:
            return known[2]
        text = explain.describe(finding, scope, entered, defaults_used)
        _remembered(self._words, key, (atom, scope, text), WORDS_LIMIT)
        return text

    def nearest(self, findings: Iterable[Finding]) -> list[Finding]:
        return explain.nearest(findings)  # distances in integers: cheaper than a lookup

    def compact(self, finding: Finding, scope: Mapping[str, NameType]) -> str:
        atom = finding.atom
        key = (id(atom), finding.holds, _exact(finding.value), _exact(finding.reference_value))
        known = self._short.get(key)
        if known is not None and known[0] is atom and known[1] is scope:
            return known[2]
        text = explain.compact(finding, scope)
        _remembered(self._short, key, (atom, scope, text))
        return text


def _by_value(name: str, run: _Run) -> _Run:
    table: dict[object, Outcome] = {}

    def remembered(values: Mapping[str, Value | None]) -> Outcome:
        key = _exact(values.get(name))
        known = table.get(key)
        if known is None:
            known = run(values)
            _remembered(table, key, known)
        return known

    return remembered


class CachedReader(ObservationReader):
    """An observation reader that reads each distinct (name, text) once. A text that cannot
    be read is not kept: it is read again, and refused with the same message."""

    def __init__(self, protocol: Protocol | None, accept_implausible: bool = False) -> None:
        super().__init__(protocol, accept_implausible)
        self._read: dict[tuple[str, str], tuple[str, Fraction | str, str]] = {}

    def read(self, name: str, text: str, drawn_on: dt.date) -> Observation:
        known = self._read.get((name, text))
        if known is not None:
            return Observation(known[0], known[1], known[2], drawn_on)
        observation = super().read(name, text, drawn_on)
        kept = (observation.name, observation.value, observation.entered)
        _remembered(self._read, (name, text), kept)
        return observation


_compiled: dict[int, tuple[Protocol, CompiledEvaluator]] = {}


def compiled(protocol: Protocol) -> CompiledEvaluator:
    """The protocol's compiled evaluator, built on first use in this process and kept."""
    known = _compiled.get(id(protocol))
    if known is None or known[0] is not protocol:
        if len(_compiled) >= 8:
            _compiled.clear()
        known = _compiled[id(protocol)] = (protocol, CompiledEvaluator(protocol))
    return known[1]
